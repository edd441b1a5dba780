//! An in-memory Merkle-Patricia trie with cached node hashes, for state roots
//! whose cost grows with what a block touches, not with the size of the state.
//!
//! Keys are 32-byte hashes (the secure trie of accounts and storage), so every
//! key has 64 nibbles and values live only in leaves. Updates mark the path
//! they touch dirty; [`MerkleTrie::root`] re-encodes and re-hashes only dirty
//! nodes (the top of the trie in parallel) and keeps every other node's
//! cached [`RlpNode`]. Node encoding and hashing are alloy-trie's, so the root
//! is Ethereum's; tests check it against alloy-trie's `HashBuilder`.

use crate::snapshot::{Reader, SnapshotError, Writer};
use alloy_primitives::{B256, Bytes, keccak256};
use alloy_rlp::Encodable;
use alloy_trie::{
    EMPTY_ROOT_HASH, Nibbles, TrieMask,
    nodes::{BranchNodeRef, ExtensionNodeRef, LeafNodeRef, RlpNode},
};
use rayon::prelude::*;

/// Dirty subtrees at most this deep are hashed on rayon's pool.
const PARALLEL_DEPTH: usize = 2;
/// Update batches at least this large run per subtree on rayon's pool.
const PARALLEL_BATCH: usize = 256;

/// A Merkle-Patricia trie over 32-byte keys; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct MerkleTrie {
    root: Node,
    len: usize,
}

#[derive(Debug, Clone, Default)]
enum Node {
    #[default]
    Empty,
    Leaf(Box<Leaf>),
    Extension(Box<Extension>),
    Branch(Box<Branch>),
    /// A branch subtree known only by its reference: the untouched parts of
    /// a [`MerkleTrie::partial_copy`]. Never descended into.
    /// Boxed: an inline reference would make every node 40 bytes, not 16.
    Hashed(Box<RlpNode>),
}

#[derive(Debug, Clone)]
struct Leaf {
    /// The rest of the key below this node.
    key: Nibbles,
    value: Vec<u8>,
    rlp: Option<RlpNode>,
}

#[derive(Debug, Clone)]
struct Extension {
    key: Nibbles,
    child: Node,
    rlp: Option<RlpNode>,
}

#[derive(Debug, Clone, Default)]
struct Branch {
    children: [Node; 16],
    rlp: Option<RlpNode>,
}

