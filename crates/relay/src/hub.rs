//! The platform side of the relay: terminals connect here; workflows borrow their readers.

use crate::protocol::{AgentMessage, PlatformMessage, ReaderReport, RelayFault};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use transport::{CardChannel, TransportError};
use zeroize::Zeroizing;

/// Who may connect: a bearer token names one terminal.
pub trait TerminalAuth: Send + Sync + fmt::Debug {
    /// The terminal this token belongs to, if the token is valid.
    fn terminal_for(&self, token: &str) -> Option<String>;
}

/// A fixed token → terminal table, compared in constant time.
#[derive(Default)]
pub struct StaticTokens(Vec<(String, String)>);

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(_, t)| t.as_str()).collect();
        f.debug_struct("StaticTokens")
            .field("terminals", &names)
            .field("tokens", &"<redacted>")
            .finish()
    }
}

impl StaticTokens {
    /// No terminal allowed yet (see [`StaticTokens::with`]).
    pub fn new() -> Self {
        Self::default()
    }
    /// Allows `token` for `terminal`.
    pub fn with(mut self, token: &str, terminal: &str) -> Self {
        self.0.push((token.to_string(), terminal.to_string()));
        self
    }
}

impl TerminalAuth for StaticTokens {
    fn terminal_for(&self, token: &str) -> Option<String> {
        use subtle::ConstantTimeEq;
        let mut found = None;
        for (t, terminal) in &self.0 {
            let same = t.len() == token.len() && bool::from(t.as_bytes().ct_eq(token.as_bytes()));
            if same {
                found = Some(terminal.clone());
            }
        }
        found
    }
}

type Pending = Mutex<HashMap<u64, std_mpsc::SyncSender<Result<Vec<u8>, RelayFault>>>>;

/// How a connected terminal proved who it is.
enum Credential {
    /// A bearer token: checked again by [`Hub::disconnect_revoked`].
    Token(Zeroizing<String>),
    /// Something the caller checked once (a client certificate in the TLS handshake).
    Checked,
}

/// One connected terminal.
struct Terminal {
    id: String,
    credential: Credential,
    readers: Mutex<Vec<ReaderReport>>,
    tx: mpsc::UnboundedSender<PlatformMessage>,
    /// Tells the connection's task to close with this reason.
    close: Mutex<Option<oneshot::Sender<String>>>,
    pending: Pending,
    next_id: AtomicU64,
    alive: AtomicBool,
}

impl Terminal {
    fn fail_all(&self) {
        self.fail_all_with("the terminal disconnected");
    }

    /// No more requests: those waiting get `why`, later ones are refused.
    fn fail_all_with(&self, why: &str) {
        self.alive.store(false, Ordering::SeqCst);
        if let Ok(mut p) = self.pending.lock() {
            for (_, tx) in p.drain() {
                let _ = tx.try_send(Err(RelayFault::Other {
                    message: why.to_string(),
                }));
            }
        }
    }
}

/// A terminal as the platform sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalInfo {
    /// The terminal's name.
    pub terminal: String,
    /// Its readers as last reported.
    pub readers: Vec<ReaderReport>,
}

/// Why a reader cannot be lent.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No terminal of that name is connected.
    #[error("terminal '{0}' is not connected")]
    NotConnected(String),
    /// The terminal did not report that reader.
    #[error("terminal '{terminal}' has no reader '{reader}'")]
    UnknownReader {
        /// The terminal.
        terminal: String,
        /// The reader asked for.
        reader: String,
    },
    /// The reader holds no card.
    #[error("no card in reader '{reader}' of terminal '{terminal}'")]
    NoCard {
        /// The terminal.
        terminal: String,
        /// The reader.
        reader: String,
    },
    /// Another job has the reader (one [`RelayChannel`] per reader at a time).
    #[error("reader '{reader}' of terminal '{terminal}' is in use by another job")]
    Busy {
        /// The terminal.
        terminal: String,
        /// The reader.
        reader: String,
    },
}

/// The readers lent out, as (terminal, reader).
type Lent = Arc<Mutex<HashSet<(String, String)>>>;

/// A reader lent to one [`RelayChannel`]: given back when the channel is dropped.
struct ReaderClaim {
    lent: Lent,
    key: (String, String),
}

impl Drop for ReaderClaim {
    fn drop(&mut self) {
        if let Ok(mut l) = self.lent.lock() {
            l.remove(&self.key);
        }
    }
}

