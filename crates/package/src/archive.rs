//! The ZIP container (APPNOTE 6.3.10): written with the `zip` crate, and read with it
//! defensively, since a package comes from anywhere.
//!
//! Before anything is inflated: the archive's size, the end of central directory record
//! (it must end the archive: a cut archive is [`Refusal::Truncated`]), the number of entries,
//! every name (safe, expected, not twice), every declared size against its limit, the
//! compression method, and the consistency of local headers with the central directory
//! (`ZipArchive::validate_header_consistency`: no overlapping entries, which is how the
//! classic zip bombs share one deflate stream). Then each entry is inflated at most one byte
//! past its declared size, so an entry that lies about its size stops there.
//!
//! Written by hand: only the look at the end of central directory record (the `zip` crate
//! searches for it and would accept a record in the middle of a cut archive, e.g. the one of
//! a stored CAP file, and reads any number of entries before we could count them).

use std::io::{Cursor, Read, Write};

use zip::{
    read::{ArchiveOffset, Config, ZipReadOptions},
    result::ZipError,
    write::SimpleFileOptions,
    CompressionMethod, ZipArchive, ZipWriter,
};

use crate::{Refusal, MAX_PACKAGE_BYTES};

/// Name of the manifest entry.
pub const MANIFEST_ENTRY: &str = "manifest.toml";
/// Name of the signature entry.
pub const SIGNATURE_ENTRY: &str = "manifest.p7s";
/// Largest `manifest.toml` (inflated), bytes.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;
/// Largest `manifest.p7s` (inflated): certificates and CRLs, bytes.
pub const MAX_SIGNATURE_BYTES: u64 = 1024 * 1024;
/// Largest load file (inflated), bytes.
pub const MAX_LOAD_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Largest sum of the inflated entries, bytes.
pub const MAX_INFLATED_BYTES: u64 = 64 * 1024 * 1024;
/// Most applications in one package.
pub const MAX_APPLICATIONS: usize = 64;

/// The entries of a package, inflated.
#[derive(Debug)]
pub(crate) struct Contents {
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
    /// `(entry name, bytes)` of every `load/…` entry, in archive order.
    pub load_files: Vec<(String, Vec<u8>)>,
}

/// Writes the archive: `manifest.toml` and `manifest.p7s` deflated, the load files stored
/// (a CAP file is a ZIP archive already), all with the same fixed time stamp so that the same
/// input gives the same bytes.
pub(crate) fn write(
    manifest: &[u8],
    signature: &[u8],
    load_files: &[(String, &[u8])],
) -> Result<Vec<u8>, Refusal> {
    let fail = |e: &dyn std::fmt::Display| Refusal::Malformed(format!("writing the ZIP: {e}"));
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let deflated = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let stored = deflated.compression_method(CompressionMethod::Stored);
    let entries = [(MANIFEST_ENTRY, manifest), (SIGNATURE_ENTRY, signature)]
        .into_iter()
        .map(|(n, b)| (n.to_string(), b, deflated))
        .chain(load_files.iter().map(|(n, b)| (n.clone(), *b, stored)));
    for (name, bytes, options) in entries {
        w.start_file(name, options).map_err(|e| fail(&e))?;
        w.write_all(bytes).map_err(|e| fail(&e))?;
    }
    let out = w.finish().map_err(|e| fail(&e))?.into_inner();
    if out.len() as u64 > MAX_PACKAGE_BYTES {
        return Err(Refusal::Oversized(format!(
            "{} bytes; a package is at most {MAX_PACKAGE_BYTES}",
            out.len()
        )));
    }
    Ok(out)
}

