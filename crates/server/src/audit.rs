//! The record of every enrolment, payment decision and revocation, accepted or rejected.
//!
//! pki records successful authorisations in its [`pki::PaymentStore`]; refusals are
//! recorded here with the same machine-readable codes the API answers, so an operator can
//! see *why* a payment was refused (replay, changed amount, revoked card, ...). The `tsm`
//! crate will implement [`AuditLog`] on its append-only audit table; [`MemoryAudit`] keeps
//! the most recent events in memory.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Mutex, MutexGuard},
};

use serde::Serialize;
use time::OffsetDateTime;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An enrolment challenge was issued.
    EnrolmentStarted,
    /// An enrolment finished: a certificate was issued, or it was refused.
    EnrolmentCompleted,
    /// A payment challenge was issued.
    PaymentChallenge,
    /// A payment authorisation was verified and recorded, or refused.
    PaymentAuthorisation,
    /// A certificate was revoked (or the attempt was refused).
    Revocation,
}

/// Accepted or rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Accepted,
    /// Refused; see the code and reason.
    Rejected,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What.
    pub kind: EventKind,
    /// Accepted or rejected.
    pub outcome: Outcome,
    /// The challenge concerned, if any (32 hex digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
    /// The certificate serial concerned, if known (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Machine-readable code (`ok`, or the error code of the API answer).
    pub code: String,
    /// Human-readable detail.
    pub reason: String,
}

/// Where audit events go. Implementations must not block for long: they are called on
/// every request.
pub trait AuditLog: Send + Sync + fmt::Debug {
    /// Append an event.
    fn record(&self, event: AuditEvent);
    /// Events about a challenge, oldest first.
    fn for_challenge(&self, challenge_id: &str) -> Vec<AuditEvent>;
    /// The most recent `limit` events, oldest first.
    fn recent(&self, limit: usize) -> Vec<AuditEvent>;
}

/// The last `capacity` events in memory.
#[derive(Debug)]
pub struct MemoryAudit {
    capacity: usize,
    events: Mutex<VecDeque<AuditEvent>>,
}

impl MemoryAudit {
    /// Keeps at most `capacity` events (the oldest are dropped).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            events: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<AuditEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryAudit {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl AuditLog for MemoryAudit {
    fn record(&self, event: AuditEvent) {
        let mut g = self.lock();
        if g.len() >= self.capacity {
            g.pop_front();
        }
        g.push_back(event);
    }

    fn for_challenge(&self, challenge_id: &str) -> Vec<AuditEvent> {
        self.lock()
            .iter()
            .filter(|e| e.challenge_id.as_deref() == Some(challenge_id))
            .cloned()
            .collect()
    }

    fn recent(&self, limit: usize) -> Vec<AuditEvent> {
        let g = self.lock();
        g.iter()
            .skip(g.len().saturating_sub(limit))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> AuditEvent {
        AuditEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            kind: EventKind::PaymentAuthorisation,
            outcome: Outcome::Rejected,
            challenge_id: Some(id.into()),
            serial: None,
            code: "replayed".into(),
            reason: "r".into(),
        }
    }

    #[test]
    fn bounded_and_filtered() {
        let a = MemoryAudit::new(2);
        a.record(event("1"));
        a.record(event("2"));
        a.record(event("2"));
        assert!(a.for_challenge("1").is_empty());
        assert_eq!(a.for_challenge("2").len(), 2);
        assert_eq!(a.recent(1).len(), 1);
        let json = serde_json::to_value(event("1")).unwrap();
        assert_eq!(json["kind"], "payment_authorisation");
        assert_eq!(json["at"], "1970-01-01T00:00:00Z");
    }
}

/// The audit log in the tsm database (hash-chained, append-only, action `pay.<kind>`), with
/// the recent events also kept in memory for the API's per-payment view.
#[derive(Debug)]
pub struct TsmAudit {
    store: std::sync::Arc<tsm::Store>,
    memory: MemoryAudit,
}

impl TsmAudit {
    /// Events go to `store`'s audit log.
    pub fn new(store: std::sync::Arc<tsm::Store>) -> Self {
        Self {
            store,
            memory: MemoryAudit::default(),
        }
    }
}

impl AuditLog for TsmAudit {
    fn record(&self, event: AuditEvent) {
        let action = serde_json::to_value(event.kind)
            .ok()
            .and_then(|v| v.as_str().map(|s| format!("pay.{s}")))
            .unwrap_or_else(|| "pay".into());
        let entry =
            tsm::audit::NewEntry::new("server", &action, &event.code).detail(serde_json::json!({
                "outcome": event.outcome,
                "challenge_id": event.challenge_id,
                "serial": event.serial,
                "reason": event.reason,
            }));
        if let Err(e) = self.store.audit_append(&entry) {
            tracing::error!(error = %e, "audit log append failed");
        }
        self.memory.record(event);
    }
    fn for_challenge(&self, challenge_id: &str) -> Vec<AuditEvent> {
        self.memory.for_challenge(challenge_id)
    }
    fn recent(&self, limit: usize) -> Vec<AuditEvent> {
        self.memory.recent(limit)
    }
}
