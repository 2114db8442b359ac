//! The admin server: a TLS-PSK listener that runs administration sessions for the
//! cards that connect, with scripts queued per PSK identity by the platform.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslAcceptor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_openssl::SslStream;

use crate::error::{HttpError, ServerError, TlsError};
use crate::http::{self, Decoder, Request};
use crate::protocol::{self, header, Script, ScriptStatus, ADMIN_PROTOCOL};
use crate::tls::{self, PskSeen, PskStore, AMENDMENT_B_CIPHERS};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Path of the first POST (the admin URI in the card's session parameters);
    /// the query part of the card's request-URI is not compared.
    pub admin_path: String,
    /// OpenSSL cipher list (TLS 1.2 names); [`AMENDMENT_B_CIPHERS`] by default.
    pub cipher_list: String,
    /// Longest time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for each request of the card (it runs a script in between).
    pub request_timeout: Duration,
    /// Longest session, handshake excluded.
    pub session_timeout: Duration,
    /// Largest request body (response script) accepted.
    pub max_body: usize,
    /// Most connections served at once; more are closed at once.
    pub max_connections: usize,
    /// End the session (204) at the first script whose status is not `ok`; the
    /// scripts after it are returned undelivered.
    pub stop_on_error: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            admin_path: "/gp/admin".to_owned(),
            cipher_list: AMENDMENT_B_CIPHERS.to_owned(),
            handshake_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            session_timeout: Duration::from_secs(15 * 60),
            max_body: 1 << 20,
            max_connections: 256,
            stop_on_error: true,
        }
    }
}

/// One script's response, as the card returned it.
#[derive(Clone, PartialEq, Eq)]
pub struct ScriptResponse {
    /// Position of the script in the submitted queue (0-based).
    pub index: usize,
    /// `X-Admin-Script-Status`.
    pub status: ScriptStatus,
    /// The response script (ETSI TS 102 226 format); may be empty.
    pub body: Vec<u8>,
}

impl fmt::Debug for ScriptResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptResponse")
            .field("index", &self.index)
            .field("status", &self.status)
            .field("len", &self.body.len())
            .finish()
    }
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every queued script was answered, then 204.
    Completed,
    /// The card connected with nothing queued for it: 204 at once.
    NothingQueued,
    /// The session stopped (204) after a script whose status was not `ok`.
    ScriptFailed {
        /// The failing script's index.
        index: usize,
        /// Its status.
        status: ScriptStatus,
    },
    /// The PSK identity was unknown to the store: refused in the handshake.
    UnknownIdentity,
    /// The handshake failed otherwise (wrong key, no common cipher, not TLS, ...).
    HandshakeFailed(String),
    /// A time-out ran out (`handshake`, `request` or `session`).
    Timeout(&'static str),
    /// The card broke the protocol; the server answered with an HTTP error.
    Protocol(String),
    /// The connection closed or failed mid-session.
    ConnectionLost(String),
}

/// The audit record of one connection (no key material, no script contents).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionReport {
    /// The server's number for the session (also in its next URIs).
    pub session: u64,
    /// TLS PSK identity the card sent (lossy UTF-8), if it got that far.
    pub identity: Option<String>,
    /// The card's (handset's) address.
    pub peer: SocketAddr,
    /// Negotiated cipher suite (OpenSSL name).
    pub cipher: Option<String>,
    /// `X-Admin-From` of the card's first request.
    pub agent_id: Option<String>,
    /// Whether the card's first request had `X-Admin-Resume: true`.
    pub resumed: bool,
    /// Number of scripts sent.
    pub scripts_sent: usize,
    /// Statuses returned, in order.
    pub statuses: Vec<ScriptStatus>,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took, handshake included.
    pub duration: Duration,
}

/// What the platform gets back for a submitted session.
#[derive(Debug)]
pub struct SessionResult {
    /// The session's audit record.
    pub report: SessionReport,
    /// A script sent whose response never came: its effect on the card is unknown.
    pub unanswered: Option<(usize, Script)>,
    /// Scripts never sent, with their indices, to queue again if wanted.
    pub undelivered: Vec<(usize, Script)>,
}

struct Pending {
    scripts: VecDeque<(usize, Script)>,
    responses: mpsc::UnboundedSender<ScriptResponse>,
    done: oneshot::Sender<SessionResult>,
}

/// Scripts waiting for their cards, by PSK identity. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct AdminQueue {
    inner: Arc<Mutex<HashMap<Vec<u8>, Pending>>>,
}

impl fmt::Debug for AdminQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminQueue")
            .field("pending", &self.len())
            .finish()
    }
}

