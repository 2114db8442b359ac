//! The JSON API under `/api/v1` (documented in `openapi.json`).

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use pki::{
    piv::PivAlgorithm, Authorisation, ChallengeId, ChallengeState, EnrolmentChallenge,
    PaymentRequest, PublicKey, RevocationReason, Serial, Subject,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    amount::{format_amount, parse_amount},
    audit::{AuditEvent, EventKind, Outcome},
    auth::{Administer, Auth},
    ca_files::pem_decode,
    error::{ApiError, ErrorBody},
    extract::{self, Path},
    PayServer,
};

type Shared = State<Arc<PayServer>>;

/// Card key algorithm names used in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CardAlgorithm {
    /// ECDSA P-256 (PIV algorithm `11`).
    #[default]
    P256,
    /// RSA-2048 (PIV algorithm `07`).
    Rsa2048,
}

impl CardAlgorithm {
    /// The PIV algorithm.
    pub fn piv(self) -> PivAlgorithm {
        match self {
            Self::P256 => PivAlgorithm::EccP256,
            Self::Rsa2048 => PivAlgorithm::Rsa2048,
        }
    }
}

/// `POST /api/v1/enrolments` request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrolmentStart {
    /// Card holder's name (certificate commonName).
    #[schema(
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\x00-\\x20\\x7F-\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^\\x00-\\x1F\\x7F-\\x9F]*$",
        max_length = 64
    )]
    pub name: String,
    /// Account identifier (certificate UID), optional.
    #[serde(default)]
    #[schema(pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]{0,128}$")]
    pub uid: Option<String>,
    /// Key algorithm for the card to generate (default `p256`).
    #[serde(default)]
    pub algorithm: CardAlgorithm,
}

/// The key generation the card must perform.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeygenRequest {
    /// PIV key reference, hex (`9C`).
    pub slot: String,
    /// Algorithm.
    pub algorithm: CardAlgorithm,
    /// PIV algorithm identifier, hex (`11` or `07`).
    pub piv_algorithm: String,
}

/// `POST /api/v1/enrolments` answer: the key-generation request and the challenge.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrolmentStarted {
    /// Challenge id (32 hex digits).
    #[schema(value_type = String, pattern = "^[0-9A-Fa-f]{32}$")]
    pub id: ChallengeId,
    /// What the card must do.
    pub keygen: KeygenRequest,
    /// The challenge (give it to the agent as is).
    pub challenge: EnrolmentChallenge,
    /// The bytes the card signs the SHA-256 of, hex.
    pub signed_data: String,
    /// SHA-256 of `signed_data`, hex: what the new key must sign.
    pub digest: String,
    /// After this, the challenge is refused.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// `POST /api/v1/enrolments/{id}` request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrolmentFinish {
    /// Algorithm of the generated key.
    #[serde(default)]
    pub algorithm: CardAlgorithm,
    /// The GENERATE ASYMMETRIC KEY PAIR response data (`7F49` template), hex.
    #[schema(pattern = "^([0-9A-Fa-f]{2})+$")]
    pub public_key_template: String,
    /// The new key's signature over the challenge digest, hex.
    #[schema(pattern = "^([0-9A-Fa-f]{2})+$")]
    pub proof: String,
    /// Optional PKCS#10 request signed by the card, hex DER.
    #[serde(default)]
    #[schema(pattern = "^([0-9A-Fa-f]{2})*$")]
    pub csr: Option<String>,
}

/// An issued certificate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedCertificate {
    /// Serial number, hex.
    pub serial: String,
    /// Subject (RFC 4514).
    pub subject: String,
    /// Issuer (RFC 4514).
    pub issuer: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// DER, hex: to write to the card.
    pub certificate: String,
    /// PEM.
    pub certificate_pem: String,
}

