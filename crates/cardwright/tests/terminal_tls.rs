//! Terminals over TLS through the real binaries (issue 13): `serve --tls-cert/--tls-key
//! --terminal-ca` and `agent --server https://… --server-ca --client-cert/--client-key`
//! with a virtual card; the refusals (an untrusted server certificate, an untrusted client
//! certificate, plain HTTP on a non-loopback address); token files re-read while serving.

mod pay_support;
mod ssd_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use ssd_support::certs::{Ca, Leaf};
use ssd_support::{call_tls, cardwright, get_tls, spawn, write, MASTER};

const OPERATOR_TOKEN: &str = "operator-token-0123456789";
const CARD: &str = "4711000000000001";

/// Runs `cardwright ARGS` in `dir` and waits at most 30 s for it to end: (exit code, stderr).
fn run_to_end(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(pay_support::bin())
        .args(args)
        .current_dir(dir)
        .env("CARDWRIGHT_MASTER_KEY", MASTER)
        .env("CARDWRIGHT_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            let _ = child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err);
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cardwright {} did not end within 30 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The platform: a database and key store in `dir`, tenant `issuer`, category `gold` with a
/// generated base key, and the blank virtual card `card.json`.
fn platform(dir: &Path) -> Vec<(&'static str, String)> {
    let envs = vec![
        (
            "CARDWRIGHT_DB",
            format!("sqlite:{}", dir.join("platform.db").display()),
        ),
        (
            "CARDWRIGHT_KEYSTORE",
            format!("file:{}", dir.join("keys.json").display()),
        ),
    ];
    let e: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let steps: [&[&str]; 4] = [
        &["keys", "generate-base", "--category", "gold"],
        &[
            "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
        ],
        &["category", "create", "--id", "gold", "--tenant", "issuer"],
        &["sim", "create", "--state", "card.json", "--no-piv"],
    ];
    for args in steps {
        let (success, _, err) = cardwright(dir, args, &e);
        assert!(success, "cardwright {}: {err}", args.join(" "));
    }
    envs
}

#[test]
fn terminal_with_a_client_certificate_issues_a_card_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let envs = platform(dir);
    let e: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let mut server_ca = Ca::new("platform server CA");
    let server = server_ca.server();
    let mut terminals = Ca::new("issuing terminals CA");
    let desk1 = terminals.client("desk-1");
    let mut stranger = Ca::new("somebody else's CA");
    let stranger_desk = stranger.client("desk-1");
    let files = [
        ("server.pem", server.chain_pem.as_str()),
        ("server-key.pem", server.key_pem.as_str()),
        ("server-ca.pem", server_ca.pem.as_str()),
        ("terminals-ca.pem", terminals.pem.as_str()),
        ("desk-1.pem", desk1.chain_pem.as_str()),
        ("desk-1-key.pem", desk1.key_pem.as_str()),
        ("stranger.pem", stranger_desk.chain_pem.as_str()),
        ("stranger-key.pem", stranger_desk.key_pem.as_str()),
        ("other-ca.pem", stranger.pem.as_str()),
    ];
    for (name, text) in files {
        write(dir, name, text);
    }
    let operator = format!("alice={OPERATOR_TOKEN}");
    let path = |name: &str| dir.join(name).display().to_string();
    let (cert, key, terminal_ca) = (
        path("server.pem"),
        path("server-key.pem"),
        path("terminals-ca.pem"),
    );
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--issuance",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--terminal-ca",
        &terminal_ca,
        "--operator-token",
        &operator,
        "--terminal-token",
        "desk-2=desk-2-token-0123456789",
    ];
    let mut all = e.clone();
    all.push(("CARDWRIGHT_MASTER_KEY", MASTER));
    let service = pay_support::start(&args, &all);
    assert!(service.url.starts_with("https://"), "{}", service.url);
    let base = service.url.replace("127.0.0.1", "localhost");

    // The agent refuses a platform whose certificate it does not trust, says so, and stops.
    let (code, err) = run_to_end(
        dir,
        &[
            "agent",
            "--server",
            &base,
            "--server-ca",
            "other-ca.pem",
            "--client-cert",
            "desk-1.pem",
            "--client-key",
            "desk-1-key.pem",
            "--sim",
            "card.json",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("server certificate is not trusted") && err.contains("--server-ca"),
        "{err}"
    );

    // The platform refuses a client certificate of a CA it does not trust, in the
    // handshake; the agent says so and stops.
    let (code, err) = run_to_end(
        dir,
        &[
            "agent",
            "--server",
            &base,
            "--server-ca",
            "server-ca.pem",
            "--client-cert",
            "stranger.pem",
            "--client-key",
            "stranger-key.pem",
            "--sim",
            "card.json",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refused this terminal's client certificate"),
        "{err}"
    );

    // The trusted terminal certificate: no token, the terminal is its commonName (desk-1).
    let agent = spawn(
        dir,
        &[
            "agent",
            "--server",
            &base,
            "--server-ca",
            "server-ca.pem",
            "--client-cert",
            "desk-1.pem",
            "--client-key",
            "desk-1-key.pem",
            "--sim",
            "card.json",
        ],
        &[],
    );
    let terminals_url = format!("{base}/api/v1/terminals");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) =
            get_tls(&terminals_url, &server_ca, None, Some(OPERATOR_TOKEN)).expect("terminals");
        assert_eq!(status, 200, "{body}");
        if body["terminals"][0]["terminal"] == "desk-1"
            && body["terminals"][0]["readers"][0]["card_present"] == true
        {
            break;
        }
        assert!(Instant::now() < deadline, "desk-1 never connected: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Issuance through it: the platform writes the card behind the terminal.
    let (status, body) = call_tls(
        &format!("{base}/api/v1/cards/{CARD}/write"),
        &server_ca,
        None,
        Some(OPERATOR_TOKEN),
        Some(json!({"terminal": "desk-1", "reader": "Virtual card", "category": "gold"})),
    )
    .expect("write");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["state"].as_str(), body["card"]["state"].as_str()),
        (Some("done"), Some("written")),
        "{body}"
    );
    assert!(body["apdus"].as_u64().unwrap_or(0) > 3, "{body}");
    let (status, body) = get_tls(
        &format!("{base}/api/v1/cards/{CARD}"),
        &server_ca,
        None,
        Some(OPERATOR_TOKEN),
    )
    .expect("card");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["card"]["state"], "written", "{body}");
    assert_eq!(body["jobs"][0]["state"], "done", "{body}");
    drop(agent);

    // A certificate terminal may not use the operator routes.
    let (status, body) = get_tls(&terminals_url, &server_ca, Some(&desk1), None).unwrap();
    assert_eq!(status, 403, "{body}");
    // Token terminals keep working on the same HTTPS listener.
    let _desk2 = spawn(
        dir,
        &[
            "agent",
            "--server",
            &base,
            "--server-ca",
            "server-ca.pem",
            "--terminal",
            "desk-2",
            "--sim",
            "card.json",
        ],
        &[("CARDWRIGHT_TERMINAL_TOKEN", "desk-2-token-0123456789")],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = get_tls(&terminals_url, &server_ca, None, Some(OPERATOR_TOKEN)).unwrap();
        if body["terminals"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["terminal"] == "desk-2"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "desk-2 never connected: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(service);
}

/// `serve ARGS` in `dir`: the process and the first line naming where it listens.
fn serve_once(dir: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(pay_support::bin())
        .args(args)
        .current_dir(dir)
        .env("CARDWRIGHT_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.contains("listening on ")))
        .unwrap_or_default();
    (child, line)
}

#[test]
fn plain_http_is_refused_on_a_non_loopback_listen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Refused at start, before anything is created.
    let (code, err) = run_to_end(dir, &["serve", "--listen", "0.0.0.0:0", "--ca-dir", "ca"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--listen 0.0.0.0:0: plain HTTP is only served on loopback addresses")
            && err.contains("--tls-cert")
            && err.contains("--insecure-http"),
        "{err}"
    );
    assert!(
        !dir.join("ca").exists(),
        "the CA was created before the refusal"
    );

    // The agent does not send its token in clear to another machine either.
    std::fs::write(dir.join("card.json"), "").unwrap();
    let (code, err) = run_to_end(
        dir,
        &[
            "agent",
            "--server",
            "http://192.0.2.1:8080",
            "--token",
            "desk-token-0123456789",
            "--sim",
            "card.json",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("plain http:// only to a platform on this machine")
            && err.contains("https://"),
        "{err}"
    );

    // Loopback (by address or by name) stays allowed; --insecure-http allows the rest; TLS
    // needs no exception.
    let mut server_ca = Ca::new("server CA");
    let server: Leaf = server_ca.server();
    write(dir, "server.pem", &server.chain_pem);
    write(dir, "server-key.pem", &server.key_pem);
    for (args, scheme) in [
        (&["serve", "--listen", "localhost:0"][..], "http://"),
        (
            &["serve", "--listen", "0.0.0.0:0", "--insecure-http"][..],
            "http://0.0.0.0:",
        ),
        (
            &[
                "serve",
                "--listen",
                "0.0.0.0:0",
                "--tls-cert",
                "server.pem",
                "--tls-key",
                "server-key.pem",
            ][..],
            "https://0.0.0.0:",
        ),
    ] {
        let (mut child, line) = serve_once(dir, args);
        let _ = child.kill();
        let _ = child.wait();
        assert!(line.contains(scheme), "{}: {line:?}", args.join(" "));
    }
}

/// Waits until `check` holds (20 s at most).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn token_files_are_re_read_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let envs = platform(dir);
    let operators = dir.join("operators");
    std::fs::write(&operators, "alice=alice-token-0123456789\n").unwrap();
    let log = dir.join("serve.log");
    let mut cmd = Command::new(pay_support::bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--issuance"])
        .arg("--operator-tokens-file")
        .arg(&operators)
        .current_dir(dir)
        .env("CARDWRIGHT_MASTER_KEY", MASTER)
        .env("CARDWRIGHT_LOG", "info")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .find_map(|l| {
            l.ok()
                .and_then(|l| l.split("listening on ").nth(1).map(str::to_string))
        })
        .expect("listening");
    std::thread::spawn(move || for _ in lines {});
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(child);
    let terminals = format!("{}/api/v1/terminals", url.trim());
    let status = |token: &str| {
        pay_support::get(&terminals, &[("authorization", &format!("Bearer {token}"))]).status
    };
    assert_eq!(status("alice-token-0123456789"), 200);
    assert_eq!(status("bob-token-0123456789"), 401);

    // alice removed, bob added: refused and accepted without a restart.
    std::fs::write(&operators, "# rotated\nbob=bob-token-0123456789\n").unwrap();
    eventually("the rotation", || {
        status("alice-token-0123456789") == 401 && status("bob-token-0123456789") == 200
    });

    // A malformed file (a token too short) keeps the tokens in force and says why,
    // without printing a token.
    std::fs::write(&operators, "bob=bob-token-0123456789\ncarol=short-secret\n").unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the error in the log", || {
        text().contains("token files not re-read")
    });
    assert!(
        text().contains("operators line 2: expected NAME=TOKEN with a token of 16+ characters"),
        "{}",
        text()
    );
    assert_eq!(status("bob-token-0123456789"), 200);
    assert_eq!(status("short-secret"), 401);
    for secret in [
        "short-secret",
        "bob-token-0123456789",
        "alice-token-0123456789",
    ] {
        assert!(!text().contains(secret), "a token in the log: {}", text());
    }

    // The fixed file is taken up; SIGHUP re-reads too (the file unchanged).
    std::fs::write(&operators, "carol=carol-token-0123456789\n").unwrap();
    eventually("carol accepted", || status("carol-token-0123456789") == 200);
    assert_eq!(status("bob-token-0123456789"), 401);
    let reloads = || text().matches("tokens re-read").count();
    let before = reloads();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(reloads(), before, "re-read without a change: {}", text());
    let pid = child.0.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    eventually("the re-read on SIGHUP", || reloads() == before + 1);
    // Still serving after the signal.
    assert_eq!(status("carol-token-0123456789"), 200);
}
