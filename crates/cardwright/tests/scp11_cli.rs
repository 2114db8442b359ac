//! `cardwright card --scp 11a|11b|11c` against the virtual card in process (`--sim`): the
//! factory SCP11b key set, `card scp11 setup` with a CA in the key store, OCE keys in the
//! key store (software, and SoftHSM2 when installed), every card command over SCP11, and
//! the refusals that must name the check that failed and leave the card unchanged.

mod common;
use common::softhsm::{self, on_path, HSM_PIN, SOFTHSM_MODULE};
use common::*;
use std::path::Path;
use std::process::Command;

struct Card {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    state: String,
    keystore: String,
}

impl Card {
    fn new() -> Card {
        let dir = tempdir();
        let path = dir.path().to_path_buf();
        let state = path.join("card.json").to_string_lossy().into_owned();
        ok(&["sim", "create", "--state", &state]);
        let master = path.join("master");
        std::fs::write(&master, "00".repeat(32)).unwrap();
        let keystore = format!(
            "file:{}?master-key-file={}",
            path.join("keys.json").display(),
            master.display()
        );
        Card {
            _dir: dir,
            dir: path,
            state,
            keystore,
        }
    }
    fn p(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
    /// `card --sim STATE --keystore K ARGS…`
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["card", "--sim", &self.state, "--keystore", &self.keystore];
        v.extend_from_slice(args);
        v
    }
    fn ok(&self, args: &[&str]) -> String {
        ok(&self.args(args))
    }
    fn fails(&self, args: &[&str], needle: &str) -> String {
        fails(&self.args(args), needle)
    }
    /// The registry as the GP test keys see it (SCP03).
    fn registry(&self) -> String {
        self.ok(&["list"])
    }
    /// `card scp11 setup` for `variant` at `kvn` with CA `ca` and an OCE key `oce` certified
    /// by it; returns (ca.pem, oce.pem).
    fn setup(&self, variant: &str, kvn: &str, ca: &str, oce: &str) -> (String, String) {
        let ca_pem = self.p(&format!("{ca}.pem"));
        let out = self.ok(&[
            "scp11",
            "setup",
            "--ca",
            ca,
            "--variant",
            variant,
            "--kvn",
            kvn,
            "--ca-cert-out",
            &ca_pem,
        ]);
        assert!(out.contains("generated SD key"), "{out}");
        assert!(out.contains("loaded the OCE trust anchor"), "{out}");
        let oce_pem = self.p(&format!("{oce}.pem"));
        if !Path::new(&oce_pem).exists() {
            let out = ok(&[
                "keys",
                "--keystore",
                &self.keystore,
                "create-oce-key",
                "--label",
                oce,
                "--ca",
                ca,
                "--cert-out",
                &oce_pem,
            ]);
            assert!(out.contains("created OCE key-agreement key"), "{out}");
        }
        (ca_pem, oce_pem)
    }
}

#[test]
fn scp11b_with_the_factory_key_set() {
    let c = Card::new();
    // Trust on first use: works, and says what it trusted.
    let r = run(&c.args(&["--scp", "11b", "--sd-trust-any", "list"]));
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("A000000151000000"), "{}", r.stdout);
    assert!(r.stderr.contains("NOT verified") && r.stderr.contains("fingerprint"));
    // The chain, then a verified channel with its first certificate as the trust anchor.
    let chain = c.p("chain");
    let out = c.ok(&["scp11", "certs", "--out", &chain]);
    assert!(out.contains("KID 13 KVN 01"), "{out}");
    let first = format!("{chain}.0");
    let out = c.ok(&["--scp", "11b", "--sd-trust", &first, "info"]);
    assert!(
        out.contains("SCP11b") && out.contains("certificate verified"),
        "{out}"
    );
    // Without a trust decision it refuses, before touching the card.
    c.fails(&["--scp", "11b", "list"], "--sd-trust");
}

