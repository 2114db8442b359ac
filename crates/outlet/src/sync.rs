//! Upload of the install records to the platform: `POST {server}/api/v1/outlet/records`
//! over HTTPS (`ureq` with rustls; the platform's CA given, else the web PKI roots), the
//! operator's bearer token, the records not yet acknowledged, oldest first, in batches.
//! The platform stores each `(outlet, seq)` once (a record it has with the same hash counts
//! as `already`; another hash for the same `seq` is refused, 409) and the module marks what
//! it acknowledged; so a record arrives once, a second sync sends nothing, and a failed
//! sync (platform down, refused) marks nothing.

use std::time::Duration;

use crate::records::{SyncReport, Upload, UploadAnswer};
use crate::{Error, Module};

/// Records per request (well under the platform's 2 MB body limit and its 1000 records).
const BATCH: usize = 200;

/// The path of the platform's route.
pub const RECORDS_PATH: &str = "/api/v1/outlet/records";

/// The error body every platform route answers with (`server::error::ApiError`).
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
    reason: String,
}

fn agent(ca_pem: Option<&[u8]>) -> Result<ureq::Agent, Error> {
    let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
    if let Some(pem) = ca_pem {
        let roots: Vec<_> = ureq::tls::parse_pem(pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if roots.is_empty() {
            return Err(Error::Invalid(
                "the platform's CA (--server-ca) holds no PEM certificate".into(),
            ));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
    }
    Ok(ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into())
}

impl Module {
    /// Uploads the records the platform has not acknowledged to `server` (`https://…`)
    /// with the bearer `token` (an operator's), trusting `ca_pem` for its certificate
    /// (else the web PKI roots). Sends nothing when everything is acknowledged.
    pub fn sync(
        &self,
        server: &str,
        token: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<SyncReport, Error> {
        let base = server.trim_end_matches('/');
        if !base.starts_with("https://") || base.len() <= "https://".len() {
            return Err(Error::Invalid(format!(
                "the platform URL {server:?} must be https://HOST[:PORT]"
            )));
        }
        if token.trim().is_empty() {
            return Err(Error::Invalid("no bearer token for the platform".into()));
        }
        let unsent = self.db.records(true)?;
        let mut report = SyncReport {
            sent: 0,
            stored: 0,
            already: 0,
        };
        if unsent.is_empty() {
            return Ok(report);
        }
        let agent = agent(ca_pem)?;
        let url = format!("{base}{RECORDS_PATH}");
        for batch in unsent.chunks(BATCH) {
            let (first, last) = (batch[0].seq, batch[batch.len() - 1].seq);
            let body = Upload {
                outlet: self.config.id.clone(),
                records: batch.to_vec(),
            };
            let mut r = agent
                .post(&url)
                .header("Authorization", &format!("Bearer {}", token.trim()))
                .send_json(&body)
                .map_err(|e| Error::Unreachable(format!("{url}: {e}")))?;
            let status = r.status().as_u16();
            if !(200..300).contains(&status) {
                let b: ErrorBody = r.body_mut().read_json().unwrap_or(ErrorBody {
                    error: "http".into(),
                    reason: format!("HTTP {status}"),
                });
                return Err(Error::Platform {
                    status,
                    code: b.error,
                    reason: b.reason,
                });
            }
            let answer: UploadAnswer = r
                .body_mut()
                .read_json()
                .map_err(|e| Error::Unreachable(format!("{url}: unreadable answer: {e}")))?;
            if answer.through < last || answer.stored + answer.already != batch.len() as u64 {
                return Err(Error::Platform {
                    status,
                    code: "incomplete".into(),
                    reason: format!(
                        "the platform acknowledged {} of {} records (through {}, sent {first}..{last})",
                        answer.stored + answer.already,
                        batch.len(),
                        answer.through
                    ),
                });
            }
            self.db.mark_synced(first, last)?;
            report.sent += batch.len() as u64;
            report.stored += answer.stored;
            report.already += answer.already;
        }
        Ok(report)
    }
}
