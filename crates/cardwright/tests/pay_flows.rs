//! Enrolment then payment end to end with the real binaries: `cardwright serve`, the virtual
//! card through `cardwright pay` (CLI) and through `cardwright agent` (as the check-out
//! page uses it), RSA-2048 and P-256.

mod pay_support;

use pay_support::*;
use serde_json::json;

fn cli_enrol_then_pay(alg: &str) {
    let server = server(&[]);
    let card = card_file();
    let out = ok(
        &[
            "pay",
            "enrol",
            "--server",
            &server.url,
            "--sim",
            card.sim(),
            "--name",
            "Alice Example",
            "--alg",
            alg,
        ],
        "123456",
    );
    assert!(out.contains("enrolled: CN=Alice Example"), "{out}");
    let serial = out
        .lines()
        .find_map(|l| l.strip_prefix("certificate serial: "))
        .expect("serial line")
        .to_string();
    let key = if alg == "p256" {
        "ECC P-256"
    } else {
        "RSA-2048"
    };
    assert!(out.contains(&format!("key: {key} in slot 9C")), "{out}");

    let out = ok(
        &[
            "pay",
            "sign",
            "--server",
            &server.url,
            "--sim",
            card.sim(),
            "--amount",
            "12.34",
            "--currency",
            "EUR",
            "--payee",
            "SHOP",
            "--order",
            "ORDER-42",
            "--json",
        ],
        "123456",
    );
    let done: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(done["status"], "authorised");
    assert_eq!(done["amount"], "12.34");
    let a = &done["authorisation"];
    assert_eq!(
        a["request"],
        json!({"amount_minor": 1234, "currency": "EUR", "payee": "SHOP", "order_id": "ORDER-42"})
    );
    assert_eq!(a["certificate_serial"], serial.as_str());
    assert_eq!(a["subject"], "CN=Alice Example");
    // The server recorded it.
    let (state, rejections) = payment_record(&server.url, a["challenge_id"].as_str().unwrap());
    assert_eq!(state, "authorised");
    assert!(rejections.is_empty());
    let status = get(&format!("{}/api/v1/certificates/{serial}", server.url), &[]);
    assert_eq!(status.json["status"], "good");
}

#[test]
fn cli_enrol_then_pay_p256() {
    cli_enrol_then_pay("p256");
}

#[test]
fn cli_enrol_then_pay_rsa2048() {
    cli_enrol_then_pay("rsa2048");
}

fn agent_enrol_then_pay(alg: &str) {
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let card = card_file();
    let agent = agent(&card.path, &origin);
    let server = server(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--agent-url",
        &agent.url,
    ]);
    assert_eq!(server.url, origin);

    let status = get(&format!("{}/v1/status", agent.url), &[("Origin", &origin)]);
    assert_eq!(status.status, 200);
    assert_eq!(
        status.header("access-control-allow-origin"),
        Some(origin.as_str())
    );
    assert_eq!(status.json["card"]["present"], true);
    assert_eq!(status.json["card"]["certificate"], serde_json::Value::Null);
    assert_eq!(status.json["card"]["pin_retries_left"], 3);

    let cert = page_enrol(
        &server.url,
        &agent.url,
        &origin,
        "Bob Example",
        alg,
        "123456",
    );
    let status = get(&format!("{}/v1/status", agent.url), &[("Origin", &origin)]);
    assert_eq!(
        status.json["card"]["certificate"]["subject"],
        "CN=Bob Example"
    );
    assert_eq!(status.json["card"]["certificate"]["serial"], cert["serial"]);
    assert_eq!(status.json["card"]["certificate"]["algorithm"], alg);

    let (created, signed) = page_sign(
        &server.url,
        &agent.url,
        &origin,
        "7.50",
        "ORDER-9",
        "123456",
    );
    assert_eq!(signed.status, 200, "{:?}", signed.json);
    assert_eq!(signed.json["payment"]["challenge_id"], created["id"]);
    assert_eq!(signed.json["payment"]["amount"], "7.50");
    assert_eq!(signed.json["payment"]["payee"], "SHOP");
    assert_eq!(signed.json["certificate"], cert["certificate"]);
    let done = authorise(&server.url, &created, &created["request"], &signed.json);
    assert_eq!(done.status, 200, "{:?}", done.json);
    assert_eq!(done.json["authorisation"]["subject"], "CN=Bob Example");
    let (state, _) = payment_record(&server.url, created["id"].as_str().unwrap());
    assert_eq!(state, "authorised");
    // The page is served with the agent in its connect-src.
    let page = get(&format!("{}/pay", server.url), &[]);
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains(&agent.url));
}

