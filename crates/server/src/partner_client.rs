//! The card issuer seen from the application provider's platform over HTTPS: a
//! [`tsm::ssd::CardIssuerLink`] that calls the partner API ([`crate::partner`]) with `ureq`
//! 3 (rustls), the AP's client certificate and key, and the CA roots of the CI's server
//! certificate (no system roots: only the CI's CA is trusted).
//!
//! Errors map back to the domain's: a refusal (`403` with a rule code) to
//! [`tsm::Error::Refused`], a `404` to [`tsm::Error::UnknownJob`] or [`tsm::Error::Invalid`],
//! a `409` key refusal to [`tsm::Error::KeyUnusable`]-like conflicts as
//! [`tsm::Error::Invalid`], and a network failure, a `502`/`504` or any `5xx` to
//! [`tsm::Error::Interrupted`] (the AP's job stays resumable), a `422 receipt_refused` to
//! [`tsm::Error::ReceiptRefused`]. A refused TLS handshake is
//! not retried.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use transport::TransportError;
use tsm::ssd::{CardIssuerLink, Exchange, Rotation, SsdRecord, SsdRequest, TokenRequest};

use crate::error::ErrorBody;
use crate::ssd_wire::*;

/// Why the link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A file could not be read or holds no usable PEM.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The base URL is not `https://host:port`.
    #[error("card issuer URL '{0}': expected https://host[:port]")]
    Url(String),
    /// PEM text that ureq could not read.
    #[error("{what}: {detail}")]
    Pem {
        /// Which file.
        what: String,
        /// Why.
        detail: String,
    },
}

/// The HTTPS link to the card issuer's partner API.
pub struct HttpCardIssuerLink {
    base: String,
    agent: ureq::Agent,
    partner: String,
}

impl std::fmt::Debug for HttpCardIssuerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCardIssuerLink")
            .field("base", &self.base)
            .field("partner", &self.partner)
            .finish_non_exhaustive()
    }
}

