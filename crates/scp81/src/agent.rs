//! The card's admin agent: a TLS-PSK client and HTTP administration session driven
//! entirely over memory.
//!
//! The card never owns a socket: the handset relays TCP bytes over BIP. The agent
//! takes the bytes that arrived with [`AgentSession::on_network_bytes`], hands back
//! the bytes to send with [`AgentSession::take_network_bytes`], and reports what
//! happened through [`AgentSession::poll_event`].

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};

use gp::Aid;
use openssl::ssl::{ErrorCode, SslStream};
use zeroize::Zeroizing;

use crate::error::{AgentError, TlsError};
use crate::http::{self, BodyEncoding, Decoder};
use crate::protocol::{self, header, ScriptStatus, ADMIN_PROTOCOL, CONTENT_TYPE_RESPONSE};
use crate::tls::{self, AMENDMENT_B_CIPHERS};

/// Default chunk size for chunked request bodies: one BIP buffer's worth, as a card
/// streams its response script while executing it.
pub const DEFAULT_CHUNK: usize = 1024;

/// How the agent opens a session.
#[derive(Clone)]
pub struct AgentConfig {
    /// TLS PSK identity (1..=128 bytes, no NUL).
    pub psk_identity: Vec<u8>,
    psk: Zeroizing<Vec<u8>>,
    /// `X-Admin-From`, e.g. `//se-id/CUD/<hex>;//aa-id/aid/<RID>/<PIX>`.
    pub agent_id: String,
    /// Where the first POST goes: `https://host[:port]/path[?query]`. The authority
    /// becomes the `Host` header, the path and query the request-URI.
    pub server_uri: String,
    /// OpenSSL cipher list; [`AMENDMENT_B_CIPHERS`] by default.
    pub cipher_list: String,
    /// How response scripts are framed; chunked in [`DEFAULT_CHUNK`] pieces by default.
    pub body_encoding: BodyEncoding,
    /// Send `X-Admin-Resume: true` on the first POST (resuming an interrupted session).
    pub resume: bool,
    /// Largest script accepted from the server.
    pub max_body: usize,
}

