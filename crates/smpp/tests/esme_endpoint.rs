//! The ESME against the crate's own handset endpoint, and against a scripted SMSC for the
//! session rules (window, enquire_link, generic_nack, reconnect, refused binds).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use smpp::codec::{Frame, SmppCodec};
use smpp::rusmpp::pdus::{BindTransceiverResp, SubmitSmResp};
use smpp::rusmpp::types::COctetString;
use smpp::rusmpp::{Command, CommandId, CommandStatus, Pdu};
use smpp::{
    Address, Backoff, Credentials, Error, Esme, EsmeConfig, HandsetEndpoint, Inbound, ShortMessage,
    Status,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::Framed;

const T: Duration = Duration::from_secs(5);

fn fast_config(port: u16, user: &str, pass: &str) -> EsmeConfig {
    let mut c = EsmeConfig::new("127.0.0.1", port, Credentials::new(user, pass).unwrap());
    c.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        factor: 2.0,
        jitter: 0.2,
    };
    c.response_timeout = Duration::from_secs(2);
    c
}

fn ota_message(tag: u8) -> ShortMessage {
    let mut ud = vec![0x07, 0x00, 0x03, tag, 0x01, 0x01, 0x70, 0x00];
    ud.extend((0..132u8).map(|i| i.wrapping_mul(tag).wrapping_add(1)));
    ShortMessage::sim_data_download(
        Address::international("4412345"),
        Address::international("447700900123"),
        ud,
    )
    .with_receipt()
}

#[tokio::test]
async fn submit_mo_and_receipt_through_the_endpoint() {
    let creds = Credentials::new("smsc", "secret").unwrap();
    let (endpoint, mut mt) = HandsetEndpoint::listen("127.0.0.1:0", creds).await.unwrap();
    let port = endpoint.local_addr().port();
    let (esme, mut inbound) = Esme::connect(fast_config(port, "smsc", "secret"));
    esme.wait_bound(T).await.unwrap();
    assert_eq!(esme.status(), Status::Bound);

    let sent = ota_message(0x5A);
    let id = esme.submit(sent.clone()).await.unwrap();
    let got = timeout(T, mt.recv()).await.unwrap().unwrap();
    assert_eq!(got.message, sent, "MT arrives unchanged");
    assert_eq!(got.message_id, id.0);

    // MO from the handset side.
    let mut mo = ota_message(0x33);
    mo.registered_delivery = 0;
    std::mem::swap(&mut mo.source, &mut mo.destination);
    endpoint.send_mo(mo.clone()).await.unwrap();
    match timeout(T, inbound.recv()).await.unwrap().unwrap() {
        Inbound::Mo(m) => assert_eq!(m, mo),
        other => panic!("expected an MO, got {other:?}"),
    }

    // Delivery receipt.
    endpoint.send_receipt(&got, "DELIVRD").await.unwrap();
    match timeout(T, inbound.recv()).await.unwrap().unwrap() {
        Inbound::Receipt(r) => {
            assert_eq!(r.message_id(), Some(id.0.as_str()));
            assert_eq!(r.text.id.as_deref(), Some(id.0.as_str()));
            assert_eq!(r.message_state, Some(2));
            assert!(r.is_delivered());
        }
        other => panic!("expected a receipt, got {other:?}"),
    }
    esme.unbind().await;
    assert_eq!(esme.status(), Status::Closed);
}