impl MerkleTrie {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds no key.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets `key` to `value` (already RLP-encoded, non-empty).
    pub fn insert(&mut self, key: B256, value: Vec<u8>) {
        if self.root.insert(Nibbles::unpack(key), value) {
            self.len += 1;
        }
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: B256) -> bool {
        let removed = self.root.remove(&Nibbles::unpack(key));
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Applies many updates (`Some(value)` sets, `None` removes; one update
    /// per key). Large
    /// batches update the root branch's sixteen subtrees in parallel.
    pub fn update_many(&mut self, mut updates: Vec<(B256, Option<Vec<u8>>)>) {
        if updates.len() < PARALLEL_BATCH {
            return self.update_sequentially(updates);
        }
        if !matches!(self.root, Node::Branch(_)) {
            // A fresh trie: the first keys make the root a branch.
            let rest = updates.split_off(PARALLEL_BATCH / 2);
            self.update_sequentially(updates);
            updates = rest;
        }
        let Node::Branch(branch) = &mut self.root else {
            return self.update_sequentially(updates);
        };
        // In key order, consecutive updates share the top of their paths,
        // which stay in cache.
        updates.sort_unstable_by_key(|update| update.0);
        let mut by_nibble: Vec<Vec<(B256, Option<Vec<u8>>)>> = vec![Vec::new(); 16];
        for update in updates {
            by_nibble[usize::from(update.0[0] >> 4)].push(update);
        }
        branch.rlp = None;
        let delta: isize = branch
            .children
            .par_iter_mut()
            .zip(by_nibble)
            .map(|(child, updates)| {
                let mut delta = 0isize;
                for (key, value) in updates {
                    let rest = Nibbles::unpack(key).slice(1..);
                    match value {
                        Some(value) => delta += isize::from(child.insert(rest, value)),
                        None => delta -= isize::from(child.remove(&rest)),
                    }
                }
                delta
            })
            .sum();
        self.len = self.len.saturating_add_signed(delta);
        self.root.collapse_single_child_branch();
    }

    fn update_sequentially(&mut self, updates: Vec<(B256, Option<Vec<u8>>)>) {
        for (key, value) in updates {
            match value {
                Some(value) => self.insert(key, value),
                None => {
                    self.remove(key);
                }
            }
        }
    }

    /// The root hash, hashing only what changed since the last call.
    pub fn root(&mut self) -> B256 {
        if matches!(self.root, Node::Empty) {
            return EMPTY_ROOT_HASH;
        }
        let rlp = self.root.rlp(0, &mut Vec::new());
        rlp.as_hash().unwrap_or_else(|| keccak256(rlp.as_slice()))
    }
}

impl MerkleTrie {
    /// A copy holding only the paths of `keys` (and the nodes beside them
    /// that an update may merge with); every other subtree is kept as its
    /// reference. Updating any of `keys` and taking the root or a proof of
    /// any of them gives what the full trie would, at a cost that grows with
    /// `keys`, not with the trie. Hashes must be current (call
    /// [`MerkleTrie::root`] first).
    pub fn partial_copy(&self, keys: impl IntoIterator<Item = B256>) -> Self {
        let mut keys: Vec<Nibbles> = keys.into_iter().map(Nibbles::unpack).collect();
        keys.sort_unstable();
        keys.dedup();
        Self { root: self.root.partial_copy(&keys), len: self.len }
    }

    /// The Merkle proof of `key` (present or absent): the RLP of every node
    /// on its path from the root, as `eth_getProof` returns it. Hashes must be
    /// current: call [`MerkleTrie::root`] after the last update.
    pub fn proof(&self, key: B256) -> Vec<Bytes> {
        let mut proof = Vec::new();
        let mut buf = Vec::new();
        let mut node = &self.root;
        let mut rest = Nibbles::unpack(key);
        loop {
            buf.clear();
            match node {
                Node::Empty | Node::Hashed(_) => return proof,
                Node::Leaf(leaf) => {
                    LeafNodeRef::new(&leaf.key, &leaf.value).encode(&mut buf);
                    proof.push(Bytes::copy_from_slice(&buf));
                    return proof;
                }
                Node::Extension(extension) => {
                    let child = extension.child.cached_rlp();
                    ExtensionNodeRef::new(&extension.key, &child).encode(&mut buf);
                    proof.push(Bytes::copy_from_slice(&buf));
                    if !rest.starts_with(&extension.key) {
                        return proof;
                    }
                    rest = rest.slice(extension.key.len()..);
                    node = &extension.child;
                }
                Node::Branch(branch) => {
                    let (stack, mask) = branch.child_stack();
                    BranchNodeRef::new(&stack, mask).encode(&mut buf);
                    proof.push(Bytes::copy_from_slice(&buf));
                    node = &branch.children[usize::from(rest.get_unchecked(0))];
                    rest = rest.slice(1..);
                }
            }
        }
    }
}

impl Branch {
    /// The present children's cached references and their mask.
    fn child_stack(&self) -> (Vec<RlpNode>, TrieMask) {
        let mut mask = TrieMask::default();
        let mut stack = Vec::new();
        for (i, child) in self.children.iter().enumerate() {
            if !matches!(child, Node::Empty) {
                mask.set_bit(i as u8);
                stack.push(child.cached_rlp());
            }
        }
        (stack, mask)
    }
}

impl Node {
    /// This node's cached reference.
    ///
    /// # Panics
    /// If hashes are stale (a [`MerkleTrie::root`] call is missing).
    fn cached_rlp(&self) -> RlpNode {
        let cached = match self {
            Self::Empty => None,
            Self::Leaf(leaf) => leaf.rlp.clone(),
            Self::Extension(extension) => extension.rlp.clone(),
            Self::Branch(branch) => branch.rlp.clone(),
            Self::Hashed(rlp) => Some((**rlp).clone()),
        };
        cached.expect("trie hashes are current: call root() before proof()")
    }

    /// See [`MerkleTrie::partial_copy`]; `keys` (sorted) pass through here.
    fn partial_copy(&self, keys: &[Nibbles]) -> Self {
        match self {
            Self::Empty => Self::Empty,
            Self::Leaf(_) | Self::Hashed(_) => self.clone(),
            Self::Extension(extension) => {
                let below: Vec<Nibbles> = keys
                    .iter()
                    .filter(|key| key.starts_with(&extension.key))
                    .map(|key| key.slice(extension.key.len()..))
                    .collect();
                Self::Extension(Box::new(Extension {
                    key: extension.key,
                    child: extension.child.partial_copy(&below),
                    rlp: extension.rlp.clone(),
                }))
            }
            Self::Branch(branch) => {
                let mut copy = Branch { children: Default::default(), rlp: branch.rlp.clone() };
                for (nibble, (child, copied)) in
                    branch.children.iter().zip(copy.children.iter_mut()).enumerate()
                {
                    let below: Vec<Nibbles> = keys
                        .iter()
                        .filter(|key| usize::from(key.get_unchecked(0)) == nibble)
                        .map(|key| key.slice(1..))
                        .collect();
                    *copied = if below.is_empty() {
                        child.beside_path()
                    } else {
                        child.partial_copy(&below)
                    };
                }
                Self::Branch(Box::new(copy))
            }
        }
    }

    /// A subtree beside the copied paths: a removal may merge a leaf or an
    /// extension into its parent, so those are kept (an extension's child,
    /// always a branch, as its reference); a branch is only referenced.
    fn beside_path(&self) -> Self {
        match self {
            Self::Empty => Self::Empty,
            Self::Leaf(_) | Self::Hashed(_) => self.clone(),
            Self::Extension(extension) => Self::Extension(Box::new(Extension {
                key: extension.key,
                child: Self::Hashed(Box::new(extension.child.cached_rlp())),
                rlp: extension.rlp.clone(),
            })),
            Self::Branch(_) => Self::Hashed(Box::new(self.cached_rlp())),
        }
    }

    fn leaf(key: Nibbles, value: Vec<u8>) -> Self {
        Self::Leaf(Box::new(Leaf { key, value, rlp: None }))
    }

    /// Wraps `child` in an extension of `key`, unless `key` is empty.
    fn extended(key: Nibbles, child: Self) -> Self {
        if key.is_empty() {
            child
        } else {
            Self::Extension(Box::new(Extension { key, child, rlp: None }))
        }
    }

    /// A branch holding `a` and `b` below two different nibbles.
    fn branch_of_two(a: (u8, Self), b: (u8, Self)) -> Self {
        let mut branch = Branch::default();
        branch.children[usize::from(a.0)] = a.1;
        branch.children[usize::from(b.0)] = b.1;
        Self::Branch(Box::new(branch))
    }

    /// Inserts below this node; returns whether the key is new.
    fn insert(&mut self, key: Nibbles, value: Vec<u8>) -> bool {
        match self {
            Self::Empty => {
                *self = Self::leaf(key, value);
                true
            }
            Self::Leaf(leaf) => {
                if leaf.key == key {
                    leaf.value = value;
                    leaf.rlp = None;
                    return false;
                }
                // Keys have one length, so neither is a prefix of the other.
                let common = leaf.key.common_prefix_length(&key);
                let old = std::mem::take(self);
                let Self::Leaf(old) = old else { unreachable!("matched a leaf") };
                let old_nibble = old.key.get_unchecked(common);
                let old_rest = old.key.slice(common + 1..);
                let branch = Self::branch_of_two(
                    (old_nibble, Self::leaf(old_rest, old.value)),
                    (key.get_unchecked(common), Self::leaf(key.slice(common + 1..), value)),
                );
                *self = Self::extended(key.slice(..common), branch);
                true
            }
            Self::Extension(extension) => {
                let common = extension.key.common_prefix_length(&key);
                if common == extension.key.len() {
                    extension.rlp = None;
                    return extension.child.insert(key.slice(common..), value);
                }
                let old = std::mem::take(self);
                let Self::Extension(old) = old else { unreachable!("matched an extension") };
                let old_nibble = old.key.get_unchecked(common);
                let old_below = Self::extended(old.key.slice(common + 1..), old.child);
                let branch = Self::branch_of_two(
                    (old_nibble, old_below),
                    (key.get_unchecked(common), Self::leaf(key.slice(common + 1..), value)),
                );
                *self = Self::extended(key.slice(..common), branch);
                true
            }
            Self::Branch(branch) => {
                branch.rlp = None;
                let nibble = usize::from(key.get_unchecked(0));
                branch.children[nibble].insert(key.slice(1..), value)
            }
            Self::Hashed(_) => {
                unreachable!("a partial copy holds the path of every key it updates")
            }
        }
    }

    /// Removes `key` below this node, keeping the trie in canonical form (no
    /// branch with one child, no extension above an extension or a leaf).
    fn remove(&mut self, key: &Nibbles) -> bool {
        match self {
            Self::Empty => false,
            Self::Leaf(leaf) => {
                if leaf.key != *key {
                    return false;
                }
                *self = Self::Empty;
                true
            }
            Self::Extension(extension) => {
                if !key.starts_with(&extension.key) {
                    return false;
                }
                if !extension.child.remove(&key.slice(extension.key.len()..)) {
                    return false;
                }
                let old = std::mem::take(self);
                let Self::Extension(old) = old else { unreachable!("matched an extension") };
                *self = Self::prefixed(old.key, old.child);
                true
            }
            Self::Branch(branch) => {
                let nibble = key.get_unchecked(0);
                if !branch.children[usize::from(nibble)].remove(&key.slice(1..)) {
                    return false;
                }
                branch.rlp = None;
                self.collapse_single_child_branch();
                true
            }
            Self::Hashed(_) => {
                unreachable!("a partial copy holds the path of every key it updates")
            }
        }
    }

    /// A branch left with one child becomes that child below a one-nibble
    /// prefix (or an empty node if it has none).
    fn collapse_single_child_branch(&mut self) {
        let Self::Branch(branch) = self else { return };
        let mut present = branch
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c, Self::Empty))
            .map(|(i, _)| i);
        match (present.next(), present.next()) {
            (None, _) => *self = Self::Empty,
            (Some(only), None) => {
                let child = std::mem::take(&mut branch.children[only]);
                let mut prefix = Nibbles::new();
                prefix.push(only as u8);
                *self = Self::prefixed(prefix, child);
            }
            _ => {}
        }
    }

