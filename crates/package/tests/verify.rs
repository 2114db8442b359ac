//! `package::build` then `package::verify`: packages that verify, and every refusal of
//! issue 11, each asserting its code.

mod common;

use common::*;
use package::{Refusal, MAX_LOAD_FILE_BYTES, MAX_PACKAGE_BYTES};
use time::Duration;

#[test]
fn ecdsa_and_rsa_pss_packages_verify() {
    for kind in [KeyType::P256, KeyType::Rsa] {
        let pki = Pki::new(kind);
        let zip = build_with(&pki, template(&["wallet", "transit"]), Vec::new());
        let v = package::verify(&zip, &pki.policy("")).expect("verifies");
        assert_eq!(v.anchor, 0);
        assert_eq!(v.signer_der, pki.signer.der);
        assert_eq!(v.signer_subject, "CN=Package signer 100");
        assert_eq!(v.load_files.len(), 2);
        assert_eq!(v.load_files[0].0, "wallet");
        assert_eq!(v.load_files[0].1, cap(2000));
        let app = &v.manifest.applications[1];
        assert_eq!(app.load_file, "load/transit.cap");
        assert_eq!(app.package_aid, "A00000055501");
        assert_eq!(app.applet, "A0000005550101");
        assert_eq!(app.size, cap(2000).len() as u64);
        assert_eq!(v.manifest_bytes, v.manifest.to_toml().as_bytes());
        assert!(v.signing_time.is_some());
        assert_eq!(v.package_sha256.len(), 64);
        // The entries, in order.
        let names: Vec<String> = entries(&zip).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "manifest.toml",
                "manifest.p7s",
                "load/wallet.cap",
                "load/transit.cap"
            ]
        );
    }
}

#[test]
fn the_signer_may_be_issued_by_the_anchor_directly() {
    let root = Ca::root("Small Provider Root");
    let signer = root.signer(KeyType::P256, 5);
    let zip = build_signed(
        template(&["wallet"]),
        vec![("wallet".into(), cap(500))],
        vec![signer.der.clone()],
        Vec::new(),
        &signer.key,
    );
    package::verify(&zip, &policy_for(&root, "")).expect("verifies");
}

#[test]
fn the_anchor_is_chosen_among_several() {
    let pki = Pki::new(KeyType::P256);
    let other = Ca::root("Another Root");
    let mut policy = policy_for(&other, "");
    policy.anchors.extend(pki.policy("").anchors);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    assert_eq!(package::verify(&zip, &policy).unwrap().anchor, 1);
}

#[test]
fn build_refuses_a_key_that_does_not_match_the_certificate() {
    let pki = Pki::new(KeyType::P256);
    let stranger = package::SoftwareSigner::generate_p256();
    let r = package::build(
        package::BuildInput {
            manifest: template(&["wallet"]),
            load_files: vec![("wallet".into(), cap(100))],
            chain_der: pki.chain(),
            crls_der: Vec::new(),
            signing_time: now(),
        },
        &stranger,
    )
    .unwrap_err();
    assert_eq!(r.code(), "bad_signature", "{r}");
}

#[test]
fn build_refuses_missing_extra_or_bad_load_files() {
    let pki = Pki::new(KeyType::P256);
    let input = |files: Vec<(String, Vec<u8>)>| package::BuildInput {
        manifest: template(&["wallet", "transit"]),
        load_files: files,
        chain_der: pki.chain(),
        crls_der: Vec::new(),
        signing_time: now(),
    };
    let missing = package::build(input(vec![("wallet".into(), cap(100))]), &pki.signer.key);
    assert_eq!(missing.unwrap_err().code(), "malformed");
    let extra = package::build(
        input(vec![
            ("wallet".into(), cap(100)),
            ("transit".into(), cap(100)),
            ("other".into(), cap(100)),
        ]),
        &pki.signer.key,
    );
    assert_eq!(extra.unwrap_err().code(), "malformed");
    let not_a_cap = package::build(
        input(vec![
            ("wallet".into(), b"not a CAP".to_vec()),
            ("transit".into(), cap(100)),
        ]),
        &pki.signer.key,
    );
    assert_eq!(not_a_cap.unwrap_err().code(), "malformed");
}

// ---------------------------------------------------------------------------------------
// Every refusal of the issue.

#[test]
fn bad_signature_manifest_edited() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    let manifest = entries(&zip)[0].1.clone();
    let edited = String::from_utf8(manifest)
        .unwrap()
        .replace("The wallet application", "The wallet application (free!)");
    let r = refusal(
        &replace_entry(&zip, "manifest.toml", edited.as_bytes()),
        &pki.policy(""),
    );
    assert_eq!(r.code(), "bad_signature", "{r}");
    assert!(r.to_string().contains("message digest"), "{r}");
}

