//! Receipts (GP 2.3.1 §9.1.3.3, Appendix C.5) and the confirmation a card returns in the
//! response of INSTALL, LOAD and DELETE (§11.2.3.1, §11.5.3.1, §11.6.3.1).
//!
//! Response data: `00` when there is nothing to confirm, otherwise the **confirmation
//! structure** preceded by its BER length:
//!
//! ```text
//! L ‖ Lr receipt ‖ 02 counter ‖ Lu SD-unique-data [‖ Lt token-identifier [‖ Ld token-data-digest]]
//! ```
//!
//! (Cards that leave out the outer length are read too.) The **receipt input** is the
//! confirmation data — everything after the receipt — followed by the operation's fields
//! ([`ReceiptContext`]); the receipt is its MAC with the receipt key (KVN `71`).

use cipher::{BlockCipherEncrypt, KeyInit};
use cmac::{Cmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aid::Aid;
use crate::reader::Cursor;
use crate::{Error, Result};

/// The confirmation of a Delegated Management operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Confirmation {
    /// The receipt (empty when the SD has no Receipt Generation privilege).
    pub receipt: Vec<u8>,
    /// The confirmation counter (2 bytes; incremented by every receipt, never reset).
    pub counter: u16,
    /// The SD unique data: SD provider identification number and SD image number (or the
    /// card's IIN ‖ CIN for the ISD), as the card reports them.
    pub sd_unique_data: Vec<u8>,
    /// The token identifier, when the token carried one.
    pub token_identifier: Option<Vec<u8>>,
    /// The token data digest, when the card returns it.
    pub token_data_digest: Option<Vec<u8>>,
}

fn push_lv(out: &mut Vec<u8>, v: &[u8], field: &str) -> Result<()> {
    crate::commands::push_lv(out, v, field)
}

impl Confirmation {
    /// The confirmation data: counter, SD unique data, then the optional token identifier
    /// and token data digest, each with a one-byte length.
    pub fn confirmation_data(&self) -> Result<Vec<u8>> {
        let mut v = vec![2];
        v.extend_from_slice(&self.counter.to_be_bytes());
        push_lv(&mut v, &self.sd_unique_data, "SD unique data")?;
        match (&self.token_identifier, &self.token_data_digest) {
            (Some(t), d) => {
                push_lv(&mut v, t, "token identifier")?;
                if let Some(d) = d {
                    push_lv(&mut v, d, "token data digest")?;
                }
            }
            (None, Some(d)) => {
                v.push(0);
                push_lv(&mut v, d, "token data digest")?;
            }
            (None, None) => {}
        }
        Ok(v)
    }

    /// The response data of the command: `L ‖ receipt LV ‖ confirmation data`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut inner = Vec::new();
        push_lv(&mut inner, &self.receipt, "receipt")?;
        inner.extend(self.confirmation_data()?);
        let mut v = apdu::tlv::encode_length(inner.len());
        v.extend(inner);
        Ok(v)
    }

    /// The response data for an optional confirmation (`00` for none).
    pub fn response(c: Option<&Self>) -> Result<Vec<u8>> {
        c.map_or(Ok(vec![0]), Self::to_bytes)
    }

    /// Reads response data: `None` for empty data or `00`.
    pub fn parse(data: &[u8]) -> Result<Option<Self>> {
        if data.is_empty() || data == [0] {
            return Ok(None);
        }
        // With the outer length when it covers exactly the rest.
        let body = match apdu::tlv::read_length(data) {
            Ok((n, used)) if used + n == data.len() => &data[used..],
            _ => data,
        };
        let mut c = Cursor::new(body, "confirmation");
        let receipt = c.lv("receipt")?.to_vec();
        let counter = c.lv("confirmation counter")?;
        let counter = match counter {
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => {
                return Err(Error::FieldLength {
                    context: "confirmation",
                    field: "confirmation counter",
                    len: counter.len(),
                    expected: "2",
                })
            }
        };
        let sd_unique_data = c.lv("SD unique data")?.to_vec();
        let mut token_identifier = None;
        let mut token_data_digest = None;
        if !c.is_empty() {
            let t = c.lv("token identifier")?;
            token_identifier = (!t.is_empty()).then(|| t.to_vec());
        }
        if !c.is_empty() {
            token_data_digest = Some(c.lv("token data digest")?.to_vec());
        }
        c.finish()?;
        Ok(Some(Self {
            receipt,
            counter,
            sd_unique_data,
            token_identifier,
            token_data_digest,
        }))
    }
}

