//! `cardwright sim` and SCP11: the factory SCP11b key set of a new virtual card, `sim
//! ca-cert`, and `sim create --no-scp11`.

mod common;
use common::*;

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = Vec::new();
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    for chunk in b64.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .take_while(|&&c| c != b'=')
            .fold(0u32, |acc, &c| (acc << 6) | u32::from(val(c)));
        let k = chunk.iter().take_while(|&&c| c != b'=').count();
        let n = n << (6 * (4 - k));
        out.extend_from_slice(&n.to_be_bytes()[1..k]);
    }
    out
}

#[test]
fn new_card_has_scp11b_and_prints_its_ca() {
    let dir = tempdir();
    let state = dir.path().join("card.json");
    let state = state.to_str().unwrap();
    let out = ok(&["sim", "create", "--state", state]);
    assert!(
        out.contains("SCP11b:     SD key pair KID 0x13 KVN 0x01"),
        "{out}"
    );
    let pem = ok(&["sim", "ca-cert", "--state", state]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    assert!(pem.ends_with("-----END CERTIFICATE-----\n"), "{pem}");
    let der = pem_der(&pem);
    let card = card::VirtualCard::snapshot(std::path::Path::new(state)).unwrap();
    assert_eq!(card.manufacturer_ca(), Some(der.clone()));
    // The CA is an X.509 certificate the SD certificate chains to.
    let ca = gp::cert::Certificate::parse(&der).unwrap();
    assert!(ca.verify_signature(ca.public_key()));
}

#[test]
fn no_scp11_leaves_it_out() {
    let dir = tempdir();
    let state = dir.path().join("card.json");
    let state = state.to_str().unwrap();
    let out = ok(&["sim", "create", "--state", state, "--no-scp11"]);
    assert!(out.contains("no factory key set (--no-scp11)"), "{out}");
    fails(
        &["sim", "ca-cert", "--state", state],
        "no factory SCP11b certificate chain",
    );
    let card = card::VirtualCard::snapshot(std::path::Path::new(state)).unwrap();
    assert_eq!(card.manufacturer_ca(), None);
    fails(
        &["sim", "ca-cert", "--state", "/nonexistent/card.json"],
        "virtual card state file",
    );
}

#[test]
fn sim_run_creates_with_or_without_scp11() {
    let dir = tempdir();
    for (flag, scp11_oid) in [(None, true), (Some("--no-scp11"), false)] {
        let state = dir
            .path()
            .join(format!("run-{}.json", flag.is_some()))
            .to_string_lossy()
            .into_owned();
        let mut args = vec!["sim", "run", "--state", state.as_str()];
        args.extend(flag);
        // GET DATA 66: the card recognition data; SCP11b is OID 2A864886FC6B04 11 00.
        let r = run_env(&args, &[], "80CA006600\n");
        assert!(r.ok, "{} {}", r.stdout, r.stderr);
        assert!(r.stdout.contains("9000"), "{}", r.stdout);
        assert_eq!(
            r.stdout.to_uppercase().contains("2A864886FC6B041100"),
            scp11_oid,
            "{flag:?}: {}",
            r.stdout
        );
    }
}
