//! [`PivClient`]: the PIV card commands a host sends (SP 800-73-4 Part 2 §3), over any
//! [`CardChannel`].
//!
//! Commands go as short APDUs; data longer than 255 bytes is sent with command chaining
//! (ISO/IEC 7816-4 §5.1.1.1, `CLA` bit `10`), and long answers are collected with GET
//! RESPONSE on `61xx` (§7.6.1), as `yubico-piv-tool` and OpenSC do, so every reader and
//! card that works with those tools works here.

use std::fmt;

use apdu::{
    tlv::{Tag, Tlv, TlvRef},
    Command, ExchangeOptions, Response, StatusWord,
};
use pki::{piv::PivAlgorithm, PublicKey};
use transport::CardChannel;
use zeroize::Zeroizing;

use crate::{
    objects::{decode_certificate_object, encode_certificate_object, Slot},
    MgmtAlgorithm, MgmtKey, PivError,
};

/// The PIV Card Application AID without its version (SP 800-73-4 Part 1 §2.2): what hosts
/// select (`A0 00 00 03 08 00 00 10 00`); the card completes it with `01 00`.
pub const PIV_AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];

/// Largest data field of one short command APDU; longer data is chained.
const MAX_SHORT_DATA: usize = 255;

const INS_VERIFY: u8 = 0x20;
const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
const INS_GENERATE: u8 = 0x47;
const INS_GET_DATA: u8 = 0xCB;
const INS_PUT_DATA: u8 = 0xDB;
const INS_GET_SERIAL: u8 = 0xF8;
const INS_GET_METADATA: u8 = 0xF7;
/// Key reference of the PIV Card Application PIN (Part 1 Table 4a).
const PIN_REF: u8 = 0x80;
/// Key reference of the management key (Part 1 Table 4b).
const MGMT_REF: u8 = 0x9B;

/// Tags of the dynamic authentication template (Part 2 §3.2.4, Table 7).
const TAG_DAT: Tag = Tag::new(0x7C);
const TAG_WITNESS: Tag = Tag::new(0x80);
const TAG_CHALLENGE: Tag = Tag::new(0x81);
const TAG_RESPONSE: Tag = Tag::new(0x82);

/// What VERIFY without data says about the PIN (Part 2 §3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStatus {
    /// Verified in this session (`9000`).
    Verified,
    /// Not verified; this many tries are left (`63Cx`).
    NotVerified {
        /// Tries left before the PIN blocks.
        retries_left: u8,
    },
    /// Blocked (`6983`).
    Blocked,
}

impl PinStatus {
    /// Tries left, when the card says (`None` once verified: the card does not tell).
    pub fn retries_left(self) -> Option<u8> {
        match self {
            Self::Verified => None,
            Self::NotVerified { retries_left } => Some(retries_left),
            Self::Blocked => Some(0),
        }
    }
}

/// A key pair the card generated.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The response data as the card sent it: the `7F49` public key template.
    pub template: Vec<u8>,
    /// The public key read from it.
    pub public_key: PublicKey,
}

/// A host-side PIV client owning a card channel.
///
/// ```
/// # use pivhost::{PivClient, Slot};
/// # fn demo<C: transport::CardChannel>(channel: C) -> Result<(), pivhost::PivError> {
/// let mut piv = PivClient::new(channel);
/// piv.select()?;
/// piv.verify_pin(b"123456")?;
/// let signature = piv.sign_digest(Slot::SIGNATURE, pki::piv::PivAlgorithm::EccP256, &[0u8; 32])?;
/// # let _ = signature; Ok(()) }
/// ```
pub struct PivClient<C> {
    channel: C,
    options: ExchangeOptions,
}

impl<C> fmt::Debug for PivClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivClient").finish_non_exhaustive()
    }
}

impl<C: CardChannel> PivClient<C> {
    /// A client on `channel`. Nothing is sent until [`select`](Self::select).
    pub fn new(channel: C) -> Self {
        Self {
            channel,
            options: ExchangeOptions::default(),
        }
    }

    /// The channel back.
    pub fn into_inner(self) -> C {
        self.channel
    }

