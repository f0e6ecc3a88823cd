//! Retention archives: what a purge writes before it deletes records, and the standalone check
//! of such an archive.
//!
//! An archive is a directory of three files:
//!
//! - `records.der`: the purged records `[first, end)`, each in its canonical DER, concatenated;
//! - `checkpoint.txt`: a head signed by the log covering them (tree size ≥ `end`);
//! - `manifest.txt`: lines of `key value`:
//!
//! ```text
//! eport-audit-archive 1
//! origin example.com/audit
//! hash sha256
//! first 0
//! end 1000
//! tree-size 1500
//! left <base64>          one per perfect subtree of [0, first), largest first (none when first = 0)
//! consistency <base64>   the RFC 9162 consistency proof from end to tree-size, in order
//! ```
//!
//! [`verify_archive`] rebuilds the tree of `end` leaves from the `left` hashes and the records,
//! and checks the consistency proof from it to the signed head, whose signature it checks with the
//! log's public key. Nothing in the manifest is trusted: a wrong value anywhere makes the root
//! differ from the signed one.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::checkpoint::Checkpoint;
use super::merkle::{Frontier, Hash, HashAlgorithm};
use super::proof::verify_consistency;
use super::record::AuditRecord;
use crate::Error;

/// The records file.
pub const RECORDS_FILE: &str = "records.der";
/// The signed head file.
pub const CHECKPOINT_FILE: &str = "checkpoint.txt";
/// The manifest file.
pub const MANIFEST_FILE: &str = "manifest.txt";

/// The first line of a manifest.
const MAGIC: &str = "eport-audit-archive 1";
/// The largest record accepted from an archive.
const MAX_RECORD_BYTES: usize = 1 << 20;
/// The largest manifest or checkpoint accepted.
const MAX_TEXT_BYTES: u64 = 1 << 20;

/// What an archive holds, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The log's origin.
    pub origin: String,
    /// The log's hash algorithm.
    pub hash: HashAlgorithm,
    /// The first archived record index.
    pub first: u64,
    /// One past the last archived record index.
    pub end: u64,
    /// The signed head the archive is verified against.
    pub checkpoint: Checkpoint,
}

/// The manifest of an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub origin: String,
    pub hash: HashAlgorithm,
    pub first: u64,
    pub end: u64,
    pub tree_size: u64,
    pub left: Vec<Hash>,
    pub consistency: Vec<Hash>,
}

impl Manifest {
    pub(crate) fn to_text(&self) -> String {
        let mut s = format!(
            "{MAGIC}\norigin {}\nhash {}\nfirst {}\nend {}\ntree-size {}\n",
            self.origin,
            self.hash.name(),
            self.first,
            self.end,
            self.tree_size
        );
        for h in &self.left {
            s.push_str(&format!("left {}\n", B64.encode(h)));
        }
        for h in &self.consistency {
            s.push_str(&format!("consistency {}\n", B64.encode(h)));
        }
        s
    }

    fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::Malformed { what: "audit archive manifest", reason };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad(format!("the first line is not {MAGIC:?}")));
        }
        let mut field = |key: &str| -> Result<String, Error> {
            let line = lines.next().ok_or_else(|| bad(format!("no {key} line")))?;
            line.strip_prefix(key)
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("expected a {key} line, found {line:?}")))
        };
        let number = |v: String, key: &str| v.parse::<u64>().map_err(|_| bad(format!("{key} is not a number")));
        let origin = field("origin")?;
        let hash = field("hash")?.parse()?;
        let first = number(field("first")?, "first")?;
        let end = number(field("end")?, "end")?;
        let tree_size = number(field("tree-size")?, "tree-size")?;
        let (mut left, mut consistency) = (Vec::new(), Vec::new());
        for line in lines {
            let (key, value) = line.split_once(' ').ok_or_else(|| bad(format!("bad line {line:?}")))?;
            let hash: Hash = B64
                .decode(value)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad(format!("{key} is not a base64 hash")))?;
            match key {
                "left" if consistency.is_empty() => left.push(hash),
                "consistency" => consistency.push(hash),
                _ => return Err(bad(format!("unexpected line {line:?}"))),
            }
            if left.len() > 64 || consistency.len() > 128 {
                return Err(bad("too many hashes".into()));
            }
        }
        if first > end || end > tree_size {
            return Err(bad(format!("the ranges do not nest: first {first}, end {end}, tree-size {tree_size}")));
        }
        Ok(Self { origin, hash, first, end, tree_size, left, consistency })
    }
}

/// Checks the archive in `dir` against the log's public key (SPKI DER): every record decodes, and
/// together with the manifest's hashes they form the tree that the signed head extends.
///
/// # Errors
/// [`Error::Io`] when a file cannot be read; [`Error::Malformed`] for a damaged file;
/// [`Error::BadProof`] when the records are not what the log signed.
pub fn verify_archive(dir: &Path, public_key: &[u8]) -> Result<ArchiveReport, Error> {
    let manifest = Manifest::parse(&read_text(&dir.join(MANIFEST_FILE))?)?;
    let checkpoint = Checkpoint::verify(&read_text(&dir.join(CHECKPOINT_FILE))?, public_key)?;
    if checkpoint.origin() != manifest.origin || checkpoint.size() != manifest.tree_size {
        return Err(Error::BadProof(format!(
            "the manifest is for {} at size {}, the checkpoint for {} at size {}",
            manifest.origin,
            manifest.tree_size,
            checkpoint.origin(),
            checkpoint.size()
        )));
    }
    let alg = manifest.hash;
    let mut tree = Frontier::from_parts(manifest.first, &manifest.left)
        .map_err(|_| Error::BadProof("the left hashes do not fit the first index".into()))?;

    let path = dir.join(RECORDS_FILE);
    let file = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut reader = std::io::BufReader::new(file);
    while let Some(der) = next_der(&mut reader, &path)? {
        let index = tree.size();
        if index >= manifest.end {
            return Err(Error::BadProof(format!("more records than the range {}..{}", manifest.first, manifest.end)));
        }
        AuditRecord::from_der(&der).map_err(|e| Error::BadProof(format!("archived record {index}: {e}")))?;
        tree.push(alg, alg.leaf(&der), |_, _| {});
    }
    if tree.size() != manifest.end {
        return Err(Error::BadProof(format!(
            "the archive holds records {}..{} but the manifest says ..{}",
            manifest.first,
            tree.size(),
            manifest.end
        )));
    }
    verify_consistency(
        alg,
        manifest.end,
        manifest.tree_size,
        &tree.root(alg),
        checkpoint.root(),
        &manifest.consistency,
    )
    .map_err(|e| Error::BadProof(format!("the archived records are not in the signed log: {e}")))?;
    Ok(ArchiveReport { origin: manifest.origin, hash: alg, first: manifest.first, end: manifest.end, checkpoint })
}

