//! Credentials, the ESME's configuration, its `smpp://` URL form, and the reconnect back-off.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::error::ConfigError;

/// The longest `system_id` SMPP 3.4 allows (16 octets with the terminating NUL).
pub const MAX_SYSTEM_ID: usize = 15;
/// The longest `password` SMPP 3.4 allows (9 octets with the terminating NUL).
pub const MAX_PASSWORD: usize = 8;
/// The longest `system_type` SMPP 3.4 allows (13 octets with the terminating NUL).
pub const MAX_SYSTEM_TYPE: usize = 12;

/// The default SMPP port.
pub const DEFAULT_PORT: u16 = 2775;

/// An SMPP account: `system_id`, `password` and `system_type`.
///
/// The password never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The `system_id` (at most 15 characters).
    pub system_id: String,
    password: String,
    /// The `system_type` (at most 12 characters, often empty).
    pub system_type: String,
}

impl Credentials {
    /// Credentials with an empty `system_type`; fails when a field is longer than SMPP 3.4 allows.
    pub fn new(system_id: &str, password: &str) -> Result<Self, ConfigError> {
        Self::with_system_type(system_id, password, "")
    }

    /// Credentials with a `system_type`; fails when a field is longer than SMPP 3.4 allows.
    pub fn with_system_type(
        system_id: &str,
        password: &str,
        system_type: &str,
    ) -> Result<Self, ConfigError> {
        check_len("system_id", system_id, MAX_SYSTEM_ID)?;
        check_len("password", password, MAX_PASSWORD)?;
        check_len("system_type", system_type, MAX_SYSTEM_TYPE)?;
        Ok(Self {
            system_id: system_id.to_owned(),
            password: password.to_owned(),
            system_type: system_type.to_owned(),
        })
    }

    /// The password (to put in a bind PDU or compare with one; never log it).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Whether a bind's `system_id` and `password` match these credentials.
    pub fn matches(&self, system_id: &str, password: &str) -> bool {
        self.system_id == system_id && self.password == password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .finish()
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), ConfigError> {
    if value.len() > max {
        return Err(ConfigError::TooLong { field, max });
    }
    if value.bytes().any(|b| b == 0 || !b.is_ascii()) {
        return Err(ConfigError::NotAscii { field });
    }
    Ok(())
}

/// Exponential back-off with a cap and jitter, for reconnecting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// The factor between one delay and the next (at least 1).
    pub factor: f64,
    /// The fraction (0 to 1) of each delay that is random: a delay `d` becomes a value in
    /// `[d * (1 - jitter), d]`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.ceiling(attempt).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let cut = base * jitter * rand::random::<f64>();
        Duration::from_secs_f64((base - cut).max(0.0))
    }

    /// The delay before retry number `attempt` without jitter (the most it can be).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = self.factor.max(1.0);
        let exp = factor.powi(attempt.min(64) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }
}

/// How an [`Esme`](crate::Esme) connects, binds and behaves.
#[derive(Debug, Clone)]
pub struct EsmeConfig {
    /// The SMSC's host name or address.
    pub host: String,
    /// The SMSC's port (2775 by default).
    pub port: u16,
    /// The account the ESME binds with (as a transceiver).
    pub credentials: Credentials,
    /// How many submit_sm may await their submit_sm_resp at once (at least 1).
    pub window: usize,
    /// How often an enquire_link is sent on an otherwise healthy link.
    pub enquire_link_interval: Duration,
    /// How long a request (bind, submit_sm, enquire_link, unbind) may wait for its response.
    pub response_timeout: Duration,
    /// How long the TCP connection may take.
    pub connect_timeout: Duration,
    /// The back-off between reconnection attempts.
    pub backoff: Backoff,
    /// The `addr_ton` of the bind.
    pub addr_ton: u8,
    /// The `addr_npi` of the bind.
    pub addr_npi: u8,
    /// The `address_range` of the bind (usually empty).
    pub address_range: String,
    /// How many inbound messages (MO, receipts) may wait for the receiver before the ESME stops
    /// reading from the SMSC.
    pub inbound_capacity: usize,
}

impl EsmeConfig {
    /// A configuration with the defaults: window 10, enquire_link every 30 s, 10 s response
    /// timeout, 5 s connect timeout, back-off 0.5 s doubling up to 30 s with 25 % jitter.
    pub fn new(host: impl Into<String>, port: u16, credentials: Credentials) -> Self {
        Self {
            host: host.into(),
            port,
            credentials,
            window: 10,
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
            inbound_capacity: 64,
        }
    }

    /// Parses `smpp://system_id:password@host[:port][?system_type=…&window=…&enquire_link=…
    /// &response_timeout=…&reconnect_max=…]` (times in seconds, user and password
    /// percent-decoded).
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let parsed = url::Url::parse(url).map_err(|e| ConfigError::Url(e.to_string()))?;
        if parsed.scheme() != "smpp" {
            return Err(ConfigError::Scheme(parsed.scheme().to_owned()));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(ConfigError::Url("no host".into())),
        };
        let port = parsed.port().unwrap_or(DEFAULT_PORT);
        let decode = |s: &str, field: &'static str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ConfigError::NotAscii { field })
        };
        let system_id = decode(parsed.username(), "system_id")?;
        if system_id.is_empty() {
            return Err(ConfigError::Url("no system_id (user) in the URL".into()));
        }
        let password = decode(parsed.password().unwrap_or(""), "password")?;
        let mut system_type = String::new();
        let mut config = Self::new(host, port, Credentials::new(&system_id, &password)?);
        for (key, value) in parsed.query_pairs() {
            let secs = |v: &str| -> Result<Duration, ConfigError> {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| ConfigError::Parameter(key.to_string()))
            };
            match key.as_ref() {
                "system_type" => system_type = value.into_owned(),
                "window" => {
                    config.window = value
                        .parse::<usize>()
                        .ok()
                        .filter(|w| (1..=1000).contains(w))
                        .ok_or_else(|| ConfigError::Parameter(key.to_string()))?
                }
                "enquire_link" => config.enquire_link_interval = secs(&value)?,
                "response_timeout" => config.response_timeout = secs(&value)?,
                "reconnect_max" => config.backoff.max = secs(&value)?,
                _ => return Err(ConfigError::Parameter(key.to_string())),
            }
        }
        config.credentials = Credentials::with_system_type(&system_id, &password, &system_type)?;
        Ok(config)
    }

    /// The URL form of this configuration with the password left out.
    pub fn redacted_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "smpp://{}@{}:{}",
            self.credentials.system_id, host, self.port
        )
    }
}

impl FromStr for EsmeConfig {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_url(s)
    }
}
