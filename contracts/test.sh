#!/usr/bin/env bash
# Checks that contracts/artifacts/ matches contracts/src/, then runs the forge tests offline.
# Usage (from any directory): contracts/test.sh [extra forge test args]
# Assumes `npm ci` was run at the repository root.
set -euo pipefail

contracts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$contracts_dir")"
forge="$root/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"

if [[ ! -x "$forge" || ! -d "$root/node_modules/solc" ]]; then
  echo "contracts/test.sh: forge or solc missing under $root/node_modules; run \`npm ci\` in $root" >&2
  exit 1
fi

echo "==> artifact freshness (node contracts/build.js --check)"
(cd "$root" && node contracts/build.js --check)

echo "==> forge test"
# foundry.toml names the solc wrapper relative to contracts/, so forge must run from there.
cd "$contracts_dir"
"$forge" test "$@"
