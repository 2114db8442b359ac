//! A minimal BER-TLV reader and writer (ISO/IEC 7816-4 §5.2 / ISO/IEC 8825-1).
//!
//! TODO(apdu): move — replace with `apdu::tlv` once it lands; this private copy only
//! covers what the card manager needs: tags of one to three bytes and definite lengths
//! of up to three length bytes (`82 xx xx`).

use core::fmt;

/// Why bytes are not well-formed BER-TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlvError {
    /// Offset of the offending byte.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed BER-TLV at offset {}: {}",
            self.offset, self.reason
        )
    }
}

/// One data object: its tag (the tag bytes read big-endian) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub tag: u32,
    pub value: &'a [u8],
}

/// Reads a tag at `pos`; returns the tag and the offset after it.
fn read_tag(data: &[u8], pos: usize) -> Result<(u32, usize), TlvError> {
    let err = |offset, reason| TlvError { offset, reason };
    let first = *data.get(pos).ok_or(err(pos, "tag expected"))?;
    let mut tag = first as u32;
    let mut p = pos + 1;
    if first & 0x1F == 0x1F {
        // Subsequent tag bytes while b8 = 1 (ISO/IEC 8825-1 §8.1.2.4).
        loop {
            let b = *data.get(p).ok_or(err(p, "tag truncated"))?;
            tag = (tag << 8) | b as u32;
            p += 1;
            if b & 0x80 == 0 {
                break;
            }
            if p - pos >= 3 {
                return Err(err(pos, "tag longer than 3 bytes"));
            }
        }
    }
    Ok((tag, p))
}

/// Reads a definite length at `pos`; returns it and the offset after it.
fn read_len(data: &[u8], pos: usize) -> Result<(usize, usize), TlvError> {
    let err = |offset, reason| TlvError { offset, reason };
    let first = *data.get(pos).ok_or(err(pos, "length expected"))?;
    match first {
        0..=0x7F => Ok((first as usize, pos + 1)),
        0x81..=0x83 => {
            let n = (first & 0x7F) as usize;
            let bytes = data
                .get(pos + 1..pos + 1 + n)
                .ok_or(err(pos, "length truncated"))?;
            let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            Ok((len, pos + 1 + n))
        }
        0x80 => Err(err(pos, "indefinite length not allowed")),
        _ => Err(err(pos, "length field longer than 3 bytes")),
    }
}

/// Reads one data object at `pos`; returns it and the offset after it.
pub(crate) fn read_one(data: &[u8], pos: usize) -> Result<(Tlv<'_>, usize), TlvError> {
    let (tag, p) = read_tag(data, pos)?;
    let (len, p) = read_len(data, p)?;
    let end = p.checked_add(len).ok_or(TlvError {
        offset: p,
        reason: "length overflow",
    })?;
    let value = data.get(p..end).ok_or(TlvError {
        offset: p,
        reason: "value truncated",
    })?;
    Ok((Tlv { tag, value }, end))
}

/// Reads a sequence of data objects that must fill `data` exactly.
pub(crate) fn parse_all(data: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (t, next) = read_one(data, pos)?;
        out.push(t);
        pos = next;
    }
    Ok(out)
}

/// Finds the first object with this tag in a flat sequence.
pub(crate) fn find<'a>(objs: &[Tlv<'a>], tag: u32) -> Option<&'a [u8]> {
    objs.iter().find(|t| t.tag == tag).map(|t| t.value)
}

/// Encodes the tag bytes (1 to 3 bytes, leading zero bytes dropped).
pub(crate) fn tag_bytes(tag: u32) -> Vec<u8> {
    let b = tag.to_be_bytes();
    let skip = b.iter().take(3).take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

/// Encodes a definite length in the shortest form.
pub(crate) fn len_bytes(len: usize) -> Vec<u8> {
    match len {
        0..=0x7F => vec![len as u8],
        0x80..=0xFF => vec![0x81, len as u8],
        0x100..=0xFFFF => vec![0x82, (len >> 8) as u8, len as u8],
        _ => vec![0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8],
    }
}

/// Encodes one data object.
pub(crate) fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut v = tag_bytes(tag);
    v.extend(len_bytes(value.len()));
    v.extend_from_slice(value);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::parse_hex as h;
    use proptest::prelude::*;

    #[test]
    fn reads_multibyte_tags_and_lengths() {
        let d = h("9F7001 07 4F00 C4820001AA 5F2003414243").unwrap();
        let objs = parse_all(&d).unwrap();
        assert_eq!(
            objs[0],
            Tlv {
                tag: 0x9F70,
                value: &[0x07]
            }
        );
        assert_eq!(
            objs[1],
            Tlv {
                tag: 0x4F,
                value: &[]
            }
        );
        assert_eq!(
            objs[2],
            Tlv {
                tag: 0xC4,
                value: &[0xAA]
            }
        );
        assert_eq!(objs[3].tag, 0x5F20);
        assert!(parse_all(&h("4F05AA").unwrap()).is_err());
        assert!(parse_all(&h("4F80").unwrap()).is_err());
        assert!(parse_all(&h("9F").unwrap()).is_err());
        assert!(parse_all(&h("9FFFFFFF0100").unwrap()).is_err());
    }

    #[test]
    fn encodes() {
        assert_eq!(encode(0x9F70, &[1]), h("9F700101").unwrap());
        assert_eq!(encode(0xC4, &[0; 200])[..3], h("C481C8").unwrap()[..]);
        assert_eq!(encode(0xC4, &[0; 300])[..4], h("C482012C").unwrap()[..]);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_all(&data);
        }

        #[test]
        fn round_trip(tag in prop_oneof![0x40u32..0x5F, 0x9F00u32..0x9F7F, 0xC0u32..0xDE],
                      value in proptest::collection::vec(any::<u8>(), 0..400)) {
            let enc = encode(tag, &value);
            let objs = parse_all(&enc).unwrap();
            prop_assert_eq!(objs.len(), 1);
            prop_assert_eq!(objs[0].tag, tag);
            prop_assert_eq!(objs[0].value, &value[..]);
        }
    }
}