/// `POST /api/v1/payments` request. Give `amount` (decimal text) or `amount_minor`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PaymentCreate {
    /// Decimal amount in the currency, e.g. `"12.34"`.
    #[serde(default)]
    #[schema(pattern = "^(?=.*[1-9])[0-9]{1,15}(\\.[0-9]{1,2})?$")]
    pub amount: Option<String>,
    /// Amount in minor units, e.g. `1234`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 999_999_999_999_999_999_u64)]
    pub amount_minor: Option<u64>,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Za-z]{3}$")]
    pub currency: String,
    /// Merchant.
    #[schema(
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]+$",
        min_length = 1,
        max_length = 128
    )]
    pub payee: String,
    /// Merchant's order id.
    #[schema(
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]+$",
        min_length = 1,
        max_length = 64
    )]
    pub order_id: String,
    /// Bind the challenge to this certificate serial (hex), optional.
    #[serde(default)]
    #[schema(pattern = "^$|^(00)*([1-9A-Fa-f][0-9A-Fa-f]|0[1-9A-Fa-f])([0-9A-Fa-f]{2}){0,19}$")]
    pub payer_serial: Option<String>,
}

/// `POST /api/v1/payments` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentCreated {
    /// Challenge id.
    #[schema(value_type = String, pattern = "^[0-9A-Fa-f]{32}$")]
    pub id: ChallengeId,
    /// What is paid.
    pub request: PaymentRequest,
    /// The amount as decimal text.
    pub amount: String,
    /// Canonical bytes (pki payment encoding v1), hex: give them to the card holder's agent.
    pub canonical: String,
    /// SHA-256 of the canonical bytes, hex: what the card signs.
    pub digest: String,
    /// After this, the challenge is refused.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// `POST /api/v1/payments/{id}/authorise` request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentAuthorise {
    /// The payment as the client presents it (must equal the one issued).
    pub request: PaymentRequest,
    /// The card's certificate: hex DER or PEM.
    #[schema(pattern = "^(([0-9A-Fa-f]{2})+|\\s*-----BEGIN CERTIFICATE-----[\\s\\S]*)$")]
    pub certificate: String,
    /// The card's signature over the challenge digest, hex.
    #[schema(pattern = "^([0-9A-Fa-f]{2})+$")]
    pub signature: String,
}

/// `POST /api/v1/payments/{id}/authorise` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentAuthorised {
    /// `authorised`.
    pub status: String,
    /// The amount as decimal text.
    pub amount: String,
    /// The recorded authorisation.
    pub authorisation: Authorisation,
}

/// A refused attempt, from the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Error code.
    pub code: String,
    /// Reason.
    pub reason: String,
}

/// `GET /api/v1/payments/{id}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentStatus {
    /// Challenge id.
    #[schema(value_type = String, pattern = "^[0-9A-Fa-f]{32}$")]
    pub id: ChallengeId,
    /// `pending`, `expired` or `authorised`.
    pub state: String,
    /// What is paid.
    pub request: PaymentRequest,
    /// Expiry of the challenge.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The authorisation, once recorded.
    #[serde(default)]
    pub authorisation: Option<Authorisation>,
    /// Refused attempts, oldest first.
    pub rejections: Vec<Rejection>,
}

/// `GET /api/v1/certificates/{serial}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertificateStatusBody {
    /// Serial, hex.
    pub serial: String,
    /// `good`, `revoked` or `unknown`.
    pub status: String,
    /// End of validity (good).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// Revocation time (revoked).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Revocation reason (revoked).
    #[serde(default)]
    pub reason: Option<RevocationReason>,
}

/// `POST /api/v1/certificates/{serial}/revoke` request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RevokeRequest {
    /// CRL reason, e.g. `keyCompromise` (default `unspecified`).
    #[serde(default)]
    pub reason: Option<RevocationReason>,
}

fn hex_field(name: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    apdu::parse_hex(text).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}

fn challenge_id(text: &str) -> Result<ChallengeId, ApiError> {
    text.parse()
        .map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "unknown_challenge", e))
}

/// Runs blocking work (store, CA) off the async workers, in the request's span.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::observe::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("a worker"))?
}

