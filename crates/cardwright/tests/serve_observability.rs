//! The real `cardwright --log-format json serve`: its log is JSON lines whose request lines
//! carry the request id of the answer; `/metrics` (behind `--metrics-token` from the
//! environment), `/healthz` and `/readyz` with a SQLite database.

mod pay_support;

use pay_support::get;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn json_log_lines_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("p.db").display());
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(pay_support::bin())
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db,
        ])
        .env("CARDWRIGHT_LOG", "info")
        .env("CARDWRIGHT_METRICS_TOKEN", "metrics-token-0123456789")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(u) = line.strip_prefix("cardwright serve: listening on ") {
            break u.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let r = get(
        &format!("{url}/api/v1/payments/nope"),
        &[("x-request-id", "cli-test-0001")],
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-request-id"), Some("cli-test-0001"));
    assert_eq!(r.json["request_id"], "cli-test-0001");
    assert_eq!(get(&format!("{url}/healthz"), &[]).status, 200);
    let ready = get(&format!("{url}/readyz"), &[]);
    assert_eq!(ready.status, 200, "{}", ready.json);
    assert_eq!(ready.json["checks"], serde_json::json!(["database"]));
    assert_eq!(get(&format!("{url}/metrics"), &[]).status, 401);
    let metrics = get(
        &format!("{url}/metrics"),
        &[("authorization", "Bearer metrics-token-0123456789")],
    );
    assert_eq!(metrics.status, 200);
    let text = metrics.json.as_str().expect("text");
    assert!(
        text.contains("cardwright_errors_total{code=\"unknown_challenge\"} 1"),
        "{text}"
    );
    assert!(text.contains("cardwright_db_connections_max 8"), "{text}");

    // The request's log line, as JSON, in the request span.
    let t0 = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["request_id"] == "cli-test-0001");
        if let Some(v) = found {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no JSON line with the request id in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line["message"], "answered");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 404);
    assert_eq!(line["error"], "unknown_challenge");
    assert_eq!(line["span"]["route"], "/api/v1/payments/:id");
    // Every line of the log is JSON, and the metrics token is in none.
    let text = std::fs::read_to_string(&log).unwrap();
    for l in text.lines() {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "not JSON: {l}");
    }
    assert!(!text.contains("metrics-token-0123456789"));
}
