//! Application install service packages (`package::verify`): the archive, the manifest, the
//! CMS signature, the certification path and CRLs, all from untrusted bytes.

use std::io::Write;

use package::{Manifest, TrustAnchor, TrustPolicy};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zip::{write::SimpleFileOptions, CompressionMethod, ZipWriter};

/// The trust anchor of the fuzzed verifier: a root certificate (DER) written together with
/// the seeds by `cargo run -p fuzzing --example seeds` (its private key is not kept), so the
/// seed packages verify and the fuzzer starts past the signature.
pub const PACKAGE_ANCHOR: &[u8] = include_bytes!("package_anchor.der");

/// The instant the fuzzed verifier checks validity at (the seeds are valid 2020–2099).
pub const PACKAGE_NOW: i64 = 1_893_456_000; // 2030-01-01T00:00:00Z

/// The privileges the fuzzed verifier's anchor grants.
pub const PACKAGE_GRANTABLE: &str = "card-lock,cvm-management";

/// The policy of the fuzzed verifier.
pub fn package_policy() -> TrustPolicy {
    TrustPolicy {
        anchors: vec![TrustAnchor {
            certificate_der: PACKAGE_ANCHOR.to_vec(),
            grantable: PACKAGE_GRANTABLE.parse().expect("privileges"),
        }],
        crls: Vec::new(),
        now: OffsetDateTime::from_unix_timestamp(PACKAGE_NOW).expect("2030"),
    }
}

/// Byte 0 picks the input's form:
/// * even: the rest is a whole package archive;
/// * odd: the rest is `len(2) manifest.toml len(2) manifest.p7s` and the CAP file, which
///   this function zips (stored, with correct CRCs) as the package of the applications the
///   manifest names, so the fuzzer mutates the manifest, the DER and the CAP directly.
///
/// `package::verify` never panics, and a package it accepts is consistent: its manifest is
/// the parse of the signed bytes, and each load file has the manifest's name, size and
/// SHA-256, in the manifest's order.
pub fn package_archive(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let archive = if form % 2 == 0 {
        rest.to_vec()
    } else {
        match zip_parts(rest) {
            Some(a) => a,
            None => return,
        }
    };
    let policy = package_policy();
    match package::verify(&archive, &policy) {
        Ok(v) => {
            let text = std::str::from_utf8(&v.manifest_bytes).expect("accepted manifest is UTF-8");
            assert_eq!(
                Manifest::from_toml(text).expect("accepted manifest parses"),
                v.manifest
            );
            assert_eq!(v.load_files.len(), v.manifest.applications.len());
            for ((name, cap), app) in v.load_files.iter().zip(&v.manifest.applications) {
                assert_eq!(name, &app.name);
                assert_eq!(cap.len() as u64, app.size);
                let hash = apdu::hex(&Sha256::digest(cap));
                assert!(hash.eq_ignore_ascii_case(&app.sha256));
            }
            assert_eq!(v.anchor, 0);
        }
        Err(r) => {
            let _ = (r.code(), r.to_string());
        }
    }
}

/// The archive of the odd form (see [`package_archive`]).
fn zip_parts(data: &[u8]) -> Option<Vec<u8>> {
    let take = |d: &[u8]| -> Option<(Vec<u8>, usize)> {
        let n = usize::from(u16::from_be_bytes([*d.first()?, *d.get(1)?]));
        Some((d.get(2..2 + n)?.to_vec(), 2 + n))
    };
    let (manifest, used) = take(data)?;
    let (p7s, used2) = take(&data[used..])?;
    let cap = &data[used + used2..];
    let names: Vec<String> = std::str::from_utf8(&manifest)
        .ok()
        .and_then(|t| Manifest::parse_template(t).ok())
        .map(|m| m.applications.into_iter().map(|a| a.name).collect())
        .unwrap_or_default();
    let mut w = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut entries = vec![
        ("manifest.toml".to_string(), manifest.as_slice()),
        ("manifest.p7s".to_string(), p7s.as_slice()),
    ];
    for name in names.iter().take(package::MAX_APPLICATIONS) {
        entries.push((format!("load/{name}.cap"), cap));
    }
    for (name, bytes) in entries {
        w.start_file(name, stored).ok()?;
        w.write_all(bytes).ok()?;
    }
    w.finish().ok().map(std::io::Cursor::into_inner)
}

/// The odd form of a package's parts (what the `seeds` example writes).
pub fn package_parts_input(manifest: &[u8], p7s: &[u8], cap: &[u8]) -> Vec<u8> {
    let mut v = vec![1u8];
    for part in [manifest, p7s] {
        v.extend_from_slice(&(part.len() as u16).to_be_bytes());
        v.extend_from_slice(part);
    }
    v.extend_from_slice(cap);
    v
}