impl AdminQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue `scripts` for the card that will connect with `psk_identity` (the
    /// platform then sends the triggering SMS). Fails if scripts are already
    /// waiting for that identity.
    pub fn submit(
        &self,
        psk_identity: &[u8],
        scripts: Vec<Script>,
    ) -> Result<SessionHandle, ServerError> {
        if scripts.is_empty() {
            return Err(ServerError::NoScripts);
        }
        let mut map = self.lock();
        if map.contains_key(psk_identity) {
            return Err(ServerError::AlreadyQueued);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        map.insert(
            psk_identity.to_vec(),
            Pending {
                scripts: scripts.into_iter().enumerate().collect(),
                responses: tx,
                done: done_tx,
            },
        );
        Ok(SessionHandle {
            responses: rx,
            done: done_rx,
        })
    }

    /// Withdraw scripts not yet picked up by a connection; the handle then sees
    /// [`ServerError::Dropped`].
    pub fn cancel(&self, psk_identity: &[u8]) -> Option<Vec<Script>> {
        let p = self.lock().remove(psk_identity)?;
        Some(p.scripts.into_iter().map(|(_, s)| s).collect())
    }

    /// Whether scripts wait for `psk_identity` (not yet taken by a connection of that
    /// card).
    pub fn is_waiting(&self, psk_identity: &[u8]) -> bool {
        self.lock().contains_key(psk_identity)
    }

    /// Number of identities with scripts waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no scripts are waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, psk_identity: &[u8]) -> Option<Pending> {
        self.lock().remove(psk_identity)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Pending>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The platform's end of one submitted session.
#[derive(Debug)]
pub struct SessionHandle {
    responses: mpsc::UnboundedReceiver<ScriptResponse>,
    done: oneshot::Receiver<SessionResult>,
}

impl SessionHandle {
    /// The next script response as it arrives; `None` once the session is over.
    pub async fn next_response(&mut self) -> Option<ScriptResponse> {
        self.responses.recv().await
    }

    /// Wait for the session's end.
    pub async fn finished(self) -> Result<SessionResult, ServerError> {
        self.done.await.map_err(|_| ServerError::Dropped)
    }
}

/// Receives every connection's [`SessionReport`] (handshake failures included).
pub type AuditSink = Arc<dyn Fn(&SessionReport) + Send + Sync>;

struct Shared {
    acceptor: SslAcceptor,
    config: ServerConfig,
    queue: AdminQueue,
    audit: Option<AuditSink>,
    seen: Index<Ssl, PskSeen>,
    next_session: AtomicU64,
}

/// The listening admin server.
pub struct AdminServer {
    listener: TcpListener,
    shared: Shared,
}

impl fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.listener.local_addr().ok())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Listen on `addr`; keys come from `store`, scripts from `queue`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
        store: Arc<dyn PskStore>,
        queue: AdminQueue,
    ) -> Result<Self, ServerError> {
        if !config.admin_path.starts_with('/')
            || config.admin_path.contains('?')
            || !config.admin_path.bytes().all(|b| b > 0x20 && b != 0x7f)
        {
            return Err(ServerError::Config(
                "admin_path must be an absolute path without query",
            ));
        }
        let seen = Ssl::new_ex_index::<PskSeen>().map_err(TlsError::from)?;
        let acceptor = tls::acceptor(&config.cipher_list, store, seen)?;
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            shared: Shared {
                acceptor,
                config,
                queue,
                audit: None,
                seen,
                next_session: AtomicU64::new(1),
            },
        })
    }

    /// Report every connection to `sink`.
    pub fn with_audit(mut self, sink: impl Fn(&SessionReport) + Send + Sync + 'static) -> Self {
        self.shared.audit = Some(Arc::new(sink));
        self
    }

    /// The address listened on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept connections until the task is dropped or aborted; each runs on its own
    /// task.
    pub async fn run(self) -> Result<(), ServerError> {
        let limit = Arc::new(Semaphore::new(self.shared.config.max_connections));
        let shared = Arc::new(self.shared);
        tracing::info!(addr = ?self.listener.local_addr().ok(), "SCP81 admin server listening");
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                tracing::warn!(%peer, "too many connections; closing");
                continue;
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                connection(&shared, tcp, peer).await;
                drop(permit);
            });
        }
    }
}

