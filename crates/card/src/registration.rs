//! The **registration applet** (issue #11): what an application installed from an outlet's
//! security module needs for its registration, as a built-in applet for load files whose
//! package AID starts with [`REGISTRATION_PACKAGE`] (module [`REGISTRATION_MODULE`]).
//!
//! Each instance has 15 slots (1–15). A slot holds a P-256 key pair generated on the card,
//! the X.509 certificate the module issued for it, and an AES key the module generated and
//! sent encrypted. Commands to the selected instance (CLA `80`; P2 = the slot):
//!
//! | command | data | answer |
//! |---|---|---|
//! | `80 41 00 slot 00` GENERATE KEY PAIR | — | `7F49 { 86 <04 ‖ X ‖ Y> }` (the public key) |
//! | `80 2A 00 slot Lc data 00` SIGN | the message | DER ECDSA-SHA256 signature (FIPS 186-4) |
//! | `80 4C 00 slot Lc data 00` MAC | the message | AES-CMAC (NIST SP 800-38B), 16 bytes |
//! | `80 CA 01 slot 00` GET CERTIFICATE | — | the X.509 DER stored for the slot |
//!
//! GENERATE KEY PAIR replaces the slot's pair (and drops its certificate, which certified
//! the old key), so an interrupted registration can start over. It works only while the
//! instance is SELECTABLE (`07`): once its life cycle is the application-specific state
//! PERSONALIZED (`0F`, set by its security domain with SET STATUS when the registration is
//! complete, GP 2.3.1 §11.10) it is refused with `6985`. A slot
//! without the key or certificate asked for answers `6A88`; a slot outside 1–15 or another
//! P1 `6A86`; another instruction `6D00`; another class `6E00`.
//!
//! # Personalisation (through the security domain)
//!
//! INSTALL [for personalization], then STORE DATA in the DGI format (P1 b5-b4 = `01`;
//! [`gp::commands::dgi`]):
//!
//! * DGI `01<slot>`: the certificate of the slot's key pair, X.509 DER with an ECDSA
//!   signature; its subject public key must be the slot's (`6A80` otherwise, also when the
//!   slot has no key pair). A certificate longer than one command continues in the next.
//! * DGI `81<slot>`: the slot's AES-128 or AES-256 key, sent **encrypted under the secure
//!   channel's DEK** (P1 b7-b6 = `11`): the security domain decrypts DGIs `8xxx` before they
//!   reach the applet. The applet refuses one from a command not flagged encrypted
//!   (`6982`): a key never travels in the clear. A value of another length: `6A80`.
//! * Another DGI: `6A88`. Every DGI of a command is checked before any is kept.
//!
//! The state (keys, certificates) is saved in the card's state file like every applet's.

