//! Helpers for the payment tests: the real `cardwright serve` and `cardwright agent` on
//! ephemeral loopback ports, `cardwright pay`, and a JSON HTTP client.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cardwright")
}

/// A running `cardwright` service, killed on drop.
pub struct Service {
    child: Child,
    pub url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cardwright ARGS` and waits for its "listening on http://ADDR" line.
pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Service {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("CARDWRIGHT_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn cardwright");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(i) = line.find("listening on ") {
                    break line[i + "listening on ".len()..].trim().to_string();
                }
            }
            _ => {
                let status = child.wait();
                panic!(
                    "cardwright {} exited before listening: {status:?}",
                    args.join(" ")
                );
            }
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Service { child, url }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `cardwright serve` on an ephemeral port with the admin token set.
pub fn server(extra: &[&str]) -> Service {
    let mut args = vec!["serve"];
    if !extra.contains(&"--listen") {
        args.extend_from_slice(&["--listen", "127.0.0.1:0"]);
    }
    args.extend_from_slice(extra);
    start(&args, &[("CARDWRIGHT_ADMIN_TOKEN", ADMIN_TOKEN)])
}

/// `cardwright agent` for the virtual card in `card`, allowing `origin`.
pub fn agent(card: &Path, origin: &str) -> Service {
    start(
        &[
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--allow-origin",
            origin,
            "--sim",
            card.to_str().expect("utf-8 path"),
        ],
        &[],
    )
}

pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cardwright ARGS` with the PIN in CARDWRIGHT_PIN.
pub fn cardwright(args: &[&str], pin: &str) -> Run {
    let o = Command::new(bin())
        .args(args)
        .env("CARDWRIGHT_LOG", "warn")
        .env("CARDWRIGHT_PIN", pin)
        .env("CARDWRIGHT_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .output()
        .expect("spawn cardwright");
    Run {
        ok: o.status.success(),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs and requires success; returns stdout.
pub fn ok(args: &[&str], pin: &str) -> String {
    let r = cardwright(args, pin);
    assert!(
        r.ok,
        "cardwright {} failed:\n{}\n{}",
        args.join(" "),
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// Runs and requires exit status 1 with `needle` in the error line; returns that line.
pub fn fails(args: &[&str], pin: &str, needle: &str) -> String {
    let r = cardwright(args, pin);
    assert_eq!(
        r.code,
        Some(1),
        "cardwright {}:\n{}\n{}",
        args.join(" "),
        r.stdout,
        r.stderr
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("cardwright: error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{}", r.stderr))
        .to_string();
    assert!(line.contains(needle), "expected {needle:?} in: {line}");
    line
}

/// A temporary directory with a virtual card path in it.
pub struct CardFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// A new virtual card (`cardwright sim create`) in a temporary directory.
pub fn card_file() -> CardFile {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("card.json");
    let out = Command::new(bin())
        .args(["sim", "create", "--state"])
        .arg(&path)
        .output()
        .expect("run cardwright sim create");
    assert!(out.status.success(), "sim create: {out:?}");
    CardFile { dir, path }
}

impl CardFile {
    pub fn sim(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn reply(mut r: ureq::http::Response<ureq::Body>) -> Reply {
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        json,
    }
}

/// POST JSON with optional extra headers.
pub fn post(url: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.send_json(body).expect("HTTP POST"))
}

/// GET with optional extra headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.call().expect("HTTP GET"))
}

/// OPTIONS (a CORS preflight).
pub fn options(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().options(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.call().expect("HTTP OPTIONS"))
}

/// What the check-out page does, with the agent: returns the created challenge, the
/// agent's answer.
pub fn page_sign(
    server: &str,
    agent: &str,
    origin: &str,
    amount: &str,
    order: &str,
    pin: &str,
) -> (Value, Reply) {
    let created = post(
        &format!("{server}/api/v1/payments"),
        &serde_json::json!({"amount": amount, "currency": "EUR", "payee": "SHOP", "order_id": order}),
        &[],
    );
    assert_eq!(created.status, 201, "{:?}", created.json);
    let signed = post(
        &format!("{agent}/v1/sign"),
        &serde_json::json!({"canonical": created.json["canonical"], "pin": pin}),
        &[("Origin", origin)],
    );
    (created.json, signed)
}

/// POST the authorisation as the page does.
pub fn authorise(server: &str, created: &Value, request: &Value, signed: &Value) -> Reply {
    let id = created["id"].as_str().expect("id");
    post(
        &format!("{server}/api/v1/payments/{id}/authorise"),
        &serde_json::json!({
            "request": request,
            "certificate": signed["certificate"],
            "signature": signed["signature"],
        }),
        &[],
    )
}

/// The payment's state and refusal codes, from the server.
pub fn payment_record(server: &str, id: &str) -> (String, Vec<String>) {
    let r = get(&format!("{server}/api/v1/payments/{id}"), &[]);
    assert_eq!(r.status, 200, "{:?}", r.json);
    let codes = r.json["rejections"]
        .as_array()
        .expect("rejections")
        .iter()
        .map(|x| x["code"].as_str().unwrap_or("").to_string())
        .collect();
    (r.json["state"].as_str().unwrap_or("").to_string(), codes)
}

/// Enrolment through the agent, as the page does; returns the issued certificate.
pub fn page_enrol(
    server: &str,
    agent: &str,
    origin: &str,
    name: &str,
    alg: &str,
    pin: &str,
) -> Value {
    let started = post(
        &format!("{server}/api/v1/enrolments"),
        &serde_json::json!({"name": name, "algorithm": alg}),
        &[],
    );
    assert_eq!(started.status, 201, "{:?}", started.json);
    let s = &started.json;
    let card = post(
        &format!("{agent}/v1/enrol"),
        &serde_json::json!({"challenge": s["challenge"], "algorithm": alg, "slot": s["keygen"]["slot"], "pin": pin}),
        &[("Origin", origin)],
    );
    assert_eq!(card.status, 200, "{:?}", card.json);
    let id = s["id"].as_str().expect("id");
    let cert = post(
        &format!("{server}/api/v1/enrolments/{id}"),
        &serde_json::json!({"algorithm": alg, "public_key_template": card.json["public_key_template"], "proof": card.json["proof"]}),
        &[],
    );
    assert_eq!(cert.status, 201, "{:?}", cert.json);
    let written = post(
        &format!("{agent}/v1/certificate"),
        &serde_json::json!({"certificate": cert.json["certificate"], "slot": s["keygen"]["slot"]}),
        &[("Origin", origin)],
    );
    assert_eq!(written.status, 200, "{:?}", written.json);
    cert.json
}
