//! `Module::add`: a package is stored only after `package::verify` passes against the
//! module's trust anchors; every refusal of the issue surfaces as `Error::Refused` with
//! its code, and nothing is stored.

mod common;

use common::pkg::{entries, replace_entry, zip_of, KeyType, Pki};
use common::*;
use time::Duration;

/// `archive` is refused by `add` with `code`, and the catalog and database stay empty.
fn refused(f: &Fixture, what: &str, archive: &[u8], code: &str) {
    match f.module.add(archive) {
        Err(outlet::Error::Refused(r)) => assert_eq!(r.code(), code, "{what}: {r}"),
        other => panic!("{what}: {other:?}"),
    }
    assert!(
        f.module.catalog().unwrap().is_empty(),
        "{what}: nothing stored"
    );
    let n: i64 = raw_db(&f.outlet_dir())
        .query_row("SELECT count(*) FROM applications", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "{what}");
}

#[test]
fn every_refusal_stores_nothing() {
    let Some(f) = Fixture::new() else { return };
    let good = f.wallet_package();
    let now = time::OffsetDateTime::now_utc();

    let manifest = entries(&good)[0].1.clone();
    let edited = String::from_utf8(manifest)
        .unwrap()
        .replace("Wallet", "Wallet (free!)");
    refused(
        &f,
        "manifest edited",
        &replace_entry(&good, "manifest.toml", edited.as_bytes()),
        "bad_signature",
    );
    let mut p7s = entries(&good)[1].1.clone();
    let n = p7s.len();
    p7s[n - 10] ^= 1;
    refused(
        &f,
        "signature flipped",
        &replace_entry(&good, "manifest.p7s", &p7s),
        "bad_signature",
    );
    refused(
        &f,
        "load file replaced",
        &replace_entry(&good, "load/wallet.cap", &common::pkg::cap(2100)),
        "hash_mismatch",
    );
    // A signer under another root.
    let stranger = Pki::new(KeyType::P256);
    let other = common::pkg::build_signed(
        wallet_manifest(),
        vec![("wallet".into(), REGISTRATION_CAP.to_vec())],
        stranger.chain(),
        Vec::new(),
        &stranger.signer.key,
    );
    refused(&f, "unknown signer", &other, "unknown_signer");
    // An expired signer under the trusted root.
    let expired = f.pki.inter.signer_valid(
        KeyType::P256,
        101,
        now - Duration::days(400),
        now - Duration::days(1),
    );
    let p = common::pkg::build_signed(
        wallet_manifest(),
        vec![("wallet".into(), REGISTRATION_CAP.to_vec())],
        vec![expired.der.clone(), f.pki.inter.der.clone()],
        Vec::new(),
        &expired.key,
    );
    refused(&f, "expired signer", &p, "signer_expired");
    // The package carries a CRL of the intermediate listing its signer.
    let p = common::pkg::build_signed(
        wallet_manifest(),
        vec![("wallet".into(), REGISTRATION_CAP.to_vec())],
        f.pki.chain(),
        vec![f.pki.inter.crl(&[f.pki.signer.serial])],
        &f.pki.signer.key,
    );
    refused(&f, "revoked signer", &p, "signer_revoked");
    // Outside its validity period.
    let mut m = wallet_manifest();
    m.not_before = now - Duration::days(10);
    m.not_after = now - Duration::days(1);
    refused(
        &f,
        "expired package",
        &f.package(m, vec![("wallet".into(), REGISTRATION_CAP.to_vec())]),
        "outside_validity",
    );
    // A privilege the anchor may not grant (the fixture's anchor grants none).
    let mut m = wallet_manifest();
    m.applications[0].privileges = vec!["card-lock".into()];
    refused(
        &f,
        "privilege",
        &f.package(m, vec![("wallet".into(), REGISTRATION_CAP.to_vec())]),
        "privilege_not_allowed",
    );
    // Truncated, oversized, path traversal.
    refused(&f, "truncated", &good[..good.len() / 2], "truncated");
    let mut big = good.clone();
    big.resize(package::MAX_PACKAGE_BYTES as usize + 1, 0);
    refused(&f, "oversized", &big, "oversized");
    let mut all = entries(&good);
    all.push(("../evil".into(), b"x".to_vec()));
    refused(&f, "path traversal", &zip_of(&all), "path_traversal");

    // The good one is stored; refused ones never were.
    let added = f.module.add(&good).unwrap();
    assert_eq!(added[0].name, "wallet");
    assert_eq!(f.module.catalog().unwrap().len(), 1);
    f.module.remove("wallet").unwrap();
    assert!(f.module.catalog().unwrap().is_empty());
    assert!(matches!(
        f.module.remove("wallet"),
        Err(outlet::Error::UnknownApplication(_))
    ));
}
