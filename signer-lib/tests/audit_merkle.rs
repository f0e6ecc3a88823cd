//! RFC 9162 Merkle tree: the vectors of STANDARDS.md §F, and exhaustive property checks of the
//! prover against the RFC's definition and of the verifiers against the prover, for every
//! (index, size) up to 64 leaves, with SHA-256 and SM3.
//!
//! (Everything is in a module named `audit_…` so that `cargo test audit` selects it.)

#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

mod audit_rfc9162 {
    use signer_lib::audit::merkle::{MemoryTree, reference_root};
    use signer_lib::audit::{Hash, HashAlgorithm, verify_consistency, verify_inclusion};

    /// d0..d7 of the RFC 6962 / 9162 test tree.
    fn leaves() -> Vec<Vec<u8>> {
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .iter()
            .map(|h| hex::decode(h).unwrap())
            .collect()
    }

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn tree(n: usize) -> MemoryTree {
        let mut t = MemoryTree::new(HashAlgorithm::Sha256);
        for d in &leaves()[..n] {
            t.push_data(d);
        }
        t
    }

    const ROOT4: &str = "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7";
    const ROOT8: &str = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";

    #[test]
    fn tree_heads_match_the_rfc_vectors() {
        let t = tree(8);
        let full = [
            (0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (1, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            (4, ROOT4),
            (8, ROOT8),
        ];
        for (n, root) in full {
            assert_eq!(hex::encode(t.root(n).unwrap()), root, "MTH of {n} leaves");
        }
        // STANDARDS.md §F gives these abbreviated: first and last four bytes.
        let abbreviated = [
            (2, "fac54203", "c125"),
            (3, "aeb6bcfe", "6e77"),
            (5, "4e3bbb1f", "64d4"),
            (6, "76e67dad", "87ef"),
            (7, "ddb89be4", "4c8c"),
        ];
        for (n, head, tail) in abbreviated {
            let root = hex::encode(t.root(n).unwrap());
            assert!(root.starts_with(head) && root.ends_with(tail), "MTH of {n} leaves is {root}");
        }
        let data = leaves();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        for n in 0..=8 {
            assert_eq!(t.root(n as u64).unwrap(), reference_root(HashAlgorithm::Sha256, &refs[..n]));
        }
    }

    #[test]
    fn inclusion_proofs_match_the_rfc_vectors() {
        let t = tree(8);
        let alg = HashAlgorithm::Sha256;
        let root = h(ROOT8);
        let p0 = t.inclusion_proof(0, 8).unwrap();
        assert_eq!(
            p0,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        verify_inclusion(alg, &alg.leaf(&leaves()[0]), 0, 8, &p0, &root).unwrap();

        let p5 = t.inclusion_proof(5, 8).unwrap();
        assert_eq!(
            p5,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h(ROOT4),
            ]
        );
        let leaf5 = alg.leaf(&leaves()[5]);
        verify_inclusion(alg, &leaf5, 5, 8, &p5, &root).unwrap();
        // The negative vector: leaf 5's proof presented for index 4.
        assert!(verify_inclusion(alg, &leaf5, 4, 8, &p5, &root).is_err());
    }

    #[test]
    fn consistency_proofs_match_the_rfc_vectors() {
        let t = tree(8);
        let alg = HashAlgorithm::Sha256;
        let cases: [(u64, u64, Vec<Hash>); 3] = [
            (
                6,
                8,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h(ROOT4),
                ],
            ),
            (4, 8, vec![h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
            (
                2,
                5,
                vec![
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
        ];
        for (m, n, want) in cases {
            let proof = t.consistency_proof(m, n).unwrap();
            assert_eq!(proof, want, "consistency {m} -> {n}");
            verify_consistency(alg, m, n, &t.root(m).unwrap(), &t.root(n).unwrap(), &proof).unwrap();
        }
    }

    /// A small deterministic generator (SplitMix64), so that failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// An index below `n`.
        fn index(&mut self, n: usize) -> usize {
            usize::try_from(self.below(n as u64)).unwrap()
        }
    }

    fn random_tree(alg: HashAlgorithm, rng: &mut Rng, n: usize) -> (MemoryTree, Vec<Vec<u8>>) {
        let data: Vec<Vec<u8>> =
            (0..n).map(|_| (0..rng.below(40)).map(|_| rng.next().to_le_bytes()[0]).collect()).collect();
        let mut t = MemoryTree::new(alg);
        for d in &data {
            t.push_data(d);
        }
        (t, data)
    }

    const MAX: usize = 64;

    #[test]
    fn every_root_matches_the_recursive_definition() {
        for alg in [HashAlgorithm::Sha256, HashAlgorithm::Sm3] {
            let (t, data) = random_tree(alg, &mut Rng(1), MAX);
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            for n in 0..=MAX {
                assert_eq!(t.root(n as u64).unwrap(), reference_root(alg, &refs[..n]), "{alg} size {n}");
            }
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_every_alteration_fails() {
        for alg in [HashAlgorithm::Sha256, HashAlgorithm::Sm3] {
            let mut rng = Rng(2);
            let (t, data) = random_tree(alg, &mut rng, MAX);
            for n in 1..=MAX as u64 {
                let root = t.root(n).unwrap();
                for m in 0..n {
                    let leaf = alg.leaf(&data[usize::try_from(m).unwrap()]);
                    let proof = t.inclusion_proof(m, n).unwrap();
                    verify_inclusion(alg, &leaf, m, n, &proof, &root).unwrap_or_else(|e| panic!("{alg} {m}/{n}: {e}"));

                    let other = (m + 1 + rng.below(n)) % n;
                    if other != m {
                        assert!(
                            verify_inclusion(alg, &leaf, other, n, &proof, &root).is_err(),
                            "index {other} for {m}/{n}"
                        );
                    }
                    assert!(verify_inclusion(alg, &alg.leaf(b"not it"), m, n, &proof, &root).is_err());
                    assert!(verify_inclusion(alg, &leaf, n, n, &proof, &root).is_err());
                    if !proof.is_empty() {
                        let mut bad = proof.clone();
                        let i = rng.index(bad.len());
                        bad[i][rng.index(32)] ^= 1 << rng.below(8);
                        assert!(verify_inclusion(alg, &leaf, m, n, &bad, &root).is_err(), "flipped bit {m}/{n}");
                        assert!(
                            verify_inclusion(alg, &leaf, m, n, &proof[..proof.len() - 1], &root).is_err(),
                            "short {m}/{n}"
                        );
                    }
                    let mut long = proof.clone();
                    long.push(root);
                    assert!(verify_inclusion(alg, &leaf, m, n, &long, &root).is_err(), "long {m}/{n}");
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_every_alteration_fails() {
        for alg in [HashAlgorithm::Sha256, HashAlgorithm::Sm3] {
            let mut rng = Rng(3);
            let (t, _) = random_tree(alg, &mut rng, MAX);
            let (forked, _) = random_tree(alg, &mut Rng(4), MAX);
            for n in 0..=MAX as u64 {
                let new_root = t.root(n).unwrap();
                for m in 0..=n {
                    let old_root = t.root(m).unwrap();
                    let proof = t.consistency_proof(m, n).unwrap();
                    verify_consistency(alg, m, n, &old_root, &new_root, &proof)
                        .unwrap_or_else(|e| panic!("{alg} {m} -> {n}: {e}"));

                    if m > 0 {
                        // A different history of the same size is not extended by this tree.
                        let fork_root = forked.root(m).unwrap();
                        assert!(
                            verify_consistency(alg, m, n, &fork_root, &new_root, &proof).is_err(),
                            "fork {m} -> {n}"
                        );
                    }
                    if m < n {
                        assert!(
                            verify_consistency(alg, n, m, &new_root, &old_root, &proof).is_err(),
                            "reversed {m} -> {n}"
                        );
                        let mut bad = proof.clone();
                        if !bad.is_empty() {
                            let i = rng.index(bad.len());
                            bad[i][rng.index(32)] ^= 1 << rng.below(8);
                            assert!(
                                verify_consistency(alg, m, n, &old_root, &new_root, &bad).is_err(),
                                "flipped {m} -> {n}"
                            );
                            assert!(
                                verify_consistency(alg, m, n, &old_root, &new_root, &proof[..proof.len() - 1]).is_err(),
                                "short {m} -> {n}"
                            );
                        }
                        if m > 0 {
                            let mut long = proof.clone();
                            long.push(new_root);
                            assert!(
                                verify_consistency(alg, m, n, &old_root, &new_root, &long).is_err(),
                                "long {m} -> {n}"
                            );
                            let wrong_size = if m + 1 < n { m + 1 } else { m - 1 };
                            if wrong_size > 0 && t.consistency_proof(wrong_size, n).unwrap() != proof {
                                assert!(
                                    verify_consistency(alg, wrong_size, n, &old_root, &new_root, &proof).is_err(),
                                    "size {wrong_size} for {m} -> {n}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