    /// `child` reached through `prefix`, merged into canonical form.
    fn prefixed(prefix: Nibbles, child: Self) -> Self {
        match child {
            Self::Empty => Self::Empty,
            Self::Leaf(mut leaf) => {
                leaf.key = prefix.join(&leaf.key);
                leaf.rlp = None;
                Self::Leaf(leaf)
            }
            Self::Extension(mut extension) => {
                extension.key = prefix.join(&extension.key);
                extension.rlp = None;
                Self::Extension(extension)
            }
            branch @ (Self::Branch(_) | Self::Hashed(_)) => Self::extended(prefix, branch),
        }
    }

    /// This node's RLP reference (its encoding if shorter than 32 bytes, else
    /// its hash), computed for dirty nodes and cached.
    fn rlp(&mut self, depth: usize, buf: &mut Vec<u8>) -> RlpNode {
        match self {
            Self::Empty => RlpNode::from_rlp(&[alloy_rlp::EMPTY_STRING_CODE]),
            Self::Hashed(rlp) => (**rlp).clone(),
            Self::Leaf(leaf) => {
                if let Some(rlp) = &leaf.rlp {
                    return rlp.clone();
                }
                buf.clear();
                let rlp = LeafNodeRef::new(&leaf.key, &leaf.value).rlp(buf);
                leaf.rlp = Some(rlp.clone());
                rlp
            }
            Self::Extension(extension) => {
                if let Some(rlp) = &extension.rlp {
                    return rlp.clone();
                }
                let depth = depth + extension.key.len();
                let child = extension.child.rlp(depth, buf);
                buf.clear();
                let rlp = ExtensionNodeRef::new(&extension.key, &child).rlp(buf);
                extension.rlp = Some(rlp.clone());
                rlp
            }
            Self::Branch(branch) => {
                if let Some(rlp) = &branch.rlp {
                    return rlp.clone();
                }
                let mut mask = TrieMask::default();
                for (i, child) in branch.children.iter().enumerate() {
                    if !matches!(child, Self::Empty) {
                        mask.set_bit(i as u8);
                    }
                }
                // The children's references, on the stack below the top levels.
                let mut stack: [RlpNode; 16] = Default::default();
                let mut count = 0;
                if depth < PARALLEL_DEPTH {
                    let hashed: Vec<RlpNode> = branch
                        .children
                        .par_iter_mut()
                        .filter(|c| !matches!(c, Self::Empty))
                        .map_init(Vec::new, |buf, child| child.rlp(depth + 1, buf))
                        .collect();
                    for rlp in hashed {
                        stack[count] = rlp;
                        count += 1;
                    }
                } else {
                    for child in branch.children.iter_mut() {
                        if !matches!(child, Self::Empty) {
                            stack[count] = child.rlp(depth + 1, buf);
                            count += 1;
                        }
                    }
                }
                buf.clear();
                let rlp = BranchNodeRef::new(&stack[..count], mask).rlp(buf);
                branch.rlp = Some(rlp.clone());
                rlp
            }
        }
    }
}

