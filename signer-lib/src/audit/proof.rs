//! Proof verification, written step by step from RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! This file deliberately shares no code with the prover ([`super::merkle`]) beyond the hash
//! functions of [`HashAlgorithm`], so that a mistake in one is not repeated in the other.

use super::merkle::{Hash, HashAlgorithm};
use crate::Error;

/// An inclusion proof: the audit path of one leaf in a tree of a given size (RFC 9162 §2.1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The leaf's index.
    pub leaf_index: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The audit path, bottom-up.
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// Checks that the leaf with hash `leaf_hash` is at `leaf_index` in the tree whose root is
    /// `root`.
    ///
    /// # Errors
    /// [`Error::BadProof`] when it is not.
    pub fn verify(&self, alg: HashAlgorithm, leaf_hash: &Hash, root: &Hash) -> Result<(), Error> {
        verify_inclusion(alg, leaf_hash, self.leaf_index, self.tree_size, &self.path, root)
    }
}

/// A consistency proof between two sizes of one tree (RFC 9162 §2.1.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The earlier tree size.
    pub old_size: u64,
    /// The later tree size.
    pub new_size: u64,
    /// The proof nodes.
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks that the tree of `new_size` with root `new_root` extends the tree of `old_size` with
    /// root `old_root`.
    ///
    /// # Errors
    /// [`Error::BadProof`] when it does not.
    pub fn verify(&self, alg: HashAlgorithm, old_root: &Hash, new_root: &Hash) -> Result<(), Error> {
        verify_consistency(alg, self.old_size, self.new_size, old_root, new_root, &self.path)
    }
}

fn fail(why: &str) -> Error {
    Error::BadProof(why.to_owned())
}

/// RFC 9162 §2.1.3.2: verifies an inclusion proof of the leaf hash `hash` at `leaf_index` in the
/// tree of `tree_size` leaves with root `root_hash`.
///
/// # Errors
/// [`Error::BadProof`] when the proof does not verify.
pub fn verify_inclusion(
    alg: HashAlgorithm,
    hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    inclusion_path: &[Hash],
    root_hash: &Hash,
) -> Result<(), Error> {
    // 1. If leaf_index is greater than or equal to tree_size, fail.
    if leaf_index >= tree_size {
        return Err(fail("the leaf index is not below the tree size"));
    }
    // 2. Set fn to leaf_index and sn to tree_size - 1.
    let mut f_n = leaf_index;
    let mut s_n = tree_size - 1;
    // 3. Set r to hash.
    let mut r = *hash;
    // 4. For each value p in the inclusion_path array:
    for p in inclusion_path {
        // a. If sn is 0, stop the iteration and fail.
        if s_n == 0 {
            return Err(fail("the inclusion path is too long"));
        }
        // b. If LSB(fn) is set, or if fn is equal to sn:
        if f_n & 1 == 1 || f_n == s_n {
            // 1. Set r to HASH(0x01 || p || r).
            r = alg.node(p, &r);
            // 2. If LSB(fn) is not set, right-shift both fn and sn equally until either LSB(fn)
            //    is set or fn is 0.
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            // Otherwise set r to HASH(0x01 || r || p).
            r = alg.node(&r, p);
        }
        // c. Finally, right-shift both fn and sn one time.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. sn must be 0 and r must equal root_hash.
    if s_n != 0 {
        return Err(fail("the inclusion path is too short"));
    }
    if r != *root_hash {
        return Err(fail("the inclusion path leads to a different root"));
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `second` leaves with root `second_hash` extends
/// the tree of `first` leaves with root `first_hash`.
///
/// The RFC's algorithm covers 0 < first < second. The two trivial cases are settled here as
/// logs and clients commonly do: equal sizes need an empty proof and equal roots, and the empty
/// tree (whose root is HASH()) is a prefix of every tree, with an empty proof.
///
/// # Errors
/// [`Error::BadProof`] when the proof does not verify.
pub fn verify_consistency(
    alg: HashAlgorithm,
    first: u64,
    second: u64,
    first_hash: &Hash,
    second_hash: &Hash,
    consistency_path: &[Hash],
) -> Result<(), Error> {
    if first > second {
        return Err(fail("the old tree is larger than the new one"));
    }
    if first == second {
        return if consistency_path.is_empty() && first_hash == second_hash {
            Ok(())
        } else {
            Err(fail("two trees of the same size must have the same root and an empty proof"))
        };
    }
    if first == 0 {
        return if consistency_path.is_empty() && *first_hash == alg.empty_root() {
            Ok(())
        } else {
            Err(fail("the empty tree has root HASH() and an empty proof"))
        };
    }
    // 1. If consistency_path is an empty array, stop and fail.
    if consistency_path.is_empty() {
        return Err(fail("the consistency path is empty"));
    }
    // 2. If first is an exact power of 2, prepend first_hash to the consistency_path array.
    let mut path: Vec<Hash> = Vec::with_capacity(consistency_path.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_hash);
    }
    path.extend_from_slice(consistency_path);
    // 3. Set fn to first - 1 and sn to second - 1.
    let mut f_n = first - 1;
    let mut s_n = second - 1;
    // 4. If LSB(fn) is set, right-shift both fn and sn equally until LSB(fn) is not set.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. Set both fr and sr to the first value in the consistency_path array.
    let mut f_r = path[0];
    let mut s_r = path[0];
    // 6. For each subsequent value c in the consistency_path array:
    for c in &path[1..] {
        // a. If sn is 0, stop the iteration and fail.
        if s_n == 0 {
            return Err(fail("the consistency path is too long"));
        }
        // b. If LSB(fn) is set, or if fn is equal to sn:
        if f_n & 1 == 1 || f_n == s_n {
            // 1. Set fr to HASH(0x01 || c || fr). 2. Set sr to HASH(0x01 || c || sr).
            f_r = alg.node(c, &f_r);
            s_r = alg.node(c, &s_r);
            // 3. If LSB(fn) is not set, right-shift both fn and sn equally until either LSB(fn)
            //    is set or fn is 0.
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            // Otherwise set sr to HASH(0x01 || sr || c).
            s_r = alg.node(&s_r, c);
        }
        // c. Finally, right-shift both fn and sn one time.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 7. fr must equal first_hash, sr must equal second_hash, and sn must be 0.
    if s_n != 0 {
        return Err(fail("the consistency path is too short"));
    }
    if f_r != *first_hash {
        return Err(fail("the consistency path does not lead to the old root"));
    }
    if s_r != *second_hash {
        return Err(fail("the consistency path does not lead to the new root"));
    }
    Ok(())
}