#[test]
fn scp11a_and_scp11c_after_setup_run_every_command() {
    let c = Card::new();
    let (ca, oce) = c.setup("11a", "3", "ca", "oce");
    let a = [
        "--scp",
        "11a",
        "--scp11-kvn",
        "3",
        "--oce-key",
        "oce",
        "--oce-cert",
        &oce,
        "--sd-trust",
        &ca,
    ];
    let with =
        |more: &[&str]| -> Vec<String> { a.iter().chain(more).map(|s| s.to_string()).collect() };
    let run_a = |more: &[&str]| {
        let v = with(more);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        c.ok(&v)
    };
    assert!(run_a(&["list"]).contains("A000000151000000"));
    let cap = cap("Empty_0102030405_8d5ac9e2_2.2.1.cap");
    run_a(&["install", cap.to_str().unwrap()]);
    assert!(c.registry().contains("0102030405060708"));
    run_a(&["lock-applet", "0102030405060708"]);
    run_a(&["unlock-applet", "0102030405060708"]);
    run_a(&["delete", "0102030405", "--related"]);
    assert!(!c.registry().contains("0102030405"));
    run_a(&["create-domain", "A000000151535344"]);
    run_a(&[
        "put-key",
        "--new-key",
        "00112233445566778899AABBCCDDEEFF",
        "--new-keyver",
        "0x35",
    ]);
    // The new symmetric key set opens SCP03.
    c.ok(&[
        "--key",
        "00112233445566778899AABBCCDDEEFF",
        "--keyver",
        "0x35",
        "list",
    ]);
    let out = run_a(&["apdu", "--secure", "80CA006600"]);
    assert!(out.contains("9000"), "{out}");

    // 11c with its own key pair, the same CA and OCE key.
    c.setup("11c", "4", "ca", "oce");
    c.ok(&[
        "--scp",
        "11c",
        "--scp11-kvn",
        "4",
        "--oce-key",
        "oce",
        "--oce-cert",
        &oce,
        "--sd-trust",
        &ca,
        "list",
    ]);
}

#[test]
fn refusals_name_the_check_and_leave_the_card_unchanged() {
    let c = Card::new();
    let (ca, oce) = c.setup("11a", "3", "ca", "oce");
    let before = c.registry();
    // The factory 11b chain does not chain to our CA.
    let e = c.fails(
        &[
            "--scp",
            "11b",
            "--sd-trust",
            &ca,
            "delete",
            "A000000151535344",
        ],
        "does not verify against the trust anchor",
    );
    assert!(e.contains("certificate 0"), "{e}");
    // An OCE certificate from another CA: the card's answer to PSO, with its meaning.
    let ca2_oce = {
        let out = ok(&[
            "keys",
            "--keystore",
            &c.keystore,
            "ca-cert",
            "--ca",
            "ca2",
            "--out",
            &c.p("ca2.pem"),
        ]);
        assert!(out.contains("wrote the certificate of CA ca2"), "{out}");
        let p = c.p("oce2.pem");
        ok(&[
            "keys",
            "--keystore",
            &c.keystore,
            "create-oce-key",
            "--label",
            "oce2",
            "--ca",
            "ca2",
            "--cert-out",
            &p,
        ]);
        p
    };
    c.fails(
        &[
            "--scp",
            "11a",
            "--scp11-kvn",
            "3",
            "--oce-key",
            "oce2",
            "--oce-cert",
            &ca2_oce,
            "--sd-trust",
            &ca,
            "install",
            cap("Empty_0102030405_8d5ac9e2_2.2.1.cap").to_str().unwrap(),
        ],
        "PERFORM SECURITY OPERATION",
    );
    // A key that is not the certificate's: refused before anything is sent.
    c.fails(
        &[
            "--scp",
            "11a",
            "--scp11-kvn",
            "3",
            "--oce-key",
            "oce2",
            "--oce-cert",
            &oce,
            "--sd-trust",
            &ca,
            "list",
        ],
        "not the key of the last certificate",
    );
    // 11a without OCE key/certificate; 11b with them.
    c.fails(
        &[
            "--scp",
            "11a",
            "--scp11-kvn",
            "3",
            "--sd-trust",
            &ca,
            "list",
        ],
        "--oce-key",
    );
    c.fails(
        &[
            "--scp",
            "11b",
            "--sd-trust-any",
            "--oce-key",
            "oce",
            "--oce-cert",
            &oce,
            "list",
        ],
        "11b",
    );
    // No key at that KVN.
    c.fails(
        &[
            "--scp",
            "11a",
            "--scp11-kvn",
            "9",
            "--oce-key",
            "oce",
            "--oce-cert",
            &oce,
            "--sd-trust",
            &ca,
            "list",
        ],
        "BF21",
    );
    assert_eq!(c.registry(), before);
}