/// The registry of connected terminals.
pub struct Hub {
    auth: Arc<dyn TerminalAuth>,
    terminals: Mutex<HashMap<String, Arc<Terminal>>>,
    lent: Lent,
    timeout: Duration,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Hub {
    /// A hub; `timeout` bounds each APDU round trip through a terminal.
    pub fn new(auth: Arc<dyn TerminalAuth>, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            auth,
            terminals: Mutex::new(HashMap::new()),
            lent: Arc::default(),
            timeout,
        })
    }

    /// The WebSocket route ([`crate::WS_PATH`]) to merge into the platform's router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(crate::WS_PATH, get(ws_handler))
            .with_state(self.clone())
    }

    /// Serves the WebSocket of `terminal`, already authenticated by the caller once (a
    /// client certificate verified in the TLS handshake), from the upgrade request. It
    /// stays connected until it closes.
    pub fn accept(self: &Arc<Self>, terminal: String, ws: WebSocketUpgrade) -> Response {
        self.accept_as(terminal, Credential::Checked, ws)
    }

    /// Serves the WebSocket of `terminal`, authenticated by the caller with bearer `token`
    /// (the platform's own bearer-auth extractor): it stays connected while the hub's
    /// [`TerminalAuth`] names `terminal` for `token` ([`Hub::disconnect_revoked`]).
    pub fn accept_token(
        self: &Arc<Self>,
        terminal: String,
        token: &str,
        ws: WebSocketUpgrade,
    ) -> Response {
        let token = Credential::Token(Zeroizing::new(token.to_string()));
        self.accept_as(terminal, token, ws)
    }

    fn accept_as(
        self: &Arc<Self>,
        terminal: String,
        credential: Credential,
        ws: WebSocketUpgrade,
    ) -> Response {
        let hub = self.clone();
        ws.on_upgrade(move |socket| serve_terminal(hub, terminal, credential, socket))
    }

    /// Disconnects every connected terminal whose bearer token the hub's [`TerminalAuth`]
    /// no longer accepts for it (a token file re-read without its line): it leaves
    /// [`Hub::terminals`] at once, a request waiting for its answer fails (a job running on
    /// it is interrupted, resumable), and its WebSocket is closed with code 1008 (policy
    /// violation) and the reason, after a [`PlatformMessage::Refused`] telling the agent
    /// not to come back with that token. Terminals that came with a client certificate are
    /// left alone. Returns the names of those disconnected.
    pub fn disconnect_revoked(&self) -> Vec<String> {
        let connected: Vec<Arc<Terminal>> = self
            .terminals
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let mut gone = Vec::new();
        for t in connected {
            let Credential::Token(token) = &t.credential else {
                continue;
            };
            if self.auth.terminal_for(token).as_deref() == Some(t.id.as_str()) {
                continue;
            }
            self.unregister_with(&t, REVOKED);
            if let Some(close) = t.close.lock().ok().and_then(|mut c| c.take()) {
                let _ = close.send(REVOKED.to_string());
            }
            tracing::warn!(terminal = %t.id, "terminal disconnected: its token is no longer valid");
            gone.push(t.id.clone());
        }
        gone.sort();
        gone
    }

    /// The terminal `token` names, if any (constant-time, see [`TerminalAuth`]).
    pub fn authenticate(&self, token: &str) -> Option<String> {
        self.auth.terminal_for(token)
    }

    /// The connected terminals and their readers.
    pub fn terminals(&self) -> Vec<TerminalInfo> {
        let map = self
            .terminals
            .lock()
            .map(|m| m.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let mut v: Vec<TerminalInfo> = map
            .iter()
            .map(|t| TerminalInfo {
                terminal: t.id.clone(),
                readers: t.readers.lock().map(|r| r.clone()).unwrap_or_default(),
            })
            .collect();
        v.sort_by(|a, b| a.terminal.cmp(&b.terminal));
        v
    }

    /// A channel to the card in `reader` of `terminal`. Its `transmit` blocks: call it from a
    /// blocking thread (`tokio::task::spawn_blocking`), never from an async task. The reader
    /// is lent to this channel alone until it is dropped: meanwhile every other caller
    /// (an API request, the renewal at contact) gets [`HubError::Busy`].
    pub fn channel(&self, terminal: &str, reader: &str) -> Result<RelayChannel, HubError> {
        let t = self
            .terminals
            .lock()
            .ok()
            .and_then(|m| m.get(terminal).cloned())
            .ok_or_else(|| HubError::NotConnected(terminal.to_string()))?;
        let report = t
            .readers
            .lock()
            .ok()
            .and_then(|r| r.iter().find(|x| x.name == reader).cloned())
            .ok_or_else(|| HubError::UnknownReader {
                terminal: terminal.into(),
                reader: reader.into(),
            })?;
        if !report.card_present {
            return Err(HubError::NoCard {
                terminal: terminal.into(),
                reader: reader.into(),
            });
        }
        let atr = report
            .atr
            .as_deref()
            .and_then(|a| apdu::parse_hex(a).ok())
            .unwrap_or_default();
        let key = (terminal.to_string(), reader.to_string());
        let claimed = self
            .lent
            .lock()
            .map(|mut l| l.insert(key.clone()))
            .unwrap_or(false);
        if !claimed {
            return Err(HubError::Busy {
                terminal: terminal.into(),
                reader: reader.into(),
            });
        }
        Ok(RelayChannel {
            terminal: t,
            reader: reader.to_string(),
            atr,
            timeout: self.timeout,
            _claim: ReaderClaim {
                lent: self.lent.clone(),
                key,
            },
        })
    }

    /// Like [`Hub::channel`], but a reader another job holds is waited for, up to `wait`
    /// (then [`HubError::Busy`]): what API requests use, so that a short job in the reader
    /// (the renewal at contact identifying a card that just came in) delays them instead
    /// of refusing them.
    pub async fn channel_when_free(
        &self,
        terminal: &str,
        reader: &str,
        wait: Duration,
    ) -> Result<RelayChannel, HubError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.channel(terminal, reader) {
                Err(HubError::Busy { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => return other,
            }
        }
    }

    fn register(&self, t: Arc<Terminal>) {
        if let Ok(mut m) = self.terminals.lock() {
            if let Some(old) = m.insert(t.id.clone(), t) {
                // A terminal reconnected: requests on the old connection fail.
                old.fail_all();
            }
        }
    }

    fn unregister(&self, t: &Arc<Terminal>) {
        self.unregister_with(t, "the terminal disconnected");
    }

    fn unregister_with(&self, t: &Arc<Terminal>, why: &str) {
        if let Ok(mut m) = self.terminals.lock() {
            if m.get(&t.id).is_some_and(|cur| Arc::ptr_eq(cur, t)) {
                m.remove(&t.id);
            }
        }
        t.fail_all_with(why);
    }
}

