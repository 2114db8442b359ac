//! `cardwright ota encode|decode` through the binary: a round trip (packet and SMS-DELIVER
//! TPDUs), pySim's known answers decoded, and a wrong key refused.

mod common;
use common::*;

const KEY: &str = "000102030405060708090A0B0C0D0E0F";
const OTHER: &str = "0F0E0D0C0B0A09080706050403020100";

/// The `[name]` section of the ota crate's SCP80 vectors, as key → value.
fn vector(name: &str) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ota/tests/vectors/scp80.txt"),
    )
    .unwrap();
    let mut out = std::collections::HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == format!("[{name}]");
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    assert!(!out.is_empty(), "vector {name}");
    out
}

fn encode(extra: &[&str], apdus: &[&str]) -> String {
    let mut args = vec![
        "ota",
        "encode",
        "--spi",
        "1629",
        "--kic",
        "22",
        "--kid",
        "22",
        "--tar",
        "000000",
        "--counter",
        "100",
        "--key-enc",
        KEY,
        "--key-mac",
        KEY,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(apdus);
    ok(&args)
}

#[test]
fn encode_then_decode_round_trip() {
    let packet = encode(&[], &["80E602000C07A000000062010100000000", "80F2400000"]);
    let packet = packet.trim();
    assert!(packet.starts_with("00") && packet.len() > 40, "{packet}");
    let out = ok(&["ota", "decode", "--key-enc", KEY, "--key-mac", KEY, packet]);
    assert!(out.contains("CNTR 0000000064 (100)"), "{out}");
    assert!(out.contains("CC ") && out.contains("verified"), "{out}");
    assert!(out.contains("INSTALL [for load]"), "{out}");
    assert!(out.contains("GET STATUS"), "{out}");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "ota",
        "decode",
        "--json",
        "--key-enc",
        KEY,
        "--key-mac",
        KEY,
        packet,
    ]))
    .unwrap();
    assert_eq!(j["kind"], "command");
    assert_eq!(j["counter"], 100);
    assert_eq!(j["script"]["format"], "compact");
    assert_eq!(j["script"]["apdus"].as_array().unwrap().len(), 2);

    // Hex counter, expanded script, SMS-DELIVER TPDUs (concatenated: 300 bytes of LOAD).
    let big = format!("80E8000080{}", "AB".repeat(128));
    let big2 = format!("80E8800180{}", "CD".repeat(128));
    let tpdus = ok(&[
        "ota",
        "encode",
        "--spi",
        "1629",
        "--kic",
        "22",
        "--kid",
        "22",
        "--tar",
        "000000",
        "--counter",
        "0x65",
        "--key-enc",
        KEY,
        "--key-mac",
        KEY,
        "--script",
        "expanded",
        "--tpdu",
        "--originator",
        "+491701234567",
        &big,
        &big2,
    ]);
    let parts: Vec<&str> = tpdus.lines().collect();
    assert_eq!(parts.len(), 3, "{tpdus}");
    let mut args = vec![
        "ota",
        "decode",
        "--json",
        "--key-enc",
        KEY,
        "--key-mac",
        KEY,
    ];
    args.extend(parts.iter().copied());
    let j: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(j["counter"], 101);
    assert_eq!(j["sms"].as_array().unwrap().len(), 3);
    assert_eq!(j["sms"][0]["address"], "491701234567");
    assert_eq!(j["script"]["format"], "expanded");
    assert!(j["script"]["apdus"][1]["meaning"]
        .as_str()
        .unwrap()
        .contains("LOAD block 1 (last)"));
    // A missing part is named.
    fails(
        &[
            "ota",
            "decode",
            "--key-enc",
            KEY,
            "--key-mac",
            KEY,
            parts[0],
            parts[2],
        ],
        "missing",
    );
}

#[test]
fn pysim_vectors_decode() {
    let cmd = vector("pysim-aes128-sja5-ciphered-cc-cmd");
    let out = ok(&[
        "ota",
        "decode",
        "--key-enc",
        &cmd["kic_key"],
        "--key-mac",
        &cmd["kid_key"],
        &cmd["packet"],
    ]);
    assert!(out.contains("verified"), "{out}");
    assert!(
        out.contains(&format!("TAR {}", cmd["tar"].to_uppercase())),
        "{out}"
    );
    assert!(out.contains("SELECT"), "{out}");

    let por = vector("pysim-3des-sja5-ciphered-cc-por");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "ota",
        "decode",
        "--json",
        "--key-enc",
        &por["kic_key"],
        "--key-mac",
        &por["kid_key"],
        &por["packet"],
    ]))
    .unwrap();
    assert_eq!(j["kind"], "response");
    assert_eq!(j["status"], "00");
    assert_eq!(j["data"].as_str().unwrap(), por["data"].to_uppercase());
    // The same with the command's SPI, KIc and KID given.
    let out = ok(&[
        "ota",
        "decode",
        "--as",
        "response",
        "--spi",
        &por["spi"],
        "--kic",
        &por["kic"],
        "--kid",
        &por["kid"],
        "--key-enc",
        &por["kic_key"],
        "--key-mac",
        &por["kid_key"],
        &por["packet"],
    ]);
    assert!(out.contains("status 00"), "{out}");
}

