//! Errors.

use std::io;

/// A malformed or unsupported HTTP message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The head did not parse.
    #[error("malformed HTTP head: {0}")]
    Parse(httparse::Error),
    /// The message broke a framing or syntax rule.
    #[error("malformed HTTP message: {0}")]
    Malformed(&'static str),
    /// A header that may appear once appeared more than once.
    #[error("duplicate header {0}")]
    DuplicateHeader(String),
    /// A transfer coding other than `chunked`.
    #[error("unsupported Transfer-Encoding (only chunked is accepted)")]
    UnsupportedTransferEncoding,
    /// The head is longer than the limit.
    #[error("HTTP head too large")]
    HeadTooLarge,
    /// The body is longer than the limit.
    #[error("HTTP body larger than {0} bytes")]
    BodyTooLarge(usize),
}

/// Errors of the TLS-PSK layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// OpenSSL refused the configuration (e.g. an unknown cipher name).
    #[error("TLS configuration: {0}")]
    Config(#[from] openssl::error::ErrorStack),
    /// The handshake failed: wrong key, unknown identity, no common cipher, ...
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// A record could not be read or written after the handshake.
    #[error("TLS: {0}")]
    Record(String),
}

/// Errors of the admin server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// TLS configuration or handshake.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A session for this PSK identity is already waiting or running.
    #[error("a session for this PSK identity is already queued")]
    AlreadyQueued,
    /// The session was not given any script.
    #[error("a session needs at least one script")]
    NoScripts,
    /// A configuration value cannot be used.
    #[error("bad configuration: {0}")]
    Config(&'static str),
    /// The server went away before the session finished.
    #[error("the server dropped the session before it finished")]
    Dropped,
}

/// Errors of the card's admin agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// TLS configuration, handshake or record error.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The server's HTTP did not parse.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server broke the administration protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server answered with an HTTP error status.
    #[error("server answered HTTP {0}")]
    Status(u16),
    /// The call does not fit the session's state.
    #[error("not allowed now: {0}")]
    State(&'static str),
    /// A configuration value cannot be used (e.g. a URI or header with CR/LF).
    #[error("bad configuration: {0}")]
    Config(&'static str),
}
