//! BER-TLV data objects (ISO/IEC 7816-4 §5.2, a subset of the basic encoding rules of
//! ISO/IEC 8825-1).
//!
//! A data object is a tag field, a length field and a value field:
//!
//! * **Tag** ([`Tag`]): one to three bytes (§5.2.2.1). Bits b8-b7 of the first byte give
//!   the class, b6 says whether the value is itself a sequence of data objects
//!   (*constructed*) or opaque bytes (*primitive*), and b5-b1 = `11111` announces further
//!   tag bytes, each with b8 = 1 if yet another follows. `00` is never a tag (it is
//!   padding). §5.2.2.1 also reserves a first byte `FF`, but GlobalPlatform and ETSI
//!   use private constructed tags such as `FF21` (ETSI TS 102 226 extended card
//!   resources) and `FF40`, so `FF` is read as the first byte of a multi-byte tag, except
//!   when the caller asks for padding to be skipped ([`ParseOptions::skip_padding`]),
//!   where it is padding. §5.2.2.1 also calls second bytes `00`-`1E` invalid (tag
//!   numbers below 31 have a one-byte form), but EMV uses such tags everywhere
//!   (`9F02`, `9F1A`, `BF0C` in every payment FCI), so they are accepted; only `80`
//!   (a leading zero group, ISO/IEC 8825-1 §8.1.2.4.2 c) is rejected.
//! * **Length** ([`read_length`], [`encode_length`]): definite form only (§5.2.2.2):
//!   `00`-`7F` in one byte, otherwise `81`, `82`, `83` or `84` followed by one to four
//!   big-endian bytes. The indefinite form `80` is rejected. Non-minimal lengths such as
//!   `81 05` are accepted when parsing (BER allows them, cards send them); encoding is
//!   always minimal.
//!
//! Two views of a data object are offered:
//!
//! * [`TlvRef`] borrows from the input and never copies: [`iter`] walks a buffer,
//!   [`TlvRef::children`] walks a constructed value, [`find_in`] follows a tag path.
//! * [`Tlv`] owns its value: build one with [`Tlv::new`] / [`Tlv::constructed`], encode
//!   it with [`Tlv::encode`], read with [`Tlv::parse_one`] or [`parse_all`].
//!
//! Parsers never panic on any input and report the offset of the first bad byte.
//! Padding bytes (`00`/`FF`) between objects are an error unless the caller asks for
//! them to be skipped with [`ParseOptions::skip_padding`].
//!
//! ```
//! use apdu::tlv::{self, Tag, Tlv};
//! // GET STATUS search criteria: 4F (AID, empty) and 5C (tag list).
//! let tlvs = tlv::parse_all(&apdu::parse_hex("4F00 5C03 4F9F70").unwrap()).unwrap();
//! assert_eq!(tlvs[1].tag, Tag::new(0x5C));
//! let card_data = Tlv::constructed(Tag::new(0x66), &[Tlv::new(Tag::new(0x73), vec![])]);
//! assert_eq!(card_data.encode(), vec![0x66, 0x02, 0x73, 0x00]);
//! ```

use crate::error::TlvErrorKind;
use crate::Error;
use core::fmt;

/// The class of a tag: bits b8-b7 of its first byte (ISO/IEC 8825-1 §8.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `00`: universal (ASN.1 types).
    Universal,
    /// `01`: application (ISO/IEC 7816 interindustry data objects such as `4F`, `5F2D`).
    Application,
    /// `10`: context-specific (`80`-`BF`).
    ContextSpecific,
    /// `11`: private (`C0`-`FF`).
    Private,
}

/// A BER-TLV tag of one to three bytes, kept as its encoding read big-endian:
/// `Tag::new(0x4F)`, `Tag::new(0x9F70)`, `Tag::new(0xBF3E)`, `Tag::new(0xDF8101)`.
///
/// Every `Tag` value is a valid encoding (see [`Tag::try_new`]), so encoding one
/// cannot fail.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(u32);

impl Tag {
    /// The tag whose encoding, read big-endian, is `value`.
    ///
    /// # Panics
    /// If `value` is not a valid tag encoding (see [`Tag::try_new`]). Meant for
    /// constants; in a `const` item the check happens at compile time. Use
    /// [`Tag::try_new`] for values that come from elsewhere.
    pub const fn new(value: u32) -> Self {
        match check_tag(value) {
            None => Self(value),
            Some(_) => panic!("invalid BER-TLV tag value"),
        }
    }