use apdu::tlv::{self, Tag};
use apdu::{Command, Response, StatusWord};
use gp::commands::dgi::{self, Dgi};
use scp::scp11::{Curve, PrivateKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

use crate::applet::{fci, Applet, AppletContext, AppletFactory};

/// Load file (package) AID prefix of the registration applet: `F0 43 57 4B 41`
/// ("\xF0CWKA", proprietary, ISO/IEC 7816-5 category `F`).
pub const REGISTRATION_PACKAGE: &[u8] = &[0xF0, 0x43, 0x57, 0x4B, 0x41];
/// Executable module (applet class) AID of the registration applet: `F0 43 57 4B 41 01`.
pub const REGISTRATION_MODULE: &[u8] = &[0xF0, 0x43, 0x57, 0x4B, 0x41, 0x01];
/// The slots: 1 to this.
pub const REGISTRATION_SLOTS: u8 = 15;
/// The application-specific life cycle state that ends registration (GP 2.3.1 §11.1.1):
/// PERSONALIZED.
pub const PERSONALIZED: u8 = 0x0F;
/// SELECTABLE (GP 2.3.1 §11.1.1): the only state in which key pairs are generated.
const SELECTABLE: u8 = 0x07;

/// Instructions of the registration applet.
pub mod ins {
    /// GENERATE KEY PAIR.
    pub const GENERATE_KEY_PAIR: u8 = 0x41;
    /// SIGN (ECDSA-SHA256).
    pub const SIGN: u8 = 0x2A;
    /// MAC (AES-CMAC).
    pub const MAC: u8 = 0x4C;
    /// GET CERTIFICATE (P1 = `01`).
    pub const GET_CERTIFICATE: u8 = 0xCA;
}

/// DGI of a slot's certificate: `01<slot>`.
pub const fn certificate_dgi(slot: u8) -> u16 {
    0x0100 | slot as u16
}

/// DGI of a slot's AES key (encrypted): `81<slot>`.
pub const fn aes_key_dgi(slot: u8) -> u16 {
    0x8100 | slot as u16
}

/// One slot.
#[derive(Default, Clone)]
struct Slot {
    pair: Option<PrivateKey>,
    certificate: Option<Vec<u8>>,
    aes: Option<scp::Key>,
}

/// The registration applet (see the module documentation).
#[derive(Default, Clone)]
pub struct RegistrationApplet {
    slots: BTreeMap<u8, Slot>,
    /// The beginning of a plain DGI that continues in the next STORE DATA.
    pending: Vec<u8>,
}

impl fmt::Debug for RegistrationApplet {
    /// Which slots hold what; no key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_map();
        for (n, s) in &self.slots {
            d.entry(
                n,
                &format!(
                    "pair: {}, certificate: {}, aes: {}",
                    s.pair.is_some(),
                    s.certificate.is_some(),
                    s.aes.is_some()
                ),
            );
        }
        d.finish()
    }
}

/// The slot number in P2, checked.
fn slot_of(cmd: &Command) -> Result<u8, StatusWord> {
    if (1..=REGISTRATION_SLOTS).contains(&cmd.p2) {
        Ok(cmd.p2)
    } else {
        Err(StatusWord::INCORRECT_P1P2)
    }
}

impl RegistrationApplet {
    fn slot(&self, n: u8) -> Option<&Slot> {
        self.slots.get(&n)
    }

    fn generate(&mut self, ctx: &AppletContext<'_>, n: u8) -> Result<Vec<u8>, StatusWord> {
        if ctx.life_cycle != SELECTABLE {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let pair = PrivateKey::generate(Curve::P256).map_err(|_| StatusWord::UNKNOWN)?;
        // A registration that starts over drops a certificate DGI it had half received.
        self.pending.clear();
        let point = pair.public_key().to_sec1().to_vec();
        let slot = self.slots.entry(n).or_default();
        slot.pair = Some(pair);
        slot.certificate = None;
        Ok(tlv::encode(
            Tag::new(0x7F49),
            &tlv::encode(Tag::new(0x86), &point),
        ))
    }

    fn sign(&self, n: u8, data: &[u8]) -> Result<Vec<u8>, StatusWord> {
        let pair = self
            .slot(n)
            .and_then(|s| s.pair.as_ref())
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        gp::cert::ecdsa_sign(pair, data).map_err(|_| StatusWord::UNKNOWN)
    }

    fn mac(&self, n: u8, data: &[u8]) -> Result<Vec<u8>, StatusWord> {
        let key = self
            .slot(n)
            .and_then(|s| s.aes.as_ref())
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        key.aes_cmac(data)
            .map(|t| t.to_vec())
            .map_err(|_| StatusWord::UNKNOWN)
    }

    fn certificate(&self, n: u8) -> Result<Vec<u8>, StatusWord> {
        self.slot(n)
            .and_then(|s| s.certificate.clone())
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)
    }

