//! Delegated Management receipts (GP 2.3.1 §9.1.3.3, Appendix C.5): the owner of a
//! delegated SSD brings the card's receipts of its loads, installs, extraditions and
//! deletions; the CI, which alone knows the card's Receipt Generation key (the ISD's KVN
//! `71`), verifies and records them as the proof of each operation.

use gp::dm::{Confirmation, ReceiptContext};

use super::*;
use crate::store::ssd::{add_receipt_in, last_receipt_counter_in};

/// The AIDs of a receipt's operation (the receipt input's fields), hex, space-separated.
pub(crate) fn receipt_object(ctx: &ReceiptContext) -> String {
    let aids: Vec<String> = match ctx {
        ReceiptContext::Load {
            load_file,
            security_domain,
        } => vec![load_file.to_hex(), security_domain.to_hex()],
        ReceiptContext::Install {
            load_file,
            application,
        } => vec![load_file.to_hex(), application.to_hex()],
        ReceiptContext::Extradition { from, object, to } => {
            vec![from.to_hex(), object.to_hex(), to.to_hex()]
        }
        ReceiptContext::RegistryUpdate {
            from,
            application,
            to,
            ..
        } => vec![from.to_hex(), application.to_hex(), to.to_hex()],
        ReceiptContext::Delete { aid } => vec![aid.to_hex()],
    };
    aids.join(" ")
}

/// Whether the operation is one the owner of `ssd` may have done under it with tokens
/// (the rules of [`CiPlatform::sign_token`]): a load into the SSD, an install of an
/// instance under the owner's prefix, its extradition to the SSD, the deletion of an
/// object under the prefix.
fn in_scope(ctx: &ReceiptContext, ssd: &Aid, prefix: &[u8]) -> bool {
    let under = |a: &Aid| a.as_bytes().starts_with(prefix) && a.len() > prefix.len();
    match ctx {
        ReceiptContext::Load {
            security_domain, ..
        } => security_domain == ssd,
        ReceiptContext::Install { application, .. } => under(application),
        ReceiptContext::Extradition { object, to, .. } => to == ssd && under(object),
        ReceiptContext::Delete { aid } => under(aid),
        ReceiptContext::RegistryUpdate { .. } => false,
    }
}

impl CiPlatform {
    /// The SD unique data the card's ISD puts in its confirmations (GP 2.3.1 §9.1.3.3,
    /// Appendix C.5): its IIN (tag `42`, from the card's category personalisation, if
    /// any) followed by its CIN (tag `45`, from the card number, as issuance writes it).
    fn expected_unique_data(&self, card_number: &str) -> Result<Vec<u8>> {
        let card = self.store().card(card_number)?.ok_or(Error::UnknownCard)?;
        let mut iin = Vec::new();
        if let Some(cat) = self.store().category(&card.category)? {
            let objects = apdu::tlv::parse_all(&cat.perso)
                .map_err(|e| Error::Invalid(format!("category personalisation: {e}")))?;
            if let Some(t) = objects.iter().find(|t| t.tag.value() == 0x42) {
                iin = t.value.to_vec();
            }
        }
        iin.extend_from_slice(&kms::kdd_for_card_number(card_number)?);
        Ok(iin)
    }

    /// Records a refused receipt in the audit log (the partner as actor) and returns the
    /// refusal.
    fn refuse_receipt(&self, partner: &str, card_number: &str, aid: &Aid, why: String) -> Error {
        let entry = NewEntry::new(&partner_actor(partner), "ssd.receipt", "refused")
            .card(card_number)
            .detail(json!({"aid": aid.to_hex(), "reason": why}));
        match self.store().audit_append(&entry) {
            Ok(_) => Error::ReceiptRefused(why),
            Err(s) => s.into(),
        }
    }

