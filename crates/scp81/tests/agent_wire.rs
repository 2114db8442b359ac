//! The agent's bytes on the wire, against a hand-written TLS-PSK peer (not our
//! server): `204` with a next URI, a last script without one, chunked responses.

mod common;

use std::pin::Pin;
use std::time::Duration;

use common::*;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslVersion};
use scp81::{AgentSession, Event, ScriptStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_openssl::SslStream;

/// Read until `end` appears; return everything up to and including it.
async fn read_until(s: &mut SslStream<TcpStream>, buf: &mut Vec<u8>, end: &[u8]) -> String {
    loop {
        if let Some(i) = buf.windows(end.len()).position(|w| w == end) {
            let msg: Vec<u8> = buf.drain(..i + end.len()).collect();
            return String::from_utf8_lossy(&msg).into_owned();
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "agent closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn peer(listener: TcpListener) -> Vec<String> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_cipher_list("PSK-AES128-CBC-SHA256").unwrap();
    b.set_psk_server_callback(|_, id, psk| {
        assert_eq!(id, Some(IDENTITY.as_bytes()));
        psk[..PSK.len()].copy_from_slice(&PSK);
        Ok(PSK.len())
    });
    let acceptor = b.build();
    let (tcp, _) = listener.accept().await.unwrap();
    let mut s = SslStream::new(Ssl::new(acceptor.context()).unwrap(), tcp).unwrap();
    Pin::new(&mut s).accept().await.unwrap();
    let mut buf = Vec::new();
    let mut seen = Vec::new();

    seen.push(read_until(&mut s, &mut buf, b"\r\n\r\n").await);
    s.write_all(b"HTTP/1.1 204 No Content\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\nX-Admin-Next-URI: /second?x=1\r\n\r\n").await.unwrap();

    seen.push(read_until(&mut s, &mut buf, b"\r\n\r\n").await);
    s.write_all(b"HTTP/1.1 200 OK\r\nX-Admin-Next-URI: https://tsm.test/third\r\nX-Admin-Targeted-Application: //aid/A000000151/000000\r\ncontent-type: application/vnd.globalplatform.card-content-mgt; version=1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\xAA\xBB\r\n0\r\n\r\n").await.unwrap();

    seen.push(read_until(&mut s, &mut buf, b"\r\n0\r\n\r\n").await);
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.globalplatform.card-content-mgt;version=1.0\r\nContent-Length: 1\r\n\r\n\xCC").await.unwrap();

    // The agent closes with close_notify after the last script.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("agent closes")
        .unwrap();
    assert_eq!(n, 0);
    seen
}

#[tokio::test]
async fn agent_follows_next_uris_and_stops_after_a_last_script() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(peer(listener));

    let mut config = agent_config(
        "https://tsm.test:8443/gp/admin?from=sms",
        &PSK,
        "PSK-AES128-CBC-SHA256",
    );
    config.body_encoding = scp81::BodyEncoding::Chunked(3);
    let mut agent = AgentSession::start(config).unwrap();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut events = Vec::new();
    let mut buf = [0u8; 4096];
    while !agent.is_done() {
        tcp.write_all(&agent.take_network_bytes()).await.unwrap();
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        agent.on_network_bytes(&buf[..n]).unwrap();
        while let Some(ev) = agent.poll_event() {
            if let Event::Script { bytes, .. } = &ev {
                let resp: &[u8] = if bytes == &[0xAA, 0xBB] {
                    b"\x01\x02\x03\x04\x05\x06\x07"
                } else {
                    b""
                };
                agent.send_response(resp, ScriptStatus::Ok).unwrap();
            }
            events.push(ev);
        }
    }
    tcp.write_all(&agent.take_network_bytes()).await.unwrap();
    let seen = peer.await.unwrap();

    assert!(matches!(&events[0], Event::Connected { cipher } if cipher == "PSK-AES128-CBC-SHA256"));
    assert_eq!(
        events[1],
        Event::Script {
            bytes: vec![0xAA, 0xBB],
            target: Some(gp::Aid::new(&[0xA0, 0, 0, 1, 0x51, 0, 0, 0]).unwrap()),
            expects_response: true
        }
    );
    assert_eq!(
        events[2],
        Event::Script {
            bytes: vec![0xCC],
            target: None,
            expects_response: false
        }
    );
    assert_eq!(events[3], Event::Done);
    assert_eq!(events.len(), 4);

    let first = &seen[0];
    assert!(
        first.starts_with("POST /gp/admin?from=sms HTTP/1.1\r\nHost: tsm.test:8443\r\n"),
        "{first}"
    );
    assert!(first.contains("\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"));
    assert!(first.contains(&format!("\r\nX-Admin-From: {AGENT_ID}\r\n")));
    assert!(first.contains("\r\nContent-Length: 0\r\n"));
    assert!(!first.contains("X-Admin-Script-Status") && !first.contains("Content-Type"));
    assert!(
        seen[1].starts_with("POST /second?x=1 HTTP/1.1\r\n"),
        "{}",
        seen[1]
    );
    assert!(!seen[1].contains("X-Admin-Script-Status"));
    let third = &seen[2];
    assert!(third.starts_with("POST /third HTTP/1.1\r\n"), "{third}");
    assert!(third.contains("\r\nContent-Type: application/vnd.globalplatform.card-content-mgt-response;version=1.0\r\n"));
    assert!(third.contains("\r\nX-Admin-Script-Status: ok\r\n"));
    assert!(third.contains("\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\x01\x02\x03\r\n3\r\n\x04\x05\x06\r\n1\r\n\x07\r\n0\r\n\r\n"));
    assert!(!third.contains("Content-Length"));
}
