//! Crash-safe persistence of the state file.
//!
//! The whole state is written with [`atomic_file::write()`]: a temporary file in the same
//! directory, flushed to disk (`fsync`), renamed over the state file (atomic on POSIX file
//! systems), then the directory is flushed, so a process killed at any instant leaves either
//! the old or the new card, never a torn file.

use crate::error::CardError;
use std::fs;
use std::path::Path;

/// Writes `contents` to `path` atomically, readable by the owner only (the state holds
/// keys). On failure no temporary file is left and the old state file is intact.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CardError> {
    atomic_file::write(path, contents, atomic_file::Options::private()).map_err(|source| {
        CardError::Save {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Reads the state file; `Ok(None)` when it does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, CardError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CardError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}
