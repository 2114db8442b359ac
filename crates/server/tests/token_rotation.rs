//! Token rotation without a restart, for connected terminals too (issue 13): the issuance
//! API's token table re-read from a file (`server::auth::watch_token_files`, as `cardwright
//! serve` does), terminal agents (relay::agent) connected over a real socket. When a
//! terminal's line leaves the file its WebSocket is closed with the reason, its readers
//! leave `GET /api/v1/terminals`, and a job running on it is interrupted, resumable: put
//! back, the terminal reconnects and the job is resumed to its end.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::desk::{listed, Agent};
use common::{call, call_with};
use relay::agent::AgentError;
use serde_json::{json, Value};
use server::auth::{Principal, Role, TokenTable};
use server::issuance::IssuanceApi;

const BASE: &str = "00112233445566778899AABBCCDDEEFF";
const WRITTEN: &str = "1000000001";
const CARD: &str = "1000000002";
const OPERATOR: &str = "issuer-operator-token-0123456789";
const DESK: &str = "desk-1-terminal-token-0123456789";
const DESK2: &str = "desk-2-terminal-token-0123456789";
const DESK3: &str = "desk-3-terminal-token-0123456789";
const READER: &str = "Reader 0";

/// The operator (fixed, as given on the command line) and the terminals of `file`, one
/// `NAME=TOKEN` a line.
fn table(file: &PathBuf) -> Result<TokenTable, String> {
    let mut t = TokenTable::new().with(
        OPERATOR,
        Principal {
            name: "alice".into(),
            role: Role::Operator,
            tenant: Some("issuer".into()),
        },
    );
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (name, token) = line.split_once('=').ok_or("NAME=TOKEN")?;
        t.add(
            token.trim(),
            Principal {
                name: name.trim().into(),
                role: Role::Terminal,
                tenant: None,
            },
        );
    }
    Ok(t)
}

async fn terminals(app: &axum::Router) -> Vec<String> {
    let r = call(app, Method::GET, "/api/v1/terminals", None, Some(OPERATOR)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["terminal"].as_str().unwrap().to_string())
        .collect()
}

async fn job(app: &axum::Router, id: i64) -> Value {
    let r = call(
        app,
        Method::GET,
        &format!("/api/v1/jobs/{id}"),
        None,
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminal_whose_token_leaves_the_file_is_disconnected_and_its_job_is_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let common::issuer::WrittenCard { issuer, .. } =
        common::issuer::issuer_with_written_card(dir.path(), BASE, WRITTEN);
    let file = dir.path().join("terminal-tokens");
    let all = format!("desk-1={DESK}\ndesk-2={DESK2}\ndesk-3={DESK3}\n");
    std::fs::write(&file, &all).unwrap();
    let tokens = table(&file).unwrap();
    let api = IssuanceApi::new(Arc::new(issuer), tokens.clone(), Duration::from_secs(10));
    {
        let file = file.clone();
        server::auth::watch_token_files(
            tokens,
            vec![file.clone()],
            Duration::from_secs(1),
            move || table(&file),
        );
    }
    let app = server::issuance::router(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });

    let card = card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
    let desk1 = Agent::connect(&url, DESK, "desk-1", vec![(READER, card.clone())]);
    let blank = card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
    let desk2 = Agent::connect(&url, DESK2, "desk-2", vec![(READER, blank.clone())]);
    let desk3 = Agent::connect(&url, DESK3, "desk-3", vec![(READER, blank)]);
    for desk in ["desk-1", "desk-2", "desk-3"] {
        listed(api.hub(), desk, 1).await;
    }

    // A write on desk-1's card, its first APDU held at the terminal.
    let auth = format!("Bearer {OPERATOR}");
    let r = call_with(
        &app,
        Method::POST,
        &format!("/api/v1/cards/{CARD}/write"),
        Some(json!({"terminal": "desk-1", "reader": READER, "category": "gold"}).to_string()),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("prefer", "respond-async"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id = r.json()["job"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(job(&app, id).await["state"], "running");

    // desk-1's and desk-2's lines leave the file: within about two seconds (the file is
    // looked at every second) they are no longer listed; desk-3 stays.
    std::fs::write(&file, format!("# desks 1 and 2 revoked\ndesk-3={DESK3}\n")).unwrap();
    let t0 = Instant::now();
    while terminals(&app).await != ["desk-3"] {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "still connected after {:?}: {:?}",
            t0.elapsed(),
            terminals(&app).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The idle terminal got the reason and stopped (it does not come back with a token
    // that is gone).
    match desk2.ended() {
        Err(AgentError::Refused(why)) => {
            assert_eq!(why, relay::hub::REVOKED)
        }
        other => panic!("desk-2: {other:?}"),
    }
    // The job on desk-1 was interrupted: pending (resumable), the reason recorded.
    let t0 = Instant::now();
    let v = loop {
        let v = job(&app, id).await;
        if v["state"] != "running" {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(v["state"], "pending", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains(relay::hub::REVOKED),
        "{v}"
    );
    // desk-1, let go, finds its connection closed and its token refused.
    desk1.open_gate();
    assert!(desk1.ended().is_err());
    // Its token is refused at the door too.
    let r = call(&app, Method::GET, relay::WS_PATH, None, Some(DESK)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

    // The line put back: the terminal reconnects and the job is resumed to its end.
    std::fs::write(&file, &all).unwrap();
    let t0 = Instant::now();
    let desk1 = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let a = Agent::connect(&url, DESK, "desk-1", vec![(READER, card.clone())]);
        a.open_gate();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if terminals(&app).await.contains(&"desk-1".to_string()) {
            break a;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "desk-1 not back");
    };
    let r = call(
        &app,
        Method::POST,
        &format!("/api/v1/cards/{CARD}/resume"),
        Some(json!({"terminal": "desk-1", "reader": READER}).to_string()),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["job"].as_i64(), v["state"].as_str()),
        (Some(id), Some("done"))
    );
    assert_eq!(v["card"]["state"], "written");
    // desk-3 was never disconnected.
    assert!(terminals(&app).await.contains(&"desk-3".to_string()));
    drop((desk1, desk3));
}
