//! `openssl s_client` (not our code) as the TLS-PSK client against our server.
//!
//! Runs when the `openssl` command is there; `CARDWRIGHT_OPENSSL_TESTS=1` makes it a
//! must (a missing `openssl` then fails instead of skipping).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use scp81::{Outcome, Script, ScriptStatus, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};

fn openssl_cli() -> bool {
    let must = std::env::var("CARDWRIGHT_OPENSSL_TESTS").as_deref() == Ok("1");
    let version = std::process::Command::new("openssl")
        .arg("version")
        .output();
    match version {
        Ok(o) if o.status.success() => {
            eprintln!("using {}", String::from_utf8_lossy(&o.stdout).trim());
            true
        }
        _ if must => panic!("CARDWRIGHT_OPENSSL_TESTS=1 but the openssl command is missing"),
        _ => {
            eprintln!(
                "skipping: no openssl command (set CARDWRIGHT_OPENSSL_TESTS=1 to require it)"
            );
            false
        }
    }
}

/// `openssl s_client -connect 127.0.0.1:PORT -tls1_2 -psk HEX -psk_identity ID
/// -cipher SUITE -quiet`, with stdin and stdout piped.
fn s_client(port: u16, psk: &[u8], identity: &str, cipher: &str) -> Child {
    Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_2",
        ])
        .args([
            "-psk",
            &hex(psk),
            "-psk_identity",
            identity,
            "-cipher",
            cipher,
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl s_client")
}

/// Read one HTTP response (framed by Content-Length, or none) from s_client's stdout.
async fn read_response(out: &mut ChildStdout, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return (head, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut chunk))
            .await
            .expect("s_client output in time")
            .unwrap();
        assert!(
            n > 0,
            "s_client closed early; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

async fn post_and_get_script(cipher: &str) {
    if !openssl_cli() {
        return;
    }
    let mut server = TestServer::start(ServerConfig::default()).await;
    let script = vec![
        0xAE, 0x80, 0x22, 0x05, 0x80, 0xCA, 0x00, 0x66, 0x00, 0x00, 0x00,
    ];
    let mut handle = server
        .queue
        .submit(
            IDENTITY.as_bytes(),
            vec![Script::new(script.clone(), Some(sd_aid()))],
        )
        .unwrap();
    let mut child = s_client(server.addr.port(), &PSK, IDENTITY, cipher);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();

    // The card's first POST, typed on s_client's stdin.
    let first = format!(
        "POST /gp/admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n\
         X-Admin-From: {AGENT_ID}\r\n\r\n"
    );
    stdin.write_all(first.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let mut buf = Vec::new();
    let (head, body) = read_response(&mut stdout, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(
        header(&head, "Content-Type"),
        Some("application/vnd.globalplatform.card-content-mgt;version=1.0")
    );
    assert_eq!(
        header(&head, "X-Admin-Protocol"),
        Some("globalplatform-remote-admin/1.0")
    );
    assert_eq!(
        header(&head, "X-Admin-Targeted-Application"),
        Some("//aid/A000000151/535041")
    );
    assert_eq!(body, script, "the first script comes back");
    let next = header(&head, "X-Admin-Next-URI")
        .expect("a next URI")
        .to_owned();

    // The response, chunked as cards send it.
    let resp = [0xAFu8, 0x80, 0x23, 0x02, 0x90, 0x00, 0x00, 0x00];
    let mut second = format!(
        "POST {next} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n\
         X-Admin-From: {AGENT_ID}\r\n\
         Content-Type: application/vnd.globalplatform.card-content-mgt-response;version=1.0\r\n\
         X-Admin-Script-Status: ok\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\n"
    )
    .into_bytes();
    second.extend_from_slice(&resp[..3]);
    second.extend_from_slice(b"\r\n5\r\n");
    second.extend_from_slice(&resp[3..]);
    second.extend_from_slice(b"\r\n0\r\n\r\n");
    stdin.write_all(&second).await.unwrap();
    stdin.flush().await.unwrap();
    let (head, body) = read_response(&mut stdout, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");
    assert!(header(&head, "X-Admin-Next-URI").is_none());
    assert!(body.is_empty());

    let r = handle.next_response().await.unwrap();
    assert_eq!(
        (r.index, r.status, r.body.as_slice()),
        (0, ScriptStatus::Ok, &resp[..])
    );
    let report = server.next_report().await;
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(report.cipher.as_deref(), Some(cipher));
    assert_eq!(report.identity.as_deref(), Some(IDENTITY));
    let _ = child.kill().await;
}

#[tokio::test]
async fn s_client_cbc_sha256_gets_the_first_script() {
    post_and_get_script("PSK-AES128-CBC-SHA256").await;
}

#[tokio::test]
async fn s_client_gcm_sha256_gets_the_first_script() {
    post_and_get_script("PSK-AES128-GCM-SHA256").await;
}

/// s_client with a bad key or identity: the handshake fails, no HTTP is exchanged.
async fn refused(psk: &[u8], identity: &str) -> scp81::SessionReport {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let _h = server
        .queue
        .submit(IDENTITY.as_bytes(), vec![Script::new(vec![1, 2, 3], None)])
        .unwrap();
    let mut child = s_client(server.addr.port(), psk, identity, "PSK-AES128-CBC-SHA256");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin
        .write_all(b"POST /gp/admin HTTP/1.1\r\nHost: x\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\nX-Admin-From: a\r\n\r\n")
        .await;
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("s_client gives up in time")
        .unwrap();
    assert!(
        !out.status.success(),
        "s_client reports the failed handshake"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("HTTP/1.1"),
        "no HTTP over a refused handshake"
    );
    let report = server.next_report().await;
    assert_eq!(report.scripts_sent, 0);
    assert_eq!(server.queue.len(), 1, "the scripts stay queued");
    report
}

#[tokio::test]
async fn s_client_wrong_psk_is_refused() {
    if !openssl_cli() {
        return;
    }
    let mut wrong = PSK;
    wrong[15] ^= 0x80;
    let report = refused(&wrong, IDENTITY).await;
    assert_eq!(report.identity.as_deref(), Some(IDENTITY));
    assert!(
        matches!(report.outcome, Outcome::HandshakeFailed(_)),
        "{report:?}"
    );
}

#[tokio::test]
async fn s_client_unknown_identity_is_refused() {
    if !openssl_cli() {
        return;
    }
    let report = refused(&PSK, "card-unknown").await;
    assert_eq!(report.identity.as_deref(), Some("card-unknown"));
    assert_eq!(report.outcome, Outcome::UnknownIdentity);
}