/// The OCE key and the CA live in SoftHSM2; SCP11a runs with the key agreement in the token.
#[test]
fn scp11a_with_the_oce_key_in_softhsm2() {
    if !softhsm::available() {
        return;
    }
    let c = Card::new();
    let conf = softhsm::init_token(&c.dir, "cw-oce");
    let hsm = format!("pkcs11:{SOFTHSM_MODULE}?token=cw-oce&pin-env=CW_TEST_OCE_PIN");
    let envs = [
        (
            "SOFTHSM2_CONF".to_string(),
            conf.to_string_lossy().into_owned(),
        ),
        ("CW_TEST_OCE_PIN".to_string(), HSM_PIN.to_string()),
    ];
    let run_ok = |args: &[&str]| {
        let r = run_env(args, &envs, "");
        assert!(
            r.ok,
            "cardwright {}: {}\n{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    };
    let ca = c.p("hsm-ca.pem");
    run_ok(&[
        "card",
        "--sim",
        &c.state,
        "--keystore",
        &hsm,
        "scp11",
        "setup",
        "--ca",
        "ca",
        "--variant",
        "11a",
        "--kvn",
        "5",
        "--ca-cert-out",
        &ca,
    ]);
    let oce = c.p("hsm-oce.pem");
    run_ok(&[
        "keys",
        "--keystore",
        &hsm,
        "create-oce-key",
        "--label",
        "oce",
        "--ca",
        "ca",
        "--cert-out",
        &oce,
    ]);
    let key = format!("{hsm}&label=oce");
    let out = run_ok(&[
        "card",
        "--sim",
        &c.state,
        "--scp",
        "11a",
        "--scp11-kvn",
        "5",
        "--oce-key",
        &key,
        "--oce-cert",
        &oce,
        "--sd-trust",
        &ca,
        "list",
    ]);
    assert!(out.contains("A000000151000000"), "{out}");
}

fn pem_file_der(path: &str) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    pem_rfc7468::decode_vec(&text).unwrap().1
}

/// `scp11 setup` and `keys create-oce-key|ca-cert` issue X.509 by default: the card stores an
/// X.509 SD certificate that `--scp 11a` then verifies, the OCE certificate is X.509 with
/// keyUsage keyAgreement, and `openssl verify` accepts both chains. `--cert-format gp` still
/// issues GP `7F21` certificates that work the same way.
#[test]
fn setup_issues_x509_by_default_and_gp_on_request() {
    let c = Card::new();
    let (ca, oce) = c.setup("11a", "3", "ca", "oce");
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----\n"));
    let ca_cert = gp::cert::Certificate::parse(&pem_file_der(&ca)).unwrap();
    let oce_cert = gp::cert::Certificate::parse(&pem_file_der(&oce)).unwrap();
    assert!(matches!(ca_cert, gp::cert::Certificate::X509(_)));
    assert!(matches!(oce_cert, gp::cert::Certificate::X509(_)));
    assert!(oce_cert.allows_key_agreement());
    assert!(ca_cert.verify_signature(ca_cert.public_key()));
    assert!(oce_cert.verify_signature(ca_cert.public_key()));
    // The chain the card stored (BF21) is X.509 and chains to the CA.
    let chain = c.p("sd");
    let out = c.ok(&[
        "scp11", "certs", "--kid", "0x11", "--kvn", "3", "--out", &chain,
    ]);
    assert!(
        out.contains("1 certificate(s)") && out.contains("[0] X.509"),
        "{out}"
    );
    let sd = format!("{chain}.0");
    let sd_cert = gp::cert::Certificate::parse(&pem_file_der(&sd)).unwrap();
    assert!(matches!(sd_cert, gp::cert::Certificate::X509(_)));
    assert!(sd_cert.allows_key_agreement());
    assert!(sd_cert.verify_signature(ca_cert.public_key()));
    if on_path("openssl") {
        for leaf in [&sd, &oce] {
            let out = Command::new("openssl")
                .args(["verify", "-CAfile", &ca, leaf])
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl verify {leaf}: {out:?}");
        }
    }
    // SCP11a over that chain.
    let out = c.ok(&[
        "--scp",
        "11a",
        "--scp11-kvn",
        "3",
        "--oce-key",
        "oce",
        "--oce-cert",
        &oce,
        "--sd-trust",
        &ca,
        "info",
    ]);
    assert!(out.contains("certificate verified"), "{out}");

    // The GP form, on request, for SCP11c at KVN 4.
    let ca_gp = c.p("ca-gp.pem");
    let out = c.ok(&[
        "scp11",
        "setup",
        "--ca",
        "ca",
        "--variant",
        "11c",
        "--kvn",
        "4",
        "--cert-format",
        "gp",
        "--ca-cert-out",
        &ca_gp,
    ]);
    assert!(out.contains("stored its certificate (GP 7F21"), "{out}");
    assert!(std::fs::read_to_string(&ca_gp)
        .unwrap()
        .starts_with("-----BEGIN GP CERTIFICATE-----\n"));
    let oce_gp = c.p("oce-gp.pem");
    let out = ok(&[
        "keys",
        "--keystore",
        &c.keystore,
        "create-oce-key",
        "--label",
        "oce-gp",
        "--ca",
        "ca",
        "--cert-out",
        &oce_gp,
        "--cert-format",
        "gp",
    ]);
    assert!(out.contains("wrote its certificate (GP 7F21"), "{out}");
    let out = c.ok(&["scp11", "certs", "--kid", "0x15", "--kvn", "4"]);
    assert!(out.contains("[0] GP 7F21"), "{out}");
    c.ok(&[
        "--scp",
        "11c",
        "--scp11-kvn",
        "4",
        "--oce-key",
        "oce-gp",
        "--oce-cert",
        &oce_gp,
        "--sd-trust",
        &ca_gp,
        "list",
    ]);
    // A P-384 OCE key gets an X.509 certificate too (key agreement, signed by the P-256 CA).
    let oce384 = c.p("oce384.pem");
    let out = ok(&[
        "keys",
        "--keystore",
        &c.keystore,
        "create-oce-key",
        "--label",
        "oce384",
        "--curve",
        "p384",
        "--ca",
        "ca",
        "--cert-out",
        &oce384,
    ]);
    assert!(out.contains("wrote its certificate (X.509"), "{out}");
    let cert384 = gp::cert::Certificate::parse(&pem_file_der(&oce384)).unwrap();
    assert_eq!(cert384.public_key().curve(), scp::scp11::Curve::P384);
    assert!(cert384.allows_key_agreement());
    assert!(cert384.verify_signature(ca_cert.public_key()));
    // `keys ca-cert` in both forms; the X.509 one is the same CA (name and key) as setup's.
    let x509 = c.p("ca-again.pem");
    ok(&[
        "keys",
        "--keystore",
        &c.keystore,
        "ca-cert",
        "--ca",
        "ca",
        "--out",
        &x509,
    ]);
    let again = gp::cert::Certificate::parse(&pem_file_der(&x509)).unwrap();
    assert!(matches!(again, gp::cert::Certificate::X509(_)));
    assert_eq!(again.public_key(), ca_cert.public_key());
    let gp_pem = c.p("ca-again-gp.pem");
    ok(&[
        "keys",
        "--keystore",
        &c.keystore,
        "ca-cert",
        "--ca",
        "ca",
        "--out",
        &gp_pem,
        "--cert-format",
        "gp",
    ]);
    assert!(matches!(
        gp::cert::Certificate::parse(&pem_file_der(&gp_pem)).unwrap(),
        gp::cert::Certificate::Gp(_)
    ));
    // An unknown form is a usage error that names the choices.
    let r = run(&[
        "keys",
        "--keystore",
        &c.keystore,
        "ca-cert",
        "--ca",
        "ca",
        "--out",
        &gp_pem,
        "--cert-format",
        "der",
    ]);
    assert!(
        !r.ok && r.stderr.contains("x509") && r.stderr.contains("gp"),
        "{}",
        r.stderr
    );
}