    fn command(&mut self, ctx: &AppletContext<'_>, cmd: &Command) -> Result<Vec<u8>, StatusWord> {
        if cmd.cla != 0x80 {
            return Err(StatusWord::CLA_NOT_SUPPORTED);
        }
        let (p1, no_data) = match cmd.ins {
            ins::GENERATE_KEY_PAIR => (0x00, true),
            ins::SIGN | ins::MAC => (0x00, false),
            ins::GET_CERTIFICATE => (0x01, true),
            _ => return Err(StatusWord::INS_NOT_SUPPORTED),
        };
        if cmd.p1 != p1 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let n = slot_of(cmd)?;
        if no_data && !cmd.data.is_empty() {
            return Err(StatusWord::WRONG_LENGTH);
        }
        match cmd.ins {
            ins::GENERATE_KEY_PAIR => self.generate(ctx, n),
            ins::SIGN => self.sign(n, &cmd.data),
            ins::MAC => self.mac(n, &cmd.data),
            _ => self.certificate(n),
        }
    }

    /// Checks one DGI against the slots as they will be after the DGIs before it
    /// (`next`), and applies it there.
    fn take_dgi(
        next: &mut BTreeMap<u8, Slot>,
        dgi: Dgi,
        encrypted: bool,
    ) -> Result<(), StatusWord> {
        let [kind, n] = dgi.id.to_be_bytes();
        if !(1..=REGISTRATION_SLOTS).contains(&n) {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        match kind {
            0x01 => {
                let slot = next.get_mut(&n).ok_or(StatusWord::WRONG_DATA)?;
                let pair = slot.pair.as_ref().ok_or(StatusWord::WRONG_DATA)?;
                let cert = match gp::cert::Certificate::parse(&dgi.value) {
                    Ok(c @ gp::cert::Certificate::X509(_)) => c,
                    _ => return Err(StatusWord::WRONG_DATA),
                };
                if cert.public_key() != pair.public_key() {
                    return Err(StatusWord::WRONG_DATA);
                }
                slot.certificate = Some(dgi.value);
            }
            0x81 => {
                let value = Zeroizing::new(dgi.value);
                if !encrypted {
                    return Err(StatusWord::SECURITY_NOT_SATISFIED);
                }
                if !matches!(value.len(), 16 | 32) {
                    return Err(StatusWord::WRONG_DATA);
                }
                let key = scp::Key::aes(&value).map_err(|_| StatusWord::WRONG_DATA)?;
                next.entry(n).or_default().aes = Some(key);
            }
            _ => return Err(StatusWord::REFERENCED_DATA_NOT_FOUND),
        }
        Ok(())
    }

    /// STORE DATA from the security domain (see the module documentation).
    fn store(&mut self, cmd: &Command) -> Result<(), StatusWord> {
        let last = cmd.p1 & 0x80 != 0;
        let encrypted = cmd.p1 & 0x60 == 0x60;
        if (cmd.p1 >> 3) & 0x03 != 0x01 {
            return Err(StatusWord::WRONG_DATA);
        }
        // Block number 00 (P2, GP 2.3.1 §11.11.2.2) starts a new sequence: a DGI left
        // unfinished by an earlier, interrupted one is dropped.
        if cmd.p2 == 0 {
            self.pending.clear();
        }
        // A continued DGI is plain (an encrypted one comes whole in one command).
        if encrypted && !self.pending.is_empty() {
            return Err(StatusWord::WRONG_DATA);
        }
        let mut data = Zeroizing::new(std::mem::take(&mut self.pending));
        data.extend_from_slice(&cmd.data);
        let (dgis, used) = dgi::parse_dgi_prefix(&data);
        if last && used != data.len() {
            return Err(StatusWord::WRONG_DATA);
        }
        let mut next = self.slots.clone();
        for d in dgis {
            Self::take_dgi(&mut next, d, encrypted)?;
        }
        self.slots = next;
        self.pending = data[used..].to_vec();
        Ok(())
    }
}

impl Applet for RegistrationApplet {
    fn select(&mut self, ctx: &AppletContext<'_>, _cmd: &Command) -> Response {
        Response::ok(fci(ctx.aid))
    }

    fn process(&mut self, ctx: &AppletContext<'_>, cmd: &Command) -> Response {
        match self.command(ctx, cmd) {
            Ok(data) => Response::ok(data),
            Err(sw) => Response::status(sw),
        }
    }

