//! The registration applet's protocol, host side (`card::applet`'s registration applet is
//! the card side; `docs/OUTLET.md` has the table):
//!
//! * `80 41 00 <slot> 00` GENERATE KEY PAIR (P-256): `7F49 { 86 <04‖X‖Y> }`;
//! * `80 2A 00 <slot> Lc data 00` SIGN: DER ECDSA-SHA256 over `data`;
//! * personalisation through its security domain (INSTALL \[for personalization\], STORE
//!   DATA in DGI format, GP 2.3.1 §11.11.2.2, [`gp::commands::dgi`]): DGI `01<slot>` the
//!   certificate of the slot's key pair (X.509 DER), DGI `81<slot>` an AES key encrypted
//!   under the channel's DEK (P1 b7-b6 = `11`).

use apdu::tlv::{find_in, Tag};
use apdu::Command;
use gp::commands::dgi::Dgi;

/// The applet's class byte.
const CLA: u8 = 0x80;
/// GENERATE KEY PAIR.
const INS_GENERATE: u8 = 0x41;
/// SIGN.
const INS_SIGN: u8 = 0x2A;

/// GENERATE KEY PAIR of `slot`.
pub(crate) fn generate_key_pair(slot: u8) -> Command {
    Command::new(CLA, INS_GENERATE, 0x00, slot).with_le(256)
}

/// SIGN `data` with the key pair of `slot`.
pub(crate) fn sign(slot: u8, data: &[u8]) -> Command {
    Command::new(CLA, INS_SIGN, 0x00, slot)
        .with_data(data.to_vec())
        .with_le(256)
}

/// The uncompressed P-256 point in a GENERATE KEY PAIR answer (`7F49 { 86 point }`).
pub(crate) fn public_key_of(answer: &[u8]) -> Result<pki::PublicKey, String> {
    let point = find_in(answer, &[Tag::new(0x7F49), Tag::new(0x86)])
        .map_err(|e| format!("GENERATE KEY PAIR answer: {e}"))?
        .ok_or("GENERATE KEY PAIR answer has no 7F49/86")?;
    pki::PublicKey::from_p256_uncompressed(point.value())
        .map_err(|e| format!("GENERATE KEY PAIR answer: {e}"))
}

/// DGI `01<slot>`: the certificate of the slot's key pair (plain; a long one continues in
/// the next STORE DATA, [`gp::commands::dgi::dgi_store_data`]).
pub(crate) fn certificate_dgi(slot: u8, der: &[u8]) -> Dgi {
    Dgi::new(0x0100 | u16::from(slot), der.to_vec())
}

/// DGI `81<slot>`: an AES key, `encrypted` under the channel's DEK (EMV CPS's encrypted
/// range `8xxx`: sent whole, in a command flagged encrypted).
pub(crate) fn key_dgi(slot: u8, encrypted: &[u8]) -> Dgi {
    Dgi::new(0x8100 | u16::from(slot), encrypted.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            generate_key_pair(3).to_bytes().unwrap(),
            apdu::parse_hex("80410003 00").unwrap()
        );
        assert_eq!(
            sign(1, &[1, 2]).to_bytes().unwrap(),
            apdu::parse_hex("802A0001 02 0102 00").unwrap()
        );
        assert!(
            certificate_dgi(1, &[0x30, 0x00]).to_bytes().unwrap() == [0x01, 0x01, 0x02, 0x30, 0x00]
        );
        let k = key_dgi(2, &[0x11; 16]);
        assert!(k.is_encrypted());
        assert_eq!(k.id, 0x8102);
    }

    #[test]
    fn public_key_answer() {
        // The P-256 base point G (SEC 2 §2.4.2), uncompressed.
        let point = apdu::parse_hex(
            "04 6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296 \
             4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5",
        )
        .unwrap();
        let mut inner = vec![0x86, 65];
        inner.extend_from_slice(&point);
        let mut answer = vec![0x7F, 0x49, inner.len() as u8];
        answer.extend_from_slice(&inner);
        assert!(public_key_of(&answer).is_ok());
        assert!(public_key_of(&answer[..10]).is_err());
        assert!(public_key_of(&[0x7F, 0x49, 0x00]).is_err());
    }
}