impl PayServer {
    fn audit(
        &self,
        kind: EventKind,
        challenge: Option<&ChallengeId>,
        serial: Option<&Serial>,
        result: Result<&str, &ApiError>,
    ) {
        let (outcome, code, reason) = match result {
            Ok(detail) => (Outcome::Accepted, "ok".to_string(), detail.to_string()),
            Err(e) => (
                Outcome::Rejected,
                e.body.error.clone(),
                e.body.reason.clone(),
            ),
        };
        let id = challenge.map_or_else(|| "-".to_string(), ToString::to_string);
        match outcome {
            Outcome::Accepted => tracing::info!(?kind, challenge = %id, %code, "{reason}"),
            Outcome::Rejected => tracing::warn!(?kind, challenge = %id, %code, "{reason}"),
        }
        self.audit_log.record(AuditEvent {
            at: OffsetDateTime::now_utc(),
            kind,
            outcome,
            challenge_id: challenge.map(ToString::to_string),
            serial: serial.map(ToString::to_string),
            code,
            reason,
        });
    }
}

/// `POST /api/v1/enrolments`.
#[utoipa::path(post, path = "/api/v1/enrolments", request_body = EnrolmentStart, security(),
    responses(
        (status = 201, description = "Challenge and key-generation request", body = EnrolmentStarted),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody)))]
pub async fn start_enrolment(
    State(s): Shared,
    extract::Json(req): extract::Json<EnrolmentStart>,
) -> Result<(StatusCode, Json<EnrolmentStarted>), ApiError> {
    blocking(move || {
        let mut subject = Subject::new(req.name.trim());
        if let Some(uid) = req.uid.filter(|u| !u.is_empty()) {
            subject = subject.with_uid(uid);
        }
        let result = s.enroller.issue_challenge(subject).map_err(ApiError::from);
        let challenge = match result {
            Ok(c) => c,
            Err(e) => {
                s.audit(EventKind::EnrolmentStarted, None, None, Err(&e));
                return Err(e);
            }
        };
        s.audit(
            EventKind::EnrolmentStarted,
            Some(&challenge.id),
            None,
            Ok(&format!(
                "enrolment of {:?} ({:?})",
                challenge.subject.common_name, req.algorithm
            )),
        );
        Ok((
            StatusCode::CREATED,
            Json(EnrolmentStarted {
                id: challenge.id,
                keygen: KeygenRequest {
                    slot: format!("{:02X}", s.config.card_slot),
                    algorithm: req.algorithm,
                    piv_algorithm: format!("{:02X}", req.algorithm.piv().id()),
                },
                signed_data: apdu::hex(&challenge.signed_data()),
                digest: apdu::hex(&challenge.digest()),
                expires_at: challenge.expires_at,
                challenge,
            }),
        ))
    })
    .await
}

/// `POST /api/v1/enrolments/{id}`.
#[utoipa::path(post, path = "/api/v1/enrolments/{id}", request_body = EnrolmentFinish, security(),
    params(("id" = String, Path, description = "Challenge id (32 hex digits)", pattern = "^[0-9A-Fa-f]{32}$")),
    responses(
        (status = 201, description = "Certificate issued", body = IssuedCertificate),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 404, description = "Unknown challenge", body = ErrorBody),
        (status = 409, description = "Challenge already used", body = ErrorBody),
        (status = 410, description = "Challenge expired", body = ErrorBody),
        (status = 422, description = "Key, proof or CSR refused", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody)))]
