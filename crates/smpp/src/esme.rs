//! The platform's ESME: binds to an SMSC as a transceiver, submits with a window, takes
//! deliver_sm (MO and receipts), keeps the link alive, and reconnects with back-off.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rusmpp::pdus::{BindTransceiver, DeliverSmResp};
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, Instant};

use crate::codec::Frame;
use crate::config::EsmeConfig;
use crate::error::{status_name, Error};
use crate::link::{c_str, Link, ESME_RINVPASWD, ESME_RINVSYSID};
use crate::message::{Inbound, ShortMessage, Submit};

/// The message ID an SMSC gave a submitted message (submit_sm_resp's message_id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(pub String);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the ESME's connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Connecting and binding for the first time.
    Connecting,
    /// Bound as a transceiver: submits go out.
    Bound,
    /// The connection dropped or the bind failed; the next attempt comes after `delay`.
    Reconnecting {
        /// How many attempts have failed in a row.
        attempt: u32,
        /// The back-off before the next attempt.
        delay: Duration,
        /// Why the last attempt or connection ended.
        reason: String,
    },
    /// The SMSC refused the bind for bad credentials: the ESME stopped and does not retry.
    Refused {
        /// The bind response's command_status.
        status: u32,
    },
    /// Unbound and stopped ([`EsmeHandle::unbind`], or every handle dropped).
    Closed,
}

/// The ESME client.
#[derive(Debug)]
pub struct Esme;

impl Esme {
    /// Starts the ESME in the background (on the current tokio runtime): it connects, binds and
    /// keeps the binding up. Returns its handle and the receiver of inbound messages (MO and
    /// delivery receipts; each was answered with deliver_sm_resp once it was queued here).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn connect(config: EsmeConfig) -> (EsmeHandle, mpsc::Receiver<Inbound>) {
        let window = config.window.max(1);
        let (req_tx, req_rx) = mpsc::channel(window + 4);
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity.max(1));
        let (status_tx, status_rx) = watch::channel(Status::Connecting);
        let handle = EsmeHandle {
            requests: req_tx,
            status: status_rx,
            window: Arc::new(Semaphore::new(window)),
        };
        let actor = Actor {
            config,
            requests: req_rx,
            inbound: inbound_tx,
            status: status_tx,
            queued: VecDeque::new(),
        };
        tokio::spawn(actor.run());
        (handle, inbound_rx)
    }
}

enum Request {
    Submit {
        message: Box<Submit>,
        reply: oneshot::Sender<Result<MessageId, Error>>,
        _permit: OwnedSemaphorePermit,
    },
    Unbind {
        done: oneshot::Sender<()>,
    },
}

/// The handle of a running [`Esme`]; cheap to clone. When every handle is dropped the ESME
/// unbinds and stops.
#[derive(Debug, Clone)]
pub struct EsmeHandle {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
    window: Arc<Semaphore>,
}

