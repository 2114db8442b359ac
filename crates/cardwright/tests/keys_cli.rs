//! `cardwright keys …` against the software key store: dual-control import with KCVs,
//! listing, generation, rotation, backup and restore; and that no key bytes are ever printed.

mod common;
use common::*;

const MASTER_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const MASTER_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const KEK: &str = "000102030405060708090A0B0C0D0E0F";
const C1: &str = "00112233445566778899AABBCCDDEEFF";
const C2: &str = "0F0E0D0C0B0A09080706050403020100";

fn kcv(hex: &str) -> String {
    let k = scp::Key::aes(&apdu::parse_hex(hex).unwrap()).unwrap();
    apdu::hex(&k.kcv())
}

/// Runs `cardwright keys --keystore file:PATH ARGS` with `input` on stdin.
fn keys(store: &str, master: &str, args: &[&str], input: &str) -> Run {
    let envs = [
        ("CARDWRIGHT_MASTER_KEY".to_string(), master.to_string()),
        ("CARDWRIGHT_KEK".to_string(), KEK.to_string()),
    ];
    let mut full = vec!["keys", "--keystore"];
    let ks = format!("file:{store}");
    full.push(&ks);
    full.extend_from_slice(args);
    let r = run_env(&full, &envs, input);
    for secret in [C1, C2, MASTER_A, MASTER_B, KEK] {
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "key material printed by keys {args:?}"
        );
    }
    r
}

#[test]
fn base_keys_life() {
    let dir = tempdir();
    let store = dir.path().join("keys.json").to_string_lossy().into_owned();
    let input = format!("{C1}\n{}\n{C2}\n{}\n", kcv(C1), kcv(C2));

    // A wrong component KCV is refused and nothing is stored.
    let bad = keys(
        &store,
        MASTER_A,
        &["import-base", "--category", "gold"],
        &format!("{C1}\n000000\n"),
    );
    assert!(
        !bad.ok && bad.stderr.contains("KCV does not match"),
        "{}",
        bad.stderr
    );
    assert!(!std::path::Path::new(&store).exists());

    // Dual control: two components, each with its KCV; the combined KCV is shown.
    let combined: Vec<u8> = apdu::parse_hex(C1)
        .unwrap()
        .iter()
        .zip(apdu::parse_hex(C2).unwrap())
        .map(|(a, b)| a ^ b)
        .collect();
    let r = keys(
        &store,
        MASTER_A,
        &[
            "import-base",
            "--category",
            "gold",
            "--expires",
            "2031-01-31",
        ],
        &input,
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains(&kcv(&apdu::hex(&combined))),
        "{}",
        r.stdout
    );

    let r = keys(
        &store,
        MASTER_A,
        &["generate-base", "--category", "silver", "--kind", "des"],
        "",
    );
    assert!(r.ok, "{}", r.stderr);
    let r = keys(&store, MASTER_A, &["rotate-base", "--category", "gold"], "");
    assert!(
        r.ok && r.stdout.contains("gold v2"),
        "{}{}",
        r.stdout,
        r.stderr
    );

    let list = keys(&store, MASTER_A, &["list"], "");
    assert!(list.ok, "{}", list.stderr);
    for needle in ["gold v1", "gold v2", "silver v1", "expires 2031-01-31"] {
        assert!(
            list.stdout.contains(needle),
            "list lacks {needle}:\n{}",
            list.stdout
        );
    }

    // The wrong master key: a clear error.
    let r = keys(&store, MASTER_B, &["list"], "");
    assert!(!r.ok && r.stderr.contains("master key"), "{}", r.stderr);

    // Backup under a KEK, restore into another store with another master key.
    let backup = dir.path().join("backup.bin").to_string_lossy().into_owned();
    let r = keys(&store, MASTER_A, &["backup", "--to", &backup], "");
    assert!(r.ok, "{}", r.stderr);
    let store2 = dir.path().join("keys2.json").to_string_lossy().into_owned();
    let r = keys(&store2, MASTER_B, &["restore", "--from", &backup], "");
    assert!(r.ok, "{}", r.stderr);
    let list2 = keys(&store2, MASTER_B, &["list"], "");
    let kcvs = |s: &str| -> Vec<String> {
        s.lines()
            .filter_map(|l| l.split("KCV ").nth(1))
            .map(|t| t[..6].to_string())
            .collect()
    };
    assert_eq!(kcvs(&list.stdout), kcvs(&list2.stdout));
}

/// `keys key-sets` lists SSD key sets without creating a store; `card --key-set` refuses
/// an unknown label and `--kdf` (the set is the card's own keys) before touching the card.
#[test]
fn key_sets_are_listed_and_used_by_label_only() {
    let dir = tempdir();
    let store = dir.path().join("ks.json");
    let st = store.to_str().unwrap();
    let r = keys(st, MASTER_A, &["key-sets"], "");
    assert!(
        !r.ok && r.stderr.contains("no key store file"),
        "{}",
        r.stderr
    );
    assert!(!store.exists(), "a reading command created the key store");
    let r = keys(st, MASTER_A, &["generate-base", "--category", "gold"], "");
    assert!(r.ok, "{}", r.stderr);
    let r = keys(st, MASTER_A, &["key-sets"], "");
    assert!(r.ok && r.stdout.contains("no key sets"), "{}", r.stdout);

    let card = dir.path().join("card.json");
    let card = card.to_str().unwrap();
    ok(&["sim", "create", "--state", card, "--no-piv"]);
    let envs = [("CARDWRIGHT_MASTER_KEY".to_string(), MASTER_A.to_string())];
    let ks = format!("file:{st}");
    let r = run_env(
        &[
            "card",
            "--sim",
            card,
            "--keystore",
            &ks,
            "--key-set",
            "nope",
            "list",
        ],
        &envs,
        "",
    );
    assert!(!r.ok && r.stderr.contains("key set nope"), "{}", r.stderr);
    let r = run_env(
        &[
            "card",
            "--sim",
            card,
            "--keystore",
            &ks,
            "--key-set",
            "nope",
            "--kdf",
            "kdf3",
            "list",
        ],
        &envs,
        "",
    );
    assert!(
        !r.ok && r.stderr.contains("--kdf does not apply"),
        "{}",
        r.stderr
    );
    let r = run(&["card", "--sim", card, "--key-set", "x", "--key", C1, "list"]);
    assert!(
        !r.ok && r.stderr.contains("cannot be used with"),
        "{}",
        r.stderr
    );
}
