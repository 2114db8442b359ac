//! The SMSC-facing endpoint of the test handset: a small SMPP server that an SMSC (Jasmin, as
//! an SMPP client connector) binds to, submits mobile-terminated messages to (submit_sm), and
//! takes mobile-originated messages and delivery receipts from (deliver_sm).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, SubmitSmResp};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, Instant};

use crate::codec::Frame;
use crate::config::Credentials;
use crate::error::{status_name, Error};
use crate::link::{c_str, Link, ESME_RINVBNDSTS, ESME_RINVPASWD};
use crate::message::{
    message_state_for, RawTlv, ReceiptText, ShortMessage, ESM_CLASS_DELIVERY_RECEIPT,
    TAG_MESSAGE_STATE, TAG_RECEIPTED_MESSAGE_ID,
};

/// The system_id the endpoint gives in its bind responses.
pub const ENDPOINT_SYSTEM_ID: &str = "cardwright";

/// A mobile-terminated message the SMSC submitted to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtMessage {
    /// The message ID the endpoint gave it in submit_sm_resp.
    pub message_id: String,
    /// The system_id of the SMSC session it came on.
    pub system_id: String,
    /// The submit_sm's content.
    pub message: ShortMessage,
}

/// The SMSC-facing endpoint.
#[derive(Debug)]
pub struct HandsetEndpoint;

impl HandsetEndpoint {
    /// Listens on `addr` for SMSC sessions that bind with `credentials` (any bind type).
    /// Returns the handle and the receiver of mobile-terminated messages (each already
    /// acknowledged with submit_sm_resp once it was queued here).
    pub async fn listen(
        addr: impl ToSocketAddrs,
        credentials: Credentials,
    ) -> io::Result<(EndpointHandle, mpsc::Receiver<MtMessage>)> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (mt_tx, mt_rx) = mpsc::channel(256);
        let (bound_tx, _) = watch::channel(0usize);
        let (kill_tx, _) = watch::channel(0u64);
        let (stop_tx, _) = watch::channel(false);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let inner = Arc::new(Inner {
            local_addr,
            credentials,
            sessions: Mutex::new(Vec::new()),
            bind_attempts: AtomicU64::new(0),
            next_message_id: AtomicU64::new(seed * 1000),
            next_session: AtomicU64::new(1),
            bound: bound_tx,
            kill: kill_tx,
            stop: stop_tx,
            response_timeout: Duration::from_secs(10),
        });
        tracing::info!(%local_addr, "smpp endpoint: listening");
        tokio::spawn(accept_loop(listener, inner.clone(), mt_tx));
        Ok((EndpointHandle { inner }, mt_rx))
    }
}

struct Inner {
    local_addr: SocketAddr,
    credentials: Credentials,
    sessions: Mutex<Vec<SessionRef>>,
    bind_attempts: AtomicU64,
    next_message_id: AtomicU64,
    next_session: AtomicU64,
    bound: watch::Sender<usize>,
    kill: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    response_timeout: Duration,
}

impl Inner {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Vec<SessionRef>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_bound(&self) {
        let n = self.sessions().len();
        self.bound.send_replace(n);
    }
}

#[derive(Clone)]
struct SessionRef {
    id: u64,
    can_receive: bool,
    tx: mpsc::Sender<Deliver>,
}

struct Deliver {
    message: ShortMessage,
    reply: oneshot::Sender<Result<(), Error>>,
}

/// The handle of a listening [`HandsetEndpoint`]; cheap to clone.
#[derive(Clone)]
pub struct EndpointHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EndpointHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointHandle")
            .field("local_addr", &self.inner.local_addr)
            .field("bound_sessions", &self.bound_sessions())
            .finish()
    }
}

impl EndpointHandle {
    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// How many SMSC sessions are bound now.
    pub fn bound_sessions(&self) -> usize {
        self.inner.sessions().len()
    }

    /// How many bind requests came so far (accepted or not).
    pub fn bind_attempts(&self) -> u64 {
        self.inner.bind_attempts.load(Ordering::Relaxed)
    }

    /// Waits until at least one SMSC session is bound that can take deliver_sm.
    pub async fn wait_bound(&self, limit: Duration) -> Result<(), Error> {
        let mut rx = self.inner.bound.subscribe();
        let wait = async {
            loop {
                if self.inner.sessions().iter().any(|s| s.can_receive) {
                    return Ok(());
                }
                if rx.changed().await.is_err() {
                    return Err(Error::Closed);
                }
            }
        };
        timeout(limit, wait)
            .await
            .map_err(|_| Error::Timeout(limit))?
    }