impl AgentConfig {
    /// A configuration with the defaults above.
    pub fn new(
        psk_identity: impl Into<Vec<u8>>,
        psk: Zeroizing<Vec<u8>>,
        agent_id: impl Into<String>,
        server_uri: impl Into<String>,
    ) -> Self {
        Self {
            psk_identity: psk_identity.into(),
            psk,
            agent_id: agent_id.into(),
            server_uri: server_uri.into(),
            cipher_list: AMENDMENT_B_CIPHERS.to_owned(),
            body_encoding: BodyEncoding::Chunked(DEFAULT_CHUNK),
            resume: false,
            max_body: 1 << 20,
        }
    }
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("psk_identity", &String::from_utf8_lossy(&self.psk_identity))
            .field("psk", &"<redacted>")
            .field("agent_id", &self.agent_id)
            .field("server_uri", &self.server_uri)
            .field("cipher_list", &self.cipher_list)
            .field("body_encoding", &self.body_encoding)
            .field("resume", &self.resume)
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// What the agent reports.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// The TLS-PSK handshake completed with this cipher suite (OpenSSL name); the
    /// first POST is on its way.
    Connected {
        /// The negotiated cipher suite.
        cipher: String,
    },
    /// A script for the card to execute; answer with [`AgentSession::send_response`].
    Script {
        /// The script (ETSI TS 102 226 expanded remote command format).
        bytes: Vec<u8>,
        /// `X-Admin-Targeted-Application`; `None`: the PSK's own security domain.
        target: Option<Aid>,
        /// `false` when the server sent no `X-Admin-Next-URI`: the script is the last
        /// and its response is not sent back (the session closes after it).
        expects_response: bool,
    },
    /// The server ended the session (`204 No Content` without a next URI, or a last
    /// script without one); TLS close_notify has been queued.
    Done,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected { cipher } => {
                f.debug_struct("Connected").field("cipher", cipher).finish()
            }
            Self::Script {
                bytes,
                target,
                expects_response,
            } => f
                .debug_struct("Script")
                .field("len", &bytes.len())
                .field("target", target)
                .field("expects_response", expects_response)
                .finish(),
            Self::Done => f.write_str("Done"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Handshake,
    AwaitingResponse,
    Script { next_uri: Option<String> },
    Done,
    Failed,
}

/// The byte pipe OpenSSL reads from and writes to.
#[derive(Debug, Default)]
struct MemIo {
    inbound: VecDeque<u8>,
    outbound: Vec<u8>,
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.inbound.read(buf)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One administration session of the card's admin agent.
pub struct AgentSession {
    tls: SslStream<MemIo>,
    host: String,
    agent_id: String,
    encoding: BodyEncoding,
    resume: bool,
    first_uri: String,
    decoder: Decoder,
    state: State,
    events: VecDeque<Event>,
}

impl fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSession")
            .field("host", &self.host)
            .field("agent_id", &self.agent_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Split `https://authority/path?query` into (authority, path-and-query).
fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("https://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!host.is_empty()).then_some((host, path))
}

impl AgentSession {
    /// Open a session: queues the TLS ClientHello (take it with
    /// [`take_network_bytes`](Self::take_network_bytes)). The first POST follows the
    /// handshake by itself.
    pub fn start(config: AgentConfig) -> Result<Self, AgentError> {
        let AgentConfig {
            psk_identity,
            psk,
            agent_id,
            server_uri,
            cipher_list,
            body_encoding,
            resume,
            max_body,
        } = config;
        if !tls::valid_identity(&psk_identity) {
            return Err(AgentError::Config(
                "PSK identity must be 1..=128 bytes without NUL",
            ));
        }
        if psk.is_empty() || psk.len() > tls::MAX_PSK_LEN {
            return Err(AgentError::Config("PSK must be 1..=64 bytes"));
        }
        if agent_id.is_empty() || !http::is_safe_value(&agent_id) {
            return Err(AgentError::Config(
                "agent id must be a non-empty header value",
            ));
        }
        let (host, path) = split_uri(&server_uri)
            .filter(|(h, p)| http::is_safe_value(h) && is_request_target(p))
            .ok_or(AgentError::Config(
                "server URI must be https://host[:port]/path",
            ))?;
        let connector = tls::connector(&cipher_list, psk_identity, psk)?;
        // Cards send no SNI and there is no certificate to check with PSK suites.
        let mut ssl = connector
            .configure()
            .map_err(TlsError::from)?
            .use_server_name_indication(false)
            .verify_hostname(false)
            .into_ssl(host)
            .map_err(TlsError::from)?;
        ssl.set_connect_state();
        let tls = SslStream::new(ssl, MemIo::default()).map_err(TlsError::from)?;
        let mut session = Self {
            tls,
            host: host.to_owned(),
            agent_id,
            encoding: body_encoding,
            resume,
            first_uri: path.to_owned(),
            decoder: Decoder::new(max_body),
            state: State::Handshake,
            events: VecDeque::new(),
        };
        session.drive()?;
        Ok(session)
    }

    /// Feed bytes that arrived from the server.
    ///
    /// An error ends the session (wrong PSK, HTTP error, protocol violation); the
    /// bytes still waiting in [`take_network_bytes`](Self::take_network_bytes) (e.g.
    /// a TLS alert) may be sent before the channel is closed.
    pub fn on_network_bytes(&mut self, data: &[u8]) -> Result<(), AgentError> {
        if matches!(self.state, State::Done | State::Failed) {
            return Ok(());
        }
        self.tls.get_mut().inbound.extend(data);
        self.drive().inspect_err(|_| self.state = State::Failed)
    }

    /// Bytes to send to the server (may be empty).
    pub fn take_network_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tls.get_mut().outbound)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the session ended normally.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Answer the last [`Event::Script`]: POST `response` (a response script, may be
    /// empty for statuses that carry none) with `X-Admin-Script-Status: status` to
    /// the URI the server gave. For a script that expects no response this just
    /// closes the session.
    pub fn send_response(
        &mut self,
        response: &[u8],
        status: ScriptStatus,
    ) -> Result<(), AgentError> {
        let State::Script { next_uri } = &self.state else {
            return Err(AgentError::State("no script is waiting for a response"));
        };
        if !status.is_valid_token() {
            return Err(AgentError::Config("script status must be an HTTP token"));
        }
        match next_uri.clone() {
            Some(uri) => {
                self.post(&uri, Some((response, &status)))?;
                self.state = State::AwaitingResponse;
            }
            None => self.finish(),
        }
        Ok(())
    }

    fn drive(&mut self) -> Result<(), AgentError> {
        if self.state == State::Handshake {
            match self.tls.do_handshake() {
                Ok(()) => {
                    let cipher = self
                        .tls
                        .ssl()
                        .current_cipher()
                        .map(|c| c.name().to_owned())
                        .unwrap_or_default();
                    tracing::debug!(%cipher, "agent: TLS-PSK session up");
                    self.events.push_back(Event::Connected { cipher });
                    let uri = self.first_uri.clone();
                    self.post(&uri, None)?;
                    self.state = State::AwaitingResponse;
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) => {
                    self.state = State::Failed;
                    return Err(TlsError::Handshake(e.to_string()).into());
                }
            }
        }
        let mut closed = false;
        let mut buf = [0u8; 4096];
        loop {
            match self.tls.ssl_read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    closed = true;
                    break;
                }
                Err(e) => return Err(TlsError::Record(e.to_string()).into()),
            }
        }
        while self.state == State::AwaitingResponse {
            let Some(resp) = self.decoder.next_response()? else {
                break;
            };
            self.on_response(resp)?;
        }
        if !self.decoder.is_empty() && self.state != State::AwaitingResponse {
            return Err(AgentError::Protocol(
                "unsolicited bytes from the server".into(),
            ));
        }
        if closed && self.state != State::Done {
            return Err(AgentError::Protocol(
                "server closed the session early".into(),
            ));
        }
        Ok(())
    }