#[test]
fn bad_signature_signature_value_flipped() {
    for kind in [KeyType::P256, KeyType::Rsa] {
        let pki = Pki::new(kind);
        let zip = build_with(&pki, template(&["wallet"]), Vec::new());
        let mut p7s = entries(&zip)[1].1.clone();
        // The signature value ends the DER (there are no unsigned attributes).
        let n = p7s.len();
        p7s[n - 10] ^= 0x01;
        let r = refusal(&replace_entry(&zip, "manifest.p7s", &p7s), &pki.policy(""));
        assert_eq!(r.code(), "bad_signature", "{kind:?}: {r}");
    }
}

#[test]
fn load_file_hash_differs() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    let r = refusal(
        &replace_entry(&zip, "load/wallet.cap", &cap(2100)),
        &pki.policy(""),
    );
    assert_eq!(r.code(), "hash_mismatch", "{r}");
    assert!(r.to_string().contains("load/wallet.cap"), "{r}");
}

#[test]
fn unknown_signer() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    // Another root of the same name trusted.
    let other = Ca::root("Provider Root");
    let r = refusal(&zip, &policy_for(&other, ""));
    assert_eq!(r.code(), "unknown_signer", "{r}");
    assert!(r.to_string().contains("does not verify"), "{r}");
    // The intermediate left out of the package.
    let no_inter = build_signed(
        template(&["wallet"]),
        vec![("wallet".into(), cap(500))],
        vec![pki.signer.der.clone()],
        Vec::new(),
        &pki.signer.key,
    );
    let r = refusal(&no_inter, &pki.policy(""));
    assert_eq!(r.code(), "unknown_signer", "{r}");
    // No anchors at all.
    let mut none = pki.policy("");
    none.anchors.clear();
    assert_eq!(refusal(&zip, &none).code(), "unknown_signer");
}

#[test]
fn an_issuer_that_is_not_a_ca_is_refused() {
    // A signer certificate (not a CA) that issued another signer certificate.
    let root = Ca::root("Root");
    let not_ca = root.signer(KeyType::P256, 9);
    let issuer_key =
        rcgen::KeyPair::try_from(not_ca.key.to_pkcs8_der().unwrap().as_slice()).unwrap();
    let mut issuer_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    issuer_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Package signer 9");
    let issuer = rcgen::Issuer::new(issuer_params, issuer_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Leaf");
    let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
    let leaf_signer = package::SoftwareSigner::from_pkcs8_der(&leaf_key.serialize_der()).unwrap();
    let zip = build_signed(
        template(&["wallet"]),
        vec![("wallet".into(), cap(500))],
        vec![leaf.der().to_vec(), not_ca.der.clone()],
        Vec::new(),
        &leaf_signer,
    );
    let r = refusal(&zip, &policy_for(&root, ""));
    assert_eq!(r.code(), "unknown_signer", "{r}");
    assert!(r.to_string().contains("not a CA"), "{r}");
}

#[test]
fn expired_signer() {
    let root = Ca::root("Provider Root");
    let inter = root.intermediate("Provider Packages CA");
    let package_of = |signer: &Signer| {
        build_signed(
            template(&["wallet"]),
            vec![("wallet".into(), cap(500))],
            vec![signer.der.clone(), inter.der.clone()],
            Vec::new(),
            &signer.key,
        )
    };
    let expired = inter.signer_valid(
        KeyType::P256,
        101,
        now() - Duration::days(400),
        now() - Duration::days(1),
    );
    let r = refusal(&package_of(&expired), &policy_for(&root, ""));
    assert_eq!(r.code(), "signer_expired", "{r}");
    // Not yet valid is refused the same way.
    let future = inter.signer_valid(
        KeyType::P256,
        102,
        now() + Duration::days(1),
        now() + Duration::days(400),
    );
    let r = refusal(&package_of(&future), &policy_for(&root, ""));
    assert_eq!(r.code(), "signer_expired", "{r}");
    // A valid one verifies, but not at a time after it expires.
    let valid = inter.signer(KeyType::P256, 103);
    let zip = package_of(&valid);
    package::verify(&zip, &policy_for(&root, "")).expect("valid now");
    let mut later = policy_for(&root, "");
    later.now = now() + Duration::days(400);
    assert_eq!(refusal(&zip, &later).code(), "signer_expired");
}

#[test]
fn expired_intermediate() {
    let root = Ca::root("Provider Root");
    let inter = root.intermediate_valid(
        "Old Packages CA",
        now() - Duration::days(400),
        now() - Duration::days(2),
    );
    let signer = inter.signer(KeyType::P256, 103);
    let zip = build_signed(
        template(&["wallet"]),
        vec![("wallet".into(), cap(500))],
        vec![signer.der.clone(), inter.der.clone()],
        Vec::new(),
        &signer.key,
    );
    let r = refusal(&zip, &policy_for(&root, ""));
    assert_eq!(r.code(), "signer_expired", "{r}");
    assert!(r.to_string().contains("Old Packages CA"), "{r}");
}

#[test]
fn revoked_signer_crl_in_the_package() {
    for kind in [KeyType::P256, KeyType::Rsa] {
        let pki = Pki::new(kind);
        let crl = pki.inter.crl(&[55, pki.signer.serial]);
        let zip = build_with(&pki, template(&["wallet"]), vec![crl]);
        let r = refusal(&zip, &pki.policy(""));
        assert_eq!(r.code(), "signer_revoked", "{r}");
        assert!(r.to_string().contains("serial"), "{r}");
    }
}

#[test]
fn revoked_signer_crl_of_the_policy() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    let mut policy = pki.policy("");
    policy.crls.push(pki.inter.crl(&[pki.signer.serial]));
    assert_eq!(refusal(&zip, &policy).code(), "signer_revoked");
}