/// Snapshot encoding of a trie with its cached node encodings (see
/// [`crate::snapshot`]).
impl MerkleTrie {
    /// Appends the trie, node by node with each cached [`RlpNode`].
    pub(crate) fn write_snapshot(&self, w: &mut Writer) {
        w.u64(self.len as u64);
        self.root.write_snapshot(w);
    }

    /// Reads a trie written by [`MerkleTrie::write_snapshot`].
    pub(crate) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let len = usize::try_from(r.u64()?).map_err(|_| SnapshotError::Invalid("trie size"))?;
        Ok(Self { root: Node::read_snapshot(r, 0)?, len })
    }
}

const EMPTY_TAG: u8 = 0;
const LEAF_TAG: u8 = 1;
const EXTENSION_TAG: u8 = 2;
const BRANCH_TAG: u8 = 3;
const HASHED_TAG: u8 = 4;

impl Node {
    fn write_snapshot(&self, w: &mut Writer) {
        match self {
            Self::Empty => w.u8(EMPTY_TAG),
            Self::Leaf(leaf) => {
                w.u8(LEAF_TAG);
                write_nibbles(w, &leaf.key);
                w.bytes(&leaf.value);
                write_rlp(w, leaf.rlp.as_ref());
            }
            Self::Extension(extension) => {
                w.u8(EXTENSION_TAG);
                write_nibbles(w, &extension.key);
                write_rlp(w, extension.rlp.as_ref());
                extension.child.write_snapshot(w);
            }
            Self::Hashed(rlp) => {
                w.u8(HASHED_TAG);
                write_rlp(w, Some(rlp));
            }
            Self::Branch(branch) => {
                w.u8(BRANCH_TAG);
                let mask = branch
                    .children
                    .iter()
                    .enumerate()
                    .filter(|(_, child)| !matches!(child, Self::Empty))
                    .fold(0u16, |mask, (i, _)| mask | (1 << i));
                w.fixed(&mask.to_le_bytes());
                write_rlp(w, branch.rlp.as_ref());
                for child in branch.children.iter().filter(|c| !matches!(c, Self::Empty)) {
                    child.write_snapshot(w);
                }
            }
        }
    }

