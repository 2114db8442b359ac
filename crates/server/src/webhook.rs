//! Signed webhooks: when a job run through the issuance API ends, its final state is POSTed to
//! the operator's URL (`cardwright serve --webhook-url URL --webhook-secret-file F`).
//!
//! # Signature scheme
//!
//! Each delivery carries
//!
//! * `X-Cardwright-Timestamp: T`: seconds since the Unix epoch, when this attempt was signed;
//! * `X-Cardwright-Signature: sha256=HEX`, with
//!   `HEX = lower-case hex of HMAC-SHA256(secret, T || "." || body)` (RFC 2104, FIPS 180-4):
//!   the timestamp is inside the MAC, so a receiver that refuses a `T` older than a few
//!   minutes ([`verify`]'s `tolerance`) refuses a replayed delivery;
//! * `X-Cardwright-Event: job.ended` and `X-Cardwright-Delivery: JOB.ATTEMPT.N` (the job, its
//!   run attempt and the delivery try: the same job ending once is sent with the same
//!   `JOB.ATTEMPT` prefix on every retry, so a receiver can drop duplicates).
//!
//! The secret is the bytes of the secret file, a final line end removed; at least
//! [`MIN_SECRET_LEN`] bytes. It is never logged and never shown by `Debug`.
//!
//! # Delivery
//!
//! A delivery runs on its own task: the job is recorded as ended before, and nothing waits for
//! the receiver. An answer other than 2xx, or no answer within the timeout, is tried again
//! after 1 s, 2 s, 4 s… ([`Webhook::with_retries`]), at most [`DEFAULT_ATTEMPTS`] times by
//! default; then it is given up and logged (the job's state stays readable at
//! `GET /api/v1/jobs/{id}`). A delivery in flight when the server stops is lost.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The header carrying the signature (`sha256=HEX`).
pub const SIGNATURE_HEADER: &str = "x-cardwright-signature";
/// The header carrying the signing time (Unix seconds), inside the MAC.
pub const TIMESTAMP_HEADER: &str = "x-cardwright-timestamp";
/// The header naming the event (`job.ended`).
pub const EVENT_HEADER: &str = "x-cardwright-event";
/// The header naming the delivery (`JOB.ATTEMPT.N`).
pub const DELIVERY_HEADER: &str = "x-cardwright-delivery";
/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Deliveries tried by default before giving up.
pub const DEFAULT_ATTEMPTS: u32 = 5;

/// Why a webhook cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an `http://` or `https://` URL.
    #[error("webhook URL must be http://… or https://… with a host: {0}")]
    Url(String),
    /// The secret is too short.
    #[error("webhook secret: at least {MIN_SECRET_LEN} bytes needed, {0} given")]
    ShortSecret(usize),
    /// The secret file cannot be read.
    #[error("webhook secret file {path}: {detail}")]
    SecretFile {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
}

/// Why [`verify`] refused a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp header is not a number of seconds.
    #[error("the timestamp is not a number of seconds")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance (a replay, or a wrong clock).
    #[error("the timestamp is {0} s away from now")]
    Stale(u64),
    /// The signature header is not `sha256=` and 64 hex digits.
    #[error("the signature is not sha256=HEX")]
    BadSignature,
    /// The MAC does not match: another secret, or a changed body or timestamp.
    #[error("the signature does not match")]
    Mismatch,
}

/// Where and how job endings are announced.
pub struct Webhook {
    url: String,
    secret: Zeroizing<Vec<u8>>,
    attempts: u32,
    first_delay: Duration,
    timeout: Duration,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &redacted_url(&self.url))
            .field("secret", &"<redacted>")
            .field("attempts", &self.attempts)
            .field("first_delay", &self.first_delay)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The URL as logged: scheme and host only (`https://user:pw@host/path?key=…` →
/// `https://host/…`), since user information, paths and queries of webhook URLs often
/// carry tokens.
fn redacted_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let more = if authority_end < rest.len() {
                "/…"
            } else {
                ""
            };
            format!("{scheme}://{host}{more}")
        }
        None => "(not a URL)".into(),
    }
}

impl Webhook {
    /// A webhook to `url` (`http://` or `https://`; HTTPS servers are checked against the
    /// Mozilla roots, webpki-roots) signing with `secret`.
    pub fn new(url: &str, secret: Zeroizing<Vec<u8>>) -> Result<Webhook, WebhookError> {
        let host_given = ["http://", "https://"].iter().any(|p| {
            url.get(..p.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(p))
                && url.len() > p.len()
                && !url[p.len()..].starts_with('/')
        });
        if !host_given || url.parse::<axum::http::Uri>().is_err() {
            return Err(WebhookError::Url(redacted_url(url)));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(WebhookError::ShortSecret(secret.len()));
        }
        let timeout = Duration::from_secs(10);
        Ok(Webhook {
            url: url.to_string(),
            secret,
            attempts: DEFAULT_ATTEMPTS,
            first_delay: Duration::from_secs(1),
            timeout,
            agent: agent(timeout),
        })
    }