    fn on_response(&mut self, resp: http::Response) -> Result<(), AgentError> {
        let h = &resp.headers;
        if let Some(p) = h.get(header::PROTOCOL)? {
            if p != ADMIN_PROTOCOL {
                return Err(AgentError::Protocol(format!(
                    "unknown X-Admin-Protocol {p:?}"
                )));
            }
        }
        let next_uri = h.get(header::NEXT_URI)?.map(request_path).transpose()?;
        match resp.status {
            200 => {
                let ct = h.get("Content-Type")?.unwrap_or_default();
                if !same_media_type(ct, protocol::CONTENT_TYPE_SCRIPT) {
                    return Err(AgentError::Protocol(format!(
                        "unexpected Content-Type {ct:?}"
                    )));
                }
                if resp.body.is_empty() {
                    return Err(AgentError::Protocol("200 without a script".into()));
                }
                let target = match h.get(header::TARGETED_APPLICATION)? {
                    Some(t) => Some(protocol::parse_targeted_application(t).ok_or_else(|| {
                        AgentError::Protocol(format!("bad X-Admin-Targeted-Application {t:?}"))
                    })?),
                    None => None,
                };
                tracing::debug!(len = resp.body.len(), ?target, "agent: script received");
                self.events.push_back(Event::Script {
                    bytes: resp.body,
                    target,
                    expects_response: next_uri.is_some(),
                });
                self.state = State::Script { next_uri };
            }
            204 => match next_uri {
                // Nothing to run, but the server wants the agent to go on elsewhere.
                Some(uri) => self.post(&uri, None)?,
                None => self.finish(),
            },
            status => return Err(AgentError::Status(status)),
        }
        Ok(())
    }

