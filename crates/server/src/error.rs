//! The one HTTP error type of every Cardwright service (payment API, issuance API, terminal
//! relay, the card holder's agent): an HTTP status and a JSON body
//! `{"error": CODE, "reason": TEXT, "request_id": ID}`. Every rejection goes through it: bad JSON (400), a
//! wrong or missing content type (415), a body too large (413), authentication (401/403),
//! unknown routes (404) and methods (405), and the services' own refusals.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use pki::{CaError, EnrolError, PaymentError};
use serde::{Deserialize, Serialize};

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`replayed`, `tampered`, `revoked`, ...).
    pub error: String,
    /// What went wrong, for people.
    pub reason: String,
    /// PIN tries left (the agent's `wrong_pin` and `pin_blocked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_retries_left: Option<u8>,
    /// The request's id (also in the `x-request-id` answer header and the server log), on
    /// the servers that give requests ids (`cardwright serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub request_id: Option<String>,
}

/// The code of an error answer, in its response's extensions, for the metrics
/// ([`crate::observe`] counts `cardwright_errors_total{code}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode(pub String);

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Code and reason.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with this status, code and reason.
    pub fn new(status: StatusCode, code: &str, reason: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: code.to_string(),
                reason: reason.into(),
                pin_retries_left: None,
                request_id: None,
            },
        }
    }

    /// `400 invalid_request`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", reason)
    }

    /// `500 internal_error` (details go to the log, not to the client).
    pub fn internal(what: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("{what} failed; see the server log"),
        )
    }

    /// The code.
    pub fn code(&self) -> &str {
        &self.body.error
    }

    /// `401 unauthorized`.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
    }

    /// `403 forbidden`.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", reason)
    }

    /// `404 not_found`: no such route.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// `405 method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not answer this method",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.body;
        if body.request_id.is_none() {
            body.request_id = crate::observe::current_request_id();
        }
        let code = ErrorCode(body.error.clone());
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(code);
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        let status = e.status();
        let code = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "invalid_request",
        };
        let status = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::PAYLOAD_TOO_LARGE => status,
            // Syntax and data errors alike: the body is not what the schema says.
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, code, e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

/// HTTP status of a payment refusal: 404 unknown challenge, 409 replay, 410 expired
/// challenge, 403 for certificate refusals (foreign, revoked, expired, wrong payer), 422
/// for content that does not match or verify (changed amount, bad signature, malformed
/// certificate), 400 for invalid requests, 500 for storage failures.
pub fn payment_status(e: &PaymentError) -> StatusCode {
    match e {
        PaymentError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        PaymentError::UnknownChallenge => StatusCode::NOT_FOUND,
        PaymentError::Replayed => StatusCode::CONFLICT,
        PaymentError::Expired { .. } => StatusCode::GONE,
        PaymentError::Tampered { .. }
        | PaymentError::MalformedCertificate(_)
        | PaymentError::BadSignature => StatusCode::UNPROCESSABLE_ENTITY,
        PaymentError::ForeignCertificate(_)
        | PaymentError::NotClientCertificate(_)
        | PaymentError::CertificateNotYetValid { .. }
        | PaymentError::CertificateExpired { .. }
        | PaymentError::Revoked { .. }
        | PaymentError::WrongPayer => StatusCode::FORBIDDEN,
        PaymentError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        if let PaymentError::Store(detail) = &e {
            tracing::error!(%detail, "payment store failed");
            return Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.code(),
                "the payment store failed; see the server log",
            );
        }
        Self::new(payment_status(&e), e.code(), e.to_string())
    }
}

impl From<EnrolError> for ApiError {
    fn from(e: EnrolError) -> Self {
        let status = match &e {
            EnrolError::UnknownChallenge => StatusCode::NOT_FOUND,
            EnrolError::Replayed => StatusCode::CONFLICT,
            EnrolError::Expired { .. } => StatusCode::GONE,
            EnrolError::Subject(_) => StatusCode::BAD_REQUEST,
            EnrolError::Key(_)
            | EnrolError::BadProofOfPossession(_)
            | EnrolError::BadCsr(_)
            | EnrolError::CsrKeyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            EnrolError::Ca(_) | EnrolError::Store(_) => {
                tracing::error!(error = %e, "enrolment failed");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    e.code(),
                    "the certificate authority failed; see the server log",
                );
            }
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        match &e {
            CaError::NotIssued(_) => Self::new(StatusCode::NOT_FOUND, "not_issued", e.to_string()),
            CaError::AlreadyRevoked { .. } => {
                Self::new(StatusCode::CONFLICT, "already_revoked", e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "CA operation failed");
                Self::internal("the certificate authority")
            }
        }
    }
}