    fn accepts_personalization(&self) -> bool {
        true
    }

    fn process_data(&mut self, cmd: &Command) -> Response {
        match self.store(cmd) {
            Ok(()) => Response::ok(Vec::new()),
            Err(sw) => {
                // A failed command ends a DGI being continued.
                self.pending.clear();
                Response::status(sw)
            }
        }
    }

    fn state(&self) -> serde_json::Value {
        let slots: BTreeMap<String, SavedSlot> = self
            .slots
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    SavedSlot {
                        private: s.pair.as_ref().map(|p| apdu::hex(p.expose_scalar())),
                        certificate: s.certificate.as_ref().map(|c| apdu::hex(c)),
                        aes: s.aes.as_ref().map(|k| apdu::hex(k.expose())),
                    },
                )
            })
            .collect();
        serde_json::json!({ "slots": slots, "pending": apdu::hex(&self.pending) })
    }
}

/// A slot as saved in the card's state file (the file is the card's secret memory, see
/// `crate::model`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedSlot {
    private: Option<String>,
    certificate: Option<String>,
    aes: Option<String>,
}

/// Creates [`RegistrationApplet`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistrationFactory;

impl AppletFactory for RegistrationFactory {
    fn name(&self) -> &str {
        "registration"
    }

    fn install(
        &self,
        module_aid: &[u8],
        _instance_aid: &[u8],
        _app_params: &[u8],
    ) -> Result<Box<dyn Applet>, StatusWord> {
        if module_aid != REGISTRATION_MODULE {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        Ok(Box::new(RegistrationApplet::default()))
    }

    fn restore(
        &self,
        _instance_aid: &[u8],
        state: &serde_json::Value,
    ) -> Result<Box<dyn Applet>, String> {
        let hex = |s: &str| apdu::parse_hex(s).map_err(|e| e.to_string());
        let mut a = RegistrationApplet::default();
        if let Some(slots) = state.get("slots") {
            let saved: BTreeMap<String, SavedSlot> =
                serde_json::from_value(slots.clone()).map_err(|e| e.to_string())?;
            for (n, s) in saved {
                let n: u8 = n.parse().map_err(|_| format!("bad slot {n:?}"))?;
                if !(1..=REGISTRATION_SLOTS).contains(&n) {
                    return Err(format!("bad slot {n}"));
                }
                let pair = match &s.private {
                    Some(p) => Some(
                        PrivateKey::from_scalar(Curve::P256, &Zeroizing::new(hex(p)?))
                            .map_err(|e| e.to_string())?,
                    ),
                    None => None,
                };
                let aes = match &s.aes {
                    Some(k) => {
                        Some(scp::Key::aes(&Zeroizing::new(hex(k)?)).map_err(|e| e.to_string())?)
                    }
                    None => None,
                };
                let certificate = s.certificate.as_deref().map(hex).transpose()?;
                a.slots.insert(
                    n,
                    Slot {
                        pair,
                        certificate,
                        aes,
                    },
                );
            }
        }
        if let Some(p) = state.get("pending").and_then(|p| p.as_str()) {
            a.pending = hex(p)?;
        }
        Ok(Box::new(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(life_cycle: u8) -> AppletContext<'static> {
        AppletContext {
            aid: REGISTRATION_MODULE,
            channel: 0,
            life_cycle,
        }
    }

    fn run(a: &mut RegistrationApplet, lc: u8, c: Command) -> Response {
        a.process(&ctx(lc), &c)
    }

    #[test]
    fn commands_and_refusals() {
        let mut a = RegistrationApplet::default();
        let gen = |slot| Command::new(0x80, ins::GENERATE_KEY_PAIR, 0, slot).with_le(256);
        let r = run(&mut a, 0x07, gen(1));
        assert!(r.is_success());
        assert_eq!(&r.data[..5], &[0x7F, 0x49, 0x43, 0x86, 0x41]);
        assert_eq!(r.data[5], 0x04);
        // The signature verifies with the key GENERATE answered.
        let pk = scp::scp11::PublicKey::from_sec1(Curve::P256, &r.data[5..]).unwrap();
        let sign = Command::new(0x80, ins::SIGN, 0, 1)
            .with_data(b"m".to_vec())
            .with_le(256);
        let sig = run(&mut a, 0x07, sign).data;
        assert!(gp::cert::ecdsa_verify(&pk, Some(false), b"m", &sig));
        // Refusals.
        for (c, sw) in [
            (gen(0), 0x6A86),
            (gen(16), 0x6A86),
            (Command::new(0x80, ins::GENERATE_KEY_PAIR, 1, 1), 0x6A86),
            (Command::new(0x00, ins::GENERATE_KEY_PAIR, 0, 1), 0x6E00),
            (Command::new(0x80, 0x99, 0, 1), 0x6D00),
            (
                Command::new(0x80, ins::SIGN, 0, 2).with_data(vec![1]),
                0x6A88,
            ),
            (
                Command::new(0x80, ins::MAC, 0, 1).with_data(vec![1]),
                0x6A88,
            ),
            (Command::new(0x80, ins::GET_CERTIFICATE, 1, 1), 0x6A88),
            (Command::new(0x80, ins::GET_CERTIFICATE, 0, 1), 0x6A86),
            (
                Command::new(0x80, ins::GENERATE_KEY_PAIR, 0, 1).with_data(vec![0]),
                0x6700,
            ),
        ] {
            assert_eq!(run(&mut a, 0x07, c.clone()).sw.0, sw, "{c:?}");
        }
        assert_eq!(
            run(&mut a, PERSONALIZED, gen(1)).sw,
            StatusWord::CONDITIONS_NOT_SATISFIED
        );
        assert!(!format!("{a:?}").contains(&apdu::hex(
            a.slots[&1].pair.as_ref().unwrap().expose_scalar()
        )));
    }

    #[test]
    fn keys_only_encrypted_and_state_round_trips() {
        let mut a = RegistrationApplet::default();
        let key = Dgi::new(aes_key_dgi(3), vec![0x11; 16]).to_bytes().unwrap();
        // A key in a command not flagged encrypted is refused.
        let plain = Command::new(0x80, 0xE2, 0x88, 0).with_data(key.clone());
        assert_eq!(
            a.process_data(&plain).sw,
            StatusWord::SECURITY_NOT_SATISFIED
        );
        let enc = Command::new(0x80, 0xE2, 0xE8, 0).with_data(key);
        assert!(a.process_data(&enc).is_success());
        let mac = run(
            &mut a,
            0x07,
            Command::new(0x80, ins::MAC, 0, 3).with_data(vec![]),
        );
        assert_eq!(
            mac.data,
            scp::Key::aes(&[0x11; 16]).unwrap().aes_cmac(&[]).unwrap()
        );
        // Wrong length, unknown DGI, certificate without a key pair.
        for (dgi, sw) in [
            (Dgi::new(aes_key_dgi(3), vec![0; 24]), 0x6A80),
            (Dgi::new(0x9F70, vec![0; 2]), 0x6A88),
            (Dgi::new(certificate_dgi(4), vec![0x30, 0x00]), 0x6A80),
            (Dgi::new(aes_key_dgi(0), vec![0; 16]), 0x6A88),
        ] {
            let c = Command::new(0x80, 0xE2, 0xE8, 0).with_data(dgi.to_bytes().unwrap());
            assert_eq!(a.process_data(&c).sw.0, sw, "{dgi:?}");
        }
        run(
            &mut a,
            0x07,
            Command::new(0x80, ins::GENERATE_KEY_PAIR, 0, 2),
        );
        let back = RegistrationFactory
            .restore(REGISTRATION_MODULE, &a.state())
            .unwrap();
        assert_eq!(back.state(), a.state());
        assert!(RegistrationFactory
            .restore(REGISTRATION_MODULE, &serde_json::json!({"slots": {"16": {"private": null, "certificate": null, "aes": null}}}))
            .is_err());
    }
}
