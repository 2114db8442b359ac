//! What a partner may do (issue #10): SSDs only on cards in its contract ranges, with AIDs
//! under its prefix, never the ISD; only its own SSDs; nothing once revoked. Each check
//! names the first rule broken.

use gp::aid::Aid;

use super::model::{Partner, SsdRecord};

/// Why a partner is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The partner is not registered.
    #[error("it is not a registered partner")]
    UnknownPartner,
    /// The partner is revoked.
    #[error("it is revoked")]
    Revoked,
    /// The card number is outside the partner's contract ranges.
    #[error("the card is outside its contract")]
    CardOutsideContract,
    /// The AID is the ISD's.
    #[error("the AID is the issuer security domain's")]
    IsdAid,
    /// The AID is not under the partner's prefix.
    #[error("the AID is outside its SSD AID prefix")]
    AidOutsidePrefix,
    /// The SSD belongs to another partner (or does not exist: the answer is the same, so
    /// that a partner cannot probe other partners' SSDs).
    #[error("it owns no such SSD")]
    NotOwner,
}

/// Whether `partner` may act on SSD `aid` of card `card_number` (before any record).
pub fn check_scope(partner: &Partner, card_number: &str, aid: &Aid) -> Result<(), Refusal> {
    if partner.revoked {
        return Err(Refusal::Revoked);
    }
    if aid.as_bytes() == gp::aid::ISD_AID.as_bytes()
        || aid.as_bytes() == gp::aid::ISD_AID_GP211.as_bytes()
    {
        return Err(Refusal::IsdAid);
    }
    if !partner.covers_card(card_number) {
        return Err(Refusal::CardOutsideContract);
    }
    if !partner.covers_aid(aid) {
        return Err(Refusal::AidOutsidePrefix);
    }
    Ok(())
}

/// Whether `partner` may see or act on the recorded SSD.
pub fn check_owner(partner: &Partner, ssd: Option<&SsdRecord>) -> Result<(), Refusal> {
    if partner.revoked {
        return Err(Refusal::Revoked);
    }
    match ssd {
        Some(s) if s.owner == partner.id => Ok(()),
        _ => Err(Refusal::NotOwner),
    }
}
