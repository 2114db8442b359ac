//! The outlet end to end (issue #11), offline, then synced: a SoftHSM2 token holding the
//! card category's base key; a virtual card the issuer's platform wrote with keys derived
//! from it, in pcscd's vpcd reader (`sim run --vpcd`); `package build` of the registration
//! applet with its recipe (a key pair on the card, an AES-128 key from the module);
//! `outlet init` on the token, `outlet add`; `outlet serve --reader 'Virtual PCD 00 00'`,
//! with no platform anywhere. Headless Chromium (Playwright, `tests/browser/outlet.mjs`)
//! opens the page, sees the card, clicks the application, waits for "installed"
//! (screenshot `target/test-artifacts/outlet-installed.png`), clicks again and gets "already
//! on this card" (`outlet-already-present.png`); the page refuses a request without its
//! CSRF token and one from a page of another origin.
//!
//! Then, independently of the module: `cardwright card --key BASE --kdf kdf3 list` over
//! PC/SC lists the application; the applet signs a fresh challenge with the key the page's
//! certificate certifies (issued by the module's CA, read from the token) and MACs it with
//! the key the module keeps (its CMAC computed in the token).
//!
//! Offline: `outlet sync` to a platform that refuses the connection fails with a clear
//! message and keeps every record queued; with the platform up (`cardwright serve
//! --issuance` over HTTPS with an operator token) the records arrive once (read back from
//! the platform), and a second sync sends nothing.
//!
//! Runs when `CARDWRIGHT_BROWSER_TESTS=1`, `CARDWRIGHT_PCSC_TESTS=1` (pcscd + vpcd; take
//! `flock /tmp/cardwright-pcsc.lock` around the run) and SoftHSM2 is installed (required
//! with `CARDWRIGHT_HSM_TESTS=1`); scripts/test.sh sets them.

mod common;
mod outlet_support;

use std::path::PathBuf;
use std::process::Command;

use common::pcsc::{self, READER};
use common::softhsm;
use outlet_support::*;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn browser_enabled() -> bool {
    if std::env::var("CARDWRIGHT_BROWSER_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set CARDWRIGHT_BROWSER_TESTS=1 to drive the outlet page in headless \
             Chromium (scripts/setup.sh installs chromium and the Node packages; scripts/test.sh sets it)"
        );
        return false;
    }
    true
}

