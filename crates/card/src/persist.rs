//! Crash-safe persistence of the state file.
//!
//! The whole state is written to a temporary file in the same directory, flushed to disk
//! (`fsync`), renamed over the state file (atomic on POSIX file systems) and the directory
//! is flushed, so a process killed at any instant leaves either the old or the new card,
//! never a torn file.

use crate::error::CardError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `contents` to `path` atomically.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CardError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| CardError::Io {
            op,
            path: p,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        restrict_permissions(&f);
        f.write_all(contents).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io("rename", path)(e));
    }
    // Flush the directory entry so the rename itself survives a power loss.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The state file holds keys: keep it readable by its owner only.
#[cfg(unix)]
fn restrict_permissions(f: &File) {
    use std::os::unix::fs::PermissionsExt;
    let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
}
#[cfg(not(unix))]
fn restrict_permissions(_f: &File) {}

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