    /// Reads a node whose path from the root has `depth` nibbles.
    fn read_snapshot(r: &mut Reader<'_>, depth: usize) -> Result<Self, SnapshotError> {
        if depth > 64 {
            return Err(SnapshotError::Invalid("path longer than 64 nibbles"));
        }
        Ok(match r.u8()? {
            EMPTY_TAG => Self::Empty,
            LEAF_TAG => {
                let key = read_nibbles(r)?;
                let value = r.bytes()?.to_vec();
                let rlp = read_rlp(r)?;
                Self::Leaf(Box::new(Leaf { key, value, rlp }))
            }
            EXTENSION_TAG => {
                let key = read_nibbles(r)?;
                let rlp = read_rlp(r)?;
                let child = Self::read_snapshot(r, depth + key.len())?;
                Self::Extension(Box::new(Extension { key, child, rlp }))
            }
            BRANCH_TAG => {
                let mask = u16::from_le_bytes(r.fixed(2)?.try_into().expect("2 bytes"));
                let rlp = read_rlp(r)?;
                let mut branch = Box::new(Branch { children: Default::default(), rlp });
                for (i, child) in branch.children.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        *child = Self::read_snapshot(r, depth + 1)?;
                    }
                }
                Self::Branch(branch)
            }
            HASHED_TAG => Self::Hashed(Box::new(
                read_rlp(r)?.ok_or(SnapshotError::Invalid("hashed node without reference"))?,
            )),
            _ => return Err(SnapshotError::Invalid("node tag")),
        })
    }
}

