//! The Merkle tree of RFC 9162 §2.1 and its prover.
//!
//! ```text
//! MTH({})        = HASH()
//! MTH({d(0)})    = HASH(0x00 || d(0))
//! MTH(D[n])      = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of two < n
//! ```
//!
//! A *perfect subtree* `(level, index)` is the complete subtree of `2^level` leaves starting at leaf
//! `index · 2^level`. Every subtree hash that an inclusion proof (§2.1.3.1) or a consistency proof
//! (§2.1.4.1) contains is the hash of a leaf range `[start, end)` that splits into at most log₂ n
//! perfect subtrees, so a log that keeps all perfect-subtree hashes answers any proof with
//! O(log² n) lookups and no recomputation. The verifiers are in [`super::proof`] and share nothing
//! with this file except [`HashAlgorithm`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::Error;

/// A tree hash. Both supported algorithms produce 32 bytes.
pub type Hash = [u8; 32];

/// The hash function of a log, fixed when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// SHA-256 (RFC 9162's SHA-256 hash algorithm).
    Sha256,
    /// SM3 (GM/T 0004), for logs under the national commercial-cryptography rules.
    Sm3,
}

impl HashAlgorithm {
    /// The name kept in the store and in archives: `sha256` or `sm3`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sm3 => "sm3",
        }
    }

    /// HASH(parts[0] || parts[1] || ...).
    fn hash(self, parts: &[&[u8]]) -> Hash {
        match self {
            Self::Sha256 => {
                let mut h = sha2::Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
            Self::Sm3 => {
                let mut h = sm3::Sm3::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
        }
    }

    /// MTH({}) = HASH(), the root of the empty tree.
    #[must_use]
    pub fn empty_root(self) -> Hash {
        self.hash(&[])
    }

    /// The leaf hash HASH(0x00 || data).
    #[must_use]
    pub fn leaf(self, data: &[u8]) -> Hash {
        self.hash(&[&[0x00], data])
    }

    /// The interior node hash HASH(0x01 || left || right).
    #[must_use]
    pub fn node(self, left: &Hash, right: &Hash) -> Hash {
        self.hash(&[&[0x01], left, right])
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" | "sha-256" => Ok(Self::Sha256),
            "sm3" => Ok(Self::Sm3),
            _ => Err(Error::Audit(format!("unknown hash algorithm {s:?} (expected sha256 or sm3)"))),
        }
    }
}

/// A perfect subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// The height; leaves are level 0.
    pub level: u8,
    /// The position among the subtrees of this level.
    pub index: u64,
}