/// Run one connection to its end and report it.
async fn connection(shared: &Shared, tcp: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let mut report = SessionReport {
        session: shared.next_session.fetch_add(1, Ordering::Relaxed),
        identity: None,
        peer,
        cipher: None,
        agent_id: None,
        resumed: false,
        scripts_sent: 0,
        statuses: Vec::new(),
        outcome: Outcome::NothingQueued,
        duration: Duration::ZERO,
    };
    let mut pending = None;
    let mut in_flight = None;
    report.outcome = match handshake(shared, tcp, &mut report).await {
        Err(outcome) => outcome,
        Ok((mut stream, identity)) => {
            pending = shared.queue.take(&identity);
            let session = Exchange {
                shared,
                stream: &mut stream,
                pending: pending.as_mut(),
                in_flight: &mut in_flight,
                report: &mut report,
            };
            let outcome =
                match tokio::time::timeout(shared.config.session_timeout, session.run()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Timeout("session"),
                };
            // Best effort: close_notify after the last response or error.
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
            outcome
        }
    };
    report.duration = started.elapsed();
    tracing::info!(
        session = report.session,
        identity = ?report.identity,
        %peer,
        cipher = ?report.cipher,
        agent = ?report.agent_id,
        scripts_sent = report.scripts_sent,
        statuses = ?report.statuses,
        outcome = ?report.outcome,
        "SCP81 session ended"
    );
    if let Some(audit) = &shared.audit {
        audit(&report);
    }
    if let Some(p) = pending {
        let result = SessionResult {
            report,
            unanswered: in_flight,
            undelivered: p.scripts.into_iter().collect(),
        };
        let _ = p.done.send(result);
    }
}

async fn handshake(
    shared: &Shared,
    tcp: TcpStream,
    report: &mut SessionReport,
) -> Result<(SslStream<TcpStream>, Vec<u8>), Outcome> {
    let ssl =
        Ssl::new(shared.acceptor.context()).map_err(|e| Outcome::HandshakeFailed(e.to_string()))?;
    let mut stream =
        SslStream::new(ssl, tcp).map_err(|e| Outcome::HandshakeFailed(e.to_string()))?;
    let result = tokio::time::timeout(
        shared.config.handshake_timeout,
        Pin::new(&mut stream).accept(),
    )
    .await;
    let seen = stream
        .ssl()
        .ex_data(shared.seen)
        .cloned()
        .unwrap_or_default();
    report.identity = seen
        .identity
        .as_deref()
        .map(|i| String::from_utf8_lossy(i).into_owned());
    match result {
        Err(_) => Err(Outcome::Timeout("handshake")),
        Ok(Err(_)) if seen.identity.is_some() && !seen.known => Err(Outcome::UnknownIdentity),
        Ok(Err(e)) => Err(Outcome::HandshakeFailed(e.to_string())),
        Ok(Ok(())) => {
            report.cipher = stream.ssl().current_cipher().map(|c| c.name().to_owned());
            match seen.identity {
                Some(id) if seen.known => Ok((stream, id)),
                _ => Err(Outcome::HandshakeFailed("no PSK identity".into())),
            }
        }
    }
}

enum ReadError {
    Timeout,
    Http(HttpError),
    Io(String),
}

/// The HTTP exchange on an established TLS session.
struct Exchange<'a> {
    shared: &'a Shared,
    stream: &'a mut SslStream<TcpStream>,
    pending: Option<&'a mut Pending>,
    in_flight: &'a mut Option<(usize, Script)>,
    report: &'a mut SessionReport,
}

