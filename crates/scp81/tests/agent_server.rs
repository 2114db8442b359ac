//! Our card admin agent against our admin server over a real loopback TCP socket.

mod common;

use common::*;
use scp81::{
    AgentConfig, BodyEncoding, Outcome, Script, ScriptStatus, ServerConfig, AMENDMENT_B_CIPHERS,
};

fn three_scripts() -> Vec<Script> {
    vec![
        // A script for the PSK's own security domain, one for another SD, and one
        // large enough to need several chunks on the way back.
        Script::new(
            vec![
                0xAE, 0x80, 0x22, 0x05, 0x80, 0xCA, 0x00, 0x66, 0x00, 0x00, 0x00,
            ],
            None,
        ),
        Script::new(
            vec![
                0xAE, 0x80, 0x22, 0x05, 0x80, 0xF2, 0x80, 0x00, 0x02, 0x00, 0x00,
            ],
            Some(sd_aid()),
        ),
        Script::new(vec![0x5A; 3000], None),
    ]
}

/// The card's response to script `i`: a recognisable body, bigger for the last.
fn response(i: usize) -> Vec<u8> {
    let len = if i == 2 { 2500 } else { 6 };
    let mut r = vec![0xAF, 0x80, i as u8];
    r.resize(len, 0x90);
    r
}

async fn three_scripts_with(config: AgentConfig, expect_cipher: &str) {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let mut handle = server
        .queue
        .submit(IDENTITY.as_bytes(), three_scripts())
        .unwrap();

    let run = run_agent(server.addr, config, |i, _| (response(i), ScriptStatus::Ok)).await;
    assert_eq!(run.error, None);
    assert_eq!(run.cipher.as_deref(), Some(expect_cipher));
    assert!(run.done, "204 ended the session");
    let sent = three_scripts();
    assert_eq!(run.scripts.len(), 3);
    for (got, want) in run.scripts.iter().zip(&sent) {
        assert_eq!(got.0, want.bytes, "scripts arrive in order, intact");
        assert_eq!(got.1, want.target);
        assert!(got.2, "each script asks for its response");
    }

    for i in 0..3 {
        let r = handle.next_response().await.expect("a response");
        assert_eq!(r.index, i);
        assert_eq!(r.status, ScriptStatus::Ok);
        assert_eq!(r.body, response(i));
    }
    assert!(handle.next_response().await.is_none());
    let result = handle.finished().await.unwrap();
    assert_eq!(result.report.outcome, Outcome::Completed);
    assert!(result.undelivered.is_empty());
    assert!(result.unanswered.is_none());

    let report = server.next_report().await;
    assert_eq!(report.identity.as_deref(), Some(IDENTITY));
    assert_eq!(report.agent_id.as_deref(), Some(AGENT_ID));
    assert_eq!(report.cipher.as_deref(), Some(expect_cipher));
    assert_eq!(report.scripts_sent, 3);
    assert_eq!(report.statuses, vec![ScriptStatus::Ok; 3]);
    assert_eq!(report.outcome, Outcome::Completed);
    assert!(!report.resumed);
    assert!(server.queue.is_empty());
}

/// The agent's Host header; the test connects to the server's real port itself.
const URI: &str = "https://tsm.test:8443/gp/admin";

async fn three_scripts_over(cipher: &str, encoding: BodyEncoding) {
    let mut config = agent_config(URI, &PSK, cipher);
    config.body_encoding = encoding;
    three_scripts_with(config, cipher).await;
}

#[tokio::test]
async fn three_scripts_gcm_chunked() {
    three_scripts_over("PSK-AES128-GCM-SHA256", BodyEncoding::Chunked(256)).await;
}

#[tokio::test]
async fn three_scripts_cbc_chunked() {
    three_scripts_over("PSK-AES128-CBC-SHA256", BodyEncoding::Chunked(1024)).await;
}

#[tokio::test]
async fn three_scripts_cbc_content_length() {
    three_scripts_over("PSK-AES128-CBC-SHA256", BodyEncoding::ContentLength).await;
}

#[tokio::test]
async fn both_default_lists_agree_on_gcm() {
    // Both sides offer the Amendment B pair, GCM first: GCM is negotiated.
    three_scripts_with(
        agent_config(URI, &PSK, AMENDMENT_B_CIPHERS),
        "PSK-AES128-GCM-SHA256",
    )
    .await;
}

