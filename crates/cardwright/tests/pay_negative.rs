//! Every refusal of the payment flow, through the real binaries: wrong PIN (the counter
//! decrements and the PIN blocks at zero), tampered amount, replayed signature, revoked
//! certificate, expired challenge, foreign certificate, foreign or missing origin at the
//! agent. Each refusal has a clear reason, and the server records it.

mod pay_support;

use pay_support::*;
use serde_json::json;

/// A server, an agent for a fresh virtual card allowed for the server's origin, and the
/// card enrolled (P-256).
struct Setup {
    server: Service,
    agent: Service,
    card: CardFile,
    origin: String,
    cert: serde_json::Value,
}

fn setup(server_args: &[&str]) -> Setup {
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let card = card_file();
    let agent = agent(&card.path, &origin);
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--listen",
        listen.as_str(),
        "--agent-url",
        agent.url.as_str(),
    ];
    args.extend_from_slice(server_args);
    let server = server(&args);
    let cert = page_enrol(&server.url, &agent.url, &origin, "Dana", "p256", "123456");
    Setup {
        server,
        agent,
        card,
        origin,
        cert,
    }
}

#[test]
fn wrong_pin_decrements_the_counter_and_blocks_at_zero() {
    let s = setup(&[]);
    let status = |s: &Setup| {
        get(
            &format!("{}/v1/status", s.agent.url),
            &[("Origin", &s.origin)],
        )
        .json
    };
    assert_eq!(status(&s)["card"]["pin_retries_left"], 3);
    for left in [2, 1] {
        let (created, signed) = page_sign(
            &s.server.url,
            &s.agent.url,
            &s.origin,
            "1.00",
            "O-PIN",
            "999999",
        );
        assert_eq!(signed.status, 401, "{:?}", signed.json);
        assert_eq!(signed.error(), "wrong_pin");
        assert_eq!(signed.json["pin_retries_left"], left);
        assert!(signed.json["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("wrong PIN: {left} tr")));
        assert_eq!(status(&s)["card"]["pin_retries_left"], left);
        // Nothing was signed: the challenge is still pending.
        assert_eq!(
            payment_record(&s.server.url, created["id"].as_str().unwrap()).0,
            "pending"
        );
    }
    // The same through the CLI: the last try blocks the PIN.
    fails(
        &[
            "pay",
            "sign",
            "--server",
            &s.server.url,
            "--sim",
            s.card.sim(),
            "--amount",
            "1",
            "--currency",
            "EUR",
            "--payee",
            "S",
            "--order",
            "O",
        ],
        "999999",
        "the PIN is blocked (6983)",
    );
    let st = status(&s);
    assert_eq!(st["card"]["pin_blocked"], true);
    assert_eq!(st["card"]["pin_retries_left"], 0);
    // Blocked: even the right PIN is refused.
    let (_, signed) = page_sign(
        &s.server.url,
        &s.agent.url,
        &s.origin,
        "1.00",
        "O-PIN",
        "123456",
    );
    assert_eq!((signed.status, signed.error()), (423, "pin_blocked"));
    fails(
        &[
            "pay",
            "sign",
            "--server",
            &s.server.url,
            "--sim",
            s.card.sim(),
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
        "the PIN is blocked",
    );
    // A malformed PIN costs no try and is refused before the card is asked.
    let (_, signed) = page_sign(&s.server.url, &s.agent.url, &s.origin, "1.00", "O", "12");
    assert_eq!((signed.status, signed.error()), (400, "invalid_pin"));
}

#[test]
fn tampered_amount_is_refused_and_recorded() {
    let s = setup(&[]);
    let (created, signed) = page_sign(
        &s.server.url,
        &s.agent.url,
        &s.origin,
        "12.34",
        "O-T",
        "123456",
    );
    assert_eq!(signed.status, 200);
    let mut changed = created["request"].clone();
    changed["amount_minor"] = json!(1);
    let r = authorise(&s.server.url, &created, &changed, &signed.json);
    assert_eq!((r.status, r.error()), (422, "tampered"));
    assert_eq!(
        r.json["reason"],
        "payment request changed after issue: amount differs"
    );
    let (state, codes) = payment_record(&s.server.url, created["id"].as_str().unwrap());
    assert_eq!(
        (state.as_str(), codes),
        ("pending", vec!["tampered".to_string()])
    );
}

#[test]
fn replayed_signature_is_refused_and_recorded() {
    let s = setup(&[]);
    let (created, signed) = page_sign(
        &s.server.url,
        &s.agent.url,
        &s.origin,
        "3.00",
        "O-R",
        "123456",
    );
    assert_eq!(
        authorise(&s.server.url, &created, &created["request"], &signed.json).status,
        200
    );
    let r = authorise(&s.server.url, &created, &created["request"], &signed.json);
    assert_eq!((r.status, r.error()), (409, "replayed"));
    assert_eq!(r.json["reason"], "payment challenge already used (replay)");
    let (state, codes) = payment_record(&s.server.url, created["id"].as_str().unwrap());
    assert_eq!(
        (state.as_str(), codes),
        ("authorised", vec!["replayed".to_string()])
    );
}

#[test]
fn revoked_certificate_is_refused() {
    let s = setup(&[]);
    let serial = s.cert["serial"].as_str().unwrap();
    let out = cardwright(
        &[
            "pay",
            "revoke",
            "--server",
            &s.server.url,
            "--serial",
            serial,
            "--reason",
            "keyCompromise",
        ],
        "",
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("revoked: {serial} (keyCompromise)")),
        "{}",
        out.stdout
    );
    let line = fails(
        &[
            "pay",
            "sign",
            "--server",
            &s.server.url,
            "--sim",
            s.card.sim(),
            "--amount",
            "2",
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
    assert!(
        line.contains("payment rejected: certificate revoked at"),
        "{line}"
    );
    assert!(line.contains("keyCompromise"), "{line}");
    // The CRL lists it.
    let crl = ureq::get(&format!("{}/api/v1/crl", s.server.url))
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap();
    let raw = apdu_hex(&crl);
    assert!(raw.contains(&serial.to_uppercase()), "CRL lacks the serial");
    // Without the admin token: refused.
    let r = post(
        &format!("{}/api/v1/certificates/{serial}/revoke", s.server.url),
        &json!({}),
        &[],
    );
    assert_eq!((r.status, r.error()), (401, "unauthorized"));
}

fn apdu_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[test]
fn expired_challenge_is_refused() {
    // A TTL long enough for the page to sign on a loaded 2-core CI machine (1 s was not:
    // signing took longer and the challenge expired before the first, valid, answer).
    let s = setup(&["--payment-ttl", "4"]);
    let (created, signed) = page_sign(
        &s.server.url,
        &s.agent.url,
        &s.origin,
        "4.00",
        "O-E",
        "123456",
    );
    assert_eq!(signed.status, 200, "{:?}", signed.json);
    std::thread::sleep(std::time::Duration::from_millis(4200));
    let r = authorise(&s.server.url, &created, &created["request"], &signed.json);
    assert_eq!((r.status, r.error()), (410, "expired"));
    assert!(r.json["reason"]
        .as_str()
        .unwrap()
        .starts_with("payment challenge expired at"));
    let (state, codes) = payment_record(&s.server.url, created["id"].as_str().unwrap());
    assert_eq!(
        (state.as_str(), codes),
        ("expired", vec!["expired".to_string()])
    );
    // The agent refuses to sign an expired challenge at all.
    let created = post(
        &format!("{}/api/v1/payments", s.server.url),
        &json!({"amount": "1", "currency": "EUR", "payee": "S", "order_id": "O"}),
        &[],
    );
    std::thread::sleep(std::time::Duration::from_millis(4200));
    let signed = post(
        &format!("{}/v1/sign", s.agent.url),
        &json!({"canonical": created.json["canonical"], "pin": "123456"}),
        &[("Origin", &s.origin)],
    );
    assert_eq!((signed.status, signed.error()), (400, "invalid_request"));
    assert!(signed.json["reason"].as_str().unwrap().contains("expired"));
}

#[test]
fn foreign_certificate_is_refused() {
    let s = setup(&[]);
    let other = server(&[]);
    let (created, signed) = page_sign(&other.url, &s.agent.url, &s.origin, "5.00", "O-F", "123456");
    assert_eq!(signed.status, 200);
    let r = authorise(&other.url, &created, &created["request"], &signed.json);
    assert_eq!((r.status, r.error()), (403, "foreign_certificate"));
    // Same CA name, other key: an impostor CA is caught by the signature check.
    assert_eq!(
        r.json["reason"],
        "certificate not issued by this CA: signature does not verify under the CA key"
    );
    let (_, codes) = payment_record(&other.url, created["id"].as_str().unwrap());
    assert_eq!(codes, ["foreign_certificate"]);
}

#[test]
fn foreign_or_missing_origin_cannot_use_the_card() {
    let s = setup(&[]);
    let evil = "http://evil.example";
    let created = post(
        &format!("{}/api/v1/payments", s.server.url),
        &json!({"amount": "99.00", "currency": "EUR", "payee": "EVIL", "order_id": "X"}),
        &[],
    );
    let body = json!({"canonical": created.json["canonical"], "pin": "123456"});
    for path in ["/v1/sign", "/v1/enrol", "/v1/certificate"] {
        let r = post(
            &format!("{}{path}", s.agent.url),
            &body,
            &[("Origin", evil)],
        );
        assert_eq!((r.status, r.error()), (403, "forbidden_origin"), "{path}");
        assert!(r.json["reason"]
            .as_str()
            .unwrap()
            .contains("origin http://evil.example may not use this card"));
        assert_eq!(r.header("access-control-allow-origin"), None);
    }
    // Another port of the same host is another origin.
    let r = post(
        &format!("{}/v1/sign", s.agent.url),
        &body,
        &[("Origin", "http://127.0.0.1:1")],
    );
    assert_eq!(r.error(), "forbidden_origin");
    // The CORS preflight of a foreign page is refused, ours is answered.
    let pre = |o: &str| {
        options(
            &format!("{}/v1/sign", s.agent.url),
            &[
                ("Origin", o),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
        )
    };
    let r = pre(evil);
    assert_eq!(r.status, 403);
    let r = pre(&s.origin);
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(s.origin.as_str())
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    // Reading the status from a foreign page is refused too.
    let r = get(&format!("{}/v1/status", s.agent.url), &[("Origin", evil)]);
    assert_eq!(r.status, 403);
    // No Origin on a state-changing call: refused.
    let r = post(&format!("{}/v1/sign", s.agent.url), &body, &[]);
    assert_eq!((r.status, r.error()), (403, "missing_origin"));
    // DNS rebinding: a Host that is not the loopback address.
    let r = get(
        &format!("{}/v1/status", s.agent.url),
        &[("Host", "evil.example")],
    );
    assert_eq!((r.status, r.error()), (403, "forbidden_host"));
    // Nothing was signed: the PIN counter is untouched and the challenge pending.
    let st = get(&format!("{}/v1/status", s.agent.url), &[]);
    assert_eq!(st.json["card"]["pin_retries_left"], 3);
    let (state, _) = payment_record(&s.server.url, created.json["id"].as_str().unwrap());
    assert_eq!(state, "pending");
}

#[test]
fn agent_writes_only_the_certificate_of_a_key_it_generated() {
    let s = setup(&[]);
    // A certificate was just written by the enrolment; writing again needs a new enrolment.
    let r = post(
        &format!("{}/v1/certificate", s.agent.url),
        &json!({"certificate": s.cert["certificate"]}),
        &[("Origin", &s.origin)],
    );
    assert_eq!((r.status, r.error()), (409, "no_enrolment"));
}

#[test]
fn agent_listens_on_loopback_only() {
    let card = card_file();
    let r = cardwright(
        &[
            "agent",
            "--listen",
            "0.0.0.0:0",
            "--allow-origin",
            "http://127.0.0.1:8080",
            "--sim",
            card.sim(),
        ],
        "",
    );
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("loopback address only"), "{}", r.stderr);
    let r = cardwright(&["agent", "--allow-origin", "*", "--sim", card.sim()], "");
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("--allow-origin *"), "{}", r.stderr);
}