#[tokio::test]
async fn reconnects_after_the_server_drops_the_connection() {
    let creds = Credentials::new("smsc", "secret").unwrap();
    let (endpoint, mut mt) = HandsetEndpoint::listen("127.0.0.1:0", creds).await.unwrap();
    let (esme, _inbound) =
        Esme::connect(fast_config(endpoint.local_addr().port(), "smsc", "secret"));
    esme.wait_bound(T).await.unwrap();
    let mut status = esme.watch_status();
    endpoint.drop_connections();
    // The ESME notices, backs off, and binds again by itself.
    timeout(
        T,
        status.wait_for(|s| matches!(s, Status::Reconnecting { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    esme.wait_bound(T).await.unwrap();
    assert!(endpoint.bind_attempts() >= 2);
    let id = esme.submit(ota_message(1)).await.unwrap();
    assert_eq!(
        timeout(T, mt.recv()).await.unwrap().unwrap().message_id,
        id.0
    );
}

#[tokio::test]
async fn bad_credentials_are_reported_without_retrying() {
    let creds = Credentials::new("smsc", "secret").unwrap();
    let (endpoint, _mt) = HandsetEndpoint::listen("127.0.0.1:0", creds).await.unwrap();
    let (esme, _inbound) =
        Esme::connect(fast_config(endpoint.local_addr().port(), "smsc", "wrong"));
    match esme.wait_bound(T).await {
        Err(Error::BindRefused { status, .. }) => assert_eq!(status, 0x0E),
        other => panic!("expected a refused bind, got {other:?}"),
    }
    assert_eq!(esme.status(), Status::Refused { status: 0x0E });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        endpoint.bind_attempts(),
        1,
        "no retries after a refused bind"
    );
    assert!(matches!(
        esme.submit(ota_message(2)).await,
        Err(Error::BindRefused { .. })
    ));
}

/// A scripted SMSC: accepts one connection, answers its bind with `bind_status`.
async fn accept_bound(listener: &TcpListener, bind_status: u32) -> Framed<TcpStream, SmppCodec> {
    let (stream, _) = listener.accept().await.unwrap();
    let mut framed = Framed::new(stream, SmppCodec);
    let bind = next_command(&mut framed).await;
    assert_eq!(bind.id(), CommandId::BindTransceiver);
    let resp = BindTransceiverResp::builder()
        .system_id(COctetString::from_str_lossy("fake"))
        .build();
    framed
        .send(&Command::new(
            CommandStatus::from(bind_status),
            bind.sequence_number(),
            resp,
        ))
        .await
        .unwrap();
    framed
}

trait Lossy {
    fn from_str_lossy(s: &str) -> Self;
}
impl<const A: usize, const B: usize> Lossy for COctetString<A, B> {
    fn from_str_lossy(s: &str) -> Self {
        s.parse().unwrap()
    }
}

async fn next_command(framed: &mut Framed<TcpStream, SmppCodec>) -> Command {
    match timeout(T, framed.next()).await.unwrap().unwrap().unwrap() {
        Frame::Command(c) => *c,
        other => panic!("undecodable: {other:?}"),
    }
}

#[tokio::test]
async fn the_window_bounds_outstanding_submits() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = fast_config(listener.local_addr().unwrap().port(), "u", "p");
    config.window = 4;
    config.response_timeout = Duration::from_secs(10);
    let (esme, _inbound) = Esme::connect(config);
    let mut smsc = accept_bound(&listener, 0).await;
    esme.wait_bound(T).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let esme = esme.clone();
        tasks.push(tokio::spawn(
            async move { esme.submit(ota_message(i)).await },
        ));
    }
    let mut outstanding = Vec::new();
    for _ in 0..4 {
        let c = next_command(&mut smsc).await;
        assert_eq!(c.id(), CommandId::SubmitSm);
        outstanding.push(c.sequence_number());
    }
    // A fifth does not come while four await their response.
    assert!(timeout(Duration::from_millis(400), smsc.next())
        .await
        .is_err());
    let mut answered = 0;
    while answered < 10 {
        let seq = outstanding.remove(0);
        let resp = SubmitSmResp::builder()
            .message_id(COctetString::from_str_lossy(&format!("m{seq}")))
            .build();
        smsc.send(&Command::new(CommandStatus::EsmeRok, seq, resp))
            .await
            .unwrap();
        answered += 1;
        if answered <= 6 {
            let c = next_command(&mut smsc).await;
            assert_eq!(c.id(), CommandId::SubmitSm);
            outstanding.push(c.sequence_number());
        }
        assert!(outstanding.len() <= 4);
    }
    for t in tasks {
        let id = t.await.unwrap().unwrap();
        assert!(id.0.starts_with('m'));
    }
}

#[tokio::test]
async fn enquire_link_both_ways_and_a_dead_link_is_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = fast_config(listener.local_addr().unwrap().port(), "u", "p");
    config.enquire_link_interval = Duration::from_millis(200);
    config.response_timeout = Duration::from_millis(500);
    let (esme, _inbound) = Esme::connect(config);
    let mut smsc = accept_bound(&listener, 0).await;
    // The SMSC's enquire_link is answered.
    smsc.send(&Command::new(CommandStatus::EsmeRok, 77, Pdu::EnquireLink))
        .await
        .unwrap();
    let mut saw_resp = false;
    let mut saw_enquire = false;
    while !(saw_resp && saw_enquire) {
        let c = next_command(&mut smsc).await;
        match c.id() {
            CommandId::EnquireLinkResp => {
                assert_eq!(c.sequence_number(), 77);
                saw_resp = true;
            }
            // The ESME's own enquire_link, answered once.
            CommandId::EnquireLink if !saw_enquire => {
                saw_enquire = true;
                smsc.send(&Command::new(
                    CommandStatus::EsmeRok,
                    c.sequence_number(),
                    Pdu::EnquireLinkResp,
                ))
                .await
                .unwrap();
            }
            _ => {}
        }
    }
    // Now the SMSC stops answering: the ESME gives the link up and connects again.
    let second = timeout(T, listener.accept()).await.unwrap();
    assert!(second.is_ok());
    drop(smsc);
    assert!(matches!(
        esme.status(),
        Status::Reconnecting { .. } | Status::Connecting
    ));
}