    /// The tag whose encoding, read big-endian, is `value`, if that is a valid
    /// encoding of one to three bytes (ISO/IEC 7816-4 §5.2.2.1):
    /// first byte not `00`; a one-byte tag does not end in `11111` (so not `FF`); a
    /// multi-byte tag (`FF21` included, see the module documentation) has a first byte
    /// that does, its second byte is not `80`, and only its last byte has b8 = 0. A
    /// multi-byte
    /// tag's first byte does, its second byte is not `80`, and only its last byte has
    /// b8 = 0. Second bytes `00`-`1E`, which §5.2.2.1 disallows but EMV uses (`9F02`,
    /// `BF0C`), are accepted.
    pub const fn try_new(value: u32) -> Result<Self, Error> {
        match check_tag(value) {
            None => Ok(Self(value)),
            Some(reason) => Err(Error::InvalidTag { value, reason }),
        }
    }

    /// The encoding read as a big-endian number, for example `0x9F70`.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The number of bytes of the encoding, 1 to 3.
    pub const fn encoded_len(self) -> usize {
        if self.0 > 0xFFFF {
            3
        } else if self.0 > 0xFF {
            2
        } else {
            1
        }
    }

    /// The first byte of the encoding (class, constructed bit, start of the number).
    pub const fn first_byte(self) -> u8 {
        (self.0 >> (8 * (self.encoded_len() - 1))) as u8
    }

    /// Whether the value of a data object with this tag is a sequence of data objects
    /// (bit b6 of the first byte).
    pub const fn is_constructed(self) -> bool {
        self.first_byte() & 0x20 != 0
    }

    /// The class (bits b8-b7 of the first byte).
    pub const fn class(self) -> Class {
        match self.first_byte() >> 6 {
            0 => Class::Universal,
            1 => Class::Application,
            2 => Class::ContextSpecific,
            _ => Class::Private,
        }
    }

    /// The tag number within its class (ISO/IEC 8825-1 §8.1.2): b5-b1 of a one-byte
    /// tag, otherwise the 7-bit groups of the following bytes.
    pub const fn number(self) -> u32 {
        match self.encoded_len() {
            1 => self.0 & 0x1F,
            2 => self.0 & 0x7F,
            _ => ((self.0 >> 8) & 0x7F) << 7 | (self.0 & 0x7F),
        }
    }

    /// The encoding: one to three bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(3);
        self.encode_into(&mut v);
        v
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(self, out: &mut Vec<u8>) {
        let bytes = self.0.to_be_bytes();
        out.extend_from_slice(&bytes[4 - self.encoded_len()..]);
    }

    /// Reads a tag at the start of `bytes`; returns it and the number of bytes used.
    pub fn parse(bytes: &[u8]) -> Result<(Self, usize), Error> {
        read_tag(bytes).map_err(|(offset, kind)| Error::MalformedTlv { offset, kind })
    }
}

/// Why `value` is not a valid tag, or `None` if it is.
const fn check_tag(value: u32) -> Option<&'static str> {
    let bytes = value.to_be_bytes();
    if value > 0xFF_FFFF {
        return Some("longer than three bytes");
    }
    let len = if value > 0xFFFF {
        3
    } else if value > 0xFF {
        2
    } else {
        1
    };
    let first = bytes[4 - len];
    if first == 0x00 {
        return Some("first byte 00 is padding");
    }
    let multi = first & 0x1F == 0x1F;
    if len == 1 {
        return if multi {
            Some("first byte announces more tag bytes")
        } else {
            None
        };
    }
    if !multi {
        return Some("first byte does not announce more tag bytes (b5-b1 != 11111)");
    }
    let second = bytes[5 - len];
    if second == 0x80 {
        return Some("second byte 80 is a leading zero group");
    }
    if len == 2 {
        return if second & 0x80 != 0 {
            Some("second byte announces a third")
        } else {
            None
        };
    }
    if second & 0x80 == 0 {
        return Some("second byte does not announce a third");
    }
    if bytes[3] & 0x80 != 0 {
        return Some("third byte announces a fourth");
    }
    None
}

/// Reads a tag; on failure the offset (within `bytes`) and the problem.
fn read_tag(bytes: &[u8]) -> Result<(Tag, usize), (usize, TlvErrorKind)> {
    let Some(&first) = bytes.first() else {
        return Err((0, TlvErrorKind::TruncatedTag));
    };
    if first == 0x00 {
        return Err((0, TlvErrorKind::PaddingAsTag(first)));
    }
    if first & 0x1F != 0x1F {
        return Ok((Tag(first as u32), 1));
    }
    let Some(&second) = bytes.get(1) else {
        return Err((1, TlvErrorKind::TruncatedTag));
    };
    if second == 0x80 {
        return Err((1, TlvErrorKind::InvalidTagByte(second)));
    }
    if second & 0x80 == 0 {
        return Ok((Tag(u32::from_be_bytes([0, 0, first, second])), 2));
    }
    let Some(&third) = bytes.get(2) else {
        return Err((2, TlvErrorKind::TruncatedTag));
    };
    if third & 0x80 != 0 {
        return Err((2, TlvErrorKind::TagTooLong));
    }
    Ok((Tag(u32::from_be_bytes([0, first, second, third])), 3))
}

