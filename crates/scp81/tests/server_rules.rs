//! The server's strictness and time-outs, probed with a raw TLS-PSK client.

mod common;

use std::pin::Pin;
use std::time::Duration;

use common::*;
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use scp81::{Outcome, Script, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

async fn tls_client(addr: std::net::SocketAddr) -> SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_cipher_list("PSK-AES128-GCM-SHA256").unwrap();
    b.set_psk_client_callback(|_, _, id, psk| {
        id[..IDENTITY.len()].copy_from_slice(IDENTITY.as_bytes());
        id[IDENTITY.len()] = 0;
        psk[..PSK.len()].copy_from_slice(&PSK);
        Ok(PSK.len())
    });
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .use_server_name_indication(false)
        .verify_hostname(false)
        .into_ssl("x")
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut s).connect().await.expect("handshake");
    s
}

/// Send `request`, return what the server wrote until it closed.
async fn exchange(request: &[u8]) -> (String, scp81::SessionReport) {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let _h = server
        .queue
        .submit(IDENTITY.as_bytes(), vec![Script::new(vec![1, 2, 3], None)])
        .unwrap();
    let mut s = tls_client(server.addr).await;
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let report = server.next_report().await;
    (String::from_utf8_lossy(&out).into_owned(), report)
}

const PROTO: &str = "X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n";
const FROM: &str = "X-Admin-From: a\r\n";

#[tokio::test]
async fn wrong_path_is_404() {
    let (out, report) =
        exchange(format!("POST /other HTTP/1.1\r\nHost: x\r\n{PROTO}{FROM}\r\n").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
    assert!(matches!(report.outcome, Outcome::Protocol(_)));
    assert_eq!(report.scripts_sent, 0);
}

#[tokio::test]
async fn get_is_405() {
    let (out, _) =
        exchange(format!("GET /gp/admin HTTP/1.1\r\nHost: x\r\n{PROTO}{FROM}\r\n").as_bytes())
            .await;
    assert!(out.starts_with("HTTP/1.1 405 "), "{out}");
}

#[tokio::test]
async fn missing_admin_headers_are_400() {
    let (out, _) =
        exchange(format!("POST /gp/admin HTTP/1.1\r\nHost: x\r\n{FROM}\r\n").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    let (out, _) =
        exchange(format!("POST /gp/admin HTTP/1.1\r\nHost: x\r\n{PROTO}\r\n").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    let (out, _) = exchange(
        format!("POST /gp/admin HTTP/1.1\r\nHost: x\r\nX-Admin-Protocol: globalplatform-remote-admin/9\r\n{FROM}\r\n")
            .as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
}

#[tokio::test]
async fn response_to_the_wrong_uri_or_type_is_refused() {
    for (uri, ctype, status) in [
        (
            "/gp/admin?session=999&script=0",
            "application/vnd.globalplatform.card-content-mgt-response;version=1.0",
            "400",
        ),
        ("NEXT", "text/plain", "415"),
    ] {
        let mut server = TestServer::start(ServerConfig::default()).await;
        let _h = server
            .queue
            .submit(IDENTITY.as_bytes(), vec![Script::new(vec![1, 2, 3], None)])
            .unwrap();
        let mut s = tls_client(server.addr).await;
        s.write_all(format!("POST /gp/admin HTTP/1.1\r\nHost: x\r\n{PROTO}{FROM}\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        let next = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Admin-Next-URI: "))
            .unwrap()
            .to_owned();
        let uri = if uri == "NEXT" { next.as_str() } else { uri };
        s.write_all(
            format!(
                "POST {uri} HTTP/1.1\r\nHost: x\r\n{PROTO}{FROM}Content-Type: {ctype}\r\n\
                 X-Admin-Script-Status: ok\r\nContent-Length: 2\r\n\r\nOK"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
        let report = server.next_report().await;
        assert!(matches!(report.outcome, Outcome::Protocol(_)), "{report:?}");
        assert_eq!(report.scripts_sent, 1);
    }
}

#[tokio::test]
async fn silent_card_times_out() {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let mut server = TestServer::start(config).await;
    // TLS up, then nothing.
    let _s = tls_client(server.addr).await;
    assert_eq!(
        server.next_report().await.outcome,
        Outcome::Timeout("request")
    );
    // Not even a ClientHello.
    let _tcp = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        server.next_report().await.outcome,
        Outcome::Timeout("handshake")
    );
}
