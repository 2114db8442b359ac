//! Helpers of the SSD tests through the real binary: run `cardwright` in a directory, write
//! files, and call a platform over TLS (with or without a client certificate and token).
#![allow(dead_code)]

#[path = "../../../server/tests/common/certs.rs"]
pub mod certs;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certs::{Ca, Leaf};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cardwright")
}

pub const MASTER: &str = "1111111111111111111111111111111111111111111111111111111111111111";
pub const OPERATOR: &str = "alice=operator-token-0123456789";

pub fn cardwright(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env("CARDWRIGHT_MASTER_KEY", MASTER)
        .env("CARDWRIGHT_LOG", "error");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run cardwright");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    let (success, out, err) = cardwright(dir, args, &[]);
    assert!(success, "cardwright {}: {err}", args.join(" "));
    out
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// `GET url` over TLS trusting `ca`, with `client` as the client certificate (if any).
pub fn get_tls(
    url: &str,
    ca: &Ca,
    client: Option<&Leaf>,
    token: Option<&str>,
) -> Result<(u16, serde_json::Value), String> {
    call_tls(url, ca, client, token, None)
}

/// `GET url` (no body) or `POST url` with a JSON body, over TLS trusting `ca`, with
/// `client` as the client certificate and `token` as the bearer token (if any).
pub fn call_tls(
    url: &str,
    ca: &Ca,
    client: Option<&Leaf>,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let pem = |t: &str| -> Vec<ureq::tls::Certificate<'static>> {
        ureq::tls::parse_pem(t.as_bytes())
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&pem(&ca.pem)));
    if let Some(c) = client {
        let key = ureq::tls::PrivateKey::from_pem(c.key_pem.as_bytes()).unwrap();
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(
            &pem(&c.chain_pem),
            key,
        )));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let answer = match body {
        None => {
            let mut req = agent.get(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        Some(b) => {
            let mut req = agent.post(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.send_json(b)
        }
    };
    match answer {
        Ok(mut r) => Ok((
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `cardwright ARGS` in `dir` and waits at most 30 s for it to end: (exit code, stderr).
pub fn run_to_end(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
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

/// Waits until `check` holds (20 s at most).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `cardwright serve ARGS` in `dir`: the process (killed on drop) and the first line of its
/// stdout naming where it listens (empty if it ended first); its log (`CARDWRIGHT_LOG`
/// `level`) goes to `log`, or nowhere.
pub fn serve_in(
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    level: &str,
    log: Option<&Path>,
) -> (Background, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env("CARDWRIGHT_MASTER_KEY", MASTER)
        .env("CARDWRIGHT_LOG", level)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        });
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn cardwright serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.contains("listening on ")))
        .unwrap_or_default();
    // Keep draining stdout so that the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Background(child), line)
}

/// The URL of a `listening on URL` line.
pub fn listening_url(line: &str) -> String {
    line.split("listening on ")
        .nth(1)
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
}

/// A background `cardwright` process (an agent, a virtual card), killed on drop.
pub struct Background(pub std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cardwright ARGS` in `dir` in the background (stdout discarded, errors shown).
pub fn spawn(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Background {
    spawn_logged(dir, args, envs, None)
}

/// [`spawn`], its errors written to `log` (if given) instead of shown.
pub fn spawn_logged(
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    log: Option<&Path>,
) -> Background {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env("CARDWRIGHT_MASTER_KEY", MASTER)
        .env("CARDWRIGHT_LOG", "error")
        .stdout(Stdio::null())
        .stderr(match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        });
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Background(cmd.spawn().expect("spawn cardwright"))
}

/// The card issuer registers `bank1` (root `bank1`, AID prefix `A000000151BA01`, cards
/// 1000000000-1000000999, the AP's transport key) with `partner add` on its database
/// (`ci_env`), then waits until its `serve` at `ci_base` trusts bank1's client certificate.
pub fn register_bank1(
    dir: &Path,
    ci_env: &[(&str, &str)],
    bank1: &Ca,
    bank1_client: &Leaf,
    transport: &Path,
    ci_base: &str,
    server_ca: &Ca,
) {
    let root = write(dir, "bank1-root.pem", &bank1.pem);
    let args = [
        "partner",
        "add",
        "--id",
        "bank1",
        "--cert",
        &root,
        "--ssd-aid-prefix",
        "A000000151BA01",
        "--cards",
        "1000000000-1000000999",
        "--transport-key",
        transport.to_str().expect("path"),
    ];
    let (success, _, err) = cardwright(dir, &args, ci_env);
    assert!(success, "partner add: {err}");
    let ssds = format!("{ci_base}/api/v1/partner/ssds");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get_tls(&ssds, server_ca, Some(bank1_client), None).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "bank1 is not trusted after registration"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `cardwright ssd … request …` (`args`) until the AP's terminal has connected; its
/// output.
pub fn request_once_connected(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (success, out, err) = cardwright(dir, args, envs);
        if success {
            return out;
        }
        assert!(
            err.contains("is not connected") && std::time::Instant::now() < deadline,
            "{err}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The card issuer's desk in `dir` (database and key store in `ci_env`): a generated base
/// key, tenant `issuer`, category `gold`, and the virtual card `card.json` written as card
/// 1000000001 (`issue --sim`).
pub fn ci_with_written_card(dir: &Path, ci_env: &[(&str, &str)]) {
    let steps: [&[&str]; 5] = [
        &["keys", "generate-base", "--category", "gold"],
        &[
            "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
        ],
        &["category", "create", "--id", "gold", "--tenant", "issuer"],
        &["sim", "create", "--state", "card.json", "--no-piv"],
        &[
            "issue",
            "--sim",
            "card.json",
            "write",
            "--card-number",
            "1000000001",
            "--category",
            "gold",
        ],
    ];
    for args in steps {
        let (success, _, err) = cardwright(dir, args, ci_env);
        assert!(success, "cardwright {}: {err}", args.join(" "));
    }
}

/// A running `serve --role ci` over HTTPS and the certificates around it.
pub struct CiServe {
    /// The process.
    pub service: super::pay_support::Service,
    /// Its base URL, `https://localhost:PORT` (the name its certificate holds).
    pub base: String,
    /// The CA of its server certificate.
    pub server_ca: Ca,
    /// bank1's root CA (not registered yet) and its platform's client certificate.
    pub bank1: Ca,
    /// bank1's platform's client certificate.
    pub bank1_client: Leaf,
}

/// Starts `serve --role ci --listen 127.0.0.1:0 --db DB --keystore KEYS` over HTTPS with a
/// server certificate made here, plus `extra` arguments, with `envs` (the master key is
/// added); makes bank1's root and client certificate.
pub fn start_ci(
    dir: &Path,
    db: &str,
    keys: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> CiServe {
    let mut server_ca = Ca::new("CI server CA");
    let server_leaf = server_ca.server();
    let mut bank1 = Ca::new("bank1 AP root");
    let bank1_client = bank1.client("bank1 AP platform");
    let tls_cert = write(dir, "ci.pem", &server_leaf.chain_pem);
    let tls_key = write(dir, "ci-key.pem", &server_leaf.key_pem);
    let mut args = vec![
        "serve",
        "--role",
        "ci",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db,
        "--keystore",
        keys,
        "--tls-cert",
        &tls_cert,
        "--tls-key",
        &tls_key,
    ];
    args.extend_from_slice(extra);
    let mut all_envs = vec![("CARDWRIGHT_MASTER_KEY", MASTER)];
    all_envs.extend_from_slice(envs);
    let service = super::pay_support::start(&args, &all_envs);
    let base = service.url.replace("127.0.0.1", "localhost");
    CiServe {
        service,
        base,
        server_ca,
        bank1,
        bank1_client,
    }
}