impl TryFrom<u32> for Tag {
    type Error = Error;
    fn try_from(value: u32) -> Result<Self, Error> {
        Self::try_new(value)
    }
}

impl From<Tag> for u32 {
    fn from(tag: Tag) -> u32 {
        tag.0
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

/// The encoding in upper-case hex: `9F70`.
impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$X}", self.0, width = self.encoded_len() * 2)
    }
}

/// Encodes a length field in the shortest definite form (ISO/IEC 7816-4 §5.2.2.2):
/// `00`-`7F`, `81 xx`, `82 xxxx`, `83 xxxxxx` or `84 xxxxxxxx`.
///
/// # Panics
/// If `n` exceeds `u32::MAX`, which no BER-TLV length field of ISO/IEC 7816-4 can
/// express.
pub fn encode_length(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(5);
    encode_length_into(n, &mut v);
    v
}

fn encode_length_into(n: usize, out: &mut Vec<u8>) {
    let n = u32::try_from(n).expect("BER-TLV length above 4 GiB");
    let bytes = n.to_be_bytes();
    let significant = match n {
        0..=0x7F => {
            out.push(n as u8);
            return;
        }
        0x80..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFF_FFFF => 3,
        _ => 4,
    };
    out.push(0x80 | significant as u8);
    out.extend_from_slice(&bytes[4 - significant..]);
}

/// The size of the length field [`encode_length`] writes for `n`.
fn length_len(n: usize) -> usize {
    match n {
        0..=0x7F => 1,
        0x80..=0xFF => 2,
        0x100..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 5,
    }
}

/// Reads a definite length field at the start of `bytes`; returns the length and the
/// number of bytes the field used (1 to 5). Accepts non-minimal encodings.
pub fn read_length(bytes: &[u8]) -> Result<(usize, usize), Error> {
    read_length_at(bytes).map_err(|(offset, kind)| Error::MalformedTlv { offset, kind })
}

fn read_length_at(bytes: &[u8]) -> Result<(usize, usize), (usize, TlvErrorKind)> {
    let Some(&first) = bytes.first() else {
        return Err((0, TlvErrorKind::TruncatedLength));
    };
    match first {
        0x00..=0x7F => Ok((first as usize, 1)),
        0x80 => Err((0, TlvErrorKind::IndefiniteLength)),
        0x81..=0x84 => {
            let n = (first & 0x7F) as usize;
            let Some(field) = bytes.get(1..1 + n) else {
                return Err((bytes.len(), TlvErrorKind::TruncatedLength));
            };
            let value = field.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64);
            // 32 bits fit `usize` on every target this crate builds for (16-bit aside).
            let value =
                usize::try_from(value).map_err(|_| (0, TlvErrorKind::LengthTooLong(first)))?;
            Ok((value, 1 + n))
        }
        _ => Err((0, TlvErrorKind::LengthTooLong(first))),
    }
}

/// How lenient [`iter_with`] and [`parse_all_with`] are. The default is strict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseOptions {
    /// Skip `00` and `FF` bytes before, between and after data objects
    /// (ISO/IEC 7816-4 §5.2.2.1 allows them as padding, for example in records and
    /// in erased memory). Off by default: padding is reported as an error.
    pub skip_padding: bool,
}

impl ParseOptions {
    /// Strict parsing: no padding allowed.
    pub const STRICT: Self = Self {
        skip_padding: false,
    };
    /// Padding bytes `00`/`FF` between data objects are skipped.
    pub const SKIP_PADDING: Self = Self { skip_padding: true };
}

/// A data object borrowed from the buffer it was parsed from (zero-copy).
#[derive(Clone, Copy)]
pub struct TlvRef<'a> {
    tag: Tag,
    value: &'a [u8],
    raw: &'a [u8],
    /// Offset of `value` in the outermost buffer, for error reports on children.
    value_offset: usize,
}

impl<'a> TlvRef<'a> {
    /// Reads the first data object of `bytes`; returns it and the bytes after it.
    pub fn parse_one(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), Error> {
        parse_one_at(bytes, 0)
    }