    /// Sends a mobile-originated message to the SMSC (deliver_sm on the most recently bound
    /// session that can receive) and waits for its deliver_sm_resp.
    pub async fn send_mo(&self, message: ShortMessage) -> Result<(), Error> {
        message.to_deliver_sm()?;
        let session = self
            .inner
            .sessions()
            .iter()
            .rev()
            .find(|s| s.can_receive)
            .cloned()
            .ok_or(Error::NotBound)?;
        let (reply, rx) = oneshot::channel();
        session
            .tx
            .send(Deliver { message, reply })
            .await
            .map_err(|_| Error::ConnectionLost)?;
        rx.await.map_err(|_| Error::ConnectionLost)?
    }

    /// Sends an SMSC delivery receipt for a mobile-terminated message (esm_class 0x04, the text
    /// `id:… stat:…`, and the receipted_message_id and message_state TLVs), `stat` being e.g.
    /// `DELIVRD` or `UNDELIV`.
    pub async fn send_receipt(&self, mt: &MtMessage, stat: &str) -> Result<(), Error> {
        self.send_mo(receipt_for(mt, stat)).await
    }

    /// Closes every SMSC session at once without unbind, as a network failure would.
    pub fn drop_connections(&self) {
        self.inner.kill.send_modify(|g| *g += 1);
    }

    /// Stops listening and closes every session.
    pub fn close(&self) {
        self.inner.stop.send_replace(true);
        self.drop_connections();
    }
}

/// The delivery receipt the endpoint sends for `mt` with this `stat`.
pub fn receipt_for(mt: &MtMessage, stat: &str) -> ShortMessage {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let date = yymmddhhmm(now);
    let delivered = stat.eq_ignore_ascii_case("DELIVRD");
    let text = ReceiptText {
        id: Some(mt.message_id.clone()),
        sub: Some("001".into()),
        dlvrd: Some(if delivered { "001" } else { "000" }.into()),
        submit_date: Some(date.clone()),
        done_date: Some(date),
        stat: Some(stat.to_owned()),
        err: Some("000".into()),
        text: Some(String::new()),
    };
    let mut id = mt.message_id.clone().into_bytes();
    id.push(0);
    ShortMessage {
        source: mt.message.destination.clone(),
        destination: mt.message.source.clone(),
        esm_class: ESM_CLASS_DELIVERY_RECEIPT,
        short_message: text.format().into_bytes(),
        tlvs: vec![
            RawTlv {
                tag: TAG_RECEIPTED_MESSAGE_ID,
                value: id,
            },
            RawTlv {
                tag: TAG_MESSAGE_STATE,
                value: vec![message_state_for(stat)],
            },
        ],
        ..ShortMessage::default()
    }
}

