//! INITIALIZE UPDATE command and response (GP 2.3.1 §E.5.1; Amendment D §7.1.1).

use crate::error::malformed;
use crate::Error;

/// Builds INITIALIZE UPDATE: `80 50 KVN 00 Lc host-challenge 00` (GP 2.3.1 §E.5.1;
/// Amendment D §7.1.1). P1 is the key version number (`00` = first available key set),
/// P2 the key identifier, always `00`. The host challenge is 8 bytes (16 in SCP03 S16 mode).
pub fn initialize_update(key_version: u8, host_challenge: &[u8]) -> apdu::Command {
    apdu::Command::new(0x80, 0x50, key_version, 0x00)
        .with_data(host_challenge)
        .with_le(256)
}

/// The data field of the INITIALIZE UPDATE response.
///
/// * SCP02 (GP 2.3.1 §E.5.1, response data): key diversification data (10), key information
///   (KVN, `02`), sequence counter (2), card challenge (6), card cryptogram (8) — 28 bytes.
/// * SCP03 (Amendment D §7.1.1, response data): key diversification data (10), key information
///   (KVN, `03`, i), card challenge (8 or 16), card cryptogram (8 or 16), then the sequence
///   counter (3) when the card challenge is pseudo-random — 29, 32, 45 or 48 bytes.
///
/// SCP01 responses (`01` in the SCP byte) are recognised and rejected as unsupported.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InitUpdateResponse {
    /// Key diversification data (the input of EMV/VISA2/KDF3 diversification).
    pub kdd: [u8; 10],
    /// Key version number of the key set the card chose.
    pub key_version: u8,
    /// Secure Channel Protocol identifier (`02` or `03`).
    pub scp: u8,
    /// SCP03 "i" parameter; `None` for SCP02 (it does not send it).
    pub i: Option<u8>,
    /// SCP02: always the 2-byte counter. SCP03: the 3-byte counter when present.
    pub sequence_counter: Option<Vec<u8>>,
    /// Card challenge: 6 bytes (SCP02), 8 or 16 bytes (SCP03 S8/S16).
    pub card_challenge: Vec<u8>,
    /// Card cryptogram: 8 bytes, or 16 in SCP03 S16 mode.
    pub card_cryptogram: Vec<u8>,
}

impl InitUpdateResponse {
    /// Reads the response data field (without the status word). Never panics; the error says
    /// which length or byte is wrong.
    pub fn parse(data: &[u8]) -> Result<Self, Error> {
        const W: &str = "INITIALIZE UPDATE response";
        if data.len() < 12 {
            return Err(malformed(
                W,
                format!("{} bytes, at least 12 needed", data.len()),
            ));
        }
        let mut kdd = [0u8; 10];
        kdd.copy_from_slice(&data[..10]);
        let key_version = data[10];
        let scp = data[11];
        match scp {
            0x02 => {
                if data.len() != 28 {
                    return Err(malformed(
                        W,
                        format!("SCP02 response is 28 bytes, got {}", data.len()),
                    ));
                }
                Ok(Self {
                    kdd,
                    key_version,
                    scp,
                    i: None,
                    sequence_counter: Some(data[12..14].to_vec()),
                    card_challenge: data[14..20].to_vec(),
                    card_cryptogram: data[20..28].to_vec(),
                })
            }
            0x03 => {
                let rest = &data[12..];
                let Some((&i, rest)) = rest.split_first() else {
                    return Err(malformed(W, "SCP03 response lacks the i parameter"));
                };
                let (n, seq) = match rest.len() {
                    16 => (8, false),
                    19 => (8, true),
                    32 => (16, false),
                    35 => (16, true),
                    len => {
                        return Err(malformed(
                            W,
                            format!("SCP03 response is 29, 32, 45 or 48 bytes, got {}", len + 13),
                        ))
                    }
                };
                Ok(Self {
                    kdd,
                    key_version,
                    scp,
                    i: Some(i),
                    card_challenge: rest[..n].to_vec(),
                    card_cryptogram: rest[n..2 * n].to_vec(),
                    sequence_counter: seq.then(|| rest[2 * n..].to_vec()),
                })
            }
            0x01 => Err(Error::Unsupported(
                "SCP01 (card answered INITIALIZE UPDATE with SCP 01)".into(),
            )),
            other => Err(malformed(W, format!("unknown SCP identifier {other:02X}"))),
        }
    }

    /// Encodes the response data field (the inverse of [`InitUpdateResponse::parse`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48);
        v.extend_from_slice(&self.kdd);
        v.push(self.key_version);
        v.push(self.scp);
        if self.scp == 0x02 {
            v.extend_from_slice(self.sequence_counter.as_deref().unwrap_or(&[0, 0]));
            v.extend_from_slice(&self.card_challenge);
            v.extend_from_slice(&self.card_cryptogram);
        } else {
            if let Some(i) = self.i {
                v.push(i);
            }
            v.extend_from_slice(&self.card_challenge);
            v.extend_from_slice(&self.card_cryptogram);
            if let Some(s) = &self.sequence_counter {
                v.extend_from_slice(s);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::parse_hex as h;

    #[test]
    fn command_bytes() {
        let c = initialize_update(0x20, &h("40A62C37FA6304F8").unwrap());
        assert_eq!(
            c.to_bytes().unwrap(),
            h("805020000840A62C37FA6304F800").unwrap()
        );
    }

    #[test]
    fn scp02_split() {
        let r = InitUpdateResponse::parse(
            &h("000074746E6E6E626262FF0200003D029C31C789BD81D9379C00D28F").unwrap(),
        )
        .unwrap();
        assert_eq!(r.key_version, 0xFF);
        assert_eq!(r.sequence_counter, Some(vec![0, 0]));
        assert_eq!(r.card_challenge, h("3D029C31C789").unwrap());
        assert_eq!(r.card_cryptogram, h("BD81D9379C00D28F").unwrap());
    }

    #[test]
    fn scp03_split() {
        let b = h("00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA000015").unwrap();
        let r = InitUpdateResponse::parse(&b).unwrap();
        assert_eq!((r.key_version, r.scp, r.i), (0x30, 3, Some(0x70)));
        assert_eq!(r.card_challenge, h("C40932A6FEFEAEB2").unwrap());
        assert_eq!(r.card_cryptogram, h("E127185170F45FCA").unwrap());
        assert_eq!(r.sequence_counter, Some(h("000015").unwrap()));
        assert_eq!(r.to_bytes(), b);
        assert!(InitUpdateResponse::parse(&b[..30]).is_err());
        assert!(InitUpdateResponse::parse(&b[..11]).is_err());
    }
}