    /// A webhook whose secret is the content of `path` (a final `\n` or `\r\n` removed).
    pub fn from_secret_file(url: &str, path: &std::path::Path) -> Result<Webhook, WebhookError> {
        let mut secret =
            Zeroizing::new(std::fs::read(path).map_err(|e| WebhookError::SecretFile {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?);
        if secret.last() == Some(&b'\n') {
            secret.pop();
            if secret.last() == Some(&b'\r') {
                secret.pop();
            }
        }
        Webhook::new(url, secret)
    }

    /// Tries each delivery `attempts` times (at least once), waiting `first_delay`, then
    /// twice as long each time, between tries.
    pub fn with_retries(mut self, attempts: u32, first_delay: Duration) -> Webhook {
        self.attempts = attempts.max(1);
        self.first_delay = first_delay;
        self
    }

    /// Waits at most `timeout` for each try's answer (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Webhook {
        self.timeout = timeout;
        self.agent = agent(timeout);
        self
    }

    /// The `X-Cardwright-Signature` value of `body` signed at `timestamp`.
    pub fn signature(&self, timestamp: u64, body: &[u8]) -> String {
        signature(&self.secret, timestamp, body)
    }

    /// Sends `body` (JSON) on its own task (the current Tokio runtime), retried as set; never
    /// waits. `delivery` names the event (`JOB.ATTEMPT`).
    pub fn deliver(self: &Arc<Self>, delivery: String, body: Vec<u8>) {
        let hook = self.clone();
        tokio::spawn(async move {
            let mut delay = hook.first_delay;
            for n in 1..=hook.attempts {
                let (h, b, d) = (hook.clone(), body.clone(), format!("{delivery}.{n}"));
                let result = tokio::task::spawn_blocking(move || h.post_once(&d, &b)).await;
                let failure = match result {
                    Ok(Ok(())) => {
                        tracing::debug!(delivery = %delivery, try_ = n, "webhook delivered");
                        return;
                    }
                    Ok(Err(e)) => e,
                    Err(e) => e.to_string(),
                };
                tracing::warn!(
                    url = %redacted_url(&hook.url),
                    delivery = %delivery,
                    try_ = n,
                    of = hook.attempts,
                    error = %failure,
                    "webhook delivery failed"
                );
                if n < hook.attempts {
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
            }
            tracing::error!(url = %redacted_url(&hook.url), delivery = %delivery, "webhook given up");
        });
    }

    /// One try: signed now, 2xx expected.
    fn post_once(&self, delivery: &str, body: &[u8]) -> Result<(), String> {
        let timestamp = unix_now();
        let r = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, self.signature(timestamp, body))
            .header(EVENT_HEADER, "job.ended")
            .header(DELIVERY_HEADER, delivery)
            .send(body)
            .map_err(|e| e.to_string())?;
        let status = r.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        // A redirect would re-send the signed body elsewhere: refused (3xx is a failure).
        .max_redirects(0)
        .build()
        .into()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (RFC 2104 §2): this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `sha256=HEX(HMAC-SHA256(secret, timestamp || "." || body))`, the `X-Cardwright-Signature`
/// value.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("sha256={}", apdu::hex(&tag).to_ascii_lowercase())
}

/// What a receiver does with a delivery: `timestamp` and `signature` are the headers'
/// values, `body` the bytes received, `now` the receiver's Unix time in seconds. Refuses a
/// timestamp more than `tolerance` from `now` (a replay) and a MAC that does not match
/// (compared in constant time).
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: u64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let t: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let skew = now.abs_diff(t);
    if skew > tolerance.as_secs() {
        return Err(VerifyError::Stale(skew));
    }
    let hex = signature
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64)
        .ok_or(VerifyError::BadSignature)?;
    let tag = apdu::parse_hex(hex).map_err(|_| VerifyError::BadSignature)?;
    mac(secret, timestamp.trim(), body)
        .verify_slice(&tag)
        .map_err(|_| VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123";

    #[test]
    fn known_answer() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef0123
        assert_eq!(
            signature(SECRET, 1_700_000_000, br#"{"a":1}"#),
            "sha256=34e41bd41c08899dd901e050eca2824e8dfecfe16d4778add8a6f330817db525"
        );
    }

    #[test]
    fn verify_accepts_its_own_and_refuses_changes() {
        let body = br#"{"job":{"job":1,"state":"done"}}"#;
        let sig = signature(SECRET, 1000, body);
        let tol = Duration::from_secs(300);
        assert_eq!(verify(SECRET, "1000", body, &sig, 1100, tol), Ok(()));
        let mut tampered = body.to_vec();
        tampered[20] ^= 1;
        assert_eq!(
            verify(SECRET, "1000", &tampered, &sig, 1100, tol),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "1001", body, &sig, 1100, tol),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret 0123", "1000", body, &sig, 1100, tol),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "1000", body, &sig, 2000, tol),
            Err(VerifyError::Stale(1000))
        );
        assert_eq!(
            verify(SECRET, "x", body, &sig, 1000, tol),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(SECRET, "1000", body, "sha1=00", 1000, tol),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn setup_refusals_and_no_secret_in_debug() {
        let s = || Zeroizing::new(SECRET.to_vec());
        assert!(matches!(
            Webhook::new("ftp://x/", s()),
            Err(WebhookError::Url(_))
        ));
        assert!(matches!(
            Webhook::new("http://", s()),
            Err(WebhookError::Url(_))
        ));
        assert!(matches!(
            Webhook::new("https://h/x", Zeroizing::new(b"short".to_vec())),
            Err(WebhookError::ShortSecret(5))
        ));
        let w = Webhook::new("https://user:pw@hooks.example/x?token=t0k3n", s()).unwrap();
        let d = format!("{w:?}");
        assert!(d.contains("https://hooks.example/…"), "{d}");
        for secret in ["0123456789abcdef", "pw", "t0k3n"] {
            assert!(!d.contains(secret), "{d}");
        }
    }
}