    /// Reads exactly one data object: trailing bytes are an error
    /// ([`TlvErrorKind::TrailingBytes`]). The borrowed counterpart of [`Tlv::parse`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let (tlv, rest) = parse_one_at(bytes, 0)?;
        if !rest.is_empty() {
            return Err(Error::MalformedTlv {
                offset: bytes.len() - rest.len(),
                kind: TlvErrorKind::TrailingBytes(rest.len()),
            });
        }
        Ok(tlv)
    }

    /// The tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }
    /// Where the tag's first byte is, counted from the first byte given to the
    /// outermost parser (as in error offsets).
    pub fn offset(&self) -> usize {
        let header = self.raw.len().saturating_sub(self.value.len());
        self.value_offset.saturating_sub(header)
    }
    /// The value field.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }
    /// The whole encoding as received: tag, length (possibly non-minimal) and value.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// Whether the tag marks the value as a sequence of data objects.
    pub fn is_constructed(&self) -> bool {
        self.tag.is_constructed()
    }

    /// The data objects inside a constructed value, parsed lazily.
    /// Fails with [`TlvErrorKind::NotConstructed`] for a primitive tag; use
    /// [`iter`] on [`TlvRef::value`] to read a primitive value as TLV anyway.
    pub fn children(&self) -> Result<Iter<'a>, Error> {
        if !self.is_constructed() {
            return Err(Error::MalformedTlv {
                offset: self.value_offset,
                kind: TlvErrorKind::NotConstructed,
            });
        }
        Ok(Iter {
            rest: self.value,
            offset: self.value_offset,
            options: ParseOptions::STRICT,
            done: false,
        })
    }

    /// The first child with this tag.
    pub fn find(&self, tag: Tag) -> Result<Option<TlvRef<'a>>, Error> {
        first_with_tag(self.children()?, tag)
    }

    /// An owned copy.
    pub fn to_tlv(&self) -> Tlv {
        Tlv {
            tag: self.tag,
            value: self.value.to_vec(),
        }
    }
}

impl fmt::Debug for TlvRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlvRef({} {})", self.tag, crate::hex(self.value))
    }
}

fn parse_one_at(bytes: &[u8], base: usize) -> Result<(TlvRef<'_>, &[u8]), Error> {
    let err = |offset: usize, kind| Error::MalformedTlv {
        offset: base + offset,
        kind,
    };
    let (tag, tag_len) = read_tag(bytes).map_err(|(o, k)| err(o, k))?;
    let (len, len_len) = read_length_at(&bytes[tag_len..]).map_err(|(o, k)| err(tag_len + o, k))?;
    let start = tag_len + len_len;
    let available = bytes.len() - start;
    if len > available {
        return Err(err(
            start,
            TlvErrorKind::TruncatedValue {
                declared: len,
                available,
            },
        ));
    }
    let end = start + len;
    let tlv = TlvRef {
        tag,
        value: &bytes[start..end],
        raw: &bytes[..end],
        value_offset: base + start,
    };
    Ok((tlv, &bytes[end..]))
}

/// Walks the data objects of a buffer; see [`iter`]. Yields `Err` once and then stops
/// at the first malformed object.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
    offset: usize,
    options: ParseOptions,
    done: bool,
}

impl<'a> Iter<'a> {
    /// The bytes not yet read.
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<TlvRef<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.options.skip_padding {
            let pad = self
                .rest
                .iter()
                .take_while(|&&b| b == 0x00 || b == 0xFF)
                .count();
            self.rest = &self.rest[pad..];
            self.offset += pad;
        }
        if self.rest.is_empty() {
            self.done = true;
            return None;
        }
        match parse_one_at(self.rest, self.offset) {
            Ok((tlv, rest)) => {
                self.offset += self.rest.len() - rest.len();
                self.rest = rest;
                Some(Ok(tlv))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl core::iter::FusedIterator for Iter<'_> {}

/// Walks the data objects of `bytes` without copying (strict: no padding).
pub fn iter(bytes: &[u8]) -> Iter<'_> {
    iter_with(bytes, ParseOptions::STRICT)
}

/// Walks the data objects of `bytes` without copying, with the given options.
pub fn iter_with(bytes: &[u8], options: ParseOptions) -> Iter<'_> {
    Iter {
        rest: bytes,
        offset: 0,
        options,
        done: false,
    }
}

fn first_with_tag<'a>(iter: Iter<'a>, tag: Tag) -> Result<Option<TlvRef<'a>>, Error> {
    for item in iter {
        let tlv = item?;
        if tlv.tag == tag {
            return Ok(Some(tlv));
        }
    }
    Ok(None)
}