/// Reads and inflates the entries of `archive` (see the module documentation).
pub(crate) fn read(archive: &[u8]) -> Result<Contents, Refusal> {
    if archive.len() as u64 > MAX_PACKAGE_BYTES {
        return Err(Refusal::Oversized(format!(
            "{} bytes; a package is at most {MAX_PACKAGE_BYTES}",
            archive.len()
        )));
    }
    let end = end_of_central_directory(archive)?;
    if end.entries as usize > MAX_APPLICATIONS + 2 {
        return Err(Refusal::Malformed(format!(
            "{} entries; a package has at most {}",
            end.entries,
            MAX_APPLICATIONS + 2
        )));
    }
    let config = Config {
        archive_offset: ArchiveOffset::Known(0),
    };
    let mut zip = ZipArchive::with_config(config, Cursor::new(archive)).map_err(zip_refusal)?;
    if zip.len() != end.entries as usize && !zip.has_duplicate_names() {
        return Err(Refusal::Malformed(
            "the central directory does not hold the number of entries its end record says".into(),
        ));
    }
    let mut names = Vec::with_capacity(zip.len());
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip.by_index_data(i).map_err(zip_refusal)?;
        let name = safe_name(entry.name_raw())?;
        if entry.name().map_err(zip_refusal)? != name {
            return Err(Refusal::PathTraversal(format!(
                "{name:?} is stored under another name in its Unicode path field"
            )));
        }
        let limit = entry_limit(&name)?;
        if entry.size() > limit {
            return Err(Refusal::Oversized(format!(
                "{name} declares {} bytes; at most {limit}",
                entry.size()
            )));
        }
        if entry.encrypted() {
            return Err(Refusal::Malformed(format!("{name} is encrypted")));
        }
        match entry.compression() {
            CompressionMethod::Stored if entry.compressed_size() == entry.size() => {}
            CompressionMethod::Stored => {
                return Err(Refusal::Malformed(format!(
                    "{name} is stored with two different sizes"
                )))
            }
            CompressionMethod::Deflated => {}
            other => {
                return Err(Refusal::Malformed(format!(
                    "{name} uses compression method {other}; packages use stored or deflated"
                )))
            }
        }
        total = total.saturating_add(entry.size());
        names.push((name, entry.size(), entry.crc32()));
    }
    if zip.has_duplicate_names() {
        return Err(Refusal::Malformed("an entry name appears twice".into()));
    }
    if total > MAX_INFLATED_BYTES {
        return Err(Refusal::Oversized(format!(
            "the entries declare {total} bytes; at most {MAX_INFLATED_BYTES} in all"
        )));
    }
    for required in [MANIFEST_ENTRY, SIGNATURE_ENTRY] {
        if !names.iter().any(|(n, _, _)| n == required) {
            return Err(Refusal::Malformed(format!("no {required}")));
        }
    }
    zip.validate_header_consistency().map_err(zip_refusal)?;

    let mut contents = Contents {
        manifest: Vec::new(),
        signature: Vec::new(),
        load_files: Vec::new(),
    };
    for (i, (name, declared, crc)) in names.into_iter().enumerate() {
        // Exactly the declared size, then one byte more must not come (an entry that inflates
        // beyond its size stops there); the CRC-32 is checked here, after the size, so that
        // the two are told apart.
        let options = ZipReadOptions::new().ignore_crc32(true);
        let mut file = zip.by_index_with_options(i, options).map_err(zip_refusal)?;
        let mut bytes = Vec::with_capacity(declared as usize);
        (&mut file)
            .take(declared)
            .read_to_end(&mut bytes)
            .map_err(|e| io_refusal(&name, e))?;
        if (bytes.len() as u64) < declared {
            return Err(Refusal::Truncated(format!(
                "{name} holds {} of the {declared} bytes it declares",
                bytes.len()
            )));
        }
        if !matches!(file.read(&mut [0u8; 1]), Ok(0)) {
            return Err(Refusal::Oversized(format!(
                "{name} inflates beyond the {declared} bytes it declares"
            )));
        }
        if crc32fast::hash(&bytes) != crc {
            return Err(Refusal::Malformed(format!("{name}: its CRC-32 differs")));
        }
        match name.as_str() {
            MANIFEST_ENTRY => contents.manifest = bytes,
            SIGNATURE_ENTRY => contents.signature = bytes,
            _ => contents.load_files.push((name, bytes)),
        }
    }
    Ok(contents)
}

/// What the end of central directory record says (APPNOTE 4.3.16).
struct EndRecord {
    entries: u16,
}

/// Finds the end of central directory record that ends `archive` (its comment reaching the
/// last byte exactly) and checks that the central directory ends where it begins.
fn end_of_central_directory(archive: &[u8]) -> Result<EndRecord, Refusal> {
    const SIG: [u8; 4] = [0x50, 0x4B, 0x05, 0x06];
    const FIXED: usize = 22;
    let u16_at = |p: usize| u16::from_le_bytes([archive[p], archive[p + 1]]);
    let u32_at =
        |p: usize| u32::from_le_bytes([archive[p], archive[p + 1], archive[p + 2], archive[p + 3]]);
    let found = (archive.len() >= FIXED)
        .then(|| {
            let last = archive.len() - FIXED;
            let first = last.saturating_sub(usize::from(u16::MAX));
            (first..=last).rev().find(|&p| {
                archive[p..p + 4] == SIG && p + FIXED + usize::from(u16_at(p + 20)) == archive.len()
            })
        })
        .flatten();
    let Some(p) = found else {
        return Err(if archive.starts_with(b"PK\x03\x04") {
            Refusal::Truncated(
                "the ZIP archive does not end with its end of central directory record".into(),
            )
        } else {
            Refusal::Malformed("not a ZIP archive".into())
        });
    };
    let (disk, cd_disk) = (u16_at(p + 4), u16_at(p + 6));
    let (on_disk, entries) = (u16_at(p + 8), u16_at(p + 10));
    let (cd_size, cd_offset) = (u32_at(p + 12), u32_at(p + 16));
    if disk != 0 || cd_disk != 0 || on_disk != entries {
        return Err(Refusal::Malformed("a multi-disk ZIP archive".into()));
    }
    if entries == u16::MAX || cd_size == u32::MAX || cd_offset == u32::MAX {
        return Err(Refusal::Malformed(
            "a ZIP64 archive; packages are small ZIP archives".into(),
        ));
    }
    if u64::from(cd_offset) + u64::from(cd_size) != p as u64 {
        return Err(Refusal::Malformed(
            "the central directory does not end where its end record begins".into(),
        ));
    }
    Ok(EndRecord { entries })
}

