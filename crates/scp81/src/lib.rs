//! GP Amendment B remote administration over HTTPS with TLS-PSK ("SCP81"): the
//! admin server's listener and the card admin agent's side, over OpenSSL.
//!
//! * [`AdminServer`]: a tokio TLS-PSK listener. The platform queues scripts per PSK
//!   identity in an [`AdminQueue`] (then triggers the card by SMS), gets each script's
//!   response and the session's end through the [`SessionHandle`], and every
//!   connection's [`SessionReport`] through an audit sink. Keys come from a
//!   [`PskStore`]; an unknown identity or a wrong key fails the TLS handshake, so such
//!   a card never reaches HTTP.
//! * [`AgentSession`]: the card's admin agent as a sans-I/O state machine (the card
//!   only sees the bytes the handset relays over BIP): feed it network bytes, take the
//!   bytes it wants sent, poll its [`Event`]s, answer scripts.
//!
//! # The exchange, step by step
//!
//! 1. The platform queues scripts for the card's PSK identity and sends the
//!    triggering SMS (not this crate). The card opens TCP through the handset.
//! 2. TLS 1.2 handshake with a PSK cipher suite (by default
//!    `TLS_PSK_WITH_AES_128_GCM_SHA256` and `TLS_PSK_WITH_AES_128_CBC_SHA256`, OpenSSL
//!    `PSK-AES128-GCM-SHA256:PSK-AES128-CBC-SHA256`; see [`AMENDMENT_B_CIPHERS`]). The
//!    card sends its PSK identity; the server looks the key up (the security domain's
//!    SCP81 key, KVN 0x40–0x4F). No SNI, no certificates, no session tickets, no
//!    renegotiation.
//! 3. The card's first POST, no body:
//!    ```text
//!    POST /gp/admin HTTP/1.1
//!    Host: tsm.example:8443
//!    X-Admin-Protocol: globalplatform-remote-admin/1.0
//!    X-Admin-From: //se-id/CUD/0102…;//aa-id/aid/A000000151/000000
//!    Content-Length: 0
//!    ```
//!    (`X-Admin-Resume: true` is added when the card resumes an interrupted session.)
//! 4. The server answers with the first script:
//!    ```text
//!    HTTP/1.1 200 OK
//!    X-Admin-Protocol: globalplatform-remote-admin/1.0
//!    Content-Type: application/vnd.globalplatform.card-content-mgt;version=1.0
//!    X-Admin-Next-URI: /gp/admin?session=7&script=0
//!    X-Admin-Targeted-Application: //aid/A000000151/000000
//!    Content-Length: 42
//!
//!    <script: ETSI TS 102 226 expanded remote command format>
//!    ```
//!    `X-Admin-Targeted-Application` is left out when the script is for the security
//!    domain whose PSK secures the session.
//! 5. The card runs the script and POSTs its response to the next URI, chunked (the
//!    agent's default; [`BodyEncoding`] selects `Content-Length` instead):
//!    ```text
//!    POST /gp/admin?session=7&script=0 HTTP/1.1
//!    Host: tsm.example:8443
//!    X-Admin-Protocol: globalplatform-remote-admin/1.0
//!    X-Admin-From: //se-id/CUD/0102…;//aa-id/aid/A000000151/000000
//!    Content-Type: application/vnd.globalplatform.card-content-mgt-response;version=1.0
//!    X-Admin-Script-Status: ok
//!    Transfer-Encoding: chunked
//!
//!    <response script, in chunks>
//!    ```
//!    `X-Admin-Script-Status` is one of `ok`, `unknown-application`,
//!    `not-a-security-domain`, `security-error` ([`ScriptStatus`]).
//! 6. Steps 4–5 repeat for every queued script. When none is left (or, with
//!    [`ServerConfig::stop_on_error`], after a status other than `ok`) the server
//!    answers `HTTP/1.1 204 No Content` without `X-Admin-Next-URI`, and both sides
//!    close TLS with close_notify.
//!
//! The server writes its responses with `Content-Length`; it reads requests framed by
//! `Content-Length` or `Transfer-Encoding: chunked` (what cards send) and refuses
//! anything else. Header names are written exactly as Amendment B spells them and
//! read case-insensitively.
//!
//! # OpenSSL notes
//!
//! Checked with OpenSSL 3.0 (Debian 12): the AES-128 PSK suites pass the default
//! security level (they are allowed up to `@SECLEVEL=2`, refused at 3), so no
//! `@SECLEVEL` change is needed. `TLS_PSK_WITH_NULL_SHA256` (integrity only, which
//! some cards offer) needs `PSK-NULL-SHA256:@SECLEVEL=0` in the cipher list. TLS 1.3
//! is disabled on both sides, so `-ciphersuites` plays no part: with `openssl
//! s_client` the TLS 1.2 suite is chosen by `-cipher`, e.g.
//!
//! ```text
//! openssl s_client -connect 127.0.0.1:PORT -tls1_2 -psk 404142…4F -psk_identity card-0001 \
//!     -cipher PSK-AES128-CBC-SHA256 -quiet
//! ```
//!
//! then an HTTP POST typed on its stdin gets the first script back.

#![forbid(unsafe_code)]

pub mod agent;
pub mod error;
mod http;
pub mod protocol;
pub mod server;
pub mod tls;

pub use agent::{AgentConfig, AgentSession, Event};
pub use error::{AgentError, HttpError, ServerError, TlsError};
pub use http::BodyEncoding;
pub use protocol::{Script, ScriptStatus};
pub use server::{
    AdminQueue, AdminServer, AuditSink, Outcome, ScriptResponse, ServerConfig, SessionHandle,
    SessionReport, SessionResult,
};
pub use tls::{PskStore, AMENDMENT_B_CIPHERS};