/// Reads a small text file.
fn read_text(path: &Path) -> Result<String, Error> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    file.take(MAX_TEXT_BYTES).read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
    Ok(text)
}

/// Reads one DER SEQUENCE (tag, length, contents) or `None` at the end of the file.
fn next_der(reader: &mut impl Read, path: &Path) -> Result<Option<Vec<u8>>, Error> {
    let truncated = || Error::Malformed { what: "audit archive records", reason: "truncated record".into() };
    let mut head = [0u8; 2];
    match reader.read(&mut head[..1]).map_err(|e| Error::io(path, e))? {
        0 => return Ok(None),
        _ => reader.read_exact(&mut head[1..]).map_err(|_| truncated())?,
    }
    if head[0] != 0x30 {
        return Err(Error::Malformed { what: "audit archive records", reason: "a record is not a SEQUENCE".into() });
    }
    let mut der = head.to_vec();
    let len = if head[1] < 0x80 {
        usize::from(head[1])
    } else {
        let n = usize::from(head[1] & 0x7f);
        if n == 0 || n > 3 {
            return Err(Error::Malformed {
                what: "audit archive records",
                reason: "a record length is too large".into(),
            });
        }
        let mut bytes = [0u8; 3];
        reader.read_exact(&mut bytes[..n]).map_err(|_| truncated())?;
        der.extend_from_slice(&bytes[..n]);
        bytes[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if len > MAX_RECORD_BYTES {
        return Err(Error::Malformed { what: "audit archive records", reason: "a record is over 1 MiB".into() });
    }
    let start = der.len();
    der.resize(start + len, 0);
    reader.read_exact(&mut der[start..]).map_err(|_| truncated())?;
    Ok(Some(der))
}

/// Writes an archive directory, file by file, each synced; the caller streams the records in.
#[derive(Clone, Debug)]
pub(crate) struct ArchiveWriter {
    dir: PathBuf,
}

impl ArchiveWriter {
    /// Creates `dir` (or takes it if it exists and is empty).
    pub(crate) fn create(dir: &Path) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.next().is_some() {
            return Err(Error::Audit(format!("the archive directory {} is not empty", dir.display())));
        }
        let path = dir.join(RECORDS_FILE);
        fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// Appends records (concatenated DER) to `records.der`.
    pub(crate) fn append_records(&self, ders: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(RECORDS_FILE);
        let mut file = fs::OpenOptions::new().append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        file.write_all(ders).map_err(|e| Error::io(&path, e))
    }

    /// Writes the checkpoint and manifest and syncs everything, directory included.
    pub(crate) fn finish(self, checkpoint: &Checkpoint, manifest: &Manifest) -> Result<PathBuf, Error> {
        for (name, text) in [(CHECKPOINT_FILE, checkpoint.note().to_owned()), (MANIFEST_FILE, manifest.to_text())] {
            let path = self.dir.join(name);
            fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        for name in [RECORDS_FILE, CHECKPOINT_FILE, MANIFEST_FILE, "."] {
            let path = self.dir.join(name);
            fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|e| Error::io(&path, e))?;
        }
        Ok(self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_rejects_damage() {
        let m = Manifest {
            origin: "example.com/audit".into(),
            hash: HashAlgorithm::Sm3,
            first: 4,
            end: 9,
            tree_size: 12,
            left: vec![[1; 32]],
            consistency: vec![[2; 32], [3; 32]],
        };
        assert_eq!(Manifest::parse(&m.to_text()).unwrap(), m);
        assert!(Manifest::parse(&m.to_text().replace("end 9", "end 13")).is_err());
        assert!(Manifest::parse(&m.to_text().replace("hash sm3", "hash md5")).is_err());
        assert!(Manifest::parse(&format!("{}left AQ==\n", m.to_text())).is_err());
        assert!(Manifest::parse("").is_err());
    }

    #[test]
    fn reads_der_records_one_by_one() {
        let mut data = vec![0x30, 0x01, 0x05];
        data.extend([0x30, 0x81, 0x80]);
        data.extend([0u8; 0x80]);
        let mut r = &data[..];
        assert_eq!(next_der(&mut r, Path::new("x")).unwrap().unwrap(), vec![0x30, 0x01, 0x05]);
        assert_eq!(next_der(&mut r, Path::new("x")).unwrap().unwrap().len(), 0x83);
        assert!(next_der(&mut r, Path::new("x")).unwrap().is_none());
        let mut short = &[0x30u8, 0x05, 0x01][..];
        assert!(next_der(&mut short, Path::new("x")).is_err());
    }
}
