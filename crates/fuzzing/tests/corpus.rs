//! Every fuzz target runs over its committed seed corpus (`fuzz/corpus/<target>/`), so the
//! targets keep compiling and keep passing on the inputs that reached their depths. A
//! target without seeds, or a fuzz target file without an entry in `fuzzing::TARGETS`
//! (or the reverse), fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn run_corpus(name: &str, target: fuzzing::Target) {
    let dir = fuzz_dir().join("corpus").join(name);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {} of {name}: {e}", dir.display()));
    let mut seeds: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{name}: no seeds in {}", dir.display());
    for seed in &seeds {
        let data = std::fs::read(seed).expect("seed readable");
        let result = std::panic::catch_unwind(|| target(&data));
        assert!(result.is_ok(), "{name} panics on seed {}", seed.display());
    }
}

#[test]
fn every_target_passes_its_seed_corpus() {
    for &(name, target) in fuzzing::TARGETS {
        run_corpus(name, target);
    }
}

#[test]
fn targets_match_the_fuzz_directory() {
    let files: BTreeSet<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = fuzzing::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(files, listed);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("Cargo.toml");
    for name in &listed {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}

/// The hand-made key store seeds are real stores: they open with the test master key, so
/// the fuzzer starts from files that get past the master key check.
#[test]
fn key_store_seeds_open() {
    use kms::{KeyStore, MasterKey, SigningKeyStore, SoftwareKeyStore};
    let tmp = tempfile::tempdir().expect("temporary directory");
    for (seed, keys, signing) in [
        ("seed-empty", 0, 0),
        ("seed-two-base-keys", 2, 0),
        ("seed-with-signing-key", 2, 1),
    ] {
        let path = tmp.path().join(seed);
        std::fs::copy(fuzz_dir().join("corpus/key_store_file").join(seed), &path)
            .expect("seed copied");
        let master = MasterKey::from_bytes(&fuzzing::KEY_STORE_MASTER).expect("master key");
        let store = SoftwareKeyStore::open(&path, master).expect(seed);
        assert_eq!(store.list().expect("list").len(), keys, "{seed}");
        assert_eq!(
            store.signing_key_labels().expect("labels").len(),
            signing,
            "{seed}"
        );
    }
}

#[test]
fn http_bodies_reaches_every_post_route_of_both_apis() {
    let routes = fuzzing::http_routes();
    for (i, r) in routes.iter().enumerate() {
        println!("{i:02} {r}");
    }
    assert!(
        routes.iter().any(|r| r.contains("/payments"))
            && routes.iter().any(|r| r.ends_with("/write"))
            && routes.iter().any(|r| r == "/api/v1/partner/receipts")
            && routes.iter().any(|r| r == "/api/v1/partner/ssd-requests")
            && routes.iter().any(|r| r == "/api/v1/partners")
            && routes.iter().any(|r| r == "/api/v1/ssd/requests"),
        "{routes:?}"
    );
    assert!(routes.iter().all(|r| !r.contains('{')), "{routes:?}");
}

/// The hand-made wrapped key set seeds reach every check: the real ones import into the
/// fuzzed importer, the altered ones are refused for the reason they were altered for.
#[test]
fn wrapped_key_set_seeds_reach_the_import() {
    use kms::{Error, KeySetStore, WrappedKeySet};
    let store = fuzzing::key_set_importer();
    for (seed, imports) in [
        ("seed-aes128", true),
        ("seed-aes256", true),
        ("seed-3des", true),
        ("seed-flipped-bit", false),
        ("seed-other-recipient", false),
    ] {
        let text = std::fs::read_to_string(fuzz_dir().join("corpus/wrapped_key_set").join(seed))
            .expect("seed readable");
        let w = WrappedKeySet::from_json(&text).expect(seed);
        let label = format!("corpus-{seed}");
        let r = store.import_wrapped_key_set(&label, &w, fuzzing::KEY_SET_TRANSPORT_LABEL);
        match (imports, r) {
            (true, Ok(_)) => assert!(store.delete_key_set(&label).expect("delete")),
            (false, Err(Error::KeySetUnwrap { .. } | Error::WrongTransportKey { .. })) => {}
            (_, r) => panic!("{seed}: {r:?}"),
        }
    }
}

/// The package seeds verify under the fuzzed verifier's anchor, or are refused for the
/// reason they were made for, so the fuzzer starts from every depth of `package::verify`.
#[test]
fn package_seeds_reach_their_checks() {
    let policy = fuzzing::package_policy();
    for (seed, expected) in [
        ("seed-package-ecdsa", None),
        ("seed-package-rsa-pss-crl", None),
        ("seed-package-revoked", Some("signer_revoked")),
        (
            "seed-package-privilege-not-granted",
            Some("privilege_not_allowed"),
        ),
        ("seed-package-cut", Some("truncated")),
        ("seed-package-traversal", Some("path_traversal")),
    ] {
        let data = std::fs::read(fuzz_dir().join("corpus/package_archive").join(seed))
            .expect("seed readable");
        assert_eq!(data[0], 0, "{seed}: the whole-archive form");
        let got = package::verify(&data[1..], &policy).err().map(|r| r.code());
        assert_eq!(got, expected, "{seed}");
    }
}
