//! Issue #10 flows 3 and 4 through the real binary: `serve --role ap` renews at the next
//! contact (on by default; `--renew-scan-every 1` for a card that stays in its reader).
//! The AP's key policy makes a new key version due 2 s after it is made; the card stays in
//! the AP terminal's reader (`agent --sim`) and, with no request, the AP's keys are
//! renewed, and the CI's record follows.

mod pay_support;
mod ssd_support;

use std::time::{Duration, Instant};

use pay_support::start;
use ssd_support::*;

#[test]
fn serve_role_ap_renews_a_due_key_set_while_the_card_is_in_its_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = format!("sqlite:{}", dir.join("ci.db").display());
    let keys = format!("file:{}", dir.join("ci-keys.json").display());
    let ci_env = [
        ("CARDWRIGHT_DB", db.as_str()),
        ("CARDWRIGHT_KEYSTORE", keys.as_str()),
    ];
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let (success, out, err) = cardwright(dir, args, envs);
        assert!(success, "cardwright {}: {err}", args.join(" "));
        out
    };
    ci_with_written_card(dir, &ci_env);
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
        &[],
        &[("CARDWRIGHT_OPERATOR_TOKENS", OPERATOR)],
    );

    // The AP (its policy, set below: a key version falls due 2 s after it is made).
    let ap_db = format!("sqlite:{}", dir.join("ap.db").display());
    let ap_keys = format!("file:{}", dir.join("ap-keys.json").display());
    let client_cert = write(dir, "bank1-client.pem", &bank1_client.chain_pem);
    let client_key = write(dir, "bank1-client-key.pem", &bank1_client.key_pem);
    let ci_ca = write(dir, "ci-ca.pem", &server_ca.pem);
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
            "--renew-scan-every",
            "1",
        ],
        &[
            ("CARDWRIGHT_OPERATOR_TOKENS", OPERATOR),
            ("CARDWRIGHT_TERMINAL_TOKENS", "desk=desk-token-0123456789"),
            ("CARDWRIGHT_MASTER_KEY", MASTER),
        ],
    );
    run(
        &[
            "keys",
            "policy",
            "--ssd-lifetime",
            "1h",
            "--renew-before",
            "3598s",
        ],
        &[("CARDWRIGHT_DB", ap_db.as_str())],
    );
    register_bank1(
        dir,
        &ci_env,
        &bank1,
        &bank1_client,
        &transport,
        &ci_base,
        &server_ca,
    );

    let _agent = spawn(
        dir,
        &[
            "agent",
            "--server",
            &ap.url,
            "--terminal",
            "desk",
            "--sim",
            "card.json",
        ],
        &[("CARDWRIGHT_TERMINAL_TOKEN", "desk-token-0123456789")],
    );
    let token = [("CARDWRIGHT_TOKEN", "operator-token-0123456789")];
    let request = [
        "ssd",
        "--server",
        &ap.url,
        "request",
        "--card-number",
        "1000000001",
        "--aid",
        "A000000151BA0101",
        "--model",
        "authorized",
        "--terminal",
        "desk",
        "--reader",
        "Virtual card",
    ];
    let out = request_once_connected(dir, &request, &token);
    assert!(out.contains("state        handed_over"), "{out}");
    assert!(!out.contains("expiry at"), "{out}");

    // No request: the card stays in the reader and its key set falls due.
    let status = [
        "ssd",
        "--server",
        &ap.url,
        "status",
        "--card-number",
        "1000000001",
        "--aid",
        "A000000151BA0101",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = run(&status, &token);
        if out.contains("expiry at") {
            break out;
        }
        assert!(Instant::now() < deadline, "not renewed at contact: {out}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(out.contains("state        handed_over"), "{out}");
    // The CI recorded the renewal the AP reported.
    let (code, body) = get_tls(
        &format!("{ci_base}/api/v1/ssds"),
        &server_ca,
        None,
        Some("operator-token-0123456789"),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let renewals = body["ssds"][0]["renewals"].as_array().unwrap();
    assert!(renewals.iter().any(|r| r["cause"] == "expiry"), "{body}");
}
