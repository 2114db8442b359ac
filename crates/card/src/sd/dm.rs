//! Delegated Management and DAP on the card (GP 2.3.1 §9.1.3.3, §9.2.1, Appendix C).
//!
//! * A security domain with **Delegated Management** (and without Authorized Management)
//!   needs a token in INSTALL and DELETE: no token answers `6982`, a token that does not
//!   verify `6A80`. The token is checked with the key under KVN `70` of the nearest security
//!   domain with **Token Verification** above it (the ISD has it): an RSA public key
//!   (components `A1` modulus, `A0` exponent), an ECC P-256 public key (`B0`), or an AES key.
//! * After a delegated operation the nearest security domain with **Receipt Generation**
//!   (the ISD has it) answers a receipt when it holds a key under KVN `71` (AES: CMAC; DES:
//!   MAC algorithm 3): its confirmation counter counts up (persisted, never reset) and its
//!   unique data (`42` ‖ `45`) goes in.
//! * **DAP**: a load whose security domain has DAP Verification, and every load while some
//!   security domain has Mandated DAP Verification, must carry a DAP block (`E2`) for that
//!   domain whose signature over the load file data block hash verifies with its key under
//!   KVN `73`; otherwise the load ends with `6982` and nothing is registered.

use apdu::StatusWord;
use gp::commands::DapBlock;
use gp::dm::{
    Confirmation, DmVerifyingKey, ReceiptContext, ReceiptKey, DAP_KVN, RECEIPT_KVN, TOKEN_KVN,
};

use super::Sw;
use crate::card::VirtualCard;
use crate::model::{privs, Aid, KeySet, ISD_AID};

use crate::model::key_type as kt;

/// The public (or AES) key of a key set: an RSA public key (`A1` modulus with its `A0`
/// exponent), an ECC P-256 public key (`B0`, parameter reference `00`), or an AES key.
pub(crate) fn verifying_key(set: &KeySet) -> Option<DmVerifyingKey> {
    set.keys.iter().find_map(|k| match k.key_type {
        kt::RSA_PUBLIC => DmVerifyingKey::rsa(&k.value.0, &k.exponent).ok(),
        kt::ECC_PUBLIC if k.curve.unwrap_or(0) == 0 => DmVerifyingKey::p256(&k.value.0).ok(),
        kt::AES => DmVerifyingKey::aes(&k.value.0).ok(),
        _ => None,
    })
}

/// How a security domain is allowed to manage content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authority {
    /// The ISD, or a security domain with Authorized Management: no token needed.
    Authorized,
    /// A security domain with Delegated Management whose token verified.
    Delegated,
    /// Neither (the command's own checks decide).
    Own,
}

impl VirtualCard {
    /// The security domains from `sd` up to the ISD (`sd` first).
    fn hierarchy(&self, sd: &Aid) -> Vec<Aid> {
        let mut out = vec![sd.clone()];
        let mut cur = sd.clone();
        for _ in 0..self.state.apps.len() {
            match self.state.app(&cur.0) {
                Some(a) if a.sd != cur => {
                    cur = a.sd.clone();
                    out.push(cur.clone());
                }
                _ => break,
            }
        }
        if !out.iter().any(|a| a.0 == ISD_AID) {
            out.push(Aid::new(ISD_AID));
        }
        out
    }

    /// The nearest security domain from `sd` up with `privilege`.
    fn nearest_with(&self, sd: &Aid, privilege: u32) -> Option<Aid> {
        self.hierarchy(sd).into_iter().find(|a| {
            self.state
                .app(&a.0)
                .is_some_and(|r| r.is_sd() && r.has(privilege))
        })
    }

    fn key_set(&self, sd: &Aid, kvn: u8) -> Option<&KeySet> {
        self.state
            .app(&sd.0)?
            .sd_data()?
            .key_sets
            .iter()
            .find(|s| s.kvn == kvn)
    }