/// Checks an entry name and returns it as text: relative, `/`-separated, no `..` or `.`
/// component, no backslash, colon (drive letters), NUL or control character.
fn safe_name(raw: &[u8]) -> Result<String, Refusal> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let bad = |why: &str| Err(Refusal::PathTraversal(format!("{shown:?}: {why}")));
    let Ok(name) = std::str::from_utf8(raw) else {
        return bad("not UTF-8");
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('/') {
        return bad("an absolute path");
    }
    if name.contains('\\') {
        return bad("a backslash");
    }
    if name.contains(':') {
        return bad("a drive letter or colon");
    }
    if name.chars().any(char::is_control) {
        return bad("a control character");
    }
    if name
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return bad("a `..`, `.` or empty path component");
    }
    Ok(name.to_string())
}

/// The inflated size limit of an expected entry; any other name is refused.
fn entry_limit(name: &str) -> Result<u64, Refusal> {
    match name {
        MANIFEST_ENTRY => Ok(MAX_MANIFEST_BYTES),
        SIGNATURE_ENTRY => Ok(MAX_SIGNATURE_BYTES),
        _ => match name
            .strip_prefix("load/")
            .and_then(|n| n.strip_suffix(".cap"))
        {
            Some(app) if crate::manifest::valid_name(app) => Ok(MAX_LOAD_FILE_BYTES),
            _ => Err(Refusal::Malformed(format!(
                "unexpected entry {name:?}: a package holds manifest.toml, manifest.p7s and load/<name>.cap"
            ))),
        },
    }
}

fn zip_refusal(e: ZipError) -> Refusal {
    match e {
        ZipError::Io(e) => io_refusal("the archive", e),
        other => Refusal::Malformed(format!("ZIP: {other}")),
    }
}

fn io_refusal(what: &str, e: std::io::Error) -> Refusal {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Refusal::Truncated(format!("{what} ends early"))
    } else {
        Refusal::Malformed(format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_path_traversal() {
        for name in [
            "../x",
            "load/../manifest.toml",
            "/etc/passwd",
            "load\\x.cap",
            "C:x.cap",
            "load//x.cap",
            "./manifest.toml",
            "a\u{0}b",
            "",
        ] {
            let r = safe_name(name.as_bytes()).unwrap_err();
            assert_eq!(r.code(), "path_traversal", "{name:?}");
        }
        assert_eq!(
            safe_name(&[0xFF, 0x2F]).unwrap_err().code(),
            "path_traversal"
        );
        assert_eq!(safe_name(b"load/wallet.cap").unwrap(), "load/wallet.cap");
    }

    #[test]
    fn only_expected_entries_have_limits() {
        assert_eq!(entry_limit("manifest.toml").unwrap(), MAX_MANIFEST_BYTES);
        assert_eq!(entry_limit("load/wallet.cap").unwrap(), MAX_LOAD_FILE_BYTES);
        for name in ["load/Wallet.cap", "load/x.jar", "extra.txt", "load/a/b.cap"] {
            assert_eq!(entry_limit(name).unwrap_err().code(), "malformed", "{name}");
        }
    }

    #[test]
    fn written_archives_read_back() {
        let cap = b"not really a CAP".as_slice();
        let zip = write(b"m", b"s", &[("load/a.cap".into(), cap)]).unwrap();
        let c = read(&zip).unwrap();
        assert_eq!(
            (c.manifest.as_slice(), c.signature.as_slice()),
            (&b"m"[..], &b"s"[..])
        );
        assert_eq!(c.load_files, vec![("load/a.cap".to_string(), cap.to_vec())]);
        // Deterministic.
        assert_eq!(
            zip,
            write(b"m", b"s", &[("load/a.cap".into(), cap)]).unwrap()
        );
        // Every cut is refused as truncated.
        for cut in 4..zip.len() {
            let r = read(&zip[..cut]).unwrap_err();
            assert_eq!(r.code(), "truncated", "cut at {cut}: {r}");
        }
        assert_eq!(read(b"hello").unwrap_err().code(), "malformed");
    }
}
