//! Issuance end to end over the real stack: `cardwright serve` (SQLite) with base keys in
//! SoftHSM2, an issuing terminal `cardwright agent --server` lending reader "Virtual PCD 00 00"
//! (pcscd + vsmartcard-vpcd + `cardwright sim run --vpcd`), operators calling the HTTP API:
//! write, rewrite, clear — each checked by an independent channel opened over PC/SC with
//! `cardwright card --key BASE --kdf kdf3`.
//!
//! Runs when `CARDWRIGHT_PCSC_TESTS=1` (scripts/test.sh); needs `softhsm2-util`.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READER: &str = "Virtual PCD 00 00";
const CARD: &str = "4711000000000042";
const BASE1: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";
const BASE2: &str = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF";
const OPERATOR: &str = "operator-token-1";

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).env("CARDWRIGHT_LOG", "warn");
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }
    fn run(&self, args: &[&str], input: &str) -> Run {
        run_env(args, &self.vars, input)
    }
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args, "");
        assert!(
            r.ok,
            "cardwright {} failed:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }
    fn spawn(&self, args: &[&str]) -> Proc {
        Proc(
            self.cmd(args)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        )
    }
    fn import(&self, base: &str) {
        let r = self.run(
            &["keys", "import-base", "--category", "gold"],
            &components_of(base),
        );
        assert!(r.ok, "{}", r.stderr);
    }
    /// Whether `--key BASE --kdf kdf3` opens the card over PC/SC.
    fn opens_with(&self, base: Option<&str>) -> bool {
        let mut args = vec!["card", "--reader", READER];
        if let Some(b) = base {
            args.extend(["--key", b, "--kdf", "kdf3"]);
        }
        args.push("list");
        let r = self.run(&args, "");
        assert!(
            r.ok || r.stderr.contains("cryptogram"),
            "unexpected failure: {}",
            r.stderr
        );
        r.ok
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn post(url: &str, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut r = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    )
}

fn get(url: &str, token: &str) -> (u16, serde_json::Value) {
    try_get(url, token).expect("the server answers")
}

/// `None` while the server is not listening yet.
fn try_get(url: &str, token: &str) -> Option<(u16, serde_json::Value)> {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut r = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .ok()?;
    let status = r.status().as_u16();
    Some((
        status,
        r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    ))
}

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

fn pcsc_enabled() -> bool {
    if std::env::var("CARDWRIGHT_PCSC_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set CARDWRIGHT_PCSC_TESTS=1 with pcscd and vsmartcard-vpcd running (scripts/test.sh does)");
        return false;
    }
    true
}