impl EsmeHandle {
    /// Submits a message and waits for its submit_sm_resp. At most `window` submits are
    /// outstanding at once; the others wait for a slot. While the ESME is reconnecting, the
    /// submit waits for the next bind (wrap it in a timeout to bound that). A submit that was
    /// sent when the connection dropped fails with [`Error::ConnectionLost`] and is not resent.
    pub async fn submit(&self, message: Submit) -> Result<MessageId, Error> {
        message.to_submit_sm()?;
        if let Status::Refused { status } = self.status() {
            return Err(refused(status));
        }
        let permit = self
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request::Submit {
                message: Box::new(message),
                reply,
                _permit: permit,
            })
            .await
            .map_err(|_| self.closed_error())?;
        rx.await.map_err(|_| self.closed_error())?
    }

    fn closed_error(&self) -> Error {
        match self.status() {
            Status::Refused { status } => refused(status),
            _ => Error::Closed,
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Waits until the ESME is bound (or fails when it was refused or closed, or at `limit`).
    pub async fn wait_bound(&self, limit: Duration) -> Result<(), Error> {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                match rx.borrow_and_update().clone() {
                    Status::Bound => return Ok(()),
                    Status::Refused { status } => return Err(refused(status)),
                    Status::Closed => return Err(Error::Closed),
                    _ => {}
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

    /// Unbinds (waiting for unbind_resp up to the response timeout) and stops the ESME.
    pub async fn unbind(&self) {
        let (done, rx) = oneshot::channel();
        if self.requests.send(Request::Unbind { done }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn refused(status: u32) -> Error {
    Error::BindRefused {
        status,
        name: status_name(status),
    }
}

enum End {
    /// Stop for good (unbind asked, or every handle dropped).
    Shutdown(Option<oneshot::Sender<()>>),
    /// Bad credentials: stop, do not retry.
    Refused(u32),
    /// Connection or bind failed, or the link died: reconnect. `bound` tells whether this
    /// connection had been bound (which resets the back-off).
    Lost { reason: String, bound: bool },
}

struct Pending {
    kind: PendingKind,
    deadline: Instant,
}

enum PendingKind {
    Submit(
        oneshot::Sender<Result<MessageId, Error>>,
        // Held until the response: this is the window slot.
        #[allow(dead_code)] OwnedSemaphorePermit,
    ),
    EnquireLink,
}

struct Actor {
    config: EsmeConfig,
    requests: mpsc::Receiver<Request>,
    inbound: mpsc::Sender<Inbound>,
    status: watch::Sender<Status>,
    /// Submits that came while no connection was bound.
    queued: VecDeque<Request>,
}

impl Actor {
    async fn run(mut self) {
        let mut attempt: u32 = 0;
        let target = self.config.redacted_url();
        loop {
            match self.session().await {
                End::Shutdown(done) => {
                    tracing::info!(smsc = %target, "smpp esme: stopped");
                    self.status.send_replace(Status::Closed);
                    self.fail_queued(|| Error::Closed);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                End::Refused(status) => {
                    tracing::error!(smsc = %target, status = %status_name(status), "smpp esme: bind refused (bad credentials); not retrying");
                    self.status.send_replace(Status::Refused { status });
                    self.fail_queued(|| refused(status));
                    // Answer whatever still comes until every handle is gone.
                    while let Some(req) = self.requests.recv().await {
                        match req {
                            Request::Submit { reply, .. } => {
                                let _ = reply.send(Err(refused(status)));
                            }
                            Request::Unbind { done } => {
                                let _ = done.send(());
                            }
                        }
                    }
                    return;
                }
                End::Lost { reason, bound } => {
                    if bound {
                        attempt = 0;
                    }
                    let delay = self.config.backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(smsc = %target, %reason, attempt, ?delay, "smpp esme: reconnecting");
                    self.status.send_replace(Status::Reconnecting {
                        attempt,
                        delay,
                        reason,
                    });
                    let wake = Instant::now() + delay;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(wake) => break,
                            req = self.requests.recv() => match req {
                                None => { self.status.send_replace(Status::Closed); return; }
                                Some(Request::Unbind { done }) => {
                                    self.status.send_replace(Status::Closed);
                                    self.fail_queued(|| Error::Closed);
                                    let _ = done.send(());
                                    return;
                                }
                                Some(req) => self.queued.push_back(req),
                            },
                        }
                    }
                }
            }
        }
    }

    fn fail_queued(&mut self, error: impl Fn() -> Error) {
        for req in self.queued.drain(..) {
            match req {
                Request::Submit { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Request::Unbind { done } => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn connect_and_bind(&mut self) -> Result<Link, End> {
        let cfg = &self.config;
        let lost = |reason: String| End::Lost {
            reason,
            bound: false,
        };
        let stream = timeout(
            cfg.connect_timeout,
            TcpStream::connect((cfg.host.as_str(), cfg.port)),
        )
        .await
        .map_err(|_| lost(format!("connect timed out after {:?}", cfg.connect_timeout)))?
        .map_err(|e| lost(format!("connect: {e}")))?;
        let mut link = Link::new(stream);
        let seq = link.next_seq();
        let bind = BindTransceiver::builder()
            .system_id(c_str(&cfg.credentials.system_id))
            .password(c_str(cfg.credentials.password()))
            .system_type(c_str(&cfg.credentials.system_type))
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::from(cfg.addr_ton))
            .addr_npi(Npi::from(cfg.addr_npi))
            .address_range(c_str(&cfg.address_range))
            .build();
        link.send(&Command::new(CommandStatus::EsmeRok, seq, bind))
            .await
            .map_err(|e| lost(format!("send bind: {e}")))?;
        let deadline = Instant::now() + cfg.response_timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, link.recv())
                .await
                .map_err(|_| lost("no bind_transceiver_resp in time".into()))?;
            let (command_id, status) = match frame {
                None => return Err(lost("connection closed during bind".into())),
                Some(Err(e)) => return Err(lost(format!("read during bind: {e}"))),
                Some(Ok(Frame::Malformed {
                    command_id,
                    command_status,
                    sequence_number,
                    reason,
                })) => {
                    // A failed bind's response may come without a body.
                    if sequence_number == seq
                        && matches!(command_id, 0x8000_0009 | 0x8000_0000)
                        && command_status != 0
                    {
                        (command_id, command_status)
                    } else {
                        return Err(lost(format!("undecodable PDU during bind: {reason}")));
                    }
                }
                Some(Ok(Frame::Command(c))) => {
                    if c.sequence_number() == seq
                        && matches!(
                            c.id(),
                            CommandId::BindTransceiverResp | CommandId::GenericNack
                        )
                    {
                        (u32::from(c.id()), u32::from(c.status()))
                    } else {
                        if matches!(c.pdu(), Some(Pdu::EnquireLink)) {
                            let _ = link
                                .respond(c.sequence_number(), 0, Pdu::EnquireLinkResp)
                                .await;
                        } else {
                            tracing::debug!(id = ?c.id(), "smpp esme: ignored during bind");
                        }
                        continue;
                    }
                }
            };
            return match status {
                0 if command_id == 0x8000_0009 => Ok(link),
                0 => Err(lost("generic_nack to bind_transceiver".into())),
                ESME_RINVPASWD | ESME_RINVSYSID => Err(End::Refused(status)),
                _ => Err(lost(format!("bind failed: {}", status_name(status)))),
            };
        }
    }

    async fn session(&mut self) -> End {
        let mut link = match self.connect_and_bind().await {
            Ok(link) => link,
            Err(end) => return end,
        };
        tracing::info!(smsc = %self.config.redacted_url(), "smpp esme: bound (transceiver)");
        self.status.send_replace(Status::Bound);
        let mut pending: HashMap<u32, Pending> = HashMap::new();
        let end = self.bound_loop(&mut link, &mut pending).await;
        for (_, p) in pending.drain() {
            if let PendingKind::Submit(reply, _) = p.kind {
                let _ = reply.send(Err(Error::ConnectionLost));
            }
        }
        end
    }

    async fn bound_loop(&mut self, link: &mut Link, pending: &mut HashMap<u32, Pending>) -> End {
        let lost = |reason: String| End::Lost {
            reason,
            bound: true,
        };
        let rt = self.config.response_timeout;
        let mut enquire = tokio::time::interval_at(
            Instant::now() + self.config.enquire_link_interval,
            self.config.enquire_link_interval,
        );
        enquire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(Duration::from_millis(200));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(req) = self.queued.pop_front() {
                match self.send_request(link, pending, req).await {
                    Ok(None) => continue,
                    Ok(Some(end)) => return end,
                    Err(e) => return lost(format!("write: {e}")),
                }
            }
            tokio::select! {
                frame = link.recv() => {
                    let command = match frame {
                        None => return lost("connection closed by the SMSC".into()),
                        Some(Err(e)) => return lost(format!("read: {e}")),
                        Some(Ok(Frame::Malformed { command_id, sequence_number, reason, .. })) => {
                            if let Err(e) = link.reject_malformed(command_id, sequence_number, &reason).await {
                                return lost(format!("write: {e}"));
                            }
                            if let Some(p) = pending.remove(&sequence_number) {
                                if let PendingKind::Submit(reply, _) = p.kind {
                                    let _ = reply.send(Err(Error::rejected(crate::link::ESME_RSYSERR)));
                                }
                            }
                            continue;
                        }
                        Some(Ok(Frame::Command(c))) => c,
                    };
                    match self.on_command(link, pending, &command).await {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(e) => return lost(format!("write: {e}")),
                    }
                }
                req = self.requests.recv() => {
                    let req = match req {
                        None => return self.unbind(link, None).await,
                        Some(req) => req,
                    };
                    match self.send_request(link, pending, req).await {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(e) => return lost(format!("write: {e}")),
                    }
                }
                _ = enquire.tick() => {
                    let seq = link.next_seq();
                    if let Err(e) = link.send(&Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink)).await {
                        return lost(format!("write: {e}"));
                    }
                    pending.insert(seq, Pending { kind: PendingKind::EnquireLink, deadline: Instant::now() + rt });
                }
                _ = sweep.tick() => {
                    let now = Instant::now();
                    let expired: Vec<u32> = pending.iter().filter(|(_, p)| p.deadline <= now).map(|(s, _)| *s).collect();
                    for seq in expired {
                        match pending.remove(&seq).map(|p| p.kind) {
                            Some(PendingKind::EnquireLink) => return lost(format!("no enquire_link_resp within {rt:?}")),
                            Some(PendingKind::Submit(reply, _)) => { let _ = reply.send(Err(Error::Timeout(rt))); }
                            None => {}
                        }
                    }
                }
            }
        }
    }

    async fn send_request(
        &mut self,
        link: &mut Link,
        pending: &mut HashMap<u32, Pending>,
        req: Request,
    ) -> std::io::Result<Option<End>> {
        match req {
            Request::Unbind { done } => Ok(Some(self.unbind(link, Some(done)).await)),
            Request::Submit {
                message,
                reply,
                _permit,
            } => {
                let pdu = match message.to_submit_sm() {
                    Ok(pdu) => pdu,
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return Ok(None);
                    }
                };
                let seq = link.next_seq();
                link.send(&Command::new(CommandStatus::EsmeRok, seq, pdu))
                    .await?;
                tracing::debug!(seq, dest = %message.destination.address, "smpp esme: submit_sm sent");
                pending.insert(
                    seq,
                    Pending {
                        kind: PendingKind::Submit(reply, _permit),
                        deadline: Instant::now() + self.config.response_timeout,
                    },
                );
                Ok(None)
            }
        }
    }

    async fn on_command(
        &mut self,
        link: &mut Link,
        pending: &mut HashMap<u32, Pending>,
        command: &Command,
    ) -> std::io::Result<Option<End>> {
        let seq = command.sequence_number();
        let status = u32::from(command.status());
        if command.id() == CommandId::SubmitSmResp {
            match pending.remove(&seq).map(|p| p.kind) {
                Some(PendingKind::Submit(reply, _)) => {
                    let result = if status == 0 {
                        let id = match command.pdu() {
                            Some(Pdu::SubmitSmResp(resp)) => resp.message_id().as_str().to_owned(),
                            _ => String::new(),
                        };
                        Ok(MessageId(id))
                    } else {
                        Err(Error::rejected(status))
                    };
                    let _ = reply.send(result);
                }
                _ => tracing::debug!(seq, "smpp esme: submit_sm_resp for no pending submit"),
            }
            return Ok(None);
        }
        if command.id() == CommandId::GenericNack {
            tracing::warn!(seq, status = %status_name(status), "smpp esme: generic_nack");
            if let Some(PendingKind::Submit(reply, _)) = pending.remove(&seq).map(|p| p.kind) {
                let _ = reply.send(Err(Error::rejected(status)));
            }
            return Ok(None);
        }
        match command.pdu() {
            Some(Pdu::EnquireLinkResp) => {
                pending.remove(&seq);
            }
            Some(Pdu::EnquireLink) => {
                link.respond(seq, 0, Pdu::EnquireLinkResp).await?;
            }
            Some(Pdu::DeliverSm(deliver)) => {
                let inbound = Inbound::from_message(ShortMessage::from_deliver_sm(deliver));
                tracing::debug!(
                    seq,
                    receipt = matches!(inbound, Inbound::Receipt(_)),
                    "smpp esme: deliver_sm"
                );
                // Queue first (back-pressure), then acknowledge.
                let _ = self.inbound.send(inbound).await;
                link.respond(seq, 0, Pdu::DeliverSmResp(DeliverSmResp::builder().build()))
                    .await?;
            }
            Some(Pdu::Unbind) => {
                link.respond(seq, 0, Pdu::UnbindResp).await?;
                return Ok(Some(End::Lost {
                    reason: "unbound by the SMSC".into(),
                    bound: true,
                }));
            }
            _ => link.reject_unexpected(command).await?,
        }
        Ok(None)
    }

    /// Sends unbind, waits for unbind_resp (answering what must be answered meanwhile).
    async fn unbind(&mut self, link: &mut Link, done: Option<oneshot::Sender<()>>) -> End {
        let seq = link.next_seq();
        if link
            .send(&Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind))
            .await
            .is_ok()
        {
            let wait = async {
                while let Some(Ok(frame)) = link.recv().await {
                    if let Frame::Command(c) = frame {
                        if matches!(c.pdu(), Some(Pdu::UnbindResp)) && c.sequence_number() == seq {
                            return;
                        }
                        if matches!(c.pdu(), Some(Pdu::EnquireLink)) {
                            let _ = link
                                .respond(c.sequence_number(), 0, Pdu::EnquireLinkResp)
                                .await;
                        }
                    }
                }
            };
            let _ = timeout(self.config.response_timeout, wait).await;
        }
        End::Shutdown(done)
    }
}
