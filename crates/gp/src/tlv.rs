//! A small private BER-TLV reader and writer (ISO/IEC 7816-4 §5.2, ISO/IEC 8825-1).
//!
//! Used until `apdu::tlv` is available. Tags are up to 3 bytes and held as the
//! big-endian integer of their encoding (`9F70` is `0x9F70`); lengths are definite,
//! up to 4 length bytes.

use crate::{Error, Result};

/// One decoded data object, borrowing its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub tag: u32,
    pub value: &'a [u8],
    /// Offset of the tag's first byte in the buffer given to the reader.
    pub offset: usize,
    /// Offset of the value's first byte.
    pub value_offset: usize,
}

/// Reads consecutive data objects from a buffer.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], context: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            context,
        }
    }

    fn err(&self, offset: usize, reason: &'static str) -> Error {
        Error::Tlv {
            context: self.context,
            offset,
            reason,
        }
    }

    /// The next object, or `None` at the end of the buffer.
    pub(crate) fn next_tlv(&mut self) -> Result<Option<Tlv<'a>>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let b = &self.buf[start..];
        // Tag (ISO/IEC 7816-4 §5.2.2.1): low 5 bits all set means more tag bytes follow,
        // each with bit 8 set while yet more follow.
        let mut tag = u32::from(b[0]);
        let mut i = 1;
        if b[0] & 0x1F == 0x1F {
            loop {
                let Some(&t) = b.get(i) else {
                    return Err(self.err(start + i, "tag truncated"));
                };
                if i >= 3 {
                    return Err(self.err(start, "tag longer than 3 bytes"));
                }
                tag = (tag << 8) | u32::from(t);
                i += 1;
                if t & 0x80 == 0 {
                    break;
                }
            }
        }
        // Length (§5.2.2.2): short form, or 81..84 followed by 1..4 length bytes.
        let Some(&l0) = b.get(i) else {
            return Err(self.err(start + i, "length missing"));
        };
        i += 1;
        let len = if l0 < 0x80 {
            usize::from(l0)
        } else if l0 == 0x80 {
            return Err(self.err(start + i - 1, "indefinite length is not allowed"));
        } else if l0 > 0x84 {
            return Err(self.err(start + i - 1, "length of length above 4"));
        } else {
            let n = usize::from(l0 & 0x7F);
            let Some(lb) = b.get(i..i + n) else {
                return Err(self.err(start + i, "length truncated"));
            };
            i += n;
            lb.iter()
                .fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
        };
        let Some(value) = b.get(i..).and_then(|rest| rest.get(..len)) else {
            return Err(self.err(start, "value runs past the end of the data"));
        };
        self.pos = start + i + len;
        Ok(Some(Tlv {
            tag,
            value,
            offset: start,
            value_offset: start + i,
        }))
    }

    /// All remaining objects.
    pub(crate) fn all(mut self) -> Result<Vec<Tlv<'a>>> {
        let mut v = Vec::new();
        while let Some(t) = self.next_tlv()? {
            v.push(t);
        }
        Ok(v)
    }
}

/// Decodes all objects at this level of `buf`.
pub(crate) fn parse_all<'a>(buf: &'a [u8], context: &'static str) -> Result<Vec<Tlv<'a>>> {
    Reader::new(buf, context).all()
}

/// Decodes exactly one object filling all of `buf` with the given tag.
pub(crate) fn parse_single<'a>(buf: &'a [u8], tag: u32, context: &'static str) -> Result<Tlv<'a>> {
    let mut r = Reader::new(buf, context);
    let Some(t) = r.next_tlv()? else {
        return Err(Error::MissingTag { context, tag });
    };
    if t.tag != tag {
        return Err(Error::UnexpectedTag {
            context,
            expected: tag,
            found: t.tag,
            offset: t.offset,
        });
    }
    if r.pos != buf.len() {
        return Err(Error::TrailingBytes {
            context,
            offset: r.pos,
            count: buf.len() - r.pos,
        });
    }
    Ok(t)
}

/// Appends a BER length (minimal encoding).
pub(crate) fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else if len <= 0xFFFF {
        out.push(0x82);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else if len <= 0xFF_FFFF {
        out.push(0x83);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    } else {
        out.push(0x84);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Appends a tag in its minimal big-endian form.
pub(crate) fn push_tag(out: &mut Vec<u8>, tag: u32) {
    let bytes = tag.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends a complete data object.
pub(crate) fn push(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    push_tag(out, tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// Encodes one data object.
pub(crate) fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(value.len() + 6);
    push(&mut v, tag, value);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_byte_tags_and_long_lengths() {
        let data = apdu::parse_hex("9F7001 07 C5 03 9EFE80 C4 81 02 AABB").unwrap();
        let v = parse_all(&data, "t").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!((v[0].tag, v[0].value), (0x9F70, &[0x07][..]));
        assert_eq!(v[1].tag, 0xC5);
        assert_eq!(
            (v[2].tag, v[2].value, v[2].value_offset),
            (0xC4, &[0xAA, 0xBB][..], 12)
        );
    }

    #[test]
    fn rejects_truncation_with_offsets() {
        for (hex, off) in [
            ("9F", 1),
            ("4F", 1),
            ("4F05AA", 0),
            ("4F80", 1),
            ("4F85", 1),
            ("4F8201", 2),
        ] {
            match parse_all(&apdu::parse_hex(hex).unwrap(), "t") {
                Err(Error::Tlv { offset, .. }) => assert_eq!(offset, off, "{hex}"),
                other => panic!("{hex}: {other:?}"),
            }
        }
    }

    #[test]
    fn writer_uses_minimal_forms() {
        assert_eq!(encode(0x9F70, &[1]), vec![0x9F, 0x70, 1, 1]);
        let mut v = Vec::new();
        push_len(&mut v, 0x80);
        push_len(&mut v, 0x1234);
        push_len(&mut v, 0x12345);
        assert_eq!(
            v,
            vec![0x81, 0x80, 0x82, 0x12, 0x34, 0x83, 0x01, 0x23, 0x45]
        );
        assert_eq!(encode(0, &[]), vec![0, 0]);
    }
}