#[test]
fn revoked_intermediate() {
    let pki = Pki::new(KeyType::P256);
    // The intermediate has serial 7.
    let zip = build_with(&pki, template(&["wallet"]), vec![pki.root.crl(&[7])]);
    let r = refusal(&zip, &pki.policy(""));
    assert_eq!(r.code(), "signer_revoked", "{r}");
    assert!(r.to_string().contains("Provider Packages CA"), "{r}");
}

#[test]
fn a_crl_that_does_not_verify_revokes_nothing() {
    let pki = Pki::new(KeyType::P256);
    // Same issuer name, another key: a forged CRL.
    let forger = pki.root.intermediate("Provider Packages CA");
    let forged = forger.crl(&[pki.signer.serial]);
    let zip = build_with(&pki, template(&["wallet"]), vec![forged]);
    package::verify(&zip, &pki.policy("")).expect("the forged CRL is ignored");
    // A CRL listing other serials does not revoke the signer either.
    let zip = build_with(&pki, template(&["wallet"]), vec![pki.inter.crl(&[1, 2, 3])]);
    package::verify(&zip, &pki.policy("")).expect("not listed");
}

#[test]
fn outside_validity() {
    let pki = Pki::new(KeyType::P256);
    let mut m = template(&["wallet"]);
    m.not_before = now() - Duration::days(10);
    m.not_after = now() - Duration::days(1);
    let zip = build_with(&pki, m, Vec::new());
    let r = refusal(&zip, &pki.policy(""));
    assert_eq!(r.code(), "outside_validity", "{r}");
    // Before not_before.
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    let mut policy = pki.policy("");
    policy.now = now() - Duration::days(2);
    assert_eq!(refusal(&zip, &policy).code(), "outside_validity");
}

#[test]
fn privilege_not_allowed() {
    let pki = Pki::new(KeyType::P256);
    let mut m = template(&["wallet"]);
    m.applications[0].privileges = vec!["card-lock".into(), "cvm-management".into()];
    let zip = build_with(&pki, m, Vec::new());
    let r = refusal(&zip, &pki.policy("card-lock"));
    assert_eq!(r.code(), "privilege_not_allowed", "{r}");
    assert!(r.to_string().contains("cvm-management"), "{r}");
    assert_eq!(
        refusal(&zip, &pki.policy("")).code(),
        "privilege_not_allowed"
    );
    package::verify(&zip, &pki.policy("card-lock,cvm-management")).expect("granted");
}

#[test]
fn truncated_archive() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    for cut in [4, 30, zip.len() / 2, zip.len() - 23, zip.len() - 1] {
        let r = refusal(&zip[..cut], &pki.policy(""));
        assert_eq!(r.code(), "truncated", "cut at {cut}: {r}");
    }
    assert_eq!(refusal(&[], &pki.policy("")).code(), "malformed");
}

#[test]
fn oversized_archive() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    let mut big = zip.clone();
    big.resize(MAX_PACKAGE_BYTES as usize + 1, 0);
    let r = refusal(&big, &pki.policy(""));
    assert_eq!(r.code(), "oversized", "{r}");
}

