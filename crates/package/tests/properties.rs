//! Round trips: any valid manifest survives its TOML text, and any package built verifies
//! to the same manifest and load files; a manifest's TOML never panics the parser.

mod common;

use common::*;
use package::{DapBlock, Generate, KeyKind, Manifest, RegistrationKey, Tokens, FORMAT};
use proptest::prelude::*;
use time::OffsetDateTime;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,31}"
}

fn hex(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), min..=max).prop_map(|b| apdu::hex(&b))
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, quotes and newlines included: the TOML writer escapes them.
    "\\PC{1,40}"
}

fn instant() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4_000_000_000).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
}

fn registration() -> impl Strategy<Value = Vec<RegistrationKey>> {
    prop::collection::vec(
        (
            1u8..=15,
            prop::bool::ANY,
            prop::option::of("[a-zA-Z {}]{1,20}"),
        ),
        0..4,
    )
    .prop_map(|keys| {
        keys.into_iter()
            .enumerate()
            .map(|(i, (slot, card, subject))| RegistrationKey {
                id: format!("key{i}"),
                kind: if card {
                    KeyKind::EcP256
                } else if i % 2 == 0 {
                    KeyKind::Aes128
                } else {
                    KeyKind::Aes256
                },
                generate: if card {
                    Generate::Card
                } else {
                    Generate::Module
                },
                slot,
                subject,
            })
            .collect()
    })
}

prop_compose! {
    fn application()(
        name in name(),
        title in text(),
        version in "[0-9]{1,3}\\.[0-9]{1,3}(\\.[0-9]{1,3})?",
        sha256 in hex(32, 32),
        size in 0u64..10_000_000,
        package_aid in hex(5, 16),
        applet in hex(5, 16),
        instance in prop::option::of(hex(5, 16)),
        privileges in prop::sample::subsequence(
            vec!["security-domain", "card-lock", "card-terminate", "cvm-management", "global-registry"], 0..3),
        install_params in prop::option::of(hex(1, 20)),
        dap in prop::option::of((hex(5, 16), hex(64, 64))),
        tokens in prop::option::of((hex(8, 40), hex(8, 40))),
        registration in registration(),
    ) -> package::Application {
        package::Application {
            load_file: format!("load/{name}.cap"),
            name,
            title,
            version,
            sha256,
            size,
            package_aid,
            applet,
            instance: instance.unwrap_or_default(),
            privileges: privileges.into_iter().map(String::from).collect(),
            install_params: install_params.unwrap_or_default(),
            security_domain: String::new(),
            dap: dap.into_iter().map(|(security_domain, signature)| DapBlock { security_domain, signature }).collect(),
            tokens: tokens.map(|(load, install)| Tokens { load, install }),
            registration,
        }
    }
}

prop_compose! {
    fn manifest()(
        provider in text().prop_filter("not blank", |p| !p.trim().is_empty()),
        from in instant(),
        days in 1i64..3650,
        apps in prop::collection::vec(application(), 1..5),
    ) -> Manifest {
        let mut applications = Vec::new();
        for a in apps {
            if !applications.iter().any(|b: &package::Application| b.name == a.name) {
                applications.push(a);
            }
        }
        Manifest {
            format: FORMAT.into(),
            provider,
            not_before: from,
            not_after: from + time::Duration::days(days),
            applications,
        }
    }
}

proptest! {
    #[test]
    fn manifest_toml_round_trips(m in manifest()) {
        m.check().expect("generated manifests are valid");
        let text = m.to_toml();
        prop_assert_eq!(Manifest::from_toml(&text).expect("parses"), m.clone());
        // The template parser reads the same.
        prop_assert_eq!(Manifest::parse_template(&text).expect("parses"), m);
    }

    #[test]
    fn manifest_parser_never_panics(text in "\\PC{0,400}") {
        let _ = Manifest::from_toml(&text);
        let _ = Manifest::parse_template(&text);
    }

    #[test]
    fn edited_manifest_text_still_checks_or_is_refused(m in manifest(), cut in 0usize..2000) {
        // A manifest cut anywhere parses to a valid manifest or is refused as malformed.
        let text = m.to_toml();
        let cut = cut.min(text.len());
        if text.is_char_boundary(cut) {
            if let Err(r) = Manifest::from_toml(&text[..cut]) {
                prop_assert_eq!(r.code(), "malformed");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn built_packages_verify(
        names in prop::collection::btree_set(name(), 1..4),
        sizes in prop::collection::vec(10usize..20_000, 4),
        privileges in prop::sample::subsequence(vec!["card-lock", "cvm-management"], 0..=2),
        rsa in prop::bool::weighted(0.25),
    ) {
        let pki = Pki::new(if rsa { KeyType::Rsa } else { KeyType::P256 });
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut m = template(&names);
        for a in &mut m.applications {
            a.privileges = privileges.iter().map(|p| p.to_string()).collect();
        }
        let files: Vec<(String, Vec<u8>)> =
            names.iter().zip(&sizes).map(|(n, s)| (n.to_string(), cap(*s))).collect();
        let zip = build_signed(m.clone(), files.clone(), pki.chain(), Vec::new(), &pki.signer.key);
        let v = package::verify(&zip, &pki.policy("card-lock,cvm-management")).expect("verifies");
        prop_assert_eq!(&v.load_files, &files);
        for (a, b) in v.manifest.applications.iter().zip(&m.applications) {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(&a.title, &b.title);
            prop_assert_eq!(&a.privileges, &b.privileges);
        }
        prop_assert_eq!(Manifest::from_toml(std::str::from_utf8(&v.manifest_bytes).unwrap()).unwrap(), v.manifest);
    }
}