    /// Decides whether `sd` may run a content management command carrying `token`, whose
    /// token input is `input`; verifies the token of a Delegated Management domain.
    pub(crate) fn authorise(
        &self,
        sd: &Aid,
        input: impl FnOnce() -> gp::Result<Vec<u8>>,
        token: &[u8],
    ) -> Sw<Authority> {
        if self.has_authorized_management(sd) {
            return Ok(Authority::Authorized);
        }
        let delegated = self
            .state
            .app(&sd.0)
            .is_some_and(|a| a.has(privs::DELEGATED_MANAGEMENT));
        if !delegated {
            return Ok(Authority::Own);
        }
        if token.is_empty() {
            // GP 2.3.1 §9.1.3.3: Delegated Management needs a token.
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        let key = self
            .nearest_with(sd, privs::TOKEN_VERIFICATION)
            .and_then(|v| self.key_set(&v, TOKEN_KVN))
            .and_then(verifying_key)
            .ok_or(StatusWord::SECURITY_NOT_SATISFIED)?;
        let input = input().map_err(|_| StatusWord::WRONG_DATA)?;
        key.verify(&input, token)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        Ok(Authority::Delegated)
    }

    /// The response data of a command run with `authority`: a receipt for a delegated
    /// operation when the receipt generation domain holds a receipt key, `00` otherwise.
    pub(crate) fn confirm(
        &mut self,
        sd: &Aid,
        authority: Authority,
        ctx: ReceiptContext,
    ) -> Sw<Vec<u8>> {
        if authority != Authority::Delegated {
            return Ok(vec![0]);
        }
        let Some(rg) = self.nearest_with(sd, privs::RECEIPT_GENERATION) else {
            return Ok(vec![0]);
        };
        let key = self.key_set(&rg, RECEIPT_KVN).and_then(|set| {
            set.keys.iter().find_map(|k| match k.key_type {
                kt::AES => ReceiptKey::aes(&k.value.0).ok(),
                kt::DES => ReceiptKey::des3(&k.value.0).ok(),
                _ => None,
            })
        });
        let Some(key) = key else {
            return Ok(vec![0]);
        };
        let personal = |rec: &crate::model::SdData, t: &str| {
            rec.data
                .get(t)
                .and_then(|h| apdu::parse_hex(h).ok())
                .unwrap_or_default()
        };
        let data = self.sd_data_mut(&rg)?;
        if data.confirmation_counter == u16::MAX {
            // The counter never wraps: no more receipts.
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        data.confirmation_counter += 1;
        let mut unique = personal(data, "42");
        unique.extend(personal(data, "45"));
        let mut c = Confirmation {
            receipt: Vec::new(),
            counter: data.confirmation_counter,
            sd_unique_data: unique,
            token_identifier: None,
            token_data_digest: None,
        };
        let input = ctx.receipt_input(&c).map_err(|_| StatusWord::UNKNOWN)?;
        c.receipt = key.receipt(&input).map_err(|_| StatusWord::UNKNOWN)?;
        c.to_bytes().map_err(|_| StatusWord::UNKNOWN)
    }

    /// Checks the DAP blocks of a load into `target` (see the module documentation).
    pub(crate) fn check_dap(&self, target: &Aid, hash: &[u8], blocks: &[DapBlock]) -> Sw<()> {
        let mut required: Vec<Aid> = Vec::new();
        for a in &self.state.apps {
            if !a.is_sd() {
                continue;
            }
            let mandated = a.has(privs::MANDATED_DAP);
            let own = a.aid == *target && a.has(privs::DAP_VERIFICATION);
            if (mandated || own) && !required.contains(&a.aid) {
                required.push(a.aid.clone());
            }
        }
        for sd in &required {
            let Some(block) = blocks.iter().find(|b| b.security_domain.as_bytes() == sd.0) else {
                tracing::info!(sd = %sd, "load refused: no DAP block for a DAP verification domain");
                return Err(StatusWord::SECURITY_NOT_SATISFIED);
            };
            if hash.is_empty() {
                // The DAP is computed over the hash announced in INSTALL [for load].
                return Err(StatusWord::SECURITY_NOT_SATISFIED);
            }
            let key = self
                .key_set(sd, DAP_KVN)
                .and_then(verifying_key)
                .ok_or(StatusWord::SECURITY_NOT_SATISFIED)?;
            if key
                .verify(gp::dm::dap_input(hash), &block.signature)
                .is_err()
            {
                tracing::info!(sd = %sd, "load refused: DAP signature does not verify");
                return Err(StatusWord::SECURITY_NOT_SATISFIED);
            }
        }
        Ok(())
    }
}
