//! API errors: an HTTP status and a JSON body `{"error": CODE, "reason": TEXT}`.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use pki::{CaError, EnrolError, PaymentError};
use serde::{Deserialize, Serialize};

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code (`replayed`, `tampered`, `revoked`, ...).
    pub error: String,
    /// What went wrong, for people.
    pub reason: String,
}

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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
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
