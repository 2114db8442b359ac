//! Issue #10 through the real binary: `keys policy`, `partner add|list|revoke` on the card
//! issuer's database, `serve --role ci` over mutual TLS (a registered partner's client
//! certificate is accepted and named, an unknown one refused in the handshake, a partner
//! revoked by another process refused within the refresh period), and `serve --role ap`
//! with its link to the CI and `ssd status|request` against it.

mod pay_support;
#[path = "common/softhsm.rs"]
mod softhsm;
mod ssd_support;

use std::time::{Duration, Instant};

use pay_support::start;
use ssd_support::certs::Ca;
use ssd_support::*;

#[test]
fn partners_policy_and_two_platforms_over_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = format!("sqlite:{}", dir.join("ci.db").display());
    let keys = format!("file:{}", dir.join("ci-keys.json").display());

    // The CI's database, its key policy.
    ok(
        dir,
        &[
            "tenant",
            "create",
            "--id",
            "issuer",
            "--name",
            "Issuer",
            "--role",
            "ci",
            "--db",
            &db,
            "--keystore",
            &keys,
        ],
    );
    let out = ok(dir, &["keys", "--keystore", &keys, "policy", "--db", &db]);
    assert!(
        out.contains("lifetime 365d, renewed 30d before expiry"),
        "{out}"
    );
    let out = ok(
        dir,
        &[
            "keys",
            "--keystore",
            &keys,
            "policy",
            "--db",
            &db,
            "--ssd-lifetime",
            "100d",
            "--renew-before",
            "10d",
        ],
    );
    assert!(out.contains("lifetime 100d, renewed 10d"), "{out}");
    let (success, _, err) = cardwright(
        dir,
        &[
            "keys",
            "--keystore",
            &keys,
            "policy",
            "--db",
            &db,
            "--ssd-lifetime",
            "10d",
            "--renew-before",
            "20d",
        ],
        &[],
    );
    assert!(!success && err.contains("renewal window"), "{err}");

    // Certificates: the CI's server, bank1's AP root and client, a stranger.
    let mut server_ca = Ca::new("CI server CA");
    let server_leaf = server_ca.server();
    let mut bank1 = Ca::new("bank1 AP root");
    let bank1_client = bank1.client("bank1 AP platform");
    let mut stranger = Ca::new("stranger");
    let stranger_client = stranger.client("stranger");
    let transport = rcgen::KeyPair::generate().unwrap().public_key_pem();
    let bank1_root = write(dir, "bank1-root.pem", &bank1.pem);
    let transport_file = write(dir, "bank1-transport.pem", &transport);

    // Partners on the CI's database.
    let out = ok(
        dir,
        &[
            "partner",
            "--db",
            &db,
            "--keystore",
            &keys,
            "add",
            "--id",
            "bank1",
            "--cert",
            &bank1_root,
            "--ssd-aid-prefix",
            "A000000151BA01",
            "--cards",
            "1000000000-1000000999",
            "--cards",
            "1000002000",
            "--transport-key",
            &transport_file,
        ],
    );
    assert!(out.contains("partner bank1 registered"), "{out}");
    let (success, _, err) = cardwright(
        dir,
        &[
            "partner",
            "--db",
            &db,
            "--keystore",
            &keys,
            "add",
            "--id",
            "bank2",
            "--cert",
            &bank1_root,
            "--ssd-aid-prefix",
            "A0",
            "--cards",
            "9-1",
            "--transport-key",
            &transport_file,
        ],
        &[],
    );
    assert!(!success && err.contains("--cards 9-1"), "{err}");
    let out = ok(dir, &["partner", "--db", &db, "--keystore", &keys, "list"]);
    assert!(
        out.contains("bank1")
            && out.contains("active")
            && out.contains("1000000000-1000000999,1000002000-1000002000"),
        "{out}"
    );

    // The CI platform over mutual TLS.
    let tls_cert = write(dir, "ci.pem", &server_leaf.chain_pem);
    let tls_key = write(dir, "ci-key.pem", &server_leaf.key_pem);
    let ci = start(
        &[
            "serve",
            "--role",
            "ci",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db,
            "--keystore",
            &keys,
            "--tls-cert",
            &tls_cert,
            "--tls-key",
            &tls_key,
        ],
        &[
            ("CARDWRIGHT_OPERATOR_TOKENS", OPERATOR),
            ("CARDWRIGHT_MASTER_KEY", MASTER),
        ],
    );
    assert!(ci.url.starts_with("https://127.0.0.1:"), "{}", ci.url);
    let base = ci.url.replace("127.0.0.1", "localhost");
    let ssds = format!("{base}/api/v1/partner/ssds");
    assert_eq!(
        get_tls(&ssds, &server_ca, Some(&bank1_client), None),
        Ok((200, serde_json::json!({"ssds": []})))
    );
    assert!(
        get_tls(&ssds, &server_ca, Some(&stranger_client), None).is_err(),
        "a stranger's certificate passed the handshake"
    );
    let (status, body) = get_tls(&ssds, &server_ca, None, None).unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("client_certificate_required"))
    );
    let (status, body) = get_tls(
        &format!("{base}/api/v1/partners"),
        &server_ca,
        None,
        Some("operator-token-0123456789"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partners"][0]["id"], "bank1");
    let (status, _) = get_tls(
        &format!("{base}/api/openapi-partner.json"),
        &server_ca,
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);

    // The AP platform with its link to the CI; its transport key is written out.
    let ap_db = format!("sqlite:{}", dir.join("ap.db").display());
    let ap_keys = format!("file:{}", dir.join("ap-keys.json").display());
    let client_cert = write(dir, "bank1-client.pem", &bank1_client.chain_pem);
    let client_key = write(dir, "bank1-client-key.pem", &bank1_client.key_pem);
    let ci_ca = write(dir, "ci-ca.pem", &server_ca.pem);
    let transport_out = dir.join("ap-transport.pem");
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
            &base,
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
            "--ci-ca",
            &ci_ca,
            "--partner-id",
            "bank1",
            "--transport-key-out",
            transport_out.to_str().unwrap(),
        ],
        &[
            ("CARDWRIGHT_OPERATOR_TOKENS", OPERATOR),
            ("CARDWRIGHT_MASTER_KEY", MASTER),
        ],
    );
    let written = std::fs::read_to_string(&transport_out).unwrap();
    assert!(
        written.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{written}"
    );
    let token = [("CARDWRIGHT_TOKEN", "operator-token-0123456789")];
    let (success, _, err) = cardwright(
        dir,
        &[
            "ssd",
            "--server",
            &ap.url,
            "status",
            "--card-number",
            "1000000001",
            "--aid",
            "A000000151BA0101",
        ],
        &token,
    );
    assert!(
        !success && err.contains("no SSD A000000151BA0101 on card 1000000001 (not_found)"),
        "{err}"
    );
    let (success, _, err) = cardwright(
        dir,
        &[
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
            "R0",
        ],
        &token,
    );
    assert!(
        !success && err.contains("terminal 'desk' is not connected"),
        "{err}"
    );
    let (success, _, err) = cardwright(
        dir,
        &[
            "ssd",
            "--server",
            &ap.url,
            "status",
            "--card-number",
            "1000000001",
            "--aid",
            "A000000151BA0101",
        ],
        &[],
    );
    assert!(!success && err.contains("CARDWRIGHT_TOKEN"), "{err}");

    // Revoked by another process: refused in the handshake within the refresh period.
    let out = ok(
        dir,
        &[
            "partner",
            "--db",
            &db,
            "--keystore",
            &keys,
            "revoke",
            "--id",
            "bank1",
        ],
    );
    assert!(out.contains("partner bank1 revoked"), "{out}");
    let out = ok(dir, &["partner", "--db", &db, "--keystore", &keys, "list"]);
    assert!(out.contains("REVOKED"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match get_tls(&ssds, &server_ca, Some(&bank1_client), None) {
            Err(_) => break,
            Ok(answer) => {
                assert!(
                    Instant::now() < deadline,
                    "bank1 still accepted after revocation: {answer:?}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Flow 1 with the real binary: a card written by the CI (`issue --sim`), the CI's
/// `serve --role ci` over mutual TLS, the AP's `serve --role ap` rotating inside SCP11a
/// (`--scp11-ca`, `--scp11-oce-key`), an AP terminal (`agent --server … --sim`) lending the
/// virtual card, and `ssd request|status` on the AP: the SSD ends handed over, on both
/// platforms. The CI on SQLite and the software key store; the AP on PostgreSQL
/// (`CARDWRIGHT_PG_TESTS=1`) and a SoftHSM2 token (when installed).
#[test]
fn flow1_with_two_serve_processes_and_an_agent() {
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
    // The CI writes the card at its desk.
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

    // The AP: PostgreSQL with CARDWRIGHT_PG_TESTS=1 (else SQLite), a SoftHSM2 token when
    // SoftHSM2 is installed (else the software key store).
    let pg = std::env::var("CARDWRIGHT_PG_TESTS").as_deref() == Ok("1");
    let pg_base = std::env::var("CARDWRIGHT_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pg_schema = format!("ssd_ap_{}", std::process::id());
    let ap_db = if pg {
        let sep = if pg_base.contains('?') { '&' } else { '?' };
        format!("{pg_base}{sep}schema={pg_schema}")
    } else {
        eprintln!("AP on SQLite: set CARDWRIGHT_PG_TESTS=1 for PostgreSQL");
        format!("sqlite:{}", dir.join("ap.db").display())
    };
    let hsm_dir = dir.join("hsm");
    std::fs::create_dir(&hsm_dir).unwrap();
    let (ap_keys, softhsm_conf) = if softhsm::available() {
        let conf = softhsm::init_token(&hsm_dir, "ap");
        (
            format!(
                "pkcs11:{}?token=ap&pin-env=HSM_PIN",
                softhsm::SOFTHSM_MODULE
            ),
            conf.to_str().unwrap().to_string(),
        )
    } else {
        (
            format!("file:{}", dir.join("ap-keys.json").display()),
            String::new(),
        )
    };
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
            "--scp11-ca",
            "bank1-ca",
            "--scp11-oce-key",
            "bank1-oce",
        ],
        &[
            ("CARDWRIGHT_OPERATOR_TOKENS", OPERATOR),
            ("CARDWRIGHT_TERMINAL_TOKENS", "desk=desk-token-0123456789"),
            ("CARDWRIGHT_MASTER_KEY", MASTER),
            ("HSM_PIN", softhsm::HSM_PIN),
            ("SOFTHSM2_CONF", &softhsm_conf),
        ],
    );
    // The CI registers bank1 with the AP's transport key; serve trusts its root within 5 s.
    register_bank1(
        dir,
        &ci_env,
        &bank1,
        &bank1_client,
        &transport,
        &ci_base,
        &server_ca,
    );

    // The AP's terminal lends the card.
    let agent = spawn(
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
    assert!(out.contains("held by AP"), "{out}");
    let out = run(
        &[
            "ssd",
            "--server",
            &ap.url,
            "status",
            "--card-number",
            "1000000001",
            "--aid",
            "A000000151BA0101",
        ],
        &token,
    );
    assert!(
        out.contains("owner        bank1") && out.contains("handed_over"),
        "{out}"
    );
    // The CI's record agrees (its operator API over TLS, without a client certificate).
    let (status, body) = get_tls(
        &format!("{ci_base}/api/v1/ssds"),
        &server_ca,
        None,
        Some("operator-token-0123456789"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ssds"][0]["state"], "handed_over", "{body}");
    assert!(body["ssds"][0]["receipt"].is_string(), "{body}");
    // The AP replaced the initial keys inside SCP11a (its rotate step says so).
    let query = "SELECT detail FROM job_steps WHERE name = 'rotate' AND state = 'done'";
    let rotate: String = if pg {
        let mut c = postgres::Client::connect(&pg_base, postgres::NoTls).unwrap();
        c.batch_execute(&format!("SET search_path TO {pg_schema}"))
            .unwrap();
        c.query_one(query, &[]).unwrap().get(0)
    } else {
        let conn = rusqlite::Connection::open(dir.join("ap.db")).unwrap();
        conn.query_row(query, [], |r| r.get(0)).unwrap()
    };
    assert!(rotate.contains("\"scp11\":true"), "{rotate}");
    drop(agent);
    drop(ap);
    if pg {
        let mut c = postgres::Client::connect(&pg_base, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {pg_schema} CASCADE"))
            .unwrap();
    }
}
