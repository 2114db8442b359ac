//! Issue #10 end to end through the real PC/SC stack (pcscd + vsmartcard-vpcd + `cardwright
//! sim run --vpcd`): the card issuer's `serve --role ci --issuance` (SQLite, software key
//! store, HTTPS with client certificates) with its desk `agent --server https://… --server-ca`
//! (wss), the application provider's `serve --role ap` (PostgreSQL with
//! `CARDWRIGHT_PG_TESTS=1`, a SoftHSM2 token) with its terminal `agent`, both agents lending
//! reader "Virtual PCD 00 00".
//!
//! The CI writes the card through its desk; the AP asks for an SSD (flow 1) through its
//! terminal: the CI's wrapped APDUs pass through the AP platform and terminal, the initial
//! keys reach the AP's token wrapped, the AP replaces them inside SCP11a. Then independent
//! `cardwright card` processes over PC/SC: the AP's keys (from its token, `--key-set`) open
//! the SSD; the CI's initial keys, copied from the CI's key store file before it deleted them
//! (a CI that cheats), are refused by the card before EXTERNAL AUTHENTICATE; the CI's base
//! key still opens the ISD, which lists the SSD.
//!
//! Runs when `CARDWRIGHT_PCSC_TESTS=1` (scripts/test.sh).

mod common;
mod pay_support;
mod ssd_support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pcsc::{self, READER};
use common::softhsm;
use pay_support::start;
use ssd_support::{
    cardwright, get_tls, register_bank1, request_once_connected, spawn, start_ci, write, CiServe,
    MASTER,
};