/// A GET to the platform over HTTPS (trusting `ca`), with the operator's token.
fn platform_get(url: &str, ca: &std::path::Path) -> (u16, serde_json::Value) {
    let pem = std::fs::read(ca).unwrap();
    let roots: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build(),
        )
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(url)
        .header("Authorization", &format!("Bearer {OPERATOR}"))
        .call()
        .expect("the platform answers");
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn outlet_page_installs_offline_in_chromium_and_syncs_later() {
    if !browser_enabled() || !pcsc::enabled() || !softhsm::available() {
        return;
    }
    let root = repo_root();
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is not installed: run scripts/setup.sh (npm ci in tests/browser)"
    );
    assert!(
        PathBuf::from("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run scripts/setup.sh (apt install chromium)"
    );

    let shop = shop();
    let reg_cap = common::cap("cardwright_registration.cap");
    let package = shop.build_package(
        "transit.cwpkg",
        &[App {
            name: "reg",
            title: "Transit ID",
            cap: &reg_cap,
            extra: REGISTRATION_RECIPE,
        }],
    );
    let init = shop.outlet_init();
    assert!(init.contains(OUTLET), "{init}");
    shop.outlet_add(&package);

    // The card in pcscd's reader; the outlet's page on it. No platform exists yet.
    let _sim = pcsc::start_sim_in_reader(shop.card_state.to_str().unwrap());
    let (_serve, url) = shop.serve_outlet(READER);

    let artifacts = root.join("target/test-artifacts");
    let installed_png = artifacts.join("outlet-installed.png");
    let error_png = artifacts.join("outlet-already-present.png");
    for p in [&installed_png, &error_png] {
        let _ = std::fs::remove_file(p);
    }
    let out = Command::new("node")
        .arg(root.join("tests/browser/outlet.mjs"))
        .current_dir(&root)
        .env("OUTLET_URL", &url)
        .env("OUTLET_APP", "reg")
        .env("SCREENSHOT", &installed_png)
        .env("SCREENSHOT_ERROR", &error_png)
        .output()
        .expect("run node (install Node.js 20+)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert!(
        out.status.success(),
        "outlet.mjs failed: {report:#}\n{stderr}"
    );
    assert_eq!(report["installed"], "installed", "{report}");
    assert!(report["card"].as_str().unwrap().contains(CARD), "{report}");
    assert!(
        report["result"]
            .as_str()
            .unwrap()
            .contains("Transit ID installed"),
        "{report}"
    );
    assert_eq!(report["again_code"], "already_present", "{report}");
    assert!(
        report["again"]
            .as_str()
            .unwrap()
            .contains("already on this card"),
        "{report}"
    );
    assert_eq!(report["no_csrf"], "403 csrf", "{report}");
    assert_eq!(report["foreign_started"], false, "{report}");
    for p in [&installed_png, &error_png] {
        assert!(p.is_file(), "no screenshot at {}", p.display());
    }
    let outcome = &report["outcome"];
    assert_eq!(outcome["card"], CARD, "{outcome}");
    let instance = outcome["instance"].as_str().unwrap().to_string();

    // An independent GP channel over PC/SC, with the keys diversified from the base key.
    let list = common::ok(&[
        "card", "--reader", READER, "--key", BASE, "--kdf", "kdf3", "list",
    ]);
    assert!(list.contains(&instance), "{instance} not listed:\n{list}");
    assert!(
        list.contains("F0435"),
        "the load file is not listed:\n{list}"
    );

    // The registration keys work.
    #[cfg(feature = "pcsc")]
    registration_keys_work(&shop, outcome);

    // Offline: the records are queued; a platform that refuses the connection changes
    // nothing.
    let records = |shop: &Shop| -> Vec<serde_json::Value> {
        let r = shop.outlet(&["records", "--json"]);
        assert!(r.ok, "{}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    };
    let queued = records(&shop);
    assert_eq!(queued.len(), 2, "{queued:#?}");
    assert_eq!(queued[0]["result"], "ok");
    assert_eq!(queued[1]["code"], "already_present");
    assert!(
        queued.iter().all(|r| r.get("synced").is_none()),
        "{queued:#?}"
    );
    let token_file = shop.path("operator-token");
    std::fs::write(&token_file, OPERATOR).unwrap();
    let (tls_ca, tls_cert, tls_key) = platform_tls(shop.dir.path());
    let down = format!("https://127.0.0.1:{}", free_port());
    let r = shop.outlet(&[
        "sync",
        "--server",
        &down,
        "--server-ca",
        tls_ca.to_str().unwrap(),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(!r.ok, "sync to nobody succeeded: {}", r.stdout);
    assert!(
        r.stderr.contains("unreachable") && r.stderr.contains(&down),
        "{}",
        r.stderr
    );
    assert_eq!(records(&shop), queued, "a failed sync changed the records");

    // The platform comes up: the records arrive once.
    let operators = format!("issuer/alice={OPERATOR}");
    let mut serve = shop.command(&[
        "serve",
        "--issuance",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        tls_cert.to_str().unwrap(),
        "--tls-key",
        tls_key.to_str().unwrap(),
    ]);
    serve.env("CARDWRIGHT_OPERATOR_TOKENS", &operators);
    let mut child = serve
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _platform = Proc(child);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let records_url = loop {
        let line = lines
            .next()
            .expect("serve printed its routes")
            .expect("serve's stdout");
        if let Some(u) = line.strip_prefix("outlet records: ") {
            break u.trim().to_string();
        }
    };
    let platform = records_url
        .strip_suffix("/api/v1/outlet/records")
        .unwrap()
        .replace("127.0.0.1", "localhost");
    let sync = || {
        shop.outlet(&[
            "sync",
            "--server",
            &platform,
            "--server-ca",
            tls_ca.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ])
    };
    let r = sync();
    assert!(r.ok, "sync: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("sent 2 records: 2 stored"),
        "{}",
        r.stdout
    );
    let (status, held) = platform_get(
        &format!("{platform}/api/v1/outlet/records/{OUTLET}"),
        &tls_ca,
    );
    assert_eq!(status, 200, "{held}");
    let held = held["records"].as_array().expect("records").clone();
    assert_eq!(held.len(), 2, "{held:#?}");
    for (h, q) in held.iter().zip(&queued) {
        let h = &h["record"];
        assert_eq!(h["seq"], q["seq"]);
        assert_eq!(h["hash"], q["hash"]);
        assert_eq!(h["card"], CARD);
        assert_eq!(h["application"], "reg");
    }
    assert!(records(&shop).iter().all(|r| r["synced"] == true));
    let r = sync();
    assert!(r.ok, "second sync: {}", r.stderr);
    assert!(r.stdout.contains("nothing to send"), "{}", r.stdout);
    let (_, again) = platform_get(
        &format!("{platform}/api/v1/outlet/records/{OUTLET}"),
        &tls_ca,
    );
    assert_eq!(again["records"].as_array().unwrap().len(), 2, "{again}");
    let v = shop.outlet(&["records", "--verify"]);
    assert!(v.ok && v.stdout.contains("ok"), "{}{}", v.stdout, v.stderr);
}

/// Over PC/SC, without the module: SELECT the instance, its certificate is the page's,
/// issued by the module's CA (read from the token); SIGN over a fresh challenge verifies
/// under it; MAC equals the CMAC the module's key computes in the token.
#[cfg(feature = "pcsc")]
fn registration_keys_work(shop: &Shop, outcome: &serde_json::Value) {
    use spki::der::Encode;
    use transport::CardChannel;

    let reg = outcome["registration"].as_array().expect("registration");
    let sign = reg.iter().find(|k| k["id"] == "sign").expect("sign key");
    let mac = reg.iter().find(|k| k["id"] == "mac").expect("mac key");
    assert_eq!(sign["kind"], "ec-p256", "{sign}");
    assert_eq!(mac["kind"], "aes-128", "{mac}");
    let pem = sign["certificate_pem"].as_str().expect("certificate");
    let cert_der = server::ca_files::pem_decode(pem, "CERTIFICATE").unwrap();
    let cert = pki::Certificate::from_der(&cert_der).unwrap();
    assert!(
        sign["subject"].as_str().unwrap().contains("Transit ID"),
        "{sign}"
    );

    // The module's CA and registration key, from the token (this process opens it too).
    for (k, v) in &shop.vars {
        std::env::set_var(k, v);
    }
    let objects = kms::open_data_objects(&shop.module).unwrap();
    let ca_der = objects
        .get(outlet::labels::CA_CERTIFICATE)
        .unwrap()
        .expect("the module's CA certificate");
    let ca = pki::Certificate::from_der(&ca_der).unwrap();
    assert_eq!(sign["issuer"], ca.subject());
    let tbs = cert.x509().tbs_certificate().to_der().unwrap();
    ca.public_key()
        .unwrap()
        .verify(&tbs, cert.x509().signature().raw_bytes())
        .expect("the registration certificate is the module CA's");

    let mut card = transport::pcsc::PcscChannel::connect(Some(READER)).unwrap();
    // One command, with GET RESPONSE on 61xx; must succeed.
    let mut send = |hex: String| {
        let cmd = apdu::Command::parse(&apdu::parse_hex(&hex).unwrap()).unwrap();
        let r = apdu::exchange(&cmd, |b| card.transmit_raw(b)).unwrap();
        assert_eq!(r.sw, apdu::StatusWord::SUCCESS, "{hex} answered {}", r.sw);
        r.data
    };
    let instance = outcome["instance"].as_str().unwrap();
    send(format!("00A40400{:02X}{instance}00", instance.len() / 2));
    assert_eq!(send("80CA010100".into()), cert_der, "GET CERTIFICATE");
    let mut challenge = [0u8; 32];
    getrandom::getrandom(&mut challenge).unwrap();
    let signature = send(format!("802A000120{}00", apdu::hex(&challenge)));
    cert.public_key()
        .unwrap()
        .verify(&challenge, &signature)
        .expect("the applet's signature verifies under the module's certificate");
    let card_mac = send(format!("804C000220{}00", apdu::hex(&challenge)));
    let secrets = kms::open_secret_keys(&shop.module).unwrap();
    let label = outlet::labels::registration_key(CARD, "reg", 2);
    assert_eq!(
        card_mac,
        secrets.cmac(&label, &challenge).unwrap().to_vec(),
        "the applet's MAC is not the module key's"
    );
    let info = secrets
        .info(&label)
        .unwrap()
        .expect("the module keeps the key");
    assert_eq!(
        apdu::hex(&info.kcv),
        mac["kcv"].as_str().unwrap().to_uppercase()
    );
}
