//! The subset of BER-TLV that PIV uses (ISO/IEC 7816-4 §5.2, SP 800-73-4 Part 2 §2).
//!
//! Tags are one to three bytes (`5C`, `7F49`, `5FC105`); lengths use the short
//! form or the long forms `81`, `82`, `83`. Parsing never panics and rejects
//! values that run past the end of the input.

use thiserror::Error;

/// Why bytes could not be read as BER-TLV.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TlvError {
    /// The input ended inside a tag, a length or a value.
    #[error("TLV truncated at offset {offset}: {needed} more byte(s) needed")]
    Truncated {
        /// Offset in the input where more bytes were expected.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A tag longer than the three bytes PIV allows.
    #[error("TLV tag at offset {0} is longer than 3 bytes")]
    TagTooLong(usize),
    /// A length byte that is not a definite short or `81`/`82`/`83` form.
    #[error("TLV length byte {byte:#04x} at offset {offset} is not supported")]
    BadLength {
        /// Offset of the length byte.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
}

/// One data object: its tag (big-endian, up to three bytes) and a view of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag, e.g. `0x7C`, `0x7F49` or `0x5FC105`.
    pub tag: u32,
    /// The value bytes.
    pub value: &'a [u8],
}

/// Reads one TLV from the start of `input`; returns it and the bytes after it.
pub fn parse_one(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    parse_at(input, 0)
}

fn parse_at(input: &[u8], base: usize) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    let truncated = |offset: usize, needed: usize| TlvError::Truncated {
        offset: base + offset,
        needed,
    };
    let first = *input.first().ok_or(truncated(0, 1))?;
    let mut tag = u32::from(first);
    let mut pos = 1;
    // ISO/IEC 7816-4 §5.2.2.1: low five bits all set means subsequent tag bytes follow,
    // each with b8 set except the last.
    if first & 0x1F == 0x1F {
        loop {
            let b = *input.get(pos).ok_or(truncated(pos, 1))?;
            tag = (tag << 8) | u32::from(b);
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
            if pos >= 3 {
                return Err(TlvError::TagTooLong(base));
            }
        }
    }
    let len_byte = *input.get(pos).ok_or(truncated(pos, 1))?;
    pos += 1;
    // ISO/IEC 7816-4 §5.2.2.2: definite lengths only.
    let len = match len_byte {
        0x00..=0x7F => usize::from(len_byte),
        0x81..=0x83 => {
            let n = usize::from(len_byte & 0x7F);
            let bytes = input.get(pos..pos + n).ok_or(truncated(
                pos,
                n.saturating_sub(input.len().saturating_sub(pos)),
            ))?;
            pos += n;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        }
        byte => {
            return Err(TlvError::BadLength {
                offset: base + pos - 1,
                byte,
            })
        }
    };
    let available = input.len() - pos;
    if len > available {
        return Err(truncated(input.len(), len - available));
    }
    let value = &input[pos..pos + len];
    Ok((Tlv { tag, value }, &input[pos + len..]))
}

/// Reads a sequence of TLVs that must fill `input` exactly.
pub fn parse_all(input: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let base = input.len() - rest.len();
        let (tlv, next) = parse_at(rest, base)?;
        out.push(tlv);
        rest = next;
    }
    Ok(out)
}

/// Appends a BER-TLV length (short form below 128, else `81`, `82`, `83`).
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xFFFF => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
}

/// Appends a tag in its minimal big-endian form.
pub fn push_tag(out: &mut Vec<u8>, tag: u32) {
    if tag > 0xFFFF {
        out.push((tag >> 16) as u8);
    }
    if tag > 0xFF {
        out.push((tag >> 8) as u8);
    }
    out.push(tag as u8);
}

/// Encodes one TLV.
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    push_tag(&mut out, tag);
    push_len(&mut out, value.len());
    out.extend_from_slice(value);
    out
}

/// Finds the first TLV with `tag` in a list.
pub fn find<'a>(tlvs: &[Tlv<'a>], tag: u32) -> Option<&'a [u8]> {
    tlvs.iter().find(|t| t.tag == tag).map(|t| t.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_piv_shapes() {
        let (t, rest) = parse_one(&[0x5C, 0x03, 0x5F, 0xC1, 0x05, 0xAA]).unwrap();
        assert_eq!(
            (t.tag, t.value, rest),
            (0x5C, &[0x5F, 0xC1, 0x05][..], &[0xAA][..])
        );
        let (t, _) = parse_one(&[0x7F, 0x49, 0x81, 0x01, 0x00]).unwrap();
        assert_eq!((t.tag, t.value.len()), (0x7F49, 1));
        let (t, _) = parse_one(&[0x5F, 0xC1, 0x05, 0x00]).unwrap();
        assert_eq!(t.tag, 0x5FC105);
        assert_eq!(encode(0x5FC105, &[]), vec![0x5F, 0xC1, 0x05, 0x00]);
        assert_eq!(encode(0x53, &[0; 300])[..4], [0x53, 0x82, 0x01, 0x2C]);
        assert_eq!(encode(0x53, &[0; 200])[..3], [0x53, 0x81, 0xC8]);
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(parse_one(&[]), Err(TlvError::Truncated { .. })));
        assert!(matches!(
            parse_one(&[0x53]),
            Err(TlvError::Truncated { .. })
        ));
        assert!(matches!(
            parse_one(&[0x53, 0x02, 0x00]),
            Err(TlvError::Truncated { .. })
        ));
        assert!(matches!(
            parse_one(&[0x53, 0x80]),
            Err(TlvError::BadLength { .. })
        ));
        assert!(matches!(
            parse_one(&[0x53, 0x84, 0, 0, 0, 0]),
            Err(TlvError::BadLength { .. })
        ));
        assert!(matches!(
            parse_one(&[0x53, 0x82, 0x01]),
            Err(TlvError::Truncated { .. })
        ));
        assert!(matches!(
            parse_one(&[0x5F, 0xC1, 0x85, 0x01]),
            Err(TlvError::TagTooLong(0))
        ));
        assert!(parse_all(&[0x80, 0x00, 0x81]).is_err());
    }
}