impl Exchange<'_> {
    async fn run(mut self) -> Outcome {
        let config = &self.shared.config;
        let had_work = self.pending.is_some();
        let mut decoder = Decoder::new(config.max_body);
        let mut expected_uri: Option<String> = None;
        loop {
            let req = match self.read_request(&mut decoder).await {
                Ok(Some(r)) => r,
                Ok(None) => return Outcome::ConnectionLost("closed by the card".into()),
                Err(ReadError::Timeout) => return Outcome::Timeout("request"),
                Err(ReadError::Io(e)) => return Outcome::ConnectionLost(e),
                Err(ReadError::Http(e)) => {
                    let status = match e {
                        HttpError::BodyTooLarge(_) => 413,
                        HttpError::UnsupportedTransferEncoding => 501,
                        HttpError::HeadTooLarge => 431,
                        _ => 400,
                    };
                    return self.refuse(status, e.to_string()).await;
                }
            };
            if let Err((status, why)) = self.check_request(&req, expected_uri.as_deref()) {
                return self.refuse(status, why).await;
            }
            if expected_uri.is_some() {
                let Some((index, _)) = self.in_flight.take() else {
                    return self.refuse(500, "no script in flight".into()).await;
                };
                let status = req
                    .headers
                    .get(header::SCRIPT_STATUS)
                    .ok()
                    .flatten()
                    .map(ScriptStatus::parse)
                    .unwrap_or(ScriptStatus::Ok);
                tracing::debug!(index, %status, len = req.body.len(), chunked = req.chunked, "script response");
                self.report.statuses.push(status.clone());
                if let Some(p) = self.pending.as_deref() {
                    let _ = p.responses.send(ScriptResponse {
                        index,
                        status: status.clone(),
                        body: req.body,
                    });
                }
                if !status.is_ok() && config.stop_on_error {
                    if let Err(e) = self.end().await {
                        return Outcome::ConnectionLost(e);
                    }
                    return Outcome::ScriptFailed { index, status };
                }
            }
            let next = self
                .pending
                .as_deref_mut()
                .and_then(|p| p.scripts.pop_front());
            let Some((index, script)) = next else {
                if let Err(e) = self.end().await {
                    return Outcome::ConnectionLost(e);
                }
                return if had_work {
                    Outcome::Completed
                } else {
                    Outcome::NothingQueued
                };
            };
            let uri = format!(
                "{}?session={}&script={}",
                config.admin_path, self.report.session, index
            );
            let target = script.target.as_ref().map(protocol::targeted_application);
            let mut headers = vec![
                (header::PROTOCOL, ADMIN_PROTOCOL),
                ("Content-Type", protocol::CONTENT_TYPE_SCRIPT),
                (header::NEXT_URI, uri.as_str()),
            ];
            if let Some(t) = &target {
                headers.push((header::TARGETED_APPLICATION, t.as_str()));
            }
            let mut out = Vec::new();
            http::write_response(&mut out, 200, "OK", &headers, &script.bytes);
            *self.in_flight = Some((index, script));
            if let Err(e) = self.write(&out).await {
                return Outcome::ConnectionLost(e);
            }
            self.report.scripts_sent += 1;
            expected_uri = Some(uri);
        }
    }

    /// Check a request against the protocol: `(HTTP status, reason)` if it fails.
    fn check_request(
        &mut self,
        req: &Request,
        expected: Option<&str>,
    ) -> Result<(), (u16, String)> {
        let bad = |e: HttpError| (400, e.to_string());
        if req.method != "POST" {
            return Err((405, format!("method {} (only POST)", req.method)));
        }
        match req.headers.get(header::PROTOCOL).map_err(bad)? {
            Some(p) if p == ADMIN_PROTOCOL => {}
            other => return Err((400, format!("X-Admin-Protocol {other:?}"))),
        }
        let from = req.headers.get(header::FROM).map_err(bad)?;
        match expected {
            None => {
                let path = req.target.split('?').next().unwrap_or_default();
                if path != self.shared.config.admin_path {
                    return Err((404, format!("first POST to {:?}", req.target)));
                }
                let Some(from) = from else {
                    return Err((400, "no X-Admin-From".into()));
                };
                self.report.agent_id = Some(from.to_owned());
                self.report.resumed = req
                    .headers
                    .get(header::RESUME)
                    .map_err(bad)?
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            }
            Some(uri) => {
                if req.target != uri {
                    return Err((400, format!("POST to {:?}, expected {uri:?}", req.target)));
                }
                if req
                    .headers
                    .get(header::SCRIPT_STATUS)
                    .map_err(bad)?
                    .is_none()
                {
                    return Err((400, "no X-Admin-Script-Status".into()));
                }
                if !req.body.is_empty() {
                    let ct = req
                        .headers
                        .get("Content-Type")
                        .map_err(bad)?
                        .unwrap_or_default();
                    let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
                    if norm(ct) != norm(protocol::CONTENT_TYPE_RESPONSE) {
                        return Err((415, format!("Content-Type {ct:?}")));
                    }
                }
            }
        }
        Ok(())
    }

    async fn read_request(&mut self, decoder: &mut Decoder) -> Result<Option<Request>, ReadError> {
        let timeout = self.shared.config.request_timeout;
        let stream = &mut *self.stream;
        let read = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                if let Some(r) = decoder.next_request().map_err(ReadError::Http)? {
                    return Ok(Some(r));
                }
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| ReadError::Io(e.to_string()))?;
                if n == 0 {
                    return Ok(None);
                }
                decoder.push(&buf[..n]);
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(ReadError::Timeout))
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(data)
            .await
            .map_err(|e| e.to_string())?;
        self.stream.flush().await.map_err(|e| e.to_string())
    }

    /// `204 No Content` without a next URI: the session's end.
    async fn end(&mut self) -> Result<(), String> {
        let mut out = Vec::new();
        http::write_response(
            &mut out,
            204,
            "No Content",
            &[(header::PROTOCOL, ADMIN_PROTOCOL)],
            &[],
        );
        self.write(&out).await
    }

    async fn refuse(&mut self, status: u16, why: String) -> Outcome {
        tracing::warn!(status, %why, session = self.report.session, "refusing request");
        let reason = match status {
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            415 => "Unsupported Media Type",
            431 => "Request Header Fields Too Large",
            501 => "Not Implemented",
            500 => "Internal Server Error",
            _ => "Bad Request",
        };
        let mut out = Vec::new();
        http::write_response(
            &mut out,
            status,
            reason,
            &[(header::PROTOCOL, ADMIN_PROTOCOL), ("Connection", "close")],
            &[],
        );
        let _ = self.write(&out).await;
        Outcome::Protocol(why)
    }
}