/// The operation a receipt confirms and the fields Appendix C.5 appends to the
/// confirmation data (each AID with a one-byte length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptContext {
    /// Load receipt: load file AID, security domain AID.
    Load {
        /// The executable load file.
        load_file: Aid,
        /// The security domain it is associated with.
        security_domain: Aid,
    },
    /// Install receipt (INSTALL \[for install\], \[and make selectable\], \[for make
    /// selectable\]): executable load file AID, application AID.
    Install {
        /// The executable load file.
        load_file: Aid,
        /// The application.
        application: Aid,
    },
    /// Extradition receipt: former SD AID, application or load file AID, new SD AID.
    Extradition {
        /// The security domain it was associated with.
        from: Aid,
        /// The application or executable load file.
        object: Aid,
        /// The security domain it is associated with now.
        to: Aid,
    },
    /// Registry update receipt: former SD, application, new SD, privileges, registry update
    /// parameters.
    RegistryUpdate {
        /// The security domain it was associated with.
        from: Aid,
        /// The application.
        application: Aid,
        /// The security domain it is associated with now.
        to: Aid,
        /// Its privileges (3 bytes, or empty).
        privileges: Vec<u8>,
        /// The registry update parameters.
        params: Vec<u8>,
    },
    /// Delete receipt: AID of the deleted application or load file.
    Delete {
        /// What was deleted.
        aid: Aid,
    },
}

impl ReceiptContext {
    /// The operation's fields of the receipt input.
    pub fn fields(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        match self {
            Self::Load {
                load_file,
                security_domain,
            } => {
                load_file.push_lv(&mut v);
                security_domain.push_lv(&mut v);
            }
            Self::Install {
                load_file,
                application,
            } => {
                load_file.push_lv(&mut v);
                application.push_lv(&mut v);
            }
            Self::Extradition { from, object, to } => {
                from.push_lv(&mut v);
                object.push_lv(&mut v);
                to.push_lv(&mut v);
            }
            Self::RegistryUpdate {
                from,
                application,
                to,
                privileges,
                params,
            } => {
                from.push_lv(&mut v);
                application.push_lv(&mut v);
                to.push_lv(&mut v);
                push_lv(&mut v, privileges, "privileges")?;
                v.extend(apdu::tlv::encode_length(params.len()));
                v.extend_from_slice(params);
            }
            Self::Delete { aid } => aid.push_lv(&mut v),
        }
        Ok(v)
    }

    /// The receipt input: confirmation data ‖ the operation's fields.
    pub fn receipt_input(&self, c: &Confirmation) -> Result<Vec<u8>> {
        let mut v = c.confirmation_data()?;
        v.extend(self.fields()?);
        Ok(v)
    }

    /// A short name of the operation (`load`, `install`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Load { .. } => "load",
            Self::Install { .. } => "install",
            Self::Extradition { .. } => "extradition",
            Self::RegistryUpdate { .. } => "registry update",
            Self::Delete { .. } => "delete",
        }
    }
}

/// A receipt key (KVN `71`): 3DES (16 or 24 bytes) or AES (16, 24 or 32 bytes).
#[derive(Clone)]
pub enum ReceiptKey {
    /// 3DES: ISO/IEC 9797-1 MAC algorithm 3 with padding method 2, zero ICV, 8 bytes
    /// (GP 2.3.1 §B.1.2.2).
    Des3(Zeroizing<Vec<u8>>),
    /// AES: CMAC (NIST SP 800-38B), all 16 bytes.
    Aes(Zeroizing<Vec<u8>>),
}

impl core::fmt::Debug for ReceiptKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Des3(k) => write!(f, "ReceiptKey::Des3({} bytes)", k.len()),
            Self::Aes(k) => write!(f, "ReceiptKey::Aes({} bytes)", k.len()),
        }
    }
}

impl ReceiptKey {
    /// An AES receipt key.
    pub fn aes(key: &[u8]) -> Result<Self> {
        if !matches!(key.len(), 16 | 24 | 32) {
            return Err(Error::Encoding(format!(
                "AES receipt key of {} bytes: want 16, 24 or 32",
                key.len()
            )));
        }
        Ok(Self::Aes(Zeroizing::new(key.to_vec())))
    }

    /// A 3DES receipt key.
    pub fn des3(key: &[u8]) -> Result<Self> {
        if !matches!(key.len(), 16 | 24) {
            return Err(Error::Encoding(format!(
                "3DES receipt key of {} bytes: want 16 or 24",
                key.len()
            )));
        }
        Ok(Self::Des3(Zeroizing::new(key.to_vec())))
    }

