//! Terminals over TLS through the real binaries (issue 13): `serve --tls-cert/--tls-key
//! --terminal-ca` and `agent --server https://… --server-ca --client-cert/--client-key`
//! with a virtual card; the refusals (an untrusted server certificate, an untrusted client
//! certificate, plain HTTP on a non-loopback address); token files re-read while serving.

mod pay_support;
mod ssd_support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use ssd_support::certs::{Ca, Leaf};
use ssd_support::{
    call_tls, cardwright, eventually, get_tls, listening_url, run_to_end, serve_in, spawn,
    spawn_logged, write, MASTER,
};

const OPERATOR_TOKEN: &str = "operator-token-0123456789";
const CARD: &str = "4711000000000001";

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
        let (child, line) = serve_in(dir, args, &[], "error", None);
        drop(child);
        assert!(line.contains(scheme), "{}: {line:?}", args.join(" "));
    }
}

/// Every token file is re-read while serving (every second, and on SIGHUP): operator
/// tokens added work and removed ones get 401; admin tokens likewise; a terminal whose line
/// leaves the terminal token file is disconnected at once and its agent stops, saying why.
#[test]
fn token_files_are_re_read_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let envs = platform(dir);
    let operators = dir.join("operators");
    std::fs::write(&operators, "alice=alice-token-0123456789\n").unwrap();
    let admins = dir.join("admins");
    std::fs::write(
        &admins,
        "# the payment API's admins\nadmin-token-one-0123456789\n",
    )
    .unwrap();
    let terminals_file = dir.join("terminals");
    std::fs::write(
        &terminals_file,
        "desk-1=desk-1-token-0123456789\ndesk-2=desk-2-token-0123456789\n",
    )
    .unwrap();
    let log = dir.join("serve.log");
    let path = |p: &Path| p.display().to_string();
    let (operators_arg, admins_arg, terminals_arg) =
        (path(&operators), path(&admins), path(&terminals_file));
    let e: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (child, line) = serve_in(
        dir,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--issuance",
            "--operator-tokens-file",
            &operators_arg,
            "--admin-token-file",
            &admins_arg,
            "--terminal-tokens-file",
            &terminals_arg,
        ],
        &e,
        "info",
        Some(&log),
    );
    let url = listening_url(&line);
    let terminals = format!("{url}/api/v1/terminals");
    let status = |token: &str| {
        pay_support::get(&terminals, &[("authorization", &format!("Bearer {token}"))]).status
    };
    let audit = format!("{url}/api/v1/audit");
    let admin = |token: &str| {
        pay_support::get(&audit, &[("authorization", &format!("Bearer {token}"))]).status
    };
    assert_eq!(status("alice-token-0123456789"), 200);
    assert_eq!(status("bob-token-0123456789"), 401);
    assert_eq!(admin("admin-token-one-0123456789"), 200);
    assert_eq!(admin("admin-token-two-0123456789"), 401);

    // alice removed, bob added: refused and accepted without a restart. The admin token is
    // rotated the same way.
    std::fs::write(&operators, "# rotated\nbob=bob-token-0123456789\n").unwrap();
    std::fs::write(&admins, "admin-token-two-0123456789\n").unwrap();
    eventually("the rotation", || {
        status("alice-token-0123456789") == 401 && status("bob-token-0123456789") == 200
    });
    eventually("the admin rotation", || {
        admin("admin-token-one-0123456789") == 401 && admin("admin-token-two-0123456789") == 200
    });

    // Two terminals connected; desk-1's line removed: within about two seconds it is no
    // longer listed and its agent stops with the reason; desk-2 stays.
    let connected = || -> Vec<String> {
        let r = pay_support::get(
            &terminals,
            &[("authorization", "Bearer bob-token-0123456789")],
        );
        r.json["terminals"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["terminal"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let agent_log = dir.join("desk-1.log");
    std::fs::copy(dir.join("card.json"), dir.join("card-2.json")).unwrap();
    let agent = |desk: &str, token: &str, sim: &str, log: Option<&Path>| {
        spawn_logged(
            dir,
            &["agent", "--server", &url, "--terminal", desk, "--sim", sim],
            &[("CARDWRIGHT_TERMINAL_TOKEN", token)],
            log,
        )
    };
    let mut desk1 = agent(
        "desk-1",
        "desk-1-token-0123456789",
        "card.json",
        Some(&agent_log),
    );
    let _desk2 = agent("desk-2", "desk-2-token-0123456789", "card-2.json", None);
    eventually("both terminals connected", || {
        connected() == ["desk-1", "desk-2"]
    });
    std::fs::write(&terminals_file, "desk-2=desk-2-token-0123456789\n").unwrap();
    let removed = Instant::now();
    while connected() != ["desk-2"] {
        assert!(
            removed.elapsed() < Duration::from_secs(3),
            "desk-1 still listed {:?} after its line was removed",
            removed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eventually("desk-1's agent stopped", || {
        desk1.0.try_wait().expect("wait").is_some()
    });
    let agent_err = std::fs::read_to_string(&agent_log).unwrap();
    assert!(
        agent_err.contains(
            "the platform refused this terminal: the terminal's token is no longer valid"
        ),
        "{agent_err}"
    );
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the disconnection in the log", || {
        text().contains("terminal disconnected: its token is no longer valid")
    });

    // A malformed file (a token too short) keeps the tokens in force and says why,
    // without printing a token.
    std::fs::write(&operators, "bob=bob-token-0123456789\ncarol=short-secret\n").unwrap();
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
    assert_eq!(connected(), ["desk-2"], "a broken file disconnects nobody");
    for secret in [
        "short-secret",
        "bob-token-0123456789",
        "alice-token-0123456789",
        "admin-token-one-0123456789",
        "admin-token-two-0123456789",
        "desk-1-token-0123456789",
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
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually("the re-read on SIGHUP", || reloads() == before + 1);
    // Still serving after the signal.
    assert_eq!(status("carol-token-0123456789"), 200);
}