    /// Checks a Delegated Management receipt the partner brings for an operation on its
    /// delegated SSD (`confirmation`: the confirmation structure as the card answered the
    /// INSTALL, LOAD or DELETE, GP 2.3.1 §11.2.3.1; `operation`: what it confirms) and
    /// records it in the SSD's history and the audit log. Refused (audited): an SSD that is
    /// not the partner's or not delegated, an operation outside its scope
    /// ([`Error::Refused`]), and a receipt that does not verify with the card's receipt
    /// key, whose confirmation counter is not above the last one recorded for the card (a
    /// replay), or whose SD unique data is not the card's ([`Error::ReceiptRefused`]).
    pub fn check_receipt(
        &self,
        partner: &str,
        card_number: &str,
        aid: &str,
        operation: &ReceiptContext,
        confirmation: &[u8],
    ) -> Result<SsdRecord> {
        let a = parse_aid(aid)
            .map_err(|_| self.refuse(partner, "receipt", card_number, Refusal::AidOutsidePrefix))?;
        let (p, ssd) = self.owned(partner, "receipt", card_number, &a)?;
        if ssd.model != SsdModel::Delegated || ssd.state != SsdState::Managed {
            return Err(Error::WrongState {
                state: format!("{} {}", ssd.model, ssd.state),
                need: "receipts are checked for delegated SSDs the CI manages",
            });
        }
        if !in_scope(operation, &a, &p.aid_prefix) {
            return Err(self.refuse(partner, "receipt", card_number, Refusal::AidOutsidePrefix));
        }
        let key = self
            .config
            .receipt_key
            .as_ref()
            .ok_or_else(|| Error::Invalid("this CI platform has no receipt key".into()))?;
        let refuse = |why: String| self.refuse_receipt(partner, card_number, &a, why);
        let c = match Confirmation::parse(confirmation) {
            Ok(Some(c)) if !c.receipt.is_empty() => c,
            Ok(_) => return Err(refuse("the confirmation carries no receipt".into())),
            Err(e) => return Err(refuse(format!("the confirmation cannot be read: {e}"))),
        };
        // GP 2.3.1 Appendix C.5: the receipt is the MAC of confirmation data ‖ the
        // operation's AIDs with the receipt key (KVN 71).
        let input = operation
            .receipt_input(&c)
            .map_err(|e| refuse(format!("the receipt input cannot be formed: {e}")))?;
        if key.verify(&input, &c.receipt).is_err() {
            return Err(refuse(format!(
                "the {} receipt (counter {}) does not verify with the card's receipt key",
                operation.name(),
                c.counter
            )));
        }
        if c.sd_unique_data != self.expected_unique_data(card_number)? {
            return Err(refuse(format!(
                "the receipt's SD unique data {} is not card {card_number}'s",
                apdu::hex(&c.sd_unique_data)
            )));
        }
        let record = DmReceipt {
            counter: c.counter,
            operation: operation.name().to_string(),
            object: receipt_object(operation),
            receipt: c.receipt.clone(),
            at_ms: self.clock.now_ms(),
        };
        let stored = self
            .store()
            .tx(|tx| -> Result<std::result::Result<(), u16>> {
                // §9.1.3.3: the counter rises with every receipt and is never reset.
                if let Some(last) = last_receipt_counter_in(tx, card_number)? {
                    if c.counter <= last {
                        return Ok(Err(last));
                    }
                }
                add_receipt_in(tx, card_number, a.as_bytes(), &record, confirmation)?;
                append_in(
                    tx,
                    &NewEntry::new(&partner_actor(partner), "ssd.receipt", "ok")
                        .card(card_number)
                        .detail(json!({"aid": a.to_hex(), "operation": record.operation,
                                   "object": record.object, "counter": record.counter,
                                   "receipt": apdu::hex(&record.receipt)})),
                )?;
                Ok(Ok(()))
            })?;
        if let Err(last) = stored {
            return Err(refuse(format!(
                "confirmation counter {} is not above the last one recorded for the card ({last}): a replayed receipt",
                c.counter
            )));
        }
        self.store()
            .ssd(card_number, a.as_bytes())?
            .ok_or(Error::UnknownCard)
    }
}