pub async fn finish_enrolment(
    State(s): Shared,
    Path(id): Path<String>,
    body: Result<extract::Json<EnrolmentFinish>, ApiError>,
) -> Result<(StatusCode, Json<IssuedCertificate>), ApiError> {
    // An unknown challenge is told before a bad body.
    let id = challenge_id(&id)?;
    let extract::Json(req) = body?;
    blocking(move || {
        let result = (|| {
            let template = hex_field("public_key_template", &req.public_key_template)?;
            let proof = hex_field("proof", &req.proof)?;
            let csr = req
                .csr
                .as_deref()
                .map(|c| hex_field("csr", c))
                .transpose()?;
            let key =
                PublicKey::from_piv_template(&template, req.algorithm.piv()).map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unsupported_key",
                        e.to_string(),
                    )
                })?;
            Ok(s.enroller.complete(&id, &key, &proof, csr.as_deref())?)
        })();
        match result {
            Ok(cert) => {
                let serial = cert.serial();
                s.audit(
                    EventKind::EnrolmentCompleted,
                    Some(&id),
                    serial.as_ref(),
                    Ok(&format!("certificate issued to {}", cert.subject())),
                );
                Ok((
                    StatusCode::CREATED,
                    Json(IssuedCertificate {
                        serial: serial.map(|s| s.to_string()).unwrap_or_default(),
                        subject: cert.subject(),
                        issuer: cert.issuer(),
                        not_before: cert.not_before(),
                        not_after: cert.not_after(),
                        certificate: apdu::hex(cert.der()),
                        certificate_pem: cert.to_pem(),
                    }),
                ))
            }
            Err(e) => {
                s.audit(EventKind::EnrolmentCompleted, Some(&id), None, Err(&e));
                Err(e)
            }
        }
    })
    .await
}

/// `POST /api/v1/payments`.
#[utoipa::path(post, path = "/api/v1/payments", request_body = PaymentCreate, security(),
    responses(
        (status = 201, description = "Challenge", body = PaymentCreated),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody)))]
pub async fn create_payment(
    State(s): Shared,
    extract::Json(req): extract::Json<PaymentCreate>,
) -> Result<(StatusCode, Json<PaymentCreated>), ApiError> {
    blocking(move || {
        let currency = req.currency.trim().to_ascii_uppercase();
        let amount_minor = match (&req.amount, req.amount_minor) {
            (Some(a), None) => parse_amount(a.trim(), &currency)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
            (None, Some(m)) if m <= crate::amount::MAX_MINOR => m,
            (None, Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "amount_minor: at most {} minor units",
                    crate::amount::MAX_MINOR
                )))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of amount (\"12.34\") and amount_minor (1234)",
                ))
            }
        };
        let payer = match req.payer_serial.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(
                p.parse::<Serial>()
                    .map_err(|e| ApiError::bad_request(format!("payer_serial: {e}")))?,
            ),
            None => None,
        };
        let request = PaymentRequest {
            amount_minor,
            currency,
            payee: req.payee,
            order_id: req.order_id,
        };
        let challenge = match s.payments.issue_challenge(request, payer) {
            Ok(c) => c,
            Err(e) => {
                let e = ApiError::from(e);
                s.audit(EventKind::PaymentChallenge, None, None, Err(&e));
                return Err(e);
            }
        };
        let amount = format_amount(challenge.request.amount_minor, &challenge.request.currency);
        s.audit(
            EventKind::PaymentChallenge,
            Some(&challenge.id),
            None,
            Ok(&format!(
                "{amount} {} to {} for order {}",
                challenge.request.currency, challenge.request.payee, challenge.request.order_id
            )),
        );
        Ok((
            StatusCode::CREATED,
            Json(PaymentCreated {
                id: challenge.id,
                amount,
                canonical: apdu::hex(&challenge.canonical_bytes()),
                digest: apdu::hex(&challenge.digest()),
                expires_at: challenge.expires_at,
                request: challenge.request,
            }),
        ))
    })
    .await
}

/// Reads a certificate given as hex DER or PEM.
fn certificate_bytes(text: &str) -> Result<Vec<u8>, ApiError> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        pem_decode(t, "CERTIFICATE").map_err(|e| ApiError::bad_request(format!("certificate: {e}")))
    } else {
        hex_field("certificate", t)
    }
}

/// `POST /api/v1/payments/{id}/authorise`.
#[utoipa::path(post, path = "/api/v1/payments/{id}/authorise", request_body = PaymentAuthorise, security(),
    params(("id" = String, Path, description = "Challenge id (32 hex digits)", pattern = "^[0-9A-Fa-f]{32}$")),
    responses(
        (status = 200, description = "Authorised", body = PaymentAuthorised),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 403, description = "Certificate refused", body = ErrorBody),
        (status = 404, description = "Unknown challenge", body = ErrorBody),
        (status = 409, description = "Replayed", body = ErrorBody),
        (status = 410, description = "Challenge expired", body = ErrorBody),
        (status = 422, description = "Changed payment or bad signature", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody)))]