const CARD: &str = "1000000042";
const AID: &str = "A000000151BA0142";
const BASE: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";
const OPERATOR: &str = "operator-token-0123456789";

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Copies the CI's software key store file whenever it holds an SSD key set, until
/// stopped: what a CI that keeps the initial keys despite deleting them would have.
fn keep_copies(file: std::path::PathBuf, copy: std::path::PathBuf, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let holds_a_set = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["key_sets"].as_array().map(|a| !a.is_empty()))
                .unwrap_or(false);
            if holds_a_set {
                let _ = std::fs::write(&copy, &text);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn ssd_hand_over_through_pcscd_two_platforms_and_their_terminals() {
    if !pcsc::enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ci_keys_file = dir.join("ci-keys.json");
    let db = format!("sqlite:{}", dir.join("ci.db").display());
    let keys = format!("file:{}", ci_keys_file.display());
    let ci_env = [
        ("CARDWRIGHT_DB", db.as_str()),
        ("CARDWRIGHT_KEYSTORE", keys.as_str()),
    ];
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let (success, out, err) = cardwright(dir, args, envs);
        assert!(success, "cardwright {}: {err}", args.join(" "));
        out
    };

    // The CI: its base key (two components), tenant and category.
    let mut import = Command::new(ssd_support::bin())
        .args(["keys", "import-base", "--category", "gold"])
        .current_dir(dir)
        .env("CARDWRIGHT_MASTER_KEY", MASTER)
        .env("CARDWRIGHT_KEYSTORE", &keys)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        import
            .stdin
            .take()
            .unwrap()
            .write_all(common::components_of(BASE).as_bytes())
            .unwrap();
    }
    assert!(import.wait().unwrap().success(), "keys import-base");
    run(
        &[
            "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
        ],
        &ci_env,
    );
    run(
        &["category", "create", "--id", "gold", "--tenant", "issuer"],
        &ci_env,
    );

    // The card in pcscd's reader.
    run(&["sim", "create", "--state", "card.json", "--no-piv"], &[]);
    let _sim = pcsc::start_sim_in_reader(dir.join("card.json").to_str().unwrap());

    // The CI platform over HTTPS, its desk agent over wss.
    let operators = format!("alice={OPERATOR}");
    let CiServe {
        service: _ci,
        base: ci_base,
        server_ca,
        bank1,
        bank1_client,
    } = start_ci(
        dir,
        &db,
        &keys,
        &["--issuance"],
        &[
            ("CARDWRIGHT_OPERATOR_TOKENS", operators.as_str()),
            (
                "CARDWRIGHT_TERMINAL_TOKENS",
                "ci-desk=ci-desk-token-0123456789",
            ),
        ],
    );
    let ci_ca = write(dir, "ci-ca.pem", &server_ca.pem);
    assert!(ci_base.starts_with("https://localhost:"), "{ci_base}");
    let _ci_desk = spawn(
        dir,
        &[
            "agent",
            "--server",
            &ci_base,
            "--server-ca",
            &ci_ca,
            "--terminal",
            "ci-desk",
            "--reader",
            READER,
        ],
        &[("CARDWRIGHT_TERMINAL_TOKEN", "ci-desk-token-0123456789")],
    );
    wait("the CI desk over wss", || {
        get_tls(
            &format!("{ci_base}/api/v1/terminals"),
            &server_ca,
            None,
            Some(OPERATOR),
        )
        .is_ok_and(|(s, v)| s == 200 && v["terminals"][0]["readers"][0]["card_present"] == true)
    });
    // The CI writes the card at its desk (issuance API, per-card keys from its base key).
    let (status, body) = ssd_support::call_tls(
        &format!("{ci_base}/api/v1/cards/{CARD}/write"),
        &server_ca,
        None,
        Some(OPERATOR),
        Some(serde_json::json!({"terminal": "ci-desk", "reader": READER, "category": "gold"})),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "done", "{body}");

    // The AP platform: PostgreSQL with CARDWRIGHT_PG_TESTS=1, a SoftHSM2 token.
    assert!(softhsm::available(), "SoftHSM2 is needed (softhsm2-util)");
    let pg = std::env::var("CARDWRIGHT_PG_TESTS").as_deref() == Ok("1");
    let pg_base = std::env::var("CARDWRIGHT_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pg_schema = format!("ssd_pcsc_{}", std::process::id());
    let ap_db = if pg {
        let sep = if pg_base.contains('?') { '&' } else { '?' };
        format!("{pg_base}{sep}schema={pg_schema}")
    } else {
        eprintln!("AP on SQLite: set CARDWRIGHT_PG_TESTS=1 for PostgreSQL");
        format!("sqlite:{}", dir.join("ap.db").display())
    };
    let hsm_dir = dir.join("hsm");
    std::fs::create_dir(&hsm_dir).unwrap();
    let softhsm_conf = softhsm::init_token(&hsm_dir, "ap");
    let softhsm_conf = softhsm_conf.to_str().unwrap();
    let ap_keys = format!(
        "pkcs11:{}?token=ap&pin-env=HSM_PIN",
        softhsm::SOFTHSM_MODULE
    );
    let hsm_env = [
        ("HSM_PIN", softhsm::HSM_PIN),
        ("SOFTHSM2_CONF", softhsm_conf),
    ];
    let client_cert = write(dir, "bank1-client.pem", &bank1_client.chain_pem);
    let client_key = write(dir, "bank1-client-key.pem", &bank1_client.key_pem);
    let transport = dir.join("ap-transport.pem");
    let ap = start(
        &[
            "serve",
            "--role",
            "ap",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &ap_db,
            "--keystore",
            &ap_keys,
            "--ci",
            &ci_base,
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
            "--ci-ca",
            &ci_ca,
            "--partner-id",
            "bank1",
            "--transport-key-out",
            transport.to_str().unwrap(),
            "--scp11-ca",
            "bank1-ca",
            "--scp11-oce-key",
            "bank1-oce",
        ],
        &[
            ("CARDWRIGHT_OPERATOR_TOKENS", operators.as_str()),
            (
                "CARDWRIGHT_TERMINAL_TOKENS",
                "ap-desk=ap-desk-token-0123456789",
            ),
            ("CARDWRIGHT_MASTER_KEY", MASTER),
            hsm_env[0],
            hsm_env[1],
        ],
    );

    // The CI registers bank1 (its root, AID prefix, cards, transport key).
    register_bank1(
        dir,
        &ci_env,
        &bank1,
        &bank1_client,
        &transport,
        &ci_base,
        &server_ca,
    );

    // The AP's terminal lends the same reader.
    let _ap_desk = spawn(
        dir,
        &[
            "agent",
            "--server",
            &ap.url,
            "--terminal",
            "ap-desk",
            "--reader",
            READER,
        ],
        &[("CARDWRIGHT_TERMINAL_TOKEN", "ap-desk-token-0123456789")],
    );

    // Flow 1, with a CI that copies its key store file whenever it holds a key set.
    let stop = Arc::new(AtomicBool::new(false));
    let cheat_copy = dir.join("ci-keys-kept.json");
    let watcher = {
        let (file, copy, stop) = (ci_keys_file.clone(), cheat_copy.clone(), stop.clone());
        std::thread::spawn(move || keep_copies(file, copy, stop))
    };
    let token = [("CARDWRIGHT_TOKEN", OPERATOR)];
    let request = [
        "ssd",
        "--server",
        &ap.url,
        "request",
        "--card-number",
        CARD,
        "--aid",
        AID,
        "--model",
        "authorized",
        "--terminal",
        "ap-desk",
        "--reader",
        READER,
    ];
    let out = request_once_connected(dir, &request, &token);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(out.contains("state        handed_over"), "{out}");
    assert!(out.contains("held by AP"), "{out}");

    // Both platforms' records agree.
    let (status, body) = get_tls(
        &format!("{ci_base}/api/v1/ssds"),
        &server_ca,
        None,
        Some(OPERATOR),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let ci_record = &body["ssds"][0];
    assert_eq!(ci_record["state"], "handed_over", "{body}");
    assert_eq!(ci_record["owner"], "bank1", "{body}");
    let ap_kcv = ci_record["keys"]
        .as_array()
        .and_then(|k| {
            k.iter()
                .find(|k| k["holder"] == "AP" && k["state"] == "active")
        })
        .and_then(|k| k["kcv"].as_str())
        .unwrap_or_else(|| panic!("no active AP key version on the CI: {body}"))
        .to_string();
    assert!(out.contains(&format!("KCV {ap_kcv}")), "{out}\n{body}");

    // The CI no longer holds any SSD key set; its kept copy has the initial one.
    let out = run(&["keys", "--keystore", &keys, "key-sets"], &[]);
    assert!(out.contains("no key sets"), "{out}");
    let kept = format!("file:{}", cheat_copy.display());
    assert!(
        cheat_copy.exists(),
        "the CI's key set was never seen in its key store file"
    );
    let out = run(&["keys", "--keystore", &kept, "key-sets"], &[]);
    let initial = out.split_whitespace().next().unwrap().to_string();

    // An independent host with only the AP's keys (in the AP's token) opens the SSD.
    let out = run(&["keys", "--keystore", &ap_keys, "key-sets"], &hsm_env);
    let ap_label = out
        .lines()
        .find(|l| l.contains(&format!("KCV(ENC) {ap_kcv}")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the AP's token holds no key set with KCV {ap_kcv}: {out}"))
        .to_string();
    let card = |keystore: &str, label: &str, envs: &[(&str, &str)]| {
        cardwright(
            dir,
            &[
                "card",
                "--reader",
                READER,
                "--keystore",
                keystore,
                "--key-set",
                label,
                "--sd",
                AID,
                "list",
            ],
            envs,
        )
    };
    let (success, out, err) = card(&ap_keys, &ap_label, &hsm_env);
    assert!(success, "the AP's keys do not open the SSD: {err}");
    assert!(out.contains(AID), "{out}");

    // The CI's initial keys are refused: the card cryptogram does not verify, so the host
    // stops before EXTERNAL AUTHENTICATE (no failed authentication on the card).
    let (success, _, err) = card(&kept, &initial, &[]);
    assert!(!success, "the CI's initial keys still open the SSD");
    assert!(err.contains("cryptogram"), "{err}");
    let (success, _, err) = card(&ap_keys, &ap_label, &hsm_env);
    assert!(success, "the AP's keys after the refusal: {err}");

    // The CI still manages the ISD, and sees the SSD in its registry.
    let (success, out, err) = cardwright(
        dir,
        &[
            "card", "--reader", READER, "--key", BASE, "--kdf", "kdf3", "list",
        ],
        &[],
    );
    assert!(success, "the CI's base key does not open the ISD: {err}");
    assert!(out.contains(AID), "{out}");

    drop(ap);
    if pg {
        let mut c = postgres::Client::connect(&pg_base, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {pg_schema} CASCADE"))
            .unwrap();
    }
}
