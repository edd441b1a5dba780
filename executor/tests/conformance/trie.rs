//! `TrieTests`: Merkle-Patricia root vectors against alloy-trie's
//! `HashBuilder` and, for the secure (hashed-key) vectors, against the
//! executor's incremental trie that computes the state root.

use crate::{
    Filter,
    fixtures::{Outcome, Report, case_name, read_json},
};
use alloy_primitives::{B256, hex, keccak256};
use alloy_trie::{HashBuilder, Nibbles};
use rollup_executor::{Engine, trie::MerkleTrie};
use serde::Deserialize;
use std::{collections::BTreeMap, path::Path};

/// The vector files: name, whether keys are hashed (secure trie), and whether
/// `in` is an ordered list of updates (`true`) or a map (`false`).
const FILES: &[(&str, bool)] = &[
    ("trietest.json", false),
    ("trietest_secureTrie.json", true),
    ("trieanyorder.json", false),
    ("trieanyorder_secureTrie.json", true),
    ("hex_encoded_securetrie_test.json", true),
];

/// Vector files not run, and why.
const SKIPPED_FILES: &[(&str, &str)] = &[(
    "trietestnextprev.json",
    "iteration (next/prev key) vectors: alloy-trie's HashBuilder computes roots and has no \
     key iteration; nothing in the executor iterates a trie",
)];

#[derive(Debug, Deserialize)]
struct TrieTest {
    #[serde(rename = "in")]
    input: Input,
    root: B256,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    /// Updates applied in order; `null` deletes.
    Ordered(Vec<(String, Option<String>)>),
    /// Insertions in any order.
    Map(BTreeMap<String, Option<String>>),
}

/// Runs the trie vectors.
pub(crate) fn run(dir: &Path, _engine: Engine, filter: &Filter) -> Report {
    let root = dir.join("TrieTests");
    let mut report = Report::new("trie");
    let mut known: Vec<&str> = FILES.iter().map(|(f, _)| *f).collect();
    known.extend(SKIPPED_FILES.iter().map(|(f, _)| *f));
    for entry in std::fs::read_dir(&root).expect("TrieTests directory") {
        let file = entry.expect("directory entry").file_name().to_string_lossy().into_owned();
        if file.ends_with(".json") && !known.contains(&file.as_str()) {
            report.record(
                case_name(&root, &root.join(&file), "*"),
                Outcome::Failed("vector file not known to the runner".into()),
            );
        }
    }
    for (file, reason) in SKIPPED_FILES {
        let path = root.join(file);
        if path.exists() {
            report.record(case_name(&root, &path, "*"), Outcome::Skipped((*reason).into()));
        }
    }
    for (file, secure) in FILES {
        let path = root.join(file);
        let tests: BTreeMap<String, TrieTest> = match read_json(&path) {
            Ok(tests) => tests,
            Err(e) => {
                report.record(case_name(&root, &path, "*"), Outcome::Failed(e));
                continue;
            }
        };
        for (name, test) in tests {
            let name = case_name(&root, &path, &name);
            if filter.case(&name) {
                report.record(name, run_test(&test, *secure));
            }
        }
    }
    report
}

fn run_test(test: &TrieTest, secure: bool) -> Outcome {
    let updates: Vec<(Vec<u8>, Vec<u8>)> = match &test.input {
        Input::Ordered(list) => list
            .iter()
            .map(|(k, v)| (bytes(k), v.as_deref().map(bytes).unwrap_or_default()))
            .collect(),
        Input::Map(map) => map
            .iter()
            .map(|(k, v)| (bytes(k), v.as_deref().map(bytes).unwrap_or_default()))
            .collect(),
    };
    // Secure vectors have 32-byte keys, like the state: the executor's
    // incremental trie applies the updates in order (deletions included).
    if secure {
        let mut trie = MerkleTrie::new();
        for (key, value) in &updates {
            let key = keccak256(key);
            if value.is_empty() {
                trie.remove(key);
            } else {
                trie.insert(key, value.clone());
            }
        }
        let root = trie.root();
        if root != test.root {
            return Outcome::Failed(format!(
                "incremental trie root {root}, expected {}",
                test.root
            ));
        }
    }
    // The trie's content after the updates: an empty value deletes the key.
    let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (key, value) in updates {
        let key = if secure { keccak256(&key).to_vec() } else { key };
        if value.is_empty() {
            entries.remove(&key);
        } else {
            entries.insert(key, value);
        }
    }
    let keys: Vec<&Vec<u8>> = entries.keys().collect();
    if keys.windows(2).any(|pair| pair[1].starts_with(pair[0])) {
        return Outcome::Skipped(
            "a key is a prefix of another (a value in a branch node): alloy-trie's HashBuilder \
             takes prefix-free keys only, as in the state and storage tries (32-byte hashed keys)"
                .into(),
        );
    }
    let mut builder = HashBuilder::default();
    for (key, value) in &entries {
        builder.add_leaf(Nibbles::unpack(key), value);
    }
    let root = builder.root();
    if root == test.root {
        Outcome::Passed
    } else {
        Outcome::Failed(format!("root {root}, expected {}", test.root))
    }
}

/// A fixture string: hex if it starts with `0x`, else its UTF-8 bytes.
fn bytes(text: &str) -> Vec<u8> {
    match text.strip_prefix("0x") {
        Some(digits) => hex::decode(digits).unwrap_or_else(|_| text.as_bytes().to_vec()),
        None => text.as_bytes().to_vec(),
    }
}