pub async fn authorise_payment(
    State(s): Shared,
    Path(id): Path<String>,
    body: Result<extract::Json<PaymentAuthorise>, ApiError>,
) -> Result<Json<PaymentAuthorised>, ApiError> {
    let id = challenge_id(&id)?;
    let body = match body {
        Ok(extract::Json(b)) => b,
        Err(e) => {
            s.audit(EventKind::PaymentAuthorisation, Some(&id), None, Err(&e));
            return Err(e);
        }
    };
    blocking(move || {
        let result = (|| {
            let cert = certificate_bytes(&body.certificate)?;
            let signature = hex_field("signature", &body.signature)?;
            Ok(s.payments.verify(&id, &body.request, &cert, &signature)?)
        })();
        match result {
            Ok(a) => {
                let amount = format_amount(a.request.amount_minor, &a.request.currency);
                s.audit(
                    EventKind::PaymentAuthorisation,
                    Some(&id),
                    Some(&a.certificate_serial),
                    Ok(&format!(
                        "{amount} {} to {} authorised by {}",
                        a.request.currency, a.request.payee, a.subject
                    )),
                );
                Ok(Json(PaymentAuthorised {
                    status: "authorised".into(),
                    amount,
                    authorisation: a,
                }))
            }
            Err(e) => {
                s.audit(EventKind::PaymentAuthorisation, Some(&id), None, Err(&e));
                Err(e)
            }
        }
    })
    .await
}

/// `GET /api/v1/payments/{id}`.
#[utoipa::path(get, path = "/api/v1/payments/{id}", security(),
    params(("id" = String, Path, description = "Challenge id (32 hex digits)", pattern = "^[0-9A-Fa-f]{32}$")),
    responses(
        (status = 200, description = "State of the payment", body = PaymentStatus),
        (status = 404, description = "Unknown challenge", body = ErrorBody)))]
pub async fn payment_status(
    State(s): Shared,
    Path(id): Path<String>,
) -> Result<Json<PaymentStatus>, ApiError> {
    let id = challenge_id(&id)?;
    blocking(move || {
        let (challenge, state) = s
            .payment_store
            .payment_challenge(&id)
            .map_err(|e| ApiError::from(pki::PaymentError::from(e)))?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_challenge",
                    "unknown payment challenge",
                )
            })?;
        let authorisation = s
            .payment_store
            .authorisation(&id)
            .map_err(|e| ApiError::from(pki::PaymentError::from(e)))?;
        let state = match state {
            ChallengeState::Used => "authorised",
            ChallengeState::Pending if s.ca.clock().now() > challenge.expires_at => "expired",
            ChallengeState::Pending => "pending",
        };
        let rejections = s
            .audit_log
            .for_challenge(&id.to_string())
            .into_iter()
            .filter(|e| e.kind == EventKind::PaymentAuthorisation && e.outcome == Outcome::Rejected)
            .map(|e| Rejection {
                at: e.at,
                code: e.code,
                reason: e.reason,
            })
            .collect();
        Ok(Json(PaymentStatus {
            id,
            state: state.into(),
            request: challenge.request,
            expires_at: challenge.expires_at,
            authorisation,
            rejections,
        }))
    })
    .await
}

/// `GET /api/v1/ca.pem`.
#[utoipa::path(get, path = "/api/v1/ca.pem", security(),
    responses((status = 200, description = "The CA certificate (PEM)", body = String, content_type = "application/x-pem-file")))]
pub async fn ca_pem(State(s): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        s.ca.certificate().to_pem(),
    )
        .into_response()
}

/// `GET /api/v1/crl`: a fresh DER CRL (RFC 5280 §5), `application/pkix-crl` (RFC 2585 §4.2).
#[utoipa::path(get, path = "/api/v1/crl", security(),
    responses((status = 200, description = "A fresh DER CRL (RFC 5280)", body = Vec<u8>, content_type = "application/pkix-crl")))]