/// Why [`Hub::disconnect_revoked`] closes a connection (the close frame's reason, at most
/// 123 bytes: RFC 6455 §5.5).
pub const REVOKED: &str = "the terminal's token is no longer valid";

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn ws_handler(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = bearer(&headers);
    let Some((terminal, token)) = token.and_then(|t| Some((hub.auth.terminal_for(t)?, t))) else {
        return (
            StatusCode::UNAUTHORIZED,
            "a terminal token is required (Authorization: Bearer …)",
        )
            .into_response();
    };
    hub.accept_token(terminal, token, ws)
}

async fn send(socket: &mut WebSocket, m: &PlatformMessage) -> bool {
    match serde_json::to_string(m) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn serve_terminal(
    hub: Arc<Hub>,
    terminal: String,
    credential: Credential,
    mut socket: WebSocket,
) {
    // The first message must be a hello from the terminal the token names.
    let hello = tokio::time::timeout(Duration::from_secs(10), socket.recv()).await;
    let readers = match hello {
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<AgentMessage>(&text) {
            Ok(AgentMessage::Hello {
                terminal: claimed,
                readers,
                ..
            }) if claimed == terminal => readers,
            Ok(AgentMessage::Hello {
                terminal: claimed, ..
            }) => {
                let reason = format!("this token is for terminal '{terminal}', not '{claimed}'");
                let _ = send(&mut socket, &PlatformMessage::Refused { reason }).await;
                return;
            }
            _ => {
                let reason = "the first message must be a hello".to_string();
                let _ = send(&mut socket, &PlatformMessage::Refused { reason }).await;
                return;
            }
        },
        _ => return,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (close, mut closed) = oneshot::channel();
    let t = Arc::new(Terminal {
        id: terminal.clone(),
        credential,
        readers: Mutex::new(readers),
        tx,
        close: Mutex::new(Some(close)),
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        alive: AtomicBool::new(true),
    });
    if !send(
        &mut socket,
        &PlatformMessage::Welcome {
            terminal: terminal.clone(),
        },
    )
    .await
    {
        return;
    }
    hub.register(t.clone());
    tracing::info!(terminal = %terminal, "terminal connected");
    // A token revoked between the upgrade and here: the check again, now that it is
    // registered (a re-read from now on finds it).
    if matches!(&t.credential, Credential::Token(token) if hub.auth.terminal_for(token).as_deref() != Some(terminal.as_str()))
    {
        hub.disconnect_revoked();
    }
    loop {
        tokio::select! {
            reason = &mut closed => {
                if let Ok(reason) = reason {
                    let _ = send(&mut socket, &PlatformMessage::Refused { reason: reason.clone() }).await;
                    let frame = CloseFrame { code: 1008, reason: reason.into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                }
                break;
            },
            out = rx.recv() => match out {
                Some(m) => if !send(&mut socket, &m).await { break },
                None => break,
            },
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<AgentMessage>(&text) {
                    Ok(AgentMessage::Readers { readers }) => {
                        if let Ok(mut r) = t.readers.lock() { *r = readers; }
                    }
                    Ok(AgentMessage::Result { id, ok, error }) => {
                        let waiter = t.pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(w) = waiter {
                            let result = match (ok, error) {
                                (Some(hex), None) => apdu::parse_hex(&hex)
                                    .map_err(|e| RelayFault::Other { message: format!("bad hex from terminal: {e}") }),
                                (_, Some(fault)) => Err(fault),
                                (None, None) => Err(RelayFault::Other { message: "empty result".into() }),
                            };
                            let _ = w.try_send(result);
                        }
                    }
                    Ok(AgentMessage::Hello { .. }) | Err(_) => {
                        tracing::warn!(terminal = %terminal, "unexpected message from terminal; closing");
                        break;
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    hub.unregister(&t);
    tracing::info!(terminal = %terminal, "terminal disconnected");
}

/// The card in one reader of one terminal, as a blocking [`CardChannel`].
pub struct RelayChannel {
    terminal: Arc<Terminal>,
    reader: String,
    atr: Vec<u8>,
    timeout: Duration,
    _claim: ReaderClaim,
}

impl fmt::Debug for RelayChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayChannel")
            .field("terminal", &self.terminal.id)
            .field("reader", &self.reader)
            .finish()
    }
}

impl RelayChannel {
    fn request(
        &self,
        make: impl FnOnce(u64) -> PlatformMessage,
    ) -> Result<Vec<u8>, TransportError> {
        if !self.terminal.alive.load(Ordering::SeqCst) {
            return Err(TransportError::NoResponse(format!(
                "terminal '{}' disconnected",
                self.terminal.id
            )));
        }
        let id = self.terminal.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std_mpsc::sync_channel(1);
        if let Ok(mut p) = self.terminal.pending.lock() {
            p.insert(id, tx);
        }
        if self.terminal.tx.send(make(id)).is_err() {
            return Err(TransportError::NoResponse(format!(
                "terminal '{}' disconnected",
                self.terminal.id
            )));
        }
        let r = rx.recv_timeout(self.timeout);
        if let Ok(mut p) = self.terminal.pending.lock() {
            p.remove(&id);
        }
        match r {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(RelayFault::CardRemoved)) => Err(TransportError::CardRemoved),
            Ok(Err(RelayFault::NoCard)) => Err(TransportError::NoCard(self.reader.clone())),
            Ok(Err(RelayFault::UnknownReader)) => {
                Err(TransportError::NoReader(format!(" '{}'", self.reader)))
            }
            Ok(Err(RelayFault::Other { message })) => Err(TransportError::NoResponse(message)),
            Err(_) => Err(TransportError::NoResponse(format!(
                "terminal '{}' did not answer within {:?}",
                self.terminal.id, self.timeout
            ))),
        }
    }
}

impl CardChannel for RelayChannel {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let reader = self.reader.clone();
        let capdu = apdu::hex(capdu);
        self.request(|id| PlatformMessage::Transmit { id, reader, capdu })
    }
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        let reader = self.reader.clone();
        self.atr = self.request(|id| PlatformMessage::Reset { id, reader })?;
        Ok(())
    }
    fn name(&self) -> String {
        format!("{} @ {}", self.reader, self.terminal.id)
    }
}
