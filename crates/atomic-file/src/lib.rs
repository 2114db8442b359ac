//! Crash-safe replacement of a whole file, the one way Cardwright writes its state files
//! (the virtual card's state, the software key store, the CA's files).
//!
//! [`write()`] puts the new contents in a temporary file in the same directory
//! ([`tempfile::NamedTempFile`], a random name starting with `.NAME.`), flushes it to disk
//! (`fsync`), renames it over the target (atomic on POSIX file systems) and flushes the
//! directory, so that a process killed at any instant, or a power loss, leaves either the
//! old file or the new one, never a torn file. When any step fails the temporary file is
//! removed and the target is untouched; the error names the step, the file and the cause
//! (for example "No space left on device").
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How the new file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    private: bool,
    overwrite: bool,
}

impl Options {
    /// Readable and writable by its owner only (mode 0600 on Unix): files holding keys.
    pub fn private() -> Self {
        Self {
            private: true,
            overwrite: true,
        }
    }

    /// Readable by everyone (mode 0644 on Unix): public files such as a certificate.
    pub fn public() -> Self {
        Self {
            private: false,
            overwrite: true,
        }
    }

    /// Fail with [`io::ErrorKind::AlreadyExists`] instead of replacing an existing file.
    pub fn no_overwrite(self) -> Self {
        Self {
            overwrite: false,
            ..self
        }
    }
}

/// A step of [`write()`] failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct Error {
    /// The step: "create a temporary file in", "write", "fsync", "rename to", …
    pub op: &'static str,
    /// The file or directory the step was about.
    pub path: PathBuf,
    /// The cause (the operating system's error).
    #[source]
    pub source: io::Error,
}

impl Error {
    fn at(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error { op, path, source }
    }
}

/// Replaces `path` with `contents` atomically (see the crate documentation).
pub fn write(path: &Path, contents: &[u8], options: Options) -> Result<(), Error> {
    write_with(path, options, |f| f.write_all(contents))
}

/// Like [`write()`], the contents being written by `fill` into the temporary file. When
/// `fill` fails, the temporary file is removed and its error returned as the "write" step.
pub fn write_with(
    path: &Path,
    options: Options,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!(
        ".{}.",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if options.private { 0o600 } else { 0o644 };
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    // Dropping `tmp` on any early return deletes the temporary file.
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(Error::at("create a temporary file in", &dir))?;
    let tmp_path = tmp.path().to_path_buf();
    fill(tmp.as_file_mut()).map_err(Error::at("write", &tmp_path))?;
    tmp.as_file()
        .sync_all()
        .map_err(Error::at("fsync", &tmp_path))?;
    let persisted = if options.overwrite {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    // A failed persist hands the temporary file back; dropping it deletes it.
    persisted.map_err(|e| Error::at("rename to", path)(e.error))?;
    sync_dir(&dir).map_err(Error::at("fsync directory", &dir))
}

/// Flushes a directory entry so that a rename in it survives a power loss.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened for syncing on other systems; the rename is as durable as
/// the platform makes it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"one", Options::private()).unwrap();
        write(&path, b"two", Options::private()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn modes_private_and_public() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let key = dir.path().join("key.pem");
        write(&key, b"k", Options::private()).unwrap();
        assert_eq!(mode(&key), 0o600);
        let cert = dir.path().join("cert.pem");
        write(&cert, b"c", Options::public()).unwrap();
        // 0644 less the umask: at least the owner reads and writes it.
        assert_eq!(mode(&cert) & 0o600, 0o600);
    }

    #[test]
    fn a_failing_write_says_why_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        write(&path, b"old", Options::private()).unwrap();
        // The disk fills up half way through the write.
        let e = write_with(&path, Options::private(), |f| {
            f.write_all(b"half")?;
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        })
        .unwrap_err();
        assert_eq!(e.op, "write");
        let text = e.to_string();
        assert!(text.contains(".card.json."), "{text}");
        assert_eq!(e.source.raw_os_error(), Some(28), "{text}");
        // The old contents are intact and no temporary file is left behind.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["card.json"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope/state.json");
        let e = write(&path, b"x", Options::private()).unwrap_err();
        assert_eq!(e.op, "create a temporary file in");
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn no_overwrite_keeps_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca-key.pem");
        write(&path, b"first", Options::private().no_overwrite()).unwrap();
        let e = write(&path, b"second", Options::private().no_overwrite()).unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["ca-key.pem"]);
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_directory() {
        let e = write_with(Path::new("x.json"), Options::private(), |_| {
            Err(io::Error::other("stop"))
        })
        .unwrap_err();
        assert_eq!(e.op, "write", "{e}");
        let dir = e.path.parent().unwrap().canonicalize().unwrap();
        assert_eq!(
            dir,
            std::env::current_dir().unwrap().canonicalize().unwrap()
        );
        assert!(!e.path.exists(), "temporary file left: {e}");
        assert!(!Path::new("x.json").exists());
    }
}