/// Follows a path of tags through nested data objects in `bytes` without copying:
/// `path[0]` among the top-level objects, `path[1]` among its children, and so on,
/// taking the first match at each level. `Ok(None)` if some tag is absent or the path
/// is empty. Errors if the bytes on the way are malformed or an object on the path
/// (other than the last) is primitive. Only the objects up to each match are parsed.
pub fn find_in<'a>(bytes: &'a [u8], path: &[Tag]) -> Result<Option<TlvRef<'a>>, Error> {
    let Some((&first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let Some(mut current) = first_with_tag(iter(bytes), first)? else {
        return Ok(None);
    };
    for &tag in rest {
        match current.find(tag)? {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// A data object that owns its value. For a constructed tag, `value` holds the
/// encoded children; read them with [`Tlv::children`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tlv {
    /// The tag.
    pub tag: Tag,
    /// The value field (for a constructed tag: the concatenated encodings of the children).
    pub value: Vec<u8>,
}

impl Tlv {
    /// A data object with this tag and value.
    pub fn new(tag: Tag, value: impl Into<Vec<u8>>) -> Self {
        Self {
            tag,
            value: value.into(),
        }
    }

    /// A data object whose value is the encoding of `children`, in order.
    /// The tag should be a constructed one; this is not enforced, because some
    /// proprietary formats nest data objects under primitive tags.
    pub fn constructed(tag: Tag, children: &[Tlv]) -> Self {
        Self {
            tag,
            value: encode_all(children),
        }
    }

    /// Whether the tag marks the value as a sequence of data objects.
    pub fn is_constructed(&self) -> bool {
        self.tag.is_constructed()
    }

    /// The size of [`Tlv::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.tag.encoded_len() + length_len(self.value.len()) + self.value.len()
    }

    /// Appends the encoding (tag, minimal length, value) to `out`.
    ///
    /// # Panics
    /// If the value exceeds `u32::MAX` bytes (see [`encode_length`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.tag.encode_into(out);
        encode_length_into(self.value.len(), out);
        out.extend_from_slice(&self.value);
    }

    /// The encoding: tag, minimal length, value.
    ///
    /// # Panics
    /// If the value exceeds `u32::MAX` bytes (see [`encode_length`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v);
        v
    }

    /// Same as [`Tlv::encode`].
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }

    /// Reads the first data object of `bytes`; returns it and the bytes after it.
    pub fn parse_one(bytes: &[u8]) -> Result<(Self, &[u8]), Error> {
        let (tlv, rest) = TlvRef::parse_one(bytes)?;
        Ok((tlv.to_tlv(), rest))
    }

    /// Reads exactly one data object: trailing bytes are an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (tlv, rest) = TlvRef::parse_one(bytes)?;
        if !rest.is_empty() {
            return Err(Error::MalformedTlv {
                offset: bytes.len() - rest.len(),
                kind: TlvErrorKind::TrailingBytes(rest.len()),
            });
        }
        Ok(tlv.to_tlv())
    }

    /// The data objects inside a constructed value. Fails for a primitive tag
    /// ([`TlvErrorKind::NotConstructed`]; use [`parse_all`] on `value` to force it) or
    /// a malformed value (offsets count from the start of `value`).
    pub fn children(&self) -> Result<Vec<Tlv>, Error> {
        if !self.is_constructed() {
            return Err(Error::MalformedTlv {
                offset: 0,
                kind: TlvErrorKind::NotConstructed,
            });
        }
        parse_all(&self.value)
    }

    /// The first child with this tag (see [`Tlv::children`] for errors).
    pub fn find(&self, tag: Tag) -> Result<Option<Tlv>, Error> {
        Ok(self.view().find(tag)?.map(|t| t.to_tlv()))
    }

    /// A borrowed view (with an empty `raw`), to walk the children without copying.
    fn view(&self) -> TlvRef<'_> {
        TlvRef {
            tag: self.tag,
            value: &self.value,
            raw: &[],
            value_offset: 0,
        }
    }
}

impl fmt::Debug for Tlv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tlv({} {})", self.tag, crate::hex(&self.value))
    }
}

impl<'a> From<TlvRef<'a>> for Tlv {
    fn from(t: TlvRef<'a>) -> Self {
        t.to_tlv()
    }
}

/// Reads every data object of `bytes` (strict): the buffer must be exactly a
/// sequence of complete data objects, so trailing garbage or padding is an error.
pub fn parse_all(bytes: &[u8]) -> Result<Vec<Tlv>, Error> {
    parse_all_with(bytes, ParseOptions::STRICT)
}

/// Reads every data object of `bytes` with the given options.
pub fn parse_all_with(bytes: &[u8], options: ParseOptions) -> Result<Vec<Tlv>, Error> {
    iter_with(bytes, options)
        .map(|r| r.map(Tlv::from))
        .collect()
}

/// Encodes one data object (tag, minimal length, `value`) without building a [`Tlv`].
///
/// # Panics
/// If `value` exceeds `u32::MAX` bytes (see [`encode_length`]).
pub fn encode(tag: Tag, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tag.encoded_len() + length_len(value.len()) + value.len());
    encode_into(&mut v, tag, value);
    v
}

/// Appends one data object (tag, minimal length, `value`) to `out`.
///
/// # Panics
/// If `value` exceeds `u32::MAX` bytes (see [`encode_length`]).
pub fn encode_into(out: &mut Vec<u8>, tag: Tag, value: &[u8]) {
    out.reserve(tag.encoded_len() + length_len(value.len()) + value.len());
    tag.encode_into(out);
    encode_length_into(value.len(), out);
    out.extend_from_slice(value);
}

