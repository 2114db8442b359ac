//! The terminal side: `cardwright agent --server URL`. Connects out, reports readers,
//! relays APDUs; reconnects when the platform restarts. Holds no keys.

use crate::protocol::{AgentMessage, PlatformMessage, ReaderReport, RelayFault};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// The readers a terminal lends to the platform.
pub trait Readers {
    /// The readers now, with card presence and ATRs.
    fn list(&mut self) -> Vec<ReaderReport>;
    /// One C-APDU to the card in `reader`; the R-APDU.
    fn transmit(&mut self, reader: &str, capdu: &[u8]) -> Result<Vec<u8>, RelayFault>;
    /// Resets the card in `reader`; its ATR.
    fn reset(&mut self, reader: &str) -> Result<Vec<u8>, RelayFault>;
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct AgentConfig {
    /// The platform's base URL, `http://host:port` (or `ws://…`), or `https://…` (`wss://…`)
    /// with [`AgentConfig::tls`].
    pub server: String,
    /// The terminal's bearer token; `None` when the terminal authenticates with the client
    /// certificate of [`AgentConfig::tls`] (mutual TLS) instead.
    pub token: Option<String>,
    /// The terminal's name; must match what the token is for.
    pub terminal: String,
    /// How often reader changes are looked for while idle.
    pub poll: Duration,
    /// Delay before reconnecting.
    pub retry: Duration,
    /// TLS for an `https://`/`wss://` platform (rustls; the roots that the platform's
    /// server certificate must chain to, and the terminal's client certificate if any).
    /// `None`: plain `http://`/`ws://` only.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("terminal", &self.terminal)
            .field("poll", &self.poll)
            .field("retry", &self.retry)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The server URL is not `http://`, `ws://`, `https://` or `wss://`.
    #[error("server URL {0}: use http://HOST:PORT, ws://HOST:PORT, or https://HOST:PORT with the platform's CA (--server-ca)")]
    Url(String),
    /// The platform refused the terminal (the reason it gave).
    #[error("the platform refused this terminal: {0}")]
    Refused(String),
    /// The token (or the client certificate) was not accepted.
    #[error("the platform rejected this terminal's credentials (HTTP 401): check --token, or --client-cert and the platform's --terminal-ca")]
    Unauthorized,
    /// The platform's server certificate is not trusted (RFC 8446 §4.4.2.4): wrong or
    /// missing `--server-ca`, a name mismatch, an expired certificate, or a man in the
    /// middle. Retrying cannot fix it.
    #[error("the platform's server certificate is not trusted: {0} (check --server-ca and the host name of --server)")]
    UntrustedServer(String),
    /// The platform refused the terminal's client certificate in the TLS handshake (it does
    /// not chain to one of the platform's `--terminal-ca` roots, is expired or revoked, or
    /// the platform wants one and none was given).
    #[error("the platform refused this terminal's client certificate in the TLS handshake ({0}): check --client-cert and the platform's --terminal-ca")]
    ClientCertificateRefused(String),
    /// The connection failed or dropped.
    #[error("connection: {0}")]
    Connection(String),
}

/// The WebSocket URL of the platform's terminal endpoint, and whether it is TLS.
fn ws_url(server: &str) -> Result<(String, bool), AgentError> {
    let base = server.trim_end_matches('/');
    let (rest, tls) = if let Some(r) = base.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = base.strip_prefix("ws://") {
        (r, false)
    } else if let Some(r) = base.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = base.strip_prefix("wss://") {
        (r, true)
    } else {
        return Err(AgentError::Url(server.to_string()));
    };
    if rest.is_empty() || rest.contains('/') {
        return Err(AgentError::Url(server.to_string()));
    }
    let scheme = if tls { "wss" } else { "ws" };
    Ok((format!("{scheme}://{rest}{}", crate::WS_PATH), tls))
}

/// Serves the platform until `stop` is set, reconnecting after failures. Returns at once on
/// errors that retrying cannot fix (bad URL, token refused).
pub fn run(
    config: &AgentConfig,
    readers: &mut dyn Readers,
    stop: &AtomicBool,
) -> Result<(), AgentError> {
    let mut announced_wait = false;
    while !stop.load(Ordering::Relaxed) {
        match run_once(config, readers, stop) {
            Ok(()) => tracing::info!("the platform closed the connection; reconnecting"),
            Err(
                e @ (AgentError::Url(_)
                | AgentError::Refused(_)
                | AgentError::Unauthorized
                | AgentError::UntrustedServer(_)
                | AgentError::ClientCertificateRefused(_)),
            ) => return Err(e),
            Err(AgentError::Connection(e)) => {
                if !announced_wait {
                    tracing::warn!(
                        "platform not reachable ({e}); retrying every {:?}",
                        config.retry
                    );
                    announced_wait = true;
                }
            }
        }
        std::thread::sleep(config.retry);
    }
    Ok(())
}

fn conn(e: impl std::fmt::Display) -> AgentError {
    AgentError::Connection(e.to_string())
}

fn send<S: Read + Write>(ws: &mut WebSocket<S>, m: &AgentMessage) -> Result<(), AgentError> {
    let text = serde_json::to_string(m).map_err(conn)?;
    ws.send(Message::Text(text.into())).map_err(conn)
}

/// One connection: hello, then requests until the platform closes.
pub fn run_once(
    config: &AgentConfig,
    readers: &mut dyn Readers,
    stop: &AtomicBool,
) -> Result<(), AgentError> {
    let (url, tls) = ws_url(&config.server)?;
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|_| AgentError::Url(config.server.clone()))?;
    if let Some(token) = &config.token {
        let auth = format!("Bearer {token}").parse().map_err(|_| {
            AgentError::Connection("the token has characters not allowed in a header".into())
        })?;
        req.headers_mut().insert("Authorization", auth);
    }
    let host = req
        .uri()
        .host()
        .ok_or_else(|| AgentError::Url(config.server.clone()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = req.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).map_err(conn)?;
    let _ = tcp.set_nodelay(true);
    if !tls {
        let ws = handshake(req, tcp)?;
        ws.get_ref()
            .set_read_timeout(Some(config.poll))
            .map_err(conn)?;
        return serve_connection(config, ws, readers, stop);
    }
    let Some(client) = config.tls.clone() else {
        return Err(AgentError::Url(config.server.clone()));
    };
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|_| AgentError::Url(config.server.clone()))?;
    let mut session = rustls::ClientConnection::new(client, name).map_err(conn)?;
    let mut tcp = tcp;
    // The TLS handshake first, on its own: a server certificate that is not trusted is
    // told apart from a network failure (and not retried).
    while session.is_handshaking() {
        session.complete_io(&mut tcp).map_err(tls_failure)?;
    }
    let ws = handshake(req, rustls::StreamOwned::new(session, tcp))?;
    ws.get_ref()
        .sock
        .set_read_timeout(Some(config.poll))
        .map_err(conn)?;
    serve_connection(config, ws, readers, stop)
}