    fn post(
        &mut self,
        uri: &str,
        response: Option<(&[u8], &ScriptStatus)>,
    ) -> Result<(), AgentError> {
        let mut headers = vec![
            (header::PROTOCOL, ADMIN_PROTOCOL),
            (header::FROM, self.agent_id.as_str()),
        ];
        if self.resume {
            headers.push((header::RESUME, "true"));
            self.resume = false;
        }
        let mut body: &[u8] = &[];
        if let Some((resp, status)) = response {
            if !resp.is_empty() {
                headers.push(("Content-Type", CONTENT_TYPE_RESPONSE));
            }
            headers.push((header::SCRIPT_STATUS, status.as_str()));
            body = resp;
        }
        let mut out = Vec::new();
        http::write_request(&mut out, uri, &self.host, &headers, body, self.encoding);
        self.write_plain(&out)
    }

    fn write_plain(&mut self, mut data: &[u8]) -> Result<(), AgentError> {
        while !data.is_empty() {
            match self.tls.ssl_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) => return Err(TlsError::Record(e.to_string()).into()),
            }
        }
        Ok(())
    }

    fn finish(&mut self) {
        // Queue close_notify; the server's own close_notify may follow.
        if let Err(e) = self.tls.shutdown() {
            tracing::debug!(error = %e, "agent: TLS shutdown");
        }
        self.state = State::Done;
        self.events.push_back(Event::Done);
    }
}

/// A request-target we may write: an absolute path, no blanks or controls.
fn is_request_target(p: &str) -> bool {
    p.starts_with('/') && p.bytes().all(|b| b > 0x20 && b != 0x7f)
}

/// `X-Admin-Next-URI` as a request-target: an absolute path, or an `https://` URI
/// whose path is taken.
fn request_path(uri: &str) -> Result<String, AgentError> {
    let path = match split_uri(uri) {
        Some((_, path)) => path,
        None => uri,
    };
    if is_request_target(path) {
        Ok(path.to_owned())
    } else {
        Err(AgentError::Protocol(format!(
            "bad X-Admin-Next-URI {uri:?}"
        )))
    }
}

/// Media types compared case-insensitively, blanks around `;` ignored.
fn same_media_type(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split(';')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(split_uri("https://h:1/a?b"), Some(("h:1", "/a?b")));
        assert_eq!(split_uri("https://h"), Some(("h", "/")));
        assert_eq!(split_uri("http://h/a"), None);
        assert_eq!(request_path("/n?x=1").unwrap(), "/n?x=1");
        assert_eq!(request_path("https://h/n").unwrap(), "/n");
        assert!(request_path("n").is_err());
        assert!(request_path("/a b").is_err());
    }

    #[test]
    fn media_types() {
        assert!(same_media_type(
            "application/vnd.globalplatform.card-content-mgt; version=1.0",
            protocol::CONTENT_TYPE_SCRIPT
        ));
        assert!(!same_media_type(
            "text/plain",
            protocol::CONTENT_TYPE_SCRIPT
        ));
    }

    #[test]
    fn config_is_checked_and_redacted() {
        let psk = Zeroizing::new(vec![0x11; 16]);
        let c = AgentConfig::new(b"id".to_vec(), psk.clone(), "agent", "https://h/p");
        assert!(!format!("{c:?}").contains("11"));
        let mut bad = c.clone();
        bad.server_uri = "h/p".into();
        assert!(matches!(
            AgentSession::start(bad),
            Err(AgentError::Config(_))
        ));
        let mut bad = c.clone();
        bad.psk_identity = b"a\0b".to_vec();
        assert!(matches!(
            AgentSession::start(bad),
            Err(AgentError::Config(_))
        ));
        let mut s = AgentSession::start(c).unwrap();
        let hello = s.take_network_bytes();
        assert_eq!(hello[0], 0x16, "a TLS handshake record");
        assert!(s.poll_event().is_none());
        assert!(matches!(
            s.send_response(b"", ScriptStatus::Ok),
            Err(AgentError::State(_))
        ));
    }
}