    /// The channel.
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.channel
    }

    /// Sends `cmd` (chained if its data exceeds 255 bytes) and collects the answer.
    fn send(&mut self, command: &'static str, cmd: &Command) -> Result<Response, PivError> {
        let channel = &mut self.channel;
        apdu::exchange_chained(cmd, MAX_SHORT_DATA, &self.options, |bytes| {
            channel.transmit_raw(bytes)
        })
        .map_err(|e| match e {
            apdu::ExchangeError::Transmit(t) => PivError::Transport(t),
            other => PivError::Exchange {
                command,
                reason: other.to_string(),
            },
        })
    }

    /// Sends `cmd` and requires `9000`.
    fn send_ok(&mut self, command: &'static str, cmd: &Command) -> Result<Vec<u8>, PivError> {
        let r = self.send(command, cmd)?;
        if r.sw == StatusWord::SUCCESS {
            Ok(r.data)
        } else {
            Err(PivError::Status { command, sw: r.sw })
        }
    }

    /// SELECT the PIV Card Application by its AID (Part 2 §3.1.1); returns the application
    /// property template (`61`). Selecting resets the PIN and management key state.
    pub fn select(&mut self) -> Result<Vec<u8>, PivError> {
        let cmd = Command::new(0x00, 0xA4, 0x04, 0x00)
            .with_data(PIV_AID.to_vec())
            .with_le(256);
        let r = self.send("SELECT PIV", &cmd)?;
        match r.sw {
            StatusWord::SUCCESS => Ok(r.data),
            sw @ StatusWord::FILE_NOT_FOUND => Err(PivError::NoPivApplication(sw)),
            sw => Err(PivError::Status {
                command: "SELECT PIV",
                sw,
            }),
        }
    }

    /// The card's serial number (YubiKey GET SERIAL, `INS F8`), if the card has one.
    pub fn serial(&mut self) -> Result<Option<u32>, PivError> {
        let r = self.send(
            "GET SERIAL",
            &Command::new(0x00, INS_GET_SERIAL, 0x00, 0x00).with_le(256),
        )?;
        if r.sw != StatusWord::SUCCESS {
            return Ok(None);
        }
        Ok(<[u8; 4]>::try_from(r.data.as_slice())
            .ok()
            .map(u32::from_be_bytes))
    }

    /// The PIN state: VERIFY with an empty data field (Part 2 §3.2.1) spends no try.
    pub fn pin_status(&mut self) -> Result<PinStatus, PivError> {
        let r = self.send(
            "VERIFY (status)",
            &Command::new(0x00, INS_VERIFY, 0x00, PIN_REF),
        )?;
        match r.sw {
            StatusWord::SUCCESS => Ok(PinStatus::Verified),
            StatusWord::AUTH_METHOD_BLOCKED => Ok(PinStatus::Blocked),
            sw if sw.sw1() == 0x63 && sw.sw2() & 0xF0 == 0xC0 => Ok(PinStatus::NotVerified {
                retries_left: sw.sw2() & 0x0F,
            }),
            sw => Err(PivError::Status {
                command: "VERIFY (status)",
                sw,
            }),
        }
    }

    /// VERIFY the PIV Card Application PIN (Part 2 §3.2.1): 6 to 8 characters, padded with
    /// `FF` to 8 bytes (Part 1 §2.4.3). A malformed PIN is refused before anything is
    /// sent. The padded PIN only exists in buffers wiped after use.
    pub fn verify_pin(&mut self, pin: &[u8]) -> Result<(), PivError> {
        if !(6..=8).contains(&pin.len()) {
            return Err(PivError::InvalidPin("a PIV PIN has 6 to 8 characters"));
        }
        if pin.contains(&0xFF) {
            return Err(PivError::InvalidPin("the byte FF is the padding"));
        }
        // Case 3 short APDU, built by hand so the PIN stays in a wiped buffer.
        let mut apdu = Zeroizing::new(Vec::with_capacity(13));
        apdu.extend_from_slice(&[0x00, INS_VERIFY, 0x00, PIN_REF, 0x08]);
        apdu.extend_from_slice(pin);
        apdu.resize(13, 0xFF);
        let raw = Zeroizing::new(self.channel.transmit_raw(&apdu)?);
        let r = Response::parse(&raw).map_err(|e| PivError::Exchange {
            command: "VERIFY",
            reason: e.to_string(),
        })?;
        match r.sw {
            StatusWord::SUCCESS => Ok(()),
            StatusWord::AUTH_METHOD_BLOCKED => Err(PivError::PinBlocked),
            sw if sw.sw1() == 0x63 && sw.sw2() & 0xF0 == 0xC0 => {
                let retries_left = sw.sw2() & 0x0F;
                if retries_left == 0 {
                    Err(PivError::PinBlocked)
                } else {
                    Err(PivError::WrongPin { retries_left })
                }
            }
            sw => Err(PivError::Status {
                command: "VERIFY",
                sw,
            }),
        }
    }

    /// The management key algorithm the card reports (YubiKey GET METADATA of `9B`, tag
    /// `01`), or `None` when the card does not support GET METADATA.
    pub fn management_key_algorithm(&mut self) -> Result<Option<MgmtAlgorithm>, PivError> {
        let r = self.send(
            "GET METADATA",
            &Command::new(0x00, INS_GET_METADATA, 0x00, MGMT_REF).with_le(256),
        )?;
        if r.sw != StatusWord::SUCCESS {
            return Ok(None);
        }
        let items = apdu::tlv::parse_all(&r.data).map_err(|e| PivError::Malformed {
            command: "GET METADATA",
            reason: e.to_string(),
        })?;
        Ok(match apdu::tlv::find(&items, Tag::new(0x01)) {
            Some(t) => match t.value.as_slice() {
                [id] => MgmtAlgorithm::from_id(*id),
                _ => None,
            },
            None => None,
        })
    }

    /// Mutual authentication with the management key (Part 2 §3.2.4, Appendix A.1, the
    /// sequence of `yubico-piv-tool` and OpenSC):
    ///
    /// 1. `GENERAL AUTHENTICATE alg 9B {7C {80 00}}`: the card answers a witness enciphered
    ///    under the key, `7C {80 E(w)}`;
    /// 2. the host deciphers it and sends `7C {80 w, 81 c}` with a random challenge `c`;
    ///    the card answers `7C {82 E(c)}` if `w` was right (`6982` otherwise);
    /// 3. the host checks `E(c)`, so the card proved it has the key too.
    pub fn authenticate(&mut self, key: &MgmtKey) -> Result<(), PivError> {
        const CMD: &str = "GENERAL AUTHENTICATE (management key)";
        let alg = key.algorithm();
        let block = alg.block_len();
        let ask = Tlv::new(TAG_DAT, Tlv::new(TAG_WITNESS, Vec::new()).encode()).encode();
        let r = self.send(
            CMD,
            &Command::new(0x00, INS_GENERAL_AUTHENTICATE, alg.id(), MGMT_REF)
                .with_data(ask)
                .with_le(256),
        )?;
        match r.sw {
            StatusWord::SUCCESS => {}
            StatusWord::INCORRECT_P1P2 | StatusWord::WRONG_P1P2 => {
                return Err(PivError::ManagementKey(format!(
                    "the card's management key is not {alg} ({})",
                    r.sw
                )))
            }
            sw => return Err(PivError::Status { command: CMD, sw }),
        }
        let mut witness = Zeroizing::new(dat_item(CMD, &r.data, TAG_WITNESS)?);
        if witness.len() != block {
            return Err(PivError::Malformed {
                command: CMD,
                reason: format!("witness of {} bytes, expected {block}", witness.len()),
            });
        }
        key.decrypt_block(&mut witness)?;
        let mut challenge = vec![0u8; block];
        {
            use rand::Rng as _;
            rand::rng().fill_bytes(&mut challenge);
        }
        let mut inner = Tlv::new(TAG_WITNESS, witness.to_vec()).encode();
        Tlv::new(TAG_CHALLENGE, challenge.clone()).encode_into(&mut inner);
        let data = Zeroizing::new(Tlv::new(TAG_DAT, inner).encode());
        let r = self.send(
            CMD,
            &Command::new(0x00, INS_GENERAL_AUTHENTICATE, alg.id(), MGMT_REF)
                .with_data(data.to_vec())
                .with_le(256),
        )?;
        match r.sw {
            StatusWord::SUCCESS => {}
            StatusWord::SECURITY_NOT_SATISFIED => {
                return Err(PivError::ManagementKey(
                    "the card refused the witness (6982): wrong management key".into(),
                ))
            }
            sw => return Err(PivError::Status { command: CMD, sw }),
        }
        let response = dat_item(CMD, &r.data, TAG_RESPONSE)?;
        let mut expected = challenge;
        key.encrypt_block(&mut expected)?;
        // Constant time: the card's answer is compared with a secret-derived value.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_slice(),
            response.as_slice(),
        )) {
            return Err(PivError::ManagementKey(
                "the card's answer to our challenge is wrong: it does not hold this key".into(),
            ));
        }
        Ok(())
    }

    /// GENERATE ASYMMETRIC KEY PAIR (Part 2 §3.3.2) in `slot`: control reference template
    /// `AC {80 alg}`; answers the `7F49` public key template. Needs the management key.
    pub fn generate(
        &mut self,
        slot: Slot,
        algorithm: PivAlgorithm,
    ) -> Result<GeneratedKey, PivError> {
        const CMD: &str = "GENERATE ASYMMETRIC KEY PAIR";
        let crt = Tlv::new(
            Tag::new(0xAC),
            Tlv::new(Tag::new(0x80), vec![algorithm.id()]).encode(),
        )
        .encode();
        let template = self.send_ok(
            CMD,
            &Command::new(0x00, INS_GENERATE, 0x00, slot.reference())
                .with_data(crt)
                .with_le(256),
        )?;
        let public_key = PublicKey::from_piv_template(&template, algorithm)?;
        Ok(GeneratedKey {
            template,
            public_key,
        })
    }

    /// Sign a SHA-256 `digest` with the key in `slot` (GENERAL AUTHENTICATE, Part 2
    /// §3.2.4: `7C {82 00, 81 input}`, answer `7C {82 signature}`).
    ///
    /// * RSA-2048: the input is the EMSA-PKCS1-v1_5 block of the digest
    ///   ([`pki::piv::emsa_pkcs1_v15_sha256`], RFC 8017 §9.2), the card does the raw RSA
    ///   operation; the result is the 256-byte RSASSA-PKCS1-v1_5 signature.
    /// * P-256: the input is the digest; the card returns a DER `Ecdsa-Sig-Value`.
    ///
    /// For slot `9C` (PIN policy "always") call [`verify_pin`](Self::verify_pin) right
    /// before.
    pub fn sign_digest(
        &mut self,
        slot: Slot,
        algorithm: PivAlgorithm,
        digest: &[u8; 32],
    ) -> Result<Vec<u8>, PivError> {
        const CMD: &str = "GENERAL AUTHENTICATE (sign)";
        let input = match algorithm {
            PivAlgorithm::Rsa2048 => pki::piv::emsa_pkcs1_v15_sha256(digest, 256)
                .ok_or_else(|| PivError::Invalid("RSA block".into()))?,
            PivAlgorithm::EccP256 => digest.to_vec(),
        };
        let mut inner = Tlv::new(TAG_RESPONSE, Vec::new()).encode();
        Tlv::new(TAG_CHALLENGE, input).encode_into(&mut inner);
        let data = Tlv::new(TAG_DAT, inner).encode();
        let r = self.send(
            CMD,
            &Command::new(
                0x00,
                INS_GENERAL_AUTHENTICATE,
                algorithm.id(),
                slot.reference(),
            )
            .with_data(data)
            .with_le(256),
        )?;
        match r.sw {
            StatusWord::SUCCESS => {}
            StatusWord::REFERENCED_DATA_NOT_FOUND => {
                return Err(PivError::NotFound(format!("slot {slot} holds no key")))
            }
            StatusWord::INCORRECT_P1P2 => {
                return Err(PivError::Invalid(format!(
                    "slot {slot} does not hold a {} key (6A86)",
                    alg_name(algorithm)
                )))
            }
            sw => return Err(PivError::Status { command: CMD, sw }),
        }
        let signature = dat_item(CMD, &r.data, TAG_RESPONSE)?;
        if algorithm == PivAlgorithm::Rsa2048 && signature.len() != 256 {
            return Err(PivError::Malformed {
                command: CMD,
                reason: format!("RSA-2048 signature of {} bytes", signature.len()),
            });
        }
        if signature.is_empty() {
            return Err(PivError::Malformed {
                command: CMD,
                reason: "empty signature".into(),
            });
        }
        Ok(signature)
    }

    /// GET DATA of a data object (Part 2 §3.1.2): `5C` tag list; returns the value of the
    /// `53` container, or `None` if the card has no such object (`6A82`).
    pub fn get_object(&mut self, tag: u32) -> Result<Option<Vec<u8>>, PivError> {
        const CMD: &str = "GET DATA";
        let r = self.send(
            CMD,
            &Command::new(0x00, INS_GET_DATA, 0x3F, 0xFF)
                .with_data(tag_list(tag))
                .with_le(256),
        )?;
        match r.sw {
            StatusWord::SUCCESS => {}
            StatusWord::FILE_NOT_FOUND => return Ok(None),
            sw => return Err(PivError::Status { command: CMD, sw }),
        }
        let (container, rest) = TlvRef::parse_one(&r.data).map_err(|e| PivError::Malformed {
            command: CMD,
            reason: e.to_string(),
        })?;
        if container.tag().value() != 0x53 || !rest.is_empty() {
            return Err(PivError::Malformed {
                command: CMD,
                reason: "expected exactly one 53 container".into(),
            });
        }
        Ok(Some(container.value().to_vec()))
    }

    /// PUT DATA of a data object (Part 2 §3.3.1): `5C` tag list then `53` with `value`.
    /// Needs the management key.
    pub fn put_object(&mut self, tag: u32, value: &[u8]) -> Result<(), PivError> {
        let mut data = tag_list(tag);
        Tlv::new(Tag::new(0x53), value.to_vec()).encode_into(&mut data);
        self.send_ok(
            "PUT DATA",
            &Command::new(0x00, INS_PUT_DATA, 0x3F, 0xFF).with_data(data),
        )?;
        Ok(())
    }

    /// The X.509 certificate (DER) in the certificate object of `slot`, if any.
    pub fn read_certificate(&mut self, slot: Slot) -> Result<Option<Vec<u8>>, PivError> {
        match self.get_object(slot.certificate_object())? {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => decode_certificate_object(&v).map(Some),
        }
    }

    /// Write a DER certificate into the certificate object of `slot` (`70` cert, `71 00`,
    /// `FE` LRC). Needs the management key.
    pub fn write_certificate(&mut self, slot: Slot, der: &[u8]) -> Result<(), PivError> {
        if der.is_empty() {
            return Err(PivError::Invalid("empty certificate".into()));
        }
        self.put_object(slot.certificate_object(), &encode_certificate_object(der))
    }
}