/// The WebSocket opening handshake (RFC 6455 §4.1) on a connected stream, TLS or not.
fn handshake<S: Read + Write>(
    req: tungstenite::handshake::client::Request,
    stream: S,
) -> Result<WebSocket<S>, AgentError> {
    match tungstenite::client(req, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp)))
            if resp.status() == 401 =>
        {
            Err(AgentError::Unauthorized)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Io(e))) => Err(tls_failure(e)),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(conn(e)),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            Err(conn("the handshake was interrupted"))
        }
    }
}

/// What a failed TLS exchange means: the server's certificate not trusted, our client
/// certificate refused by the server (its alert; in TLS 1.3 it comes after our Finished,
/// with the first read), or a connection problem.
fn tls_failure(e: std::io::Error) -> AgentError {
    use rustls::AlertDescription as A;
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(err @ rustls::Error::InvalidCertificate(_)) => {
            AgentError::UntrustedServer(err.to_string())
        }
        Some(rustls::Error::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateRequired
            | A::AccessDenied),
        )) => AgentError::ClientCertificateRefused(format!("alert {alert:?}")),
        _ => conn(e),
    }
}

/// Hello, then the platform's requests until it closes.
fn serve_connection<S: Read + Write>(
    config: &AgentConfig,
    mut ws: WebSocket<S>,
    readers: &mut dyn Readers,
    stop: &AtomicBool,
) -> Result<(), AgentError> {
    let mut last = readers.list();
    send(
        &mut ws,
        &AgentMessage::Hello {
            terminal: config.terminal.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            readers: last.clone(),
        },
    )?;
    let mut welcomed = false;
    while !stop.load(Ordering::Relaxed) {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Idle: report reader changes (cards inserted or removed).
                let now = readers.list();
                if welcomed && now != last {
                    send(
                        &mut ws,
                        &AgentMessage::Readers {
                            readers: now.clone(),
                        },
                    )?;
                    last = now;
                }
                continue;
            }
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return Ok(())
            }
            Err(e) => return Err(conn(e)),
        };
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let m: PlatformMessage =
            serde_json::from_str(&text).map_err(|e| conn(format!("bad message: {e}")))?;
        match m {
            PlatformMessage::Welcome { terminal } => {
                welcomed = true;
                tracing::info!(%terminal, "connected to the platform; readers: {}", last.len());
            }
            PlatformMessage::Refused { reason } => return Err(AgentError::Refused(reason)),
            PlatformMessage::Transmit { id, reader, capdu } => {
                let result = match apdu::parse_hex(&capdu) {
                    Ok(bytes) => readers.transmit(&reader, &bytes),
                    Err(e) => Err(RelayFault::Other {
                        message: format!("bad C-APDU hex: {e}"),
                    }),
                };
                send(&mut ws, &reply(id, result))?;
            }
            PlatformMessage::Reset { id, reader } => {
                let result = readers.reset(&reader);
                send(&mut ws, &reply(id, result))?;
            }
        }
    }
    let _ = ws.close(None);
    Ok(())
}

fn reply(id: u64, result: Result<Vec<u8>, RelayFault>) -> AgentMessage {
    match result {
        Ok(b) => AgentMessage::Result {
            id,
            ok: Some(apdu::hex(&b)),
            error: None,
        },
        Err(f) => AgentMessage::Result {
            id,
            ok: None,
            error: Some(f),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080").unwrap(),
            ("ws://127.0.0.1:8080/api/v1/terminal/ws".into(), false)
        );
        assert_eq!(
            ws_url("ws://h:1/").unwrap(),
            ("ws://h:1/api/v1/terminal/ws".into(), false)
        );
        assert_eq!(
            ws_url("https://h:8443").unwrap(),
            ("wss://h:8443/api/v1/terminal/ws".into(), true)
        );
        assert_eq!(
            ws_url("wss://h").unwrap(),
            ("wss://h/api/v1/terminal/ws".into(), true)
        );
        assert!(ws_url("h:1").is_err());
        assert!(ws_url("http://").is_err());
        assert!(ws_url("http://h/x").is_err());
    }
}