    /// The receipt over `input`.
    pub fn receipt(&self, input: &[u8]) -> Result<Vec<u8>> {
        match self {
            Self::Aes(k) => aes_cmac(k, input),
            Self::Des3(k) => retail_mac(k, input),
        }
    }

    /// Checks `receipt` (constant time).
    pub fn verify(&self, input: &[u8], receipt: &[u8]) -> Result<()> {
        let want = self.receipt(input)?;
        if bool::from(want.ct_eq(receipt)) {
            Ok(())
        } else {
            Err(Error::InvalidValue {
                context: "confirmation",
                field: "receipt",
                reason: "does not verify with the receipt key".into(),
            })
        }
    }
}

pub(crate) fn aes_cmac(key: &[u8], input: &[u8]) -> Result<Vec<u8>> {
    fn run<C>(key: &[u8], input: &[u8]) -> Result<Vec<u8>>
    where
        Cmac<C>: Mac + KeyInit,
        C: cmac::block_api::CmacCipher,
    {
        let mut m = <Cmac<C> as KeyInit>::new_from_slice(key)
            .map_err(|_| Error::Encoding("AES key length".into()))?;
        m.update(input);
        Ok(m.finalize().into_bytes().to_vec())
    }
    match key.len() {
        16 => run::<aes::Aes128>(key, input),
        24 => run::<aes::Aes192>(key, input),
        32 => run::<aes::Aes256>(key, input),
        n => Err(Error::Encoding(format!("AES key of {n} bytes"))),
    }
}

/// ISO/IEC 9797-1 MAC algorithm 3, padding method 2, zero ICV (GP 2.3.1 §B.1.2.2).
fn retail_mac(key: &[u8], input: &[u8]) -> Result<Vec<u8>> {
    let bad = |_| Error::Encoding("3DES key length".into());
    let single = des::Des::new_from_slice(&key[..8]).map_err(bad)?;
    let mut padded = input.to_vec();
    padded.push(0x80);
    while !padded.len().is_multiple_of(8) {
        padded.push(0);
    }
    let mut chain = [0u8; 8];
    let n = padded.len() / 8;
    for (i, block) in padded.chunks(8).enumerate() {
        for (c, b) in chain.iter_mut().zip(block) {
            *c ^= b;
        }
        if i + 1 < n {
            single.encrypt_block((&mut chain).into());
        } else if key.len() == 16 {
            des::TdesEde2::new_from_slice(key)
                .map_err(bad)?
                .encrypt_block((&mut chain).into());
        } else {
            des::TdesEde3::new_from_slice(key)
                .map_err(bad)?
                .encrypt_block((&mut chain).into());
        }
    }
    Ok(chain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::{hex, parse_hex};

    #[test]
    fn response_round_trip_and_without_outer_length() {
        let c = Confirmation {
            receipt: vec![0x11; 16],
            counter: 0x0102,
            sd_unique_data: vec![],
            token_identifier: None,
            token_data_digest: None,
        };
        let b = c.to_bytes().unwrap();
        assert_eq!(hex(&b[..2]), "1510");
        assert_eq!(hex(&b[18..]), "02010200");
        assert_eq!(Confirmation::parse(&b).unwrap(), Some(c.clone()));
        assert_eq!(Confirmation::parse(&b[1..]).unwrap(), Some(c));
        assert_eq!(Confirmation::parse(&[0]).unwrap(), None);
        assert!(Confirmation::parse(&[0x03, 0x00, 0x01, 0x01]).is_err());
    }

    #[test]
    fn receipt_input_of_a_delete() {
        let c = Confirmation {
            receipt: vec![],
            counter: 7,
            sd_unique_data: parse_hex("0102030405").unwrap(),
            ..Default::default()
        };
        let ctx = ReceiptContext::Delete {
            aid: "D0D1D2D3D4D501".parse().unwrap(),
        };
        assert_eq!(
            hex(&ctx.receipt_input(&c).unwrap()),
            "02000705010203040507D0D1D2D3D4D501"
        );
    }

    #[test]
    fn mac_lengths_and_verification() {
        let aes = ReceiptKey::aes(&[0x40; 16]).unwrap();
        let r = aes.receipt(b"abc").unwrap();
        assert_eq!(r.len(), 16);
        aes.verify(b"abc", &r).unwrap();
        assert!(aes.verify(b"abd", &r).is_err());
        let des = ReceiptKey::des3(&[0x40; 16]).unwrap();
        assert_eq!(des.receipt(b"abc").unwrap().len(), 8);
        assert!(ReceiptKey::aes(&[0; 15]).is_err());
    }
}