#[test]
fn agent_enrol_then_pay_p256() {
    agent_enrol_then_pay("p256");
}

#[test]
fn agent_enrol_then_pay_rsa2048() {
    agent_enrol_then_pay("rsa2048");
}

#[test]
fn serve_keeps_its_ca_and_state_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("pay.db").display());
    let ca_dir = dir.path().join("ca");
    let card = card_file();
    let serial;
    {
        let server = server(&["--db", &db, "--ca-dir", ca_dir.to_str().unwrap()]);
        let out = ok(
            &[
                "pay",
                "enrol",
                "--server",
                &server.url,
                "--sim",
                card.sim(),
                "--name",
                "Carol",
            ],
            "123456",
        );
        serial = out
            .lines()
            .find_map(|l| l.strip_prefix("certificate serial: "))
            .unwrap()
            .to_string();
        let revoke = post(
            &format!("{}/api/v1/certificates/{serial}/revoke", server.url),
            &json!({"reason": "superseded"}),
            &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        );
        assert_eq!(revoke.status, 200, "{:?}", revoke.json);
    }
    // After a restart: same CA, the revocation is still known.
    let server = server(&["--db", &db, "--ca-dir", ca_dir.to_str().unwrap()]);
    let status = get(&format!("{}/api/v1/certificates/{serial}", server.url), &[]);
    assert_eq!(status.json["status"], "revoked");
    fails(
        &[
            "pay",
            "sign",
            "--server",
            &server.url,
            "--sim",
            card.sim(),
            "--amount",
            "1",
            "--currency",
            "EUR",
            "--payee",
            "S",
            "--order",
            "O",
        ],
        "123456",
        "(revoked)",
    );
}

/// `serve --db postgres://…` (the tsm store): enrol, pay, and the authorisation is there
/// after a restart. Runs when PostgreSQL is reachable (`CARDWRIGHT_PG_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test`); with `CARDWRIGHT_PG_TESTS=1` it must be.
#[test]
fn serve_on_postgresql() {
    let url = std::env::var("CARDWRIGHT_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let required = std::env::var("CARDWRIGHT_PG_TESTS").is_ok_and(|v| v == "1");
    let mut pg = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !required,
                "CARDWRIGHT_PG_TESTS=1 but PostgreSQL at {url} is not reachable: {e}"
            );
            eprintln!("skipped: PostgreSQL at {url} not reachable ({e})");
            return;
        }
    };
    let schema = format!("pay_{}", std::process::id());
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
    ))
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = format!("{url}{sep}schema={schema}");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let card = card_file();
    let id;
    {
        let server = server(&["--db", &db, "--ca-dir", ca_dir.to_str().unwrap()]);
        ok(
            &[
                "pay",
                "enrol",
                "--server",
                &server.url,
                "--sim",
                card.sim(),
                "--name",
                "Pat",
                "--alg",
                "rsa2048",
            ],
            "123456",
        );
        let out = ok(
            &[
                "pay",
                "sign",
                "--server",
                &server.url,
                "--sim",
                card.sim(),
                "--amount",
                "10",
                "--currency",
                "EUR",
                "--payee",
                "S",
                "--order",
                "PG-1",
                "--json",
            ],
            "123456",
        );
        let done: serde_json::Value = serde_json::from_str(&out).unwrap();
        id = done["authorisation"]["challenge_id"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let server = server(&["--db", &db, "--ca-dir", ca_dir.to_str().unwrap()]);
    let (state, _) = payment_record(&server.url, &id);
    assert_eq!(state, "authorised");
    drop(server);
    pg.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .unwrap();
}
