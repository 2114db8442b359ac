//! Readers of card and host bytes whose failures name the structure, the field and the
//! offset: a bounds-checked byte cursor for fixed-layout structures, and BER-TLV through
//! `apdu::tlv` (the one codec) with its errors given the structure's name.

use apdu::tlv::{self, Tag, TlvRef};

use crate::{Error, Result};

/// `apdu::tlv`'s error for bytes read as part of `context`.
pub(crate) fn tlv_error(context: &'static str) -> impl Fn(apdu::Error) -> Error {
    move |e| match e {
        apdu::Error::MalformedTlv { offset, kind } => Error::Tlv {
            context,
            offset,
            kind,
        },
        other => Error::InvalidValue {
            context,
            field: "BER-TLV",
            reason: other.to_string(),
        },
    }
}

/// The data objects of `data`, which must be exactly a sequence of them.
pub(crate) fn tlv_all<'a>(data: &'a [u8], context: &'static str) -> Result<Vec<TlvRef<'a>>> {
    tlv::parse_all_ref(data).map_err(tlv_error(context))
}

/// The data objects inside `object` (offsets count from the outermost buffer).
pub(crate) fn tlv_children<'a>(
    object: &TlvRef<'a>,
    context: &'static str,
) -> Result<Vec<TlvRef<'a>>> {
    object
        .children()
        .and_then(|c| c.collect())
        .map_err(tlv_error(context))
}

/// Exactly one data object with tag `tag` filling all of `data`.
pub(crate) fn tlv_single<'a>(
    data: &'a [u8],
    tag: Tag,
    context: &'static str,
) -> Result<TlvRef<'a>> {
    let (t, rest) = match TlvRef::parse_one(data) {
        Ok(v) => v,
        Err(_) if data.is_empty() => {
            return Err(Error::MissingTag {
                context,
                tag: tag.value(),
            })
        }
        Err(e) => return Err(tlv_error(context)(e)),
    };
    if t.tag() != tag {
        return Err(Error::UnexpectedTag {
            context,
            expected: tag.value(),
            found: t.tag().value(),
            offset: 0,
        });
    }
    if !rest.is_empty() {
        return Err(Error::TrailingBytes {
            context,
            offset: data.len() - rest.len(),
            count: rest.len(),
        });
    }
    Ok(t)
}

#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], context: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            context,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Error::Truncated {
                context: self.context,
                field,
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.bytes(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        let b = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A one-byte length followed by that many bytes.
    pub(crate) fn lv(&mut self, field: &'static str) -> Result<&'a [u8]> {
        let n = self.u8(field)?;
        self.bytes(usize::from(n), field)
    }

    /// A BER-coded length (`00`-`7F`, `81 xx`, `82 xx xx`) followed by that many bytes.
    pub(crate) fn ber_lv(&mut self, field: &'static str) -> Result<&'a [u8]> {
        let (n, used) =
            apdu::tlv::read_length(&self.buf[self.pos..]).map_err(|_| Error::InvalidValue {
                context: self.context,
                field,
                reason: format!("bad BER length at offset {}", self.pos),
            })?;
        self.pos += used;
        self.bytes(n, field)
    }

    /// Fails if bytes are left.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                context: self.context,
                offset: self.pos,
                count: self.remaining(),
            })
        }
    }
}