pub async fn crl(State(s): Shared) -> Result<Response, ApiError> {
    let next = s.config.crl_next_update;
    let der = blocking(move || Ok(s.ca.crl_der(next)?)).await?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response())
}

/// `GET /api/v1/certificates/{serial}`.
#[utoipa::path(get, path = "/api/v1/certificates/{serial}", security(),
    params(("serial" = String, Path, description = "Serial number, hex (1-20 bytes, not zero)", pattern = "^(00)*([1-9A-Fa-f][0-9A-Fa-f]|0[1-9A-Fa-f])([0-9A-Fa-f]{2}){0,19}$")),
    responses(
        (status = 200, description = "Status", body = CertificateStatusBody),
        (status = 400, description = "Bad serial", body = ErrorBody)))]
pub async fn certificate_status(
    State(s): Shared,
    Path(serial): Path<String>,
) -> Result<Json<CertificateStatusBody>, ApiError> {
    let serial: Serial = serial
        .parse()
        .map_err(|e: String| ApiError::bad_request(e))?;
    blocking(move || {
        let status = s.ca.status(&serial)?;
        let mut body = CertificateStatusBody {
            serial: serial.to_string(),
            status: String::new(),
            not_after: None,
            revoked_at: None,
            reason: None,
        };
        match status {
            pki::CertificateStatus::Good { not_after } => {
                body.status = "good".into();
                body.not_after = Some(not_after);
            }
            pki::CertificateStatus::Revoked { revoked_at, reason } => {
                body.status = "revoked".into();
                body.revoked_at = Some(revoked_at);
                body.reason = Some(reason);
            }
            pki::CertificateStatus::Unknown => body.status = "unknown".into(),
        }
        Ok(Json(body))
    })
    .await
}

/// `POST /api/v1/certificates/{serial}/revoke` (admin).
#[utoipa::path(post, path = "/api/v1/certificates/{serial}/revoke", request_body(content = Option<RevokeRequest>, description = "Optional reason"),
    params(("serial" = String, Path, description = "Serial number, hex (1-20 bytes, not zero)", pattern = "^(00)*([1-9A-Fa-f][0-9A-Fa-f]|0[1-9A-Fa-f])([0-9A-Fa-f]{2}){0,19}$")),
    responses(
        (status = 200, description = "Revoked", body = CertificateStatusBody),
        (status = 400, description = "Bad serial or body", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 403, description = "Admin disabled", body = ErrorBody),
        (status = 404, description = "Not issued by this CA", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody)))]
pub async fn revoke(
    _admin: Auth<Administer>,
    State(s): Shared,
    Path(serial): Path<String>,
    body: Option<extract::Json<Option<RevokeRequest>>>,
) -> Result<Json<CertificateStatusBody>, ApiError> {
    let serial: Serial = serial
        .parse()
        .map_err(|e: String| ApiError::bad_request(e))?;
    let reason = body
        .and_then(|extract::Json(b)| b.and_then(|b| b.reason))
        .unwrap_or(RevocationReason::Unspecified);
    let s2 = s.clone();
    let serial2 = serial.clone();
    let result = blocking(move || Ok(s2.ca.revoke(&serial2, reason)?)).await;
    match &result {
        Ok(()) => s.audit(
            EventKind::Revocation,
            None,
            Some(&serial),
            Ok(&format!("revoked ({reason})")),
        ),
        Err(e) => s.audit(EventKind::Revocation, None, Some(&serial), Err(e)),
    }
    result?;
    certificate_status(State(s), Path(serial.to_string())).await
}

/// `GET /api/v1/audit` (admin): the most recent events.
#[utoipa::path(get, path = "/api/v1/audit",
    responses(
        (status = 200, description = "The most recent events", body = Vec<AuditEvent>),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 403, description = "Admin disabled", body = ErrorBody)))]
pub async fn audit(
    _admin: Auth<Administer>,
    State(s): Shared,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    Ok(Json(s.audit_log.recent(1000)))
}
