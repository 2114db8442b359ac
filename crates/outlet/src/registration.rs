//! The registration applet's protocol, host side (`card::applet`'s registration applet is
//! the card side; `docs/OUTLET.md` has the table):
//!
//! * `80 41 00 <slot> 00` GENERATE KEY PAIR (P-256): `7F49 { 86 <04‖X‖Y> }`;
//! * `80 2A 00 <slot> Lc data 00` SIGN: DER ECDSA-SHA256 over `data`;
//! * personalisation through its security domain (INSTALL \[for personalization\], STORE
//!   DATA in DGI format, GP 2.3.1 §11.11.2.2, EMV CPS v1.1 §4.3): DGI `01<slot>` the
//!   certificate of the slot's key pair (X.509 DER), DGI `81<slot>` an AES key encrypted
//!   under the channel's DEK (P1 b6-b5 = `11`).

use apdu::tlv::{find_in, Tag};
use apdu::Command;
use gp::commands::{StoreData, StoreDataEncryption, StoreDataStructure};

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

/// A DGI: tag (2 bytes), length (1 byte below 255, else `FF` and 2 bytes; EMV CPS v1.1
/// §4.3.2), value.
pub(crate) fn dgi(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_be_bytes().to_vec();
    if value.len() < 0xFF {
        out.push(value.len() as u8);
    } else {
        out.push(0xFF);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(value);
    out
}

/// DGI `01<slot>`: the certificate of the slot's key pair.
pub(crate) fn certificate_dgi(slot: u8, der: &[u8]) -> Vec<u8> {
    dgi(0x0100 | u16::from(slot), der)
}

/// DGI `81<slot>`: an AES key, `encrypted` under the channel's DEK.
pub(crate) fn key_dgi(slot: u8, encrypted: &[u8]) -> Vec<u8> {
    dgi(0x8100 | u16::from(slot), encrypted)
}

/// One piece of personalisation data: a DGI, and whether its value is encrypted.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub dgi: Vec<u8>,
    pub encrypted: bool,
}

/// The STORE DATA commands for `pieces`, one per DGI (a DGI is never split: one command
/// carries whole DGIs, GP 2.3.1 §11.11.2.2), numbered from 0, the last one flagged.
/// A DGI longer than `max` bytes is refused.
pub(crate) fn store_data_commands(pieces: &[Piece], max: usize) -> Result<Vec<Command>, String> {
    let n = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p.dgi.len() > max {
                return Err(format!(
                    "a DGI of {} bytes does not fit one STORE DATA ({max} bytes on this channel)",
                    p.dgi.len()
                ));
            }
            StoreData {
                last: i + 1 == n,
                encryption: if p.encrypted {
                    StoreDataEncryption::Encrypted
                } else {
                    StoreDataEncryption::None
                },
                structure: StoreDataStructure::Dgi,
                response_expected: false,
                block: i as u8,
                data: p.dgi.clone(),
            }
            .to_command()
            .map_err(|e| e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dgi_lengths() {
        assert_eq!(
            dgi(0x0101, &[0xAA; 3]),
            apdu::parse_hex("0101 03 AAAAAA").unwrap()
        );
        let long = dgi(0x0102, &[0u8; 300]);
        assert_eq!(&long[..5], &[0x01, 0x02, 0xFF, 0x01, 0x2C]);
        assert_eq!(long.len(), 305);
        assert_eq!(&dgi(0x0101, &[0u8; 254])[..3], &[0x01, 0x01, 0xFE]);
        assert_eq!(
            &dgi(0x0101, &[0u8; 255])[..5],
            &[0x01, 0x01, 0xFF, 0x00, 0xFF]
        );
    }

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
        let cmds = store_data_commands(
            &[
                Piece {
                    dgi: certificate_dgi(1, &[0x30, 0x00]),
                    encrypted: false,
                },
                Piece {
                    dgi: key_dgi(2, &[0x11; 16]),
                    encrypted: true,
                },
            ],
            239,
        )
        .unwrap();
        // P1: DGI format (08), then encrypted (60) and last (80).
        assert_eq!((cmds[0].p1, cmds[0].p2), (0x08, 0));
        assert_eq!((cmds[1].p1, cmds[1].p2), (0xE8, 1));
        assert!(store_data_commands(
            &[Piece {
                dgi: certificate_dgi(1, &[0; 300]),
                encrypted: false
            }],
            239
        )
        .is_err());
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