#[tokio::test]
async fn generic_nack_fails_the_submit_and_the_session_goes_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (esme, _inbound) =
        Esme::connect(fast_config(listener.local_addr().unwrap().port(), "u", "p"));
    let mut smsc = accept_bound(&listener, 0).await;
    esme.wait_bound(T).await.unwrap();
    let submit = tokio::spawn({
        let esme = esme.clone();
        async move { esme.submit(ota_message(3)).await }
    });
    let c = next_command(&mut smsc).await;
    smsc.send(&Command::new(
        CommandStatus::from(0x03),
        c.sequence_number(),
        Pdu::GenericNack,
    ))
    .await
    .unwrap();
    match submit.await.unwrap() {
        Err(Error::Rejected { status, .. }) => assert_eq!(status, 3),
        other => panic!("{other:?}"),
    }
    // An undecodable deliver_sm is answered with ESME_RSYSERR; the session stays up.
    let mut raw = vec![0u8; 16];
    raw[4..8].copy_from_slice(&5u32.to_be_bytes());
    raw[12..16].copy_from_slice(&901u32.to_be_bytes());
    raw.extend_from_slice(&[0, 1, 1]); // truncated body
    let len = raw.len() as u32;
    raw[0..4].copy_from_slice(&len.to_be_bytes());
    use tokio::io::AsyncWriteExt;
    smsc.get_mut().write_all(&raw).await.unwrap();
    let c = next_command(&mut smsc).await;
    assert_eq!(c.id(), CommandId::DeliverSmResp);
    assert_eq!(c.sequence_number(), 901);
    assert_eq!(u32::from(c.status()), 0x08);
    assert_eq!(esme.status(), Status::Bound);
}