fn pem_items(what: &str, text: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, LinkError> {
    let certs: Vec<_> = ureq::tls::parse_pem(text)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(LinkError::Pem {
            what: what.into(),
            detail: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, LinkError> {
    std::fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|source| {
            LinkError::Tls(crate::tls::TlsError::Read {
                path: path.display().to_string(),
                source,
            })
        })
}

impl HttpCardIssuerLink {
    /// A link to `base` (`https://ci-host:8443`) as partner `partner` (for messages), with
    /// the client certificate chain and key (PEM files) and the CI server's CA roots (PEM).
    /// `timeout` bounds each call (an exchange waits for the CI's next command).
    pub fn new(
        base: &str,
        partner: &str,
        client_cert: &Path,
        client_key: &Path,
        ci_ca: &Path,
        timeout: Duration,
    ) -> Result<Self, LinkError> {
        let chain = pem_items(&client_cert.display().to_string(), &read(client_cert)?)?;
        let key_pem = read(client_key)?;
        let key = ureq::tls::PrivateKey::from_pem(&key_pem).map_err(|e| LinkError::Pem {
            what: client_key.display().to_string(),
            detail: e.to_string(),
        })?;
        let roots = pem_items(&ci_ca.display().to_string(), &read(ci_ca)?)?;
        Self::from_parts(base, partner, chain, key, roots, timeout)
    }

    /// As [`HttpCardIssuerLink::new`], from parsed PEM.
    pub fn from_parts(
        base: &str,
        partner: &str,
        chain: Vec<ureq::tls::Certificate<'static>>,
        key: ureq::tls::PrivateKey<'static>,
        roots: Vec<ureq::tls::Certificate<'static>>,
        timeout: Duration,
    ) -> Result<Self, LinkError> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("https://") || base.len() <= "https://".len() {
            return Err(LinkError::Url(base));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(Self {
            base,
            agent,
            partner: partner.into(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn interrupted(what: &str, detail: impl std::fmt::Display) -> tsm::Error {
        tsm::Error::Interrupted(TransportError::NoResponse(format!(
            "card issuer platform ({what}): {detail}"
        )))
    }

    fn answer<T: DeserializeOwned>(
        &self,
        what: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> tsm::Result<T> {
        let mut r = result.map_err(|e| Self::interrupted(what, e))?;
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            return r
                .body_mut()
                .read_json::<T>()
                .map_err(|e| Self::interrupted(what, format!("unreadable answer: {e}")));
        }
        let body: ErrorBody = r.body_mut().read_json().unwrap_or(ErrorBody {
            error: "http".into(),
            reason: format!("HTTP {status}"),
            pin_retries_left: None,
            request_id: None,
        });
        Err(self.domain_error(what, status, body))
    }

    fn domain_error(&self, what: &str, status: u16, body: ErrorBody) -> tsm::Error {
        if status == 403 {
            if let Some(reason) = crate::issuance::refusal_of_code(&body.error) {
                return tsm::Error::Refused {
                    partner: self.partner.clone(),
                    action: what.into(),
                    reason,
                };
            }
        }
        if status == 422 && body.error == "receipt_refused" {
            return tsm::Error::ReceiptRefused(body.reason);
        }
        if status >= 500 || status == 409 && body.error == "exchange_in_progress" {
            return Self::interrupted(what, format!("{} ({})", body.reason, body.error));
        }
        tsm::Error::Invalid(format!(
            "the card issuer refused {what}: {} ({}, HTTP {status})",
            body.reason, body.error
        ))
    }

    fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        body: &B,
    ) -> tsm::Result<T> {
        let r = self.agent.post(&self.url(path)).send_json(body);
        self.answer(what, r)
    }

    fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> tsm::Result<T> {
        let r = self.agent.get(&self.url(path)).call();
        self.answer(what, r)
    }

    /// The partner's SSDs as the card issuer records them.
    pub fn ssds(&self) -> tsm::Result<Vec<SsdRecord>> {
        let list: SsdList = self.get("list its SSDs", "/api/v1/partner/ssds")?;
        list.ssds.iter().map(record).collect()
    }
}

fn record(v: &SsdView) -> tsm::Result<SsdRecord> {
    v.to_record()
        .map_err(|e| tsm::Error::Invalid(format!("the card issuer's SSD record: {e}")))
}

fn path_segment(s: &str) -> String {
    // Card numbers are digits and AIDs hex: anything else is refused by the CI anyway;
    // keep only what cannot break the path.
    s.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

impl CardIssuerLink for HttpCardIssuerLink {
    fn request(&self, req: &SsdRequest) -> tsm::Result<i64> {
        let body = SsdRequestBody {
            card_number: req.card_number.clone(),
            aid: req.aid.clone(),
            model: req.model.into(),
        };
        let a: JobAccepted = self.post("request an SSD", "/api/v1/partner/ssd-requests", &body)?;
        Ok(a.job)
    }

    fn exchange(&self, job: i64, last_response: Option<&[u8]>) -> tsm::Result<Exchange> {
        let body = ExchangeBody {
            response: last_response.map(apdu::hex),
        };
        let a: ExchangeAnswer = self.post(
            "relay the next command",
            &format!("/api/v1/partner/ssd-requests/{job}/exchange"),
            &body,
        )?;
        match (a.command, a.reset, a.done) {
            (Some(c), false, false) => Ok(Exchange::Command(
                apdu::parse_hex(&c).map_err(|e| Self::interrupted("exchange", e))?,
            )),
            (None, true, false) => Ok(Exchange::Reset),
            (None, false, true) => Ok(Exchange::Done),
            _ => Err(Self::interrupted(
                "exchange",
                "an answer with not exactly one of a command, a reset and done",
            )),
        }
    }

    fn initial_keys(&self, job: i64) -> tsm::Result<tsm::ssd::WrappedKeySet> {
        let w: WrappedKeys = self.get(
            "fetch the initial keys",
            &format!("/api/v1/partner/ssd-requests/{job}/keys"),
        )?;
        Ok(tsm::ssd::WrappedKeySet::from_json(&w.wrapped.to_string())?)
    }

    fn confirm_rotation(&self, job: i64, rotation: &Rotation) -> tsm::Result<SsdRecord> {
        let body = RotationBody {
            kvn: rotation.kvn,
            kcv: apdu::hex(&rotation.kcv),
        };
        let v: SsdView = self.post(
            "confirm the key rotation",
            &format!("/api/v1/partner/ssd-requests/{job}/confirm"),
            &body,
        )?;
        record(&v)
    }

    fn status(&self, card_number: &str, aid: &str) -> tsm::Result<SsdRecord> {
        let v: SsdView = self.get(
            "read its SSD",
            &format!(
                "/api/v1/partner/ssds/{}/{}",
                path_segment(card_number),
                path_segment(aid)
            ),
        )?;
        record(&v)
    }

    fn renew(&self, card_number: &str, aid: &str) -> tsm::Result<i64> {
        let a: JobAccepted = self.post(
            "renew its SSD",
            &format!(
                "/api/v1/partner/ssds/{}/{}/renew",
                path_segment(card_number),
                path_segment(aid)
            ),
            &RenewBody::default(),
        )?;
        Ok(a.job)
    }

    fn report_compromised(
        &self,
        card_number: &str,
        aid: &str,
        kvn: u8,
        reason: &str,
    ) -> tsm::Result<SsdRecord> {
        let v: SsdView = self.post(
            "report a compromised key set",
            &format!(
                "/api/v1/partner/ssds/{}/{}/compromised",
                path_segment(card_number),
                path_segment(aid)
            ),
            &CompromisedBody {
                kvn: Some(kvn),
                reason: reason.into(),
            },
        )?;
        record(&v)
    }

    fn report_renewal(
        &self,
        card_number: &str,
        aid: &str,
        renewal: &tsm::ssd::Renewal,
        rotation: &Rotation,
    ) -> tsm::Result<SsdRecord> {
        let body = RenewalReport {
            renewal: RenewalView {
                from_kvn: renewal.from_kvn,
                to_kvn: renewal.to_kvn,
                cause: renewal.cause.clone(),
                reason: renewal.reason.clone(),
                at_ms: renewal.at_ms,
            },
            rotation: RotationBody {
                kvn: rotation.kvn,
                kcv: apdu::hex(&rotation.kcv),
            },
        };
        let v: SsdView = self.post(
            "report its key renewal",
            &format!(
                "/api/v1/partner/ssds/{}/{}/renewals",
                path_segment(card_number),
                path_segment(aid)
            ),
            &body,
        )?;
        record(&v)
    }

    fn sign_token(&self, req: &TokenRequest) -> tsm::Result<Vec<u8>> {
        let body = TokenBody {
            card_number: req.card_number.clone(),
            aid: req.aid.clone(),
            input: apdu::hex(&req.input),
        };
        let t: TokenAnswer = self.post("have a token signed", "/api/v1/partner/tokens", &body)?;
        apdu::parse_hex(&t.token).map_err(|e| Self::interrupted("token", e))
    }

    fn check_receipt(
        &self,
        card_number: &str,
        aid: &str,
        operation: &gp::dm::ReceiptContext,
        confirmation: &[u8],
    ) -> tsm::Result<SsdRecord> {
        let body = ReceiptBody::new(card_number, aid, operation, confirmation)
            .map_err(tsm::Error::Invalid)?;
        let v: SsdView = self.post("have a receipt checked", "/api/v1/partner/receipts", &body)?;
        record(&v)
    }
}
