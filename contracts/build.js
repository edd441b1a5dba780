#!/usr/bin/env node
// Compiles every contracts/src/*.sol with the npm `solc` package (solcjs, standard JSON) and
// writes one artifact per contract to contracts/artifacts/<Name>.json in the foundry/hardhat
// shape that alloy's `sol!` macro reads: {abi, bytecode: {object}, deployedBytecode: {object}}.
//
//   node contracts/build.js           compile and write the artifacts
//   node contracts/build.js --check   compile in memory; exit 1 if an artifact is stale or missing
//
// Run `npm ci` at the repository root first.
'use strict';

const fs = require('fs');
const path = require('path');
const solc = require('solc');

const OPTIMIZER_RUNS = 200;
// forge (alloy's JsonAbi) orders ABI items by kind, then by name; do the same so an artifact's
// ABI reads like the one forge writes under contracts/out/.
const ABI_KIND_ORDER = ['constructor', 'fallback', 'receive', 'function', 'event', 'error'];
const EVM_VERSION = 'cancun';

const contractsDir = __dirname;
const srcDir = path.join(contractsDir, 'src');
const artifactsDir = path.join(contractsDir, 'artifacts');

function fail(msg) {
  process.stderr.write(`build.js: ${msg}\n`);
  process.exit(1);
}

// Source units are keyed "src/<File>.sol" (relative to contracts/), as forge keys them.
function readSources() {
  const files = fs.readdirSync(srcDir).filter((f) => f.endsWith('.sol')).sort();
  if (files.length === 0) fail(`no .sol files in ${srcDir}`);
  const sources = {};
  for (const f of files) sources[`src/${f}`] = { content: fs.readFileSync(path.join(srcDir, f), 'utf8') };
  return sources;
}

// Imports resolve relative to contracts/ and may not leave contracts/src.
function findImport(importPath) {
  const abs = path.resolve(contractsDir, importPath);
  if (!abs.startsWith(srcDir + path.sep)) return { error: `import outside contracts/src: ${importPath}` };
  try {
    return { contents: fs.readFileSync(abs, 'utf8') };
  } catch (e) {
    return { error: `cannot read ${importPath}: ${e.message}` };
  }
}

// Code-unit order, like Rust's BTreeMap<String, _> (ABI names are ASCII).
function byName(a, b) {
  const x = a.name || '';
  const y = b.name || '';
  return x < y ? -1 : x > y ? 1 : 0;
}

function sortAbi(abi) {
  const rank = (item) => ABI_KIND_ORDER.indexOf(item.type);
  // Array.prototype.sort is stable: overloads keep solc's order.
  return [...abi].sort((a, b) => rank(a) - rank(b) || byName(a, b));
}

function compile() {
  const input = {
    language: 'Solidity',
    sources: readSources(),
    settings: {
      optimizer: { enabled: true, runs: OPTIMIZER_RUNS },
      evmVersion: EVM_VERSION,
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const diagnostics = output.errors || [];
  for (const d of diagnostics) process.stderr.write(d.formattedMessage || `${d.severity}: ${d.message}\n`);
  if (diagnostics.some((d) => d.severity === 'error')) fail('compilation failed');

  // solcjs reports "0.8.37+commit.f401782d.Emscripten.clang"; keep "0.8.37+commit.f401782d".
  const compiler = solc.version().replace(/\.Emscripten\.clang$/, '');
  const artifacts = new Map();
  for (const [unit, contracts] of Object.entries(output.contracts || {})) {
    if (!unit.startsWith('src/')) continue; // imported units outside src are never emitted
    for (const [name, c] of Object.entries(contracts)) {
      if (artifacts.has(name)) fail(`two contracts named ${name}`);
      const artifact = {
        abi: sortAbi(c.abi),
        bytecode: { object: `0x${c.evm.bytecode.object}` },
        deployedBytecode: { object: `0x${c.evm.deployedBytecode.object}` },
        metadata: { compiler, optimizer_runs: OPTIMIZER_RUNS },
      };
      artifacts.set(name, `${JSON.stringify(artifact, null, 2)}\n`);
    }
  }
  return artifacts;
}

function main() {
  const args = process.argv.slice(2);
  const check = args.includes('--check');
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length) fail(`unknown argument(s): ${unknown.join(' ')} (usage: build.js [--check])`);

  const artifacts = compile();
  const rel = (name) => path.relative(process.cwd(), path.join(artifactsDir, `${name}.json`)) || '.';

  if (check) {
    const problems = [];
    for (const [name, text] of artifacts) {
      const file = path.join(artifactsDir, `${name}.json`);
      if (!fs.existsSync(file)) problems.push(`missing: ${rel(name)}`);
      else if (fs.readFileSync(file, 'utf8') !== text) problems.push(`stale: ${rel(name)}`);
    }
    if (problems.length) {
      fail(`contract artifacts out of date:\n  ${problems.join('\n  ')}\nrun \`node contracts/build.js\` and commit contracts/artifacts/`);
    }
    process.stdout.write(`build.js: ${artifacts.size} artifact(s) up to date (solc ${solc.version()})\n`);
    return;
  }

  fs.mkdirSync(artifactsDir, { recursive: true });
  for (const [name, text] of artifacts) {
    fs.writeFileSync(path.join(artifactsDir, `${name}.json`), text);
    process.stdout.write(`wrote ${rel(name)}\n`);
  }
}

main();