/// Sets the uncompressed size of `name` in its local header and central directory entry.
fn declare_size(zip: &mut [u8], name: &str, size: u32) {
    let find = |zip: &[u8], sig: &[u8; 4], name_at: usize| -> Vec<usize> {
        (0..zip.len() - name_at - name.len())
            .filter(|&p| {
                &zip[p..p + 4] == sig
                    && &zip[p + name_at..p + name_at + name.len()] == name.as_bytes()
            })
            .collect()
    };
    let local = find(zip, b"PK\x03\x04", 30);
    let central = find(zip, b"PK\x01\x02", 46);
    assert_eq!((local.len(), central.len()), (1, 1), "{name} once in each");
    zip[local[0] + 22..local[0] + 26].copy_from_slice(&size.to_le_bytes());
    zip[central[0] + 24..central[0] + 28].copy_from_slice(&size.to_le_bytes());
}

#[test]
fn zip_bomb_entries() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    let mut all = entries(&zip);
    // 40 MB of zeros deflate to about 40 KB.
    all[2].1 = vec![0; 40 * 1024 * 1024];
    let bomb = zip_of(&all);
    assert!(bomb.len() < 100 * 1024);
    // As declared: refused before inflating.
    let r = refusal(&bomb, &pki.policy(""));
    assert_eq!(r.code(), "oversized", "{r}");
    assert!(r.to_string().contains("declares"), "{r}");
    // Declaring 1000 bytes: inflating stops at 1001.
    let mut liar = bomb.clone();
    declare_size(&mut liar, "load/wallet.cap", 1000);
    let r = refusal(&liar, &pki.policy(""));
    assert_eq!(r.code(), "oversized", "{r}");
    assert!(r.to_string().contains("inflates beyond"), "{r}");
    // Declaring more than a load file may hold.
    let mut huge = zip.clone();
    declare_size(&mut huge, "load/wallet.cap", MAX_LOAD_FILE_BYTES as u32 + 1);
    assert_eq!(refusal(&huge, &pki.policy("")).code(), "oversized");
}

#[test]
fn path_traversal() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    for evil in [
        "../manifest.toml",
        "load/../../etc/passwd",
        "/load/wallet.cap",
        "load\\wallet.cap",
        "C:/load/wallet.cap",
    ] {
        let mut all = entries(&zip);
        all.push((evil.to_string(), b"x".to_vec()));
        let r = refusal(&zip_of(&all), &pki.policy(""));
        assert_eq!(r.code(), "path_traversal", "{evil}: {r}");
    }
}

#[test]
fn duplicate_missing_and_extra_entries() {
    let pki = Pki::new(KeyType::P256);
    let zip = build_with(&pki, template(&["wallet"]), Vec::new());
    // A second manifest.toml: written as manifest.tomX, then renamed in place.
    let mut all = entries(&zip);
    all.push(("manifest.tomX".into(), b"format = 'x'".to_vec()));
    let mut dup = zip_of(&all);
    let at: Vec<usize> = (0..dup.len() - 13)
        .filter(|&p| &dup[p..p + 13] == b"manifest.tomX")
        .collect();
    assert_eq!(at.len(), 2);
    for p in at {
        dup[p + 12] = b'l';
    }
    let r = refusal(&dup, &pki.policy(""));
    assert_eq!(r.code(), "malformed", "{r}");
    // No signature.
    let without = |name: &str| -> Vec<u8> {
        let all: Vec<_> = entries(&zip)
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect();
        zip_of(&all)
    };
    assert_eq!(
        refusal(&without("manifest.p7s"), &pki.policy("")).code(),
        "malformed"
    );
    // The load file missing.
    assert_eq!(
        refusal(&without("load/wallet.cap"), &pki.policy("")).code(),
        "malformed"
    );
    // An entry the manifest does not name, and a README.
    for (name, bytes) in [("load/other.cap", cap(100)), ("README", b"hi".to_vec())] {
        let mut all = entries(&zip);
        all.push((name.into(), bytes));
        assert_eq!(
            refusal(&zip_of(&all), &pki.policy("")).code(),
            "malformed",
            "{name}"
        );
    }
}

#[test]
fn refusal_codes_are_stable() {
    let all = [
        (Refusal::Malformed(String::new()), "malformed"),
        (Refusal::Truncated(String::new()), "truncated"),
        (Refusal::Oversized(String::new()), "oversized"),
        (Refusal::PathTraversal(String::new()), "path_traversal"),
        (Refusal::BadSignature(String::new()), "bad_signature"),
        (Refusal::HashMismatch(String::new()), "hash_mismatch"),
        (Refusal::UnknownSigner(String::new()), "unknown_signer"),
        (Refusal::SignerExpired(String::new()), "signer_expired"),
        (Refusal::SignerRevoked(String::new()), "signer_revoked"),
        (Refusal::OutsideValidity(String::new()), "outside_validity"),
        (
            Refusal::PrivilegeNotAllowed(String::new()),
            "privilege_not_allowed",
        ),
    ];
    for (r, c) in all {
        assert_eq!(r.code(), c);
    }
}