fn write_nibbles(w: &mut Writer, nibbles: &Nibbles) {
    w.u8(nibbles.len() as u8);
    w.fixed(&nibbles.pack());
}

fn read_nibbles(r: &mut Reader<'_>) -> Result<Nibbles, SnapshotError> {
    let len = usize::from(r.u8()?);
    if len > 64 {
        return Err(SnapshotError::Invalid("key longer than 64 nibbles"));
    }
    let mut nibbles = Nibbles::unpack(r.fixed(len.div_ceil(2))?);
    nibbles.truncate(len);
    Ok(nibbles)
}

fn write_rlp(w: &mut Writer, rlp: Option<&RlpNode>) {
    match rlp {
        None => w.u8(0),
        Some(rlp) => {
            w.u8(rlp.len() as u8);
            w.fixed(rlp.as_slice());
        }
    }
}

fn read_rlp(r: &mut Reader<'_>) -> Result<Option<RlpNode>, SnapshotError> {
    match usize::from(r.u8()?) {
        0 => Ok(None),
        len => RlpNode::from_raw(r.fixed(len)?)
            .map(Some)
            .ok_or(SnapshotError::Invalid("node encoding longer than 33 bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::HashBuilder;
    use std::collections::BTreeMap;

    /// alloy-trie's root of the same map, built from sorted leaves.
    fn reference_root(entries: &BTreeMap<B256, Vec<u8>>) -> B256 {
        let mut builder = HashBuilder::default();
        for (key, value) in entries {
            builder.add_leaf(Nibbles::unpack(key), value);
        }
        builder.root()
    }

    /// A deterministic pseudo-random sequence (xorshift).
    fn keys(seed: u64, n: usize) -> Vec<B256> {
        let mut x = seed.max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                keccak256(x.to_be_bytes())
            })
            .collect()
    }

    #[test]
    fn a_partial_copy_updates_and_proves_like_the_full_trie() {
        for (seed, size) in [(1u64, 1usize), (2, 2), (3, 17), (4, 300), (5, 3_000)] {
            let present = keys(seed, size);
            let mut full = MerkleTrie::new();
            for key in &present {
                full.insert(*key, key[..20].to_vec());
            }
            full.root();
            for round in 0..6u64 {
                // Removals (down to an empty trie), changes and new keys.
                let fresh = keys(seed * 1_000 + round, 3);
                let removed: Vec<B256> = present
                    .iter()
                    .skip(round as usize)
                    .step_by(2 + round as usize)
                    .copied()
                    .collect();
                let changed: Vec<B256> = present.iter().skip(1).step_by(5).copied().collect();
                let mut updates: Vec<(B256, Option<Vec<u8>>)> =
                    removed.iter().map(|k| (*k, None)).collect();
                updates.extend(
                    changed
                        .iter()
                        .filter(|k| !removed.contains(k))
                        .map(|k| (*k, Some(vec![7; 40]))),
                );
                updates.extend(fresh.iter().map(|k| (*k, Some(vec![round as u8 + 1; 3]))));
                let asked = [present[0], fresh[0], B256::repeat_byte(0xee)];
                let touched = updates.iter().map(|(k, _)| *k).chain(asked);

                let mut partial = full.partial_copy(touched);
                let mut expected = full.clone();
                expected.update_sequentially(updates.clone());
                partial.update_sequentially(updates);
                assert_eq!(partial.root(), expected.root(), "seed {seed} round {round}");
                for key in asked {
                    assert_eq!(partial.proof(key), expected.proof(key), "proof of {key}");
                }
            }
        }
    }

    #[test]
    fn nodes_stay_one_pointer_wide() {
        // A branch holds sixteen of them: every byte here is sixteen per branch.
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn empty_trie_has_the_empty_root() {
        assert_eq!(MerkleTrie::new().root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn matches_alloy_trie_through_inserts_updates_and_removals() {
        let mut trie = MerkleTrie::new();
        let mut reference = BTreeMap::new();
        let all = keys(7, 3_000);
        for (round, chunk) in all.chunks(500).enumerate() {
            for (i, key) in chunk.iter().enumerate() {
                // Short values give inline (< 32 byte) nodes, long ones hashed.
                let value = vec![round as u8 + 1; 1 + i % 40];
                trie.insert(*key, value.clone());
                reference.insert(*key, value);
            }
            // Update some earlier keys and remove others.
            for key in all.iter().take(round * 500).step_by(7) {
                let value = vec![0xee, round as u8];
                trie.insert(*key, value.clone());
                reference.insert(*key, value);
            }
            for key in all.iter().take(round * 500).skip(3).step_by(11) {
                assert_eq!(trie.remove(*key), reference.remove(key).is_some());
            }
            assert_eq!(trie.len(), reference.len());
            assert_eq!(trie.root(), reference_root(&reference), "round {round}");
        }
        // Removing everything returns to the empty root.
        for key in reference.keys() {
            assert!(trie.remove(*key));
        }
        assert!(!trie.remove(all[0]));
        assert_eq!(trie.root(), EMPTY_ROOT_HASH);
        assert!(trie.is_empty());
    }

    #[test]
    fn batched_updates_match_single_updates() {
        let all = keys(11, 5_000);
        let mut single = MerkleTrie::new();
        let mut batched = MerkleTrie::new();
        batched.update_many(all.iter().map(|k| (*k, Some(vec![1; 40]))).collect());
        for key in &all {
            single.insert(*key, vec![1; 40]);
        }
        assert_eq!(batched.root(), single.root());
        // Updates and removals, then removal of all but one key.
        let updates: Vec<_> = all
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, (i % 3 != 0).then(|| vec![2; 1 + i % 50])))
            .collect();
        for (key, value) in updates.clone() {
            match value {
                Some(value) => single.insert(key, value),
                None => {
                    single.remove(key);
                }
            }
        }
        batched.update_many(updates);
        assert_eq!(batched.len(), single.len());
        assert_eq!(batched.root(), single.root());
        let survivor = all[1];
        batched.update_many(all.iter().filter(|k| **k != survivor).map(|k| (*k, None)).collect());
        let mut reference = BTreeMap::new();
        reference.insert(survivor, vec![2; 2]);
        assert_eq!(batched.len(), 1);
        assert_eq!(batched.root(), reference_root(&reference));
    }

    #[test]
    fn proofs_verify_with_alloy_for_present_and_absent_keys() {
        let all = keys(5, 2_000);
        let mut trie = MerkleTrie::new();
        for (i, key) in all.iter().enumerate().skip(1) {
            trie.insert(*key, vec![7; 1 + i % 40]);
        }
        let root = trie.root();
        for (i, key) in all.iter().enumerate().take(200) {
            let expected = (i > 0).then(|| vec![7; 1 + i % 40]);
            alloy_trie::proof::verify_proof(
                root,
                Nibbles::unpack(key),
                expected,
                &trie.proof(*key),
            )
            .unwrap_or_else(|e| panic!("key {i}: {e}"));
        }
        // A proof does not verify for a value the trie does not hold.
        let wrong = alloy_trie::proof::verify_proof(
            root,
            Nibbles::unpack(all[5]),
            Some(vec![8; 6]),
            &trie.proof(all[5]),
        );
        assert!(wrong.is_err());
    }

    #[test]
    fn keys_sharing_long_prefixes_collapse_correctly() {
        // Keys that differ only in their last nibbles force long extensions.
        let base = B256::repeat_byte(0xab);
        let mut variants = Vec::new();
        for last in [0x00u8, 0x01, 0x10, 0xff] {
            let mut key = base;
            key.0[31] = last;
            variants.push(key);
        }
        let mut trie = MerkleTrie::new();
        let mut reference = BTreeMap::new();
        for key in &variants {
            trie.insert(*key, vec![0x42; 33]);
            reference.insert(*key, vec![0x42; 33]);
            assert_eq!(trie.root(), reference_root(&reference));
        }
        for key in &variants {
            trie.remove(*key);
            reference.remove(key);
            let expected =
                if reference.is_empty() { EMPTY_ROOT_HASH } else { reference_root(&reference) };
            assert_eq!(trie.root(), expected);
        }
    }
}