#[test]
fn wrong_key_is_refused() {
    let packet = encode(&[], &["00A4040007A0000001515350"]);
    let r = run(&[
        "ota",
        "decode",
        "--key-enc",
        KEY,
        "--key-mac",
        OTHER,
        packet.trim(),
    ]);
    assert!(!r.ok);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .contains("CC does not verify: wrong KID key or tampered"),
        "{}",
        r.stderr
    );
    // A flipped byte is caught the same way.
    let mut b = apdu::parse_hex(packet.trim()).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    fails(
        &[
            "ota",
            "decode",
            "--key-enc",
            KEY,
            "--key-mac",
            KEY,
            &apdu::hex(&b),
        ],
        "CC does not verify",
    );
    fails(&["ota", "decode", "ZZ"], "not hex");
}

#[test]
fn catalog_enrol_push_status_over_the_database() {
    let dir = tempdir();
    let url = format!("sqlite:{}", dir.path().join("platform.db").display());
    let package = {
        let s = tsm::Store::open(&url).unwrap();
        s.create_tenant("admin", "acme", "ACME", tsm::model::Role::CardIssuer)
            .unwrap();
        s.create_category(
            "admin",
            &tsm::CategorySpec {
                id: "acme/gold".into(),
                tenant: "acme".into(),
                description: "gold".into(),
                initial_keys: tsm::model::InitialKeys::GpTestKey,
                initial_kvn: 0x30,
                perso: Vec::new(),
            },
        )
        .unwrap();
        let p = s
            .add_package(
                "acme/op",
                "acme",
                "wallet",
                &gp::cap::testing::synthetic_cap(2000),
            )
            .unwrap();
        s.register_card("acme/op", "8900000000000000001", "acme/gold")
            .unwrap();
        p.aid.to_string()
    };
    let keystore = format!("file:{}", dir.path().join("keys.json").display());
    let envs = [
        ("CARDWRIGHT_DB".to_string(), url.clone()),
        ("CARDWRIGHT_KEYSTORE".to_string(), keystore),
        ("CARDWRIGHT_ACTOR".to_string(), "acme/op".to_string()),
        ("CARDWRIGHT_MASTER_KEY".to_string(), "55".repeat(32)),
    ];
    let run = |args: &[&str]| {
        let r = run_env(args, &envs, "");
        assert!(r.ok, "{args:?}: {}{}", r.stdout, r.stderr);
        r.stdout
    };
    let out = run(&[
        "ota",
        "catalog",
        "add",
        "--app",
        "wallet",
        "--package",
        &package,
    ]);
    assert!(out.contains("wallet"), "{out}");
    let list = run(&["ota", "catalog", "list", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(j[0]["module"], "A0000005550101");
    run(&[
        "ota",
        "enrol",
        "--card",
        "8900000000000000001",
        "--iccid",
        "8949000000000000001",
        "--msisdn",
        "+491701234567",
    ]);
    let out = run(&[
        "ota",
        "push",
        "--iccid",
        "8949000000000000001",
        "--app",
        "wallet",
    ]);
    assert!(out.contains("pending"), "{out}");
    let j: serde_json::Value = serde_json::from_str(&run(&[
        "ota",
        "status",
        "--iccid",
        "8949000000000000001",
        "--json",
    ]))
    .unwrap();
    assert_eq!(j["sessions"][0]["state"], "pending");
    assert_eq!(j["msisdn"], "491701234567");
    let r = run_env(
        &[
            "ota",
            "push",
            "--iccid",
            "8949000000000000001",
            "--app",
            "nope",
        ],
        &envs,
        "",
    );
    assert!(
        !r.ok && r.stderr.contains("'nope' in the catalog of"),
        "{}",
        r.stderr
    );
    run(&["ota", "catalog", "remove", "--app", "wallet"]);
}