#[tokio::test]
async fn a_failed_bind_is_retried_with_backoff_not_in_a_storm() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (esme, _inbound) =
        Esme::connect(fast_config(listener.local_addr().unwrap().port(), "u", "p"));
    // ESME_RBINDFAIL (0x0D) is not about credentials: it is retried, with growing delays.
    let mut attempts = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1200) {
        match timeout(
            Duration::from_millis(1300) - start.elapsed().min(Duration::from_millis(1300)),
            accept_bound(&listener, 0x0D),
        )
        .await
        {
            Ok(_) => attempts += 1,
            Err(_) => break,
        }
    }
    // 50, 100, 200, 400, 400 ms (less jitter) → about 5 attempts in 1.2 s, never dozens.
    assert!((3..=8).contains(&attempts), "{attempts} bind attempts");
    match esme.status() {
        Status::Reconnecting { reason, .. } => {
            assert!(reason.contains("ESME_RBINDFAIL"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn backoff_grows_to_its_cap_with_jitter_below() {
    let b = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        factor: 2.0,
        jitter: 0.5,
    };
    assert_eq!(b.ceiling(0), Duration::from_millis(100));
    assert_eq!(b.ceiling(3), Duration::from_millis(800));
    assert_eq!(b.ceiling(10), Duration::from_secs(2));
    assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
    for attempt in 0..8 {
        for _ in 0..50 {
            let d = b.delay(attempt);
            assert!(d <= b.ceiling(attempt) && d >= b.ceiling(attempt) / 2);
        }
    }
}

#[test]
fn smpp_urls_parse_and_passwords_stay_out_of_debug() {
    let c = EsmeConfig::from_url("smpp://cw%40ota:s3cr%2Ft@smsc.example:2776?system_type=OTA&window=5&enquire_link=15&response_timeout=2.5&reconnect_max=60").unwrap();
    assert_eq!(c.host, "smsc.example");
    assert_eq!(c.port, 2776);
    assert_eq!(c.credentials.system_id, "cw@ota");
    assert_eq!(c.credentials.password(), "s3cr/t");
    assert_eq!(c.credentials.system_type, "OTA");
    assert_eq!(c.window, 5);
    assert_eq!(c.enquire_link_interval, Duration::from_secs(15));
    assert_eq!(c.response_timeout, Duration::from_millis(2500));
    assert_eq!(c.backoff.max, Duration::from_secs(60));
    let debug = format!("{c:?}");
    assert!(!debug.contains("s3cr"), "{debug}");
    assert!(debug.contains("<redacted>"));
    assert_eq!(c.redacted_url(), "smpp://cw@ota@smsc.example:2776");

    let d: EsmeConfig = "smpp://user:pw@127.0.0.1".parse().unwrap();
    assert_eq!(d.port, 2775);
    assert_eq!(d.window, 10);
    let v6 = EsmeConfig::from_url("smpp://u:p@[::1]:2775").unwrap();
    assert_eq!(v6.host, "::1");

    for bad in [
        "http://u:p@h:1",
        "smpp://h:2775",
        "smpp://u:p@h?window=0",
        "smpp://u:p@h?bogus=1",
        "smpp://averyveryverylongsystemid:p@h",
        "smpp://u:ninechars@h",
        "smpp://u:p@h?system_type=thirteenchars",
    ] {
        assert!(EsmeConfig::from_url(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_submit_during_an_outage_waits_for_the_next_bind() {
    let creds = Credentials::new("smsc", "secret").unwrap();
    let (endpoint, mut mt) = HandsetEndpoint::listen("127.0.0.1:0", creds).await.unwrap();
    let mut config = fast_config(endpoint.local_addr().port(), "smsc", "secret");
    config.backoff.initial = Duration::from_millis(300);
    let (esme, _inbound) = Esme::connect(config);
    esme.wait_bound(T).await.unwrap();
    let mut status = esme.watch_status();
    endpoint.drop_connections();
    timeout(
        T,
        status.wait_for(|s| matches!(s, Status::Reconnecting { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    // Submitted while not bound: it goes out once the ESME is bound again.
    let id = timeout(T, esme.submit(ota_message(9)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        timeout(T, mt.recv()).await.unwrap().unwrap().message_id,
        id.0
    );
}

#[tokio::test]
async fn the_endpoint_refuses_mo_without_a_bound_smsc_and_submit_before_bind() {
    let creds = Credentials::new("smsc", "secret").unwrap();
    let (endpoint, _mt) = HandsetEndpoint::listen("127.0.0.1:0", creds).await.unwrap();
    assert!(matches!(
        endpoint.send_mo(ota_message(1)).await,
        Err(Error::NotBound)
    ));
    // A submit_sm before any bind is answered with ESME_RINVBNDSTS.
    let stream = TcpStream::connect(endpoint.local_addr()).await.unwrap();
    let mut smsc = Framed::new(stream, SmppCodec);
    let pdu = ota_message(1).to_submit_sm().unwrap();
    smsc.send(&Command::new(CommandStatus::EsmeRok, 5, pdu))
        .await
        .unwrap();
    let c = next_command(&mut smsc).await;
    assert_eq!(c.id(), CommandId::SubmitSmResp);
    assert_eq!(u32::from(c.status()), 0x04);
    assert_eq!(endpoint.bound_sessions(), 0);
}