#[tokio::test]
async fn wrong_psk_is_refused_in_the_handshake() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let _handle = server
        .queue
        .submit(IDENTITY.as_bytes(), three_scripts())
        .unwrap();
    let mut wrong = PSK;
    wrong[0] ^= 1;
    let run = run_agent(
        server.addr,
        agent_config(URI, &wrong, AMENDMENT_B_CIPHERS),
        |_, _| unreachable!("no script over a wrong key"),
    )
    .await;
    assert!(
        run.error
            .as_deref()
            .unwrap_or_default()
            .contains("handshake"),
        "{run:?}"
    );
    assert!(run.cipher.is_none() && run.scripts.is_empty());
    let report = server.next_report().await;
    assert_eq!(report.identity.as_deref(), Some(IDENTITY));
    assert!(
        matches!(report.outcome, Outcome::HandshakeFailed(_)),
        "{report:?}"
    );
    assert_eq!(report.scripts_sent, 0);
    // The scripts stay queued for the card's next (right) attempt.
    assert_eq!(server.queue.len(), 1);
}

#[tokio::test]
async fn unknown_identity_is_refused_in_the_handshake() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let mut config = agent_config(URI, &PSK, AMENDMENT_B_CIPHERS);
    config.psk_identity = b"card-9999".to_vec();
    let run = run_agent(server.addr, config, |_, _| unreachable!()).await;
    assert!(
        run.error
            .as_deref()
            .unwrap_or_default()
            .contains("handshake"),
        "{run:?}"
    );
    let report = server.next_report().await;
    assert_eq!(report.identity.as_deref(), Some("card-9999"));
    assert_eq!(report.outcome, Outcome::UnknownIdentity);
}

#[tokio::test]
async fn nothing_queued_ends_at_once() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let run = run_agent(
        server.addr,
        agent_config(URI, &PSK, AMENDMENT_B_CIPHERS),
        |_, _| unreachable!(),
    )
    .await;
    assert_eq!(run.error, None);
    assert!(run.done && run.scripts.is_empty());
    let report = server.next_report().await;
    assert_eq!(report.outcome, Outcome::NothingQueued);
    assert_eq!(report.agent_id.as_deref(), Some(AGENT_ID));
}

#[tokio::test]
async fn failing_script_stops_the_session() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let handle = server
        .queue
        .submit(IDENTITY.as_bytes(), three_scripts())
        .unwrap();
    let run = run_agent(
        server.addr,
        agent_config(URI, &PSK, AMENDMENT_B_CIPHERS),
        |i, _| {
            if i == 1 {
                (Vec::new(), ScriptStatus::SecurityError)
            } else {
                (response(i), ScriptStatus::Ok)
            }
        },
    )
    .await;
    assert_eq!(run.error, None);
    assert!(run.done);
    assert_eq!(run.scripts.len(), 2);
    let result = handle.finished().await.unwrap();
    assert_eq!(
        result.report.outcome,
        Outcome::ScriptFailed {
            index: 1,
            status: ScriptStatus::SecurityError
        }
    );
    assert_eq!(result.undelivered.len(), 1);
    assert_eq!(result.undelivered[0].0, 2);
    assert_eq!(result.undelivered[0].1, three_scripts()[2]);
    let report = server.next_report().await;
    assert_eq!(
        report.statuses,
        vec![ScriptStatus::Ok, ScriptStatus::SecurityError]
    );
}

#[tokio::test]
async fn resume_flag_is_reported() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let _h = server
        .queue
        .submit(IDENTITY.as_bytes(), vec![Script::new(vec![1, 2, 3], None)])
        .unwrap();
    let mut config = agent_config(URI, &PSK, AMENDMENT_B_CIPHERS);
    config.resume = true;
    let run = run_agent(server.addr, config, |_, _| {
        (vec![0x90, 0x00], ScriptStatus::Ok)
    })
    .await;
    assert_eq!(run.error, None);
    let report = server.next_report().await;
    assert!(report.resumed);
    assert_eq!(report.outcome, Outcome::Completed);
}

#[tokio::test]
async fn queue_rules() {
    let server = TestServer::start(ServerConfig::default()).await;
    assert!(server.queue.submit(b"x", Vec::new()).is_err());
    let h = server
        .queue
        .submit(b"x", vec![Script::new(vec![1], None)])
        .unwrap();
    assert!(server
        .queue
        .submit(b"x", vec![Script::new(vec![1], None)])
        .is_err());
    assert_eq!(server.queue.cancel(b"x").map(|s| s.len()), Some(1));
    assert!(h.finished().await.is_err());
}
