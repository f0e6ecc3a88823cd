//! One process at a time on a data directory: `serve` and the offline administrator commands
//! (`rotate`, `officer add`, `root-crl`) take an exclusive advisory lock on `DATA/eport-ca.lock`
//! and hold it until they end.
//!
//! The audit writer keeps the tree's frontier in memory; a second writer appending beside a
//! running `serve` would make `serve`'s next append find the log moved under it and fail (fail
//! closed, but a refused request all the same). The offline commands change what `serve` only
//! reads at start anyway, so they are refused while it runs, with a message saying so. The lock
//! is the operating system's (`flock`), so it goes away with the process, even after kill -9.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::Error;

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "eport-ca.lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataLock {
    _file: File,
    path: PathBuf,
}

impl DataLock {
    /// Takes the lock of `data_dir` for `what` (a command name, for the message).
    ///
    /// # Errors
    /// [`Error::DataDirInUse`] when another process holds it; [`Error::Io`] when the lock file
    /// cannot be opened.
    pub fn acquire(data_dir: &Path, what: &str) -> Result<Self, Error> {
        let path = data_dir.join(LOCK_FILE);
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => {
                Err(Error::DataDirInUse { data_dir: data_dir.to_owned(), what: what.to_owned() })
            }
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::TempDir::new().unwrap();
        let first = DataLock::acquire(dir.path(), "serve").unwrap();
        let err = DataLock::acquire(dir.path(), "rotate tls").unwrap_err();
        assert!(matches!(err, Error::DataDirInUse { .. }), "{err}");
        assert!(err.to_string().contains("stop"), "{err}");
        drop(first);
        DataLock::acquire(dir.path(), "rotate tls").unwrap();
    }
}