impl NodeId {
    /// The first leaf this subtree covers.
    #[must_use]
    pub fn first_leaf(self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf this subtree covers.
    #[must_use]
    pub fn end_leaf(self) -> u64 {
        (self.index + 1) << self.level
    }
}

/// The largest power of two strictly less than `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The perfect subtrees that make up the leaf range `[start, end)`, left to right (largest
/// first). `start` must be a multiple of the largest power of two not above `end - start`, which
/// holds for every range that appears in RFC 9162's recursion.
#[must_use]
pub fn decompose(start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut pos = start;
    let size = end.saturating_sub(start);
    for level in (0..64u8).rev() {
        if size & (1 << level) != 0 {
            out.push(NodeId { level, index: pos >> level });
            pos += 1 << level;
        }
    }
    out
}

/// MTH of a range from the hashes of its [`decompose`]d perfect subtrees: they fold from the
/// right, because RFC 9162 splits off the largest power of two on the left first.
///
/// # Errors
/// [`Error::Tampered`] when a subtree hash is missing from `nodes`.
pub fn range_hash(alg: HashAlgorithm, start: u64, end: u64, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, Error> {
    let parts = decompose(start, end);
    let mut acc: Option<Hash> = None;
    for id in parts.iter().rev() {
        let h = nodes.get(id).ok_or_else(|| Error::Tampered {
            index: id.first_leaf(),
            what: format!("the stored tree node (level {}, index {}) is missing", id.level, id.index),
        })?;
        acc = Some(match acc {
            None => *h,
            Some(right) => alg.node(h, &right),
        });
    }
    Ok(acc.unwrap_or_else(|| alg.empty_root()))
}

/// The leaf ranges whose subtree hashes form the inclusion proof of leaf `index` in a tree of
/// `size` leaves, in proof order (RFC 9162 §2.1.3.1, `PATH(m, D[n])`). Requires `index < size`.
#[must_use]
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    fn path(m: u64, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            path(m, start, start + k, out);
            out.push((start + k, end));
        } else {
            path(m - k, start + k, end, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

/// The leaf ranges whose subtree hashes form the consistency proof from `old_size` to
/// `new_size`, in proof order (RFC 9162 §2.1.4.1, `PROOF(m, D[n])`). Empty when
/// `old_size == 0` or `old_size >= new_size`.
#[must_use]
pub fn consistency_ranges(old_size: u64, new_size: u64) -> Vec<(u64, u64)> {
    fn subproof(m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push((start, end));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            subproof(m, start, start + k, complete, out);
            out.push((start + k, end));
        } else {
            subproof(m - k, start + k, end, false, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if 0 < old_size && old_size < new_size {
        subproof(old_size, 0, new_size, true, &mut out);
    }
    out
}

/// All perfect subtrees needed to hash the given ranges, without repeats.
#[must_use]
pub fn nodes_for(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = ranges.iter().flat_map(|&(s, e)| decompose(s, e)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The right edge of a tree: the hashes of the perfect subtrees that make up `[0, size)`, one
/// per set bit of `size`. Appending a leaf completes new perfect subtrees exactly like a binary
/// counter carries. This is the O(log n) stack the writer and the full verification use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `by_level[l]` is meaningful where bit `l` of `size` is set.
    by_level: [Hash; 64],
}

impl Frontier {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self { size: 0, by_level: [[0; 32]; 64] }
    }

    /// A frontier from the hashes of [`decompose`]`(0, size)`, in that order.
    ///
    /// # Errors
    /// [`Error::Audit`] when the number of hashes is not the number of set bits of `size`.
    pub fn from_parts(size: u64, parts: &[Hash]) -> Result<Self, Error> {
        let ids = decompose(0, size);
        if ids.len() != parts.len() {
            return Err(Error::Audit(format!(
                "a tree of {size} leaves has {} edge nodes, not {}",
                ids.len(),
                parts.len()
            )));
        }
        let mut f = Self::new();
        f.size = size;
        for (id, h) in ids.iter().zip(parts) {
            f.by_level[usize::from(id.level)] = *h;
        }
        Ok(f)
    }

    /// The number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; `completed` sees every perfect subtree the leaf completes, the leaf
    /// itself (level 0) first, then its ancestors bottom-up.
    pub fn push(&mut self, alg: HashAlgorithm, leaf: Hash, mut completed: impl FnMut(NodeId, &Hash)) {
        let n = self.size;
        let mut h = leaf;
        let mut level = 0u8;
        completed(NodeId { level: 0, index: n }, &h);
        while n & (1 << level) != 0 {
            h = alg.node(&self.by_level[usize::from(level)], &h);
            level += 1;
            completed(NodeId { level, index: n >> level }, &h);
        }
        self.by_level[usize::from(level)] = h;
        self.size = n + 1;
    }

    /// MTH of the leaves so far.
    #[must_use]
    pub fn root(&self, alg: HashAlgorithm) -> Hash {
        let mut acc: Option<Hash> = None;
        for level in 0..64u8 {
            if self.size & (1 << level) != 0 {
                let h = &self.by_level[usize::from(level)];
                acc = Some(match acc {
                    None => *h,
                    Some(right) => alg.node(h, &right),
                });
            }
        }
        acc.unwrap_or_else(|| alg.empty_root())
    }
}

impl Default for Frontier {
    fn default() -> Self {
        Self::new()
    }
}

/// A whole tree in memory, keeping every perfect subtree: the reference prover for tests and
/// small tools. The store-backed log proves with the same range functions.
#[derive(Clone, Debug)]
pub struct MemoryTree {
    alg: HashAlgorithm,
    nodes: HashMap<NodeId, Hash>,
    frontier: Frontier,
}

impl MemoryTree {
    /// An empty tree.
    #[must_use]
    pub fn new(alg: HashAlgorithm) -> Self {
        Self { alg, nodes: HashMap::new(), frontier: Frontier::new() }
    }

    /// Appends the leaf with data `data`.
    pub fn push_data(&mut self, data: &[u8]) {
        self.push_leaf(self.alg.leaf(data));
    }

    /// Appends a leaf hash.
    pub fn push_leaf(&mut self, leaf: Hash) {
        let nodes = &mut self.nodes;
        self.frontier.push(self.alg, leaf, |id, h| {
            nodes.insert(id, *h);
        });
    }

    /// The number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// MTH of the first `size` leaves.
    ///
    /// # Errors
    /// [`Error::Audit`] when `size` is larger than the tree.
    pub fn root(&self, size: u64) -> Result<Hash, Error> {
        self.check_size(size)?;
        range_hash(self.alg, 0, size, &self.nodes)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    ///
    /// # Errors
    /// [`Error::Audit`] when `index >= size` or `size` is larger than the tree.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(size)?;
        if index >= size {
            return Err(Error::Audit(format!("leaf {index} is not in a tree of {size}")));
        }
        inclusion_ranges(index, size).iter().map(|&(s, e)| range_hash(self.alg, s, e, &self.nodes)).collect()
    }

    /// The consistency proof from the tree of `old_size` leaves to the tree of `new_size`.
    ///
    /// # Errors
    /// [`Error::Audit`] when `old_size > new_size` or `new_size` is larger than the tree.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(Error::Audit(format!("tree size {old_size} is larger than {new_size}")));
        }
        consistency_ranges(old_size, new_size).iter().map(|&(s, e)| range_hash(self.alg, s, e, &self.nodes)).collect()
    }

    fn check_size(&self, size: u64) -> Result<(), Error> {
        if size > self.size() {
            return Err(Error::Audit(format!("the tree has {} leaves, not {size}", self.size())));
        }
        Ok(())
    }
}

/// MTH of a list of leaf data straight from the RFC's recursive definition, with no shortcuts:
/// the oracle the tests compare everything else with.
#[must_use]
pub fn reference_root(alg: HashAlgorithm, leaves: &[&[u8]]) -> Hash {
    match leaves.len() {
        0 => alg.empty_root(),
        1 => alg.leaf(leaves[0]),
        n => {
            let k = usize::try_from(split_point(n as u64)).unwrap_or(n / 2);
            alg.node(&reference_root(alg, &leaves[..k]), &reference_root(alg, &leaves[k..]))
        }
    }
}