/// Reads every data object of `bytes` (strict) without copying their values: the
/// borrowed counterpart of [`parse_all`], for values such as key components that
/// should not be copied.
pub fn parse_all_ref(bytes: &[u8]) -> Result<Vec<TlvRef<'_>>, Error> {
    iter(bytes).collect()
}

/// The value of the first data object with this tag in a list of borrowed objects
/// (not recursive).
pub fn find_value<'a>(tlvs: &[TlvRef<'a>], tag: Tag) -> Option<&'a [u8]> {
    tlvs.iter().find(|t| t.tag == tag).map(|t| t.value)
}

/// Encodes a sequence of data objects, concatenated.
pub fn encode_all(tlvs: &[Tlv]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tlvs.iter().map(Tlv::encoded_len).sum());
    for t in tlvs {
        t.encode_into(&mut v);
    }
    v
}

/// The first data object with this tag in a list (not recursive).
pub fn find(tlvs: &[Tlv], tag: Tag) -> Option<&Tlv> {
    tlvs.iter().find(|t| t.tag == tag)
}

/// Follows a path of tags through nested data objects: `path[0]` in `tlvs`,
/// `path[1]` among that object's children, and so on (first match at each level).
/// `Ok(None)` if some tag is absent or the path is empty; errors if a value on the
/// way is malformed or an object on the path (other than the last) is primitive.
pub fn find_path(tlvs: &[Tlv], path: &[Tag]) -> Result<Option<Tlv>, Error> {
    let Some((&first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let Some(top) = find(tlvs, first) else {
        return Ok(None);
    };
    let mut current = top.view();
    for &tag in rest {
        match current.find(tag)? {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    Ok(Some(current.to_tlv()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_hex;

    fn h(s: &str) -> Vec<u8> {
        parse_hex(s).unwrap()
    }

    fn kind(e: Error) -> (usize, TlvErrorKind) {
        match e {
            Error::MalformedTlv { offset, kind } => (offset, kind),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tag_validity_rules() {
        for ok in [
            0x01, 0x4F, 0x5C, 0x80, 0xC0, 0xFE, 0x5F2D, 0x9F70, 0xBF3E, 0x7F49, 0xDF1F, 0x9F7F,
            0xDF8101, 0x5FFF7F, 0xBF0C, 0x9F02, 0x9F1A, 0x9F00, 0xFF20, 0xFF21, 0xFF40, 0xFF8101,
        ] {
            assert!(Tag::try_new(ok).is_ok(), "{ok:X}");
        }
        for bad in [
            0x00,
            0xFF,
            0x1F,
            0x9F,
            0xBF,     // one byte announcing more, padding
            0x4F01,   // first byte does not announce more
            0x9F80,   // second byte 80
            0x9F81,   // second byte announces a third that is missing
            0x9F2001, // second byte does not announce a third
            0x9F8180, // third byte announces a fourth
            0xFF01FF, // FF21-style tag whose second byte does not announce a third
            0x1F_20_30_40,
        ] {
            assert!(Tag::try_new(bad).is_err(), "{bad:X}");
        }
    }

    #[test]
    fn tag_fields() {
        let t = Tag::new(0xBF3E);
        assert!(t.is_constructed());
        assert_eq!(
            (t.class(), t.number(), t.encoded_len()),
            (Class::ContextSpecific, 0x3E, 2)
        );
        assert_eq!(t.to_bytes(), vec![0xBF, 0x3E]);
        assert_eq!(t.to_string(), "BF3E");
        let t = Tag::new(0x4F);
        assert!(!t.is_constructed());
        assert_eq!((t.class(), t.number()), (Class::Application, 0x0F));
        let t = Tag::new(0xDF8101);
        assert_eq!(
            (t.class(), t.number(), t.encoded_len()),
            (Class::Private, 0x81, 3)
        );
        assert_eq!(t.to_bytes(), vec![0xDF, 0x81, 0x01]);
        assert_eq!(Tag::new(0x7F49).class(), Class::Application);
        assert_eq!(Tag::new(0x0A).class(), Class::Universal);
        assert_eq!(format!("{:?}", Tag::new(0x0A)), "Tag(0A)");
    }

    #[test]
    fn tag_parse_errors() {
        assert_eq!(
            kind(Tag::parse(&[]).unwrap_err()),
            (0, TlvErrorKind::TruncatedTag)
        );
        assert_eq!(
            kind(Tag::parse(&[0x00]).unwrap_err()),
            (0, TlvErrorKind::PaddingAsTag(0))
        );
        assert_eq!(
            kind(Tag::parse(&[0x9F]).unwrap_err()),
            (1, TlvErrorKind::TruncatedTag)
        );
        assert_eq!(
            kind(Tag::parse(&[0x9F, 0x80]).unwrap_err()),
            (1, TlvErrorKind::InvalidTagByte(0x80))
        );
        assert_eq!(
            kind(Tag::parse(&[0x9F, 0x81]).unwrap_err()),
            (2, TlvErrorKind::TruncatedTag)
        );
        assert_eq!(
            kind(Tag::parse(&[0x9F, 0x81, 0x81]).unwrap_err()),
            (2, TlvErrorKind::TagTooLong)
        );
        assert_eq!(
            Tag::parse(&[0x9F, 0x70, 0x01]).unwrap(),
            (Tag::new(0x9F70), 2)
        );
    }

    #[test]
    fn length_forms() {
        // ISO/IEC 7816-4 §5.2.2.2, table of length field encodings.
        let cases: &[(usize, &str)] = &[
            (0, "00"),
            (0x7F, "7F"),
            (0x80, "8180"),
            (0xFF, "81FF"),
            (0x100, "820100"),
            (0xFFFF, "82FFFF"),
            (0x1_0000, "83010000"),
            (0xFF_FFFF, "83FFFFFF"),
            (0x100_0000, "8401000000"),
            (0xFFFF_FFFF, "84FFFFFFFF"),
        ];
        for &(n, enc) in cases {
            assert_eq!(crate::hex(&encode_length(n)), enc);
            assert_eq!(read_length(&h(enc)).unwrap(), (n, enc.len() / 2));
            assert_eq!(length_len(n), enc.len() / 2);
        }
        // Non-minimal forms are read.
        assert_eq!(read_length(&h("8105")).unwrap(), (5, 2));
        assert_eq!(read_length(&h("8400000005")).unwrap(), (5, 5));
        assert_eq!(
            kind(read_length(&[]).unwrap_err()),
            (0, TlvErrorKind::TruncatedLength)
        );
        assert_eq!(
            kind(read_length(&h("80")).unwrap_err()),
            (0, TlvErrorKind::IndefiniteLength)
        );
        assert_eq!(
            kind(read_length(&h("85")).unwrap_err()),
            (0, TlvErrorKind::LengthTooLong(0x85))
        );
        assert_eq!(
            kind(read_length(&h("8201")).unwrap_err()),
            (2, TlvErrorKind::TruncatedLength)
        );
    }

    #[test]
    fn parse_and_encode() {
        let bytes = h("6F 0B 84 03 A00000 A5 04 9F6501FF");
        let (t, rest) = Tlv::parse_one(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(t.tag, Tag::new(0x6F));
        let kids = t.children().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0], Tlv::new(Tag::new(0x84), h("A00000")));
        assert_eq!(
            kids[1].children().unwrap(),
            vec![Tlv::new(Tag::new(0x9F65), vec![0xFF])]
        );
        assert_eq!(t.encode(), bytes);
        let rebuilt = Tlv::constructed(
            Tag::new(0x6F),
            &[
                kids[0].clone(),
                Tlv::constructed(Tag::new(0xA5), &[Tlv::new(Tag::new(0x9F65), vec![0xFF])]),
            ],
        );
        assert_eq!(rebuilt, t);
        assert_eq!(
            find_path(
                std::slice::from_ref(&t),
                &[Tag::new(0x6F), Tag::new(0xA5), Tag::new(0x9F65)]
            )
            .unwrap(),
            Some(Tlv::new(Tag::new(0x9F65), vec![0xFF]))
        );
        assert_eq!(
            find_path(std::slice::from_ref(&t), &[Tag::new(0x6F), Tag::new(0x88)]).unwrap(),
            None
        );
        assert_eq!(find_path(std::slice::from_ref(&t), &[]).unwrap(), None);
        let r = find_in(&bytes, &[Tag::new(0x6F), Tag::new(0x84)])
            .unwrap()
            .unwrap();
        assert_eq!(r.value(), &h("A00000")[..]);
        assert_eq!(r.raw(), &h("8403A00000")[..]);
        // A primitive object on the path.
        let e = find_in(&bytes, &[Tag::new(0x6F), Tag::new(0x84), Tag::new(0x01)]).unwrap_err();
        assert_eq!(kind(e), (4, TlvErrorKind::NotConstructed));
        assert_eq!(
            kind(kids[0].children().unwrap_err()).1,
            TlvErrorKind::NotConstructed
        );
    }

    #[test]
    fn errors_report_absolute_offsets() {
        // Child 9F65 (offset 9) declares 2 bytes, 1 present; its value starts at 12.
        let bytes = h("6F 0B 84 03 A00000 A5 04 9F6502FF");
        let (t, _) = TlvRef::parse_one(&bytes).unwrap();
        let a5 = t.find(Tag::new(0xA5)).unwrap().unwrap();
        let e = a5.children().unwrap().next().unwrap().unwrap_err();
        assert_eq!(
            kind(e),
            (
                12,
                TlvErrorKind::TruncatedValue {
                    declared: 2,
                    available: 1
                }
            )
        );
    }

    #[test]
    fn trailing_bytes_and_padding() {
        assert_eq!(
            kind(Tlv::parse(&h("4F0100 00")).unwrap_err()),
            (3, TlvErrorKind::TrailingBytes(1))
        );
        assert_eq!(
            kind(parse_all(&h("4F0100 00")).unwrap_err()),
            (3, TlvErrorKind::PaddingAsTag(0))
        );
        assert_eq!(
            kind(parse_all(&h("4F0100 9F")).unwrap_err()),
            (4, TlvErrorKind::TruncatedTag)
        );
        let padded = h("FF 00 4F0100 0000 5001AA FFFF");
        assert!(parse_all(&padded).is_err());
        let v = parse_all_with(&padded, ParseOptions::SKIP_PADDING).unwrap();
        assert_eq!(
            v,
            vec![
                Tlv::new(Tag::new(0x4F), vec![0]),
                Tlv::new(Tag::new(0x50), vec![0xAA])
            ]
        );
        assert_eq!(
            parse_all_with(&h("0000"), ParseOptions::SKIP_PADDING).unwrap(),
            vec![]
        );
        assert_eq!(parse_all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn borrowed_helpers() {
        let bytes = h("9F7001 07 4F00 C4820001AA");
        let items = parse_all_ref(&bytes).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(
            items.iter().map(TlvRef::offset).collect::<Vec<_>>(),
            vec![0, 4, 6]
        );
        assert_eq!(find_value(&items, Tag::new(0xC4)), Some(&[0xAA][..]));
        assert_eq!(find_value(&items, Tag::new(0x4F)), Some(&[][..]));
        assert_eq!(find_value(&items, Tag::new(0x50)), None);
        assert!(parse_all_ref(&h("4F05AA")).is_err());
        // Offsets of children count from the outermost buffer.
        let outer = h("6F 05 84 03 A00000");
        let (t, _) = TlvRef::parse_one(&outer).unwrap();
        assert_eq!(t.offset(), 0);
        assert_eq!(t.children().unwrap().next().unwrap().unwrap().offset(), 2);
        // parse: exactly one object.
        assert_eq!(TlvRef::parse(&outer).unwrap().tag(), Tag::new(0x6F));
        assert_eq!(
            kind(TlvRef::parse(&h("4F00 50")).unwrap_err()),
            (2, TlvErrorKind::TrailingBytes(1))
        );
    }

    #[test]
    fn encode_without_building_a_tlv() {
        assert_eq!(encode(Tag::new(0x9F70), &[1]), h("9F700101"));
        assert_eq!(encode(Tag::new(0xC4), &[0; 200])[..3], h("C481C8")[..]);
        assert_eq!(encode(Tag::new(0xC4), &[0; 300])[..4], h("C482012C")[..]);
        assert_eq!(encode(Tag::new(0x5FC105), &[]), h("5FC10500"));
        let mut out = vec![0xAA];
        encode_into(&mut out, Tag::new(0x53), &[1, 2]);
        assert_eq!(out, h("AA 53 02 0102"));
        let t = Tlv::new(Tag::new(0x7F49), vec![9; 130]);
        assert_eq!(encode(t.tag, &t.value), t.encode());
    }

    #[test]
    fn ff_tags_of_globalplatform_and_etsi() {
        // ETSI TS 102 226 §8.2.1.7.2 extended card resources: FF21 { 81, 82, 83 }.
        let bytes = h("FF21 09 8101 02 8202 0100 8300");
        let t = Tlv::parse(&bytes).unwrap();
        assert_eq!(t.tag, Tag::new(0xFF21));
        assert!(t.is_constructed());
        assert_eq!(t.tag.class(), Class::Private);
        assert_eq!(t.children().unwrap().len(), 3);
        assert_eq!(t.encode(), bytes);
        // With padding skipping on, FF is padding.
        assert_eq!(
            parse_all_with(&h("FF 4F00"), ParseOptions::SKIP_PADDING).unwrap(),
            vec![Tlv::new(Tag::new(0x4F), vec![])]
        );
        assert_eq!(
            kind(parse_all(&h("FF")).unwrap_err()),
            (1, TlvErrorKind::TruncatedTag)
        );
    }

    #[test]
    fn iter_stops_after_error() {
        let mut it = iter(&[0x4F, 0x00, 0x80]);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn debug_formats() {
        let t = Tlv::new(Tag::new(0x9F70), vec![0x07]);
        assert_eq!(format!("{t:?}"), "Tlv(9F70 07)");
        assert_eq!(format!("{:?}", t.view()), "TlvRef(9F70 07)");
    }
}