/// Both database engines in one test: the reader is shared, so they run one after the other.
#[test]
fn issuance_through_server_terminal_pcsc_and_softhsm() {
    if !pcsc_enabled() {
        return;
    }
    issuance_on(None);
    if std::env::var("CARDWRIGHT_PG_TESTS").as_deref() == Ok("1") {
        let base = std::env::var("CARDWRIGHT_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!(
            "e2e_{}_{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        );
        let sep = if base.contains('?') { '&' } else { '?' };
        issuance_on(Some(format!("{base}{sep}schema={schema}")));
        // Drop the test schema.
        let _ = Command::new("psql")
            .args([
                base.as_str(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            ])
            .output();
    } else {
        eprintln!("PostgreSQL part skipped: set CARDWRIGHT_PG_TESTS=1 (scripts/test.sh does)");
    }
}

/// The whole flow with the platform database at `db` (`None`: a SQLite file).
fn issuance_on(db: Option<String>) {
    let dir = tempdir();
    // A SoftHSM2 token of our own.
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let st = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "cw-e2e",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let env = Env {
        vars: vec![
            ("SOFTHSM2_CONF".into(), conf.display().to_string()),
            ("HSM_PIN".into(), "1234".into()),
            (
                "CARDWRIGHT_KEYSTORE".into(),
                "pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=cw-e2e&pin-env=HSM_PIN".into(),
            ),
            (
                "CARDWRIGHT_DB".into(),
                db.unwrap_or_else(|| {
                    format!("sqlite:{}", dir.path().join("platform.db").display())
                }),
            ),
        ],
        dir,
    };
    env.import(BASE1);
    env.ok(&[
        "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
    ]);
    env.ok(&["category", "create", "--id", "gold", "--tenant", "issuer"]);

    // The card in pcscd's reader.
    let state = env.dir.path().join("card.json").display().to_string();
    env.ok(&["sim", "create", "--state", &state, "--no-piv"]);
    let sim_args = ["sim", "run", "--state", &state, "--vpcd", "127.0.0.1:35963"];
    let mut sim = Some(env.spawn(&sim_args));
    // pcscd's vpcd reader may still hold the previous test's card for a while after it left
    // the port; a card that stays unseen connects again.
    let t0 = Instant::now();
    let mut reconnected = false;
    wait("the card in the reader", || {
        let seen = env
            .run(&["card", "--reader", READER, "apdu", "00A4040000"], "")
            .ok;
        if !seen && !reconnected && t0.elapsed() > Duration::from_secs(10) {
            reconnected = true;
            drop(sim.take()); // killed and waited for: the port is free again
            sim = Some(env.spawn(&sim_args));
        }
        seen
    });
    let _sim = sim;

    // The platform and one issuing terminal.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let _serve = env.spawn(&[
        "serve",
        "--listen",
        &listen,
        "--issuance",
        "--operator-token",
        &format!("alice={OPERATOR}"),
        "--operator-token",
        "bob:viewer=viewer-token-000001",
        "--terminal-token",
        "desk-1=terminal-token-1",
    ]);
    let _agent = env.spawn(&[
        "agent",
        "--server",
        &base,
        "--token",
        "terminal-token-1",
        "--terminal",
        "desk-1",
        "--reader",
        READER,
    ]);
    wait("the terminal", || {
        try_get(&format!("{base}/api/v1/terminals"), OPERATOR).is_some_and(|(s, v)| {
            s == 200 && v["terminals"][0]["readers"][0]["card_present"] == true
        })
    });
    let act = |action: &str, body: serde_json::Value| {
        post(
            &format!("{base}/api/v1/cards/{CARD}/{action}"),
            OPERATOR,
            body,
        )
    };

    // Refusals: no token, a terminal that is not there, another terminal's reader.
    assert_eq!(
        post(
            &format!("{base}/api/v1/cards/{CARD}/write"),
            "nope",
            serde_json::json!({"terminal": "desk-1", "reader": READER, "category": "gold"})
        )
        .0,
        401
    );
    assert_eq!(
        act(
            "write",
            serde_json::json!({"terminal": "desk-2", "reader": READER, "category": "gold"})
        )
        .0,
        404
    );
    assert_eq!(
        act(
            "write",
            serde_json::json!({"terminal": "desk-1", "reader": "Other reader", "category": "gold"})
        )
        .0,
        404
    );
    let (s, v) = post(
        &format!("{base}/api/v1/cards/{CARD}/write"),
        "viewer-token-000001",
        serde_json::json!({"terminal": "desk-1", "reader": READER, "category": "gold"}),
    );
    assert_eq!(s, 403, "a viewer may not write: {v}");
    assert_eq!(
        get(&format!("{base}/api/v1/terminals"), "viewer-token-000001").0,
        200,
        "a viewer may read"
    );
    assert!(env.opens_with(None), "nothing was changed by the refusals");

    // write
    let (s, v) = act(
        "write",
        serde_json::json!({"terminal": "desk-1", "reader": READER, "category": "gold"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["card"]["state"], "written", "{v}");
    assert!(env.opens_with(Some(BASE1)));
    assert!(!env.opens_with(None));

    // application management through the terminal
    let capfile = cap("Empty_0102030405_8d5ac9e2_2.2.1.cap");
    env.ok(&[
        "package",
        "add",
        "--tenant",
        "issuer",
        "--name",
        "empty",
        capfile.to_str().unwrap(),
    ]);
    let (s, v) = post(
        &format!("{base}/api/v1/cards/{CARD}/apps"),
        OPERATOR,
        serde_json::json!({"terminal": "desk-1", "reader": READER, "package": "0102030405", "instance": "01020304050607080901"}),
    );
    assert_eq!(s, 200, "{v}");
    let l = env.ok(&[
        "card", "--reader", READER, "--key", BASE1, "--kdf", "kdf3", "list",
    ]);
    assert!(l.contains("APP: 01020304050607080901"), "{l}");
    let (s, v) = post(
        &format!("{base}/api/v1/cards/{CARD}/apps/01020304050607080901/delete"),
        OPERATOR,
        serde_json::json!({"terminal": "desk-1", "reader": READER}),
    );
    assert_eq!(s, 200, "{v}");
    let l = env.ok(&[
        "card", "--reader", READER, "--key", BASE1, "--kdf", "kdf3", "list",
    ]);
    assert!(!l.contains("01020304050607080901"), "{l}");

    // rewrite with a new base key version
    env.import(BASE2);
    env.ok(&["category", "sync-keys", "--id", "gold"]);
    let (s, v) = act(
        "rewrite",
        serde_json::json!({"terminal": "desk-1", "reader": READER}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["card"]["key_version"], 2, "{v}");
    assert!(!env.opens_with(Some(BASE1)));
    assert!(env.opens_with(Some(BASE2)));

    // clear
    let (s, v) = act(
        "clear",
        serde_json::json!({"terminal": "desk-1", "reader": READER}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["card"]["state"], "blank", "{v}");
    assert!(env.opens_with(None));

    let (s, v) = get(&format!("{base}/api/v1/cards/{CARD}"), OPERATOR);
    assert_eq!(s, 200);
    assert_eq!(v["jobs"].as_array().map(|j| j.len()), Some(5), "{v}");
    env.ok(&["audit", "verify"]);
}