/// `5C` tag list with one tag of one to three bytes.
fn tag_list(tag: u32) -> Vec<u8> {
    let bytes = tag.to_be_bytes();
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(3);
    Tlv::new(Tag::new(0x5C), bytes[start..].to_vec()).encode()
}

/// The value of `tag` inside the `7C` dynamic authentication template that must make up
/// the whole response.
fn dat_item(command: &'static str, data: &[u8], tag: Tag) -> Result<Vec<u8>, PivError> {
    let bad = |reason: String| PivError::Malformed { command, reason };
    let (dat, rest) = TlvRef::parse_one(data).map_err(|e| bad(e.to_string()))?;
    if dat.tag() != TAG_DAT {
        return Err(bad(format!("expected tag 7C, found {}", dat.tag())));
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the 7C template".into()));
    }
    let items = apdu::tlv::parse_all(dat.value()).map_err(|e| bad(e.to_string()))?;
    match items.as_slice() {
        [one] if one.tag == tag => Ok(one.value.clone()),
        _ => Err(bad(format!("expected only tag {tag} in 7C"))),
    }
}

/// `RSA-2048` or `ECC P-256`.
pub fn alg_name(algorithm: PivAlgorithm) -> &'static str {
    match algorithm {
        PivAlgorithm::Rsa2048 => "RSA-2048",
        PivAlgorithm::EccP256 => "ECC P-256",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists() {
        assert_eq!(tag_list(0x5FC10A), [0x5C, 0x03, 0x5F, 0xC1, 0x0A]);
        assert_eq!(tag_list(0x7E), [0x5C, 0x01, 0x7E]);
    }

    #[test]
    fn dynamic_authentication_template() {
        assert_eq!(
            dat_item("t", &[0x7C, 0x03, 0x82, 0x01, 0xAA], TAG_RESPONSE).unwrap(),
            [0xAA]
        );
        for bad in [
            &[0x7D, 0x03, 0x82, 0x01, 0xAA][..],
            &[0x7C, 0x03, 0x81, 0x01, 0xAA],
            &[0x7C, 0x03, 0x82, 0x01, 0xAA, 0x00],
            &[0x7C, 0x06, 0x82, 0x01, 0xAA, 0x82, 0x01, 0xBB],
            &[0x7C, 0x04, 0x82, 0x01],
            &[],
        ] {
            assert!(dat_item("t", bad, TAG_RESPONSE).is_err(), "{bad:02X?}");
        }
    }
}