fn yymmddhhmm(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        y % 100,
        m,
        d,
        secs / 3600,
        (secs % 3600) / 60
    )
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, mt: mpsc::Sender<MtMessage>) {
    let mut stop = inner.stop.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "smpp endpoint: connection");
                    tokio::spawn(session(stream, inner.clone(), mt.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "smpp endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    Transmitter,
    Receiver,
    Transceiver,
}

async fn session(stream: TcpStream, inner: Arc<Inner>, mt: mpsc::Sender<MtMessage>) {
    let mut link = Link::new(stream);
    let mut kill = inner.kill.subscribe();
    kill.borrow_and_update();
    let session_id = inner.next_session.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Deliver>(16);
    let mut bound: Option<(Bound, String)> = None;
    let mut pending: HashMap<u32, (oneshot::Sender<Result<(), Error>>, Instant)> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_millis(200));
    let result: io::Result<()> = async {
        loop {
            tokio::select! {
                frame = link.recv() => {
                    let command = match frame {
                        None => return Ok(()),
                        Some(Err(e)) => return Err(e),
                        Some(Ok(Frame::Malformed { command_id, sequence_number, reason, .. })) => {
                            link.reject_malformed(command_id, sequence_number, &reason).await?;
                            continue;
                        }
                        Some(Ok(Frame::Command(c))) => c,
                    };
                    let seq = command.sequence_number();
                    let status = u32::from(command.status());
                    match command.pdu() {
                        Some(Pdu::BindTransmitter(b)) => {
                            bind(&mut link, &inner, &mut bound, Bound::Transmitter, seq, b.system_id.as_str(), b.password.as_str(), session_id, &tx).await?;
                        }
                        Some(Pdu::BindReceiver(b)) => {
                            bind(&mut link, &inner, &mut bound, Bound::Receiver, seq, b.system_id.as_str(), b.password.as_str(), session_id, &tx).await?;
                        }
                        Some(Pdu::BindTransceiver(b)) => {
                            bind(&mut link, &inner, &mut bound, Bound::Transceiver, seq, b.system_id.as_str(), b.password.as_str(), session_id, &tx).await?;
                        }
                        Some(Pdu::SubmitSm(sm)) => match &bound {
                            Some((Bound::Transmitter | Bound::Transceiver, system_id)) => {
                                let message_id = inner.next_message_id.fetch_add(1, Ordering::Relaxed).to_string();
                                let message = ShortMessage::from_submit_sm(sm);
                                tracing::debug!(%message_id, dest = %message.destination.address, "smpp endpoint: submit_sm");
                                let _ = mt.send(MtMessage { message_id: message_id.clone(), system_id: system_id.clone(), message }).await;
                                let resp = SubmitSmResp::builder().message_id(c_str(&message_id)).build();
                                link.respond(seq, 0, Pdu::SubmitSmResp(resp)).await?;
                            }
                            _ => link.respond(seq, ESME_RINVBNDSTS, Pdu::SubmitSmResp(SubmitSmResp::builder().build())).await?,
                        },
                        Some(Pdu::EnquireLink) => link.respond(seq, 0, Pdu::EnquireLinkResp).await?,
                        Some(Pdu::EnquireLinkResp) => {}
                        Some(Pdu::Unbind) => {
                            link.respond(seq, 0, Pdu::UnbindResp).await?;
                            return Ok(());
                        }
                        _ if matches!(command.id(), CommandId::DeliverSmResp | CommandId::GenericNack) => {
                            if let Some((reply, _)) = pending.remove(&seq) {
                                let _ = reply.send(if status == 0 { Ok(()) } else { Err(Error::rejected(status)) });
                            } else if command.id() == CommandId::GenericNack {
                                tracing::warn!(seq, status = %status_name(status), "smpp endpoint: generic_nack");
                            }
                        }
                        _ => link.reject_unexpected(&command).await?,
                    }
                }
                Some(Deliver { message, reply }) = rx.recv() => {
                    let pdu = match message.to_deliver_sm() {
                        Ok(pdu) => pdu,
                        Err(e) => { let _ = reply.send(Err(e.into())); continue; }
                    };
                    let seq = link.next_seq();
                    link.send(&Command::new(CommandStatus::EsmeRok, seq, pdu)).await?;
                    pending.insert(seq, (reply, Instant::now() + inner.response_timeout));
                }
                _ = sweep.tick() => {
                    let now = Instant::now();
                    let expired: Vec<u32> = pending.iter().filter(|(_, (_, d))| *d <= now).map(|(s, _)| *s).collect();
                    for seq in expired {
                        if let Some((reply, _)) = pending.remove(&seq) {
                            let _ = reply.send(Err(Error::Timeout(inner.response_timeout)));
                        }
                    }
                }
                _ = kill.changed() => {
                    tracing::info!(session_id, "smpp endpoint: connection dropped on request");
                    return Ok(());
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(session_id, error = %e, "smpp endpoint: session ended");
    }
    for (_, (reply, _)) in pending.drain() {
        let _ = reply.send(Err(Error::ConnectionLost));
    }
    inner.sessions().retain(|s| s.id != session_id);
    inner.publish_bound();
}

#[allow(clippy::too_many_arguments)]
async fn bind(
    link: &mut Link,
    inner: &Inner,
    bound: &mut Option<(Bound, String)>,
    kind: Bound,
    seq: u32,
    system_id: &str,
    password: &str,
    session_id: u64,
    tx: &mpsc::Sender<Deliver>,
) -> io::Result<()> {
    inner.bind_attempts.fetch_add(1, Ordering::Relaxed);
    let status = if bound.is_some() {
        0x05 // ESME_RALYBND
    } else if inner.credentials.matches(system_id, password) {
        0
    } else {
        ESME_RINVPASWD
    };
    let body_id = c_str(ENDPOINT_SYSTEM_ID);
    let pdu = match kind {
        Bound::Transmitter => {
            Pdu::BindTransmitterResp(BindTransmitterResp::builder().system_id(body_id).build())
        }
        Bound::Receiver => {
            Pdu::BindReceiverResp(BindReceiverResp::builder().system_id(body_id).build())
        }
        Bound::Transceiver => {
            Pdu::BindTransceiverResp(BindTransceiverResp::builder().system_id(body_id).build())
        }
    };
    link.respond(seq, status, pdu).await?;
    if status == 0 {
        tracing::info!(system_id, session_id, "smpp endpoint: SMSC bound");
        *bound = Some((kind, system_id.to_owned()));
        inner.sessions().push(SessionRef {
            id: session_id,
            can_receive: kind != Bound::Transmitter,
            tx: tx.clone(),
        });
        inner.publish_bound();
    } else {
        tracing::warn!(system_id, status = %status_name(status), "smpp endpoint: bind refused");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn receipt_dates() {
        assert_eq!(super::yymmddhhmm(0), "7001010000");
        assert_eq!(
            super::yymmddhhmm(1_796_400_000),
            "261204 1600".replace(' ', "")
        );
    }
}
