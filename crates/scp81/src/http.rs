//! A small, strict HTTP/1.1 message codec shared by the server and the agent.
//!
//! Both sides need a codec that works on byte buffers (the agent has no socket), writes
//! the `X-Admin-*` header names exactly as Amendment B spells them, and frames bodies
//! with `Content-Length` or `Transfer-Encoding: chunked` only. Heads are parsed by
//! `httparse`; framing and chunked decoding are here.

use crate::error::HttpError;

/// Most headers accepted in one message.
const MAX_HEADERS: usize = 48;
/// Longest head (request or status line plus headers) accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 1024;

/// Headers in arrival order; names compared case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    /// The value of the only header named `name`; an error if it appears twice.
    pub(crate) fn get(&self, name: &str) -> Result<Option<&str>, HttpError> {
        let mut found = None;
        for (n, v) in &self.0 {
            if n.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Err(HttpError::DuplicateHeader(name.to_owned()));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    fn from_httparse(raw: &[httparse::Header<'_>]) -> Result<Self, HttpError> {
        let mut v = Vec::with_capacity(raw.len());
        for h in raw {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| HttpError::Malformed("header value is not UTF-8"))?;
            v.push((h.name.to_owned(), value.trim().to_owned()));
        }
        Ok(Self(v))
    }
}

/// A complete request.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Headers,
    pub(crate) body: Vec<u8>,
    pub(crate) chunked: bool,
}

/// A complete response.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Headers,
    pub(crate) body: Vec<u8>,
}

enum Framing {
    Length(usize),
    Chunked,
}

/// Accumulates bytes and yields complete messages, one at a time.
#[derive(Debug)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
    max_body: usize,
}

impl Decoder {
    pub(crate) fn new(max_body: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_body,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether no bytes of a next message have arrived.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next complete request, `None` if more bytes are needed.
    pub(crate) fn next_request(&mut self) -> Result<Option<Request>, HttpError> {
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut raw);
        let head_len = match req.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return self.partial_head(),
            Err(e) => return Err(HttpError::Parse(e)),
        };
        let method = req.method.unwrap_or_default().to_owned();
        let target = req.path.unwrap_or_default().to_owned();
        let version = req.version.unwrap_or(1);
        let headers = Headers::from_httparse(req.headers)?;
        if version == 1 && headers.get("Host")?.is_none() {
            return Err(HttpError::Malformed("HTTP/1.1 request without Host"));
        }
        // A request without framing headers has no body (RFC 9112 §6.3).
        let framing = framing(&headers)?.unwrap_or(Framing::Length(0));
        let chunked = matches!(framing, Framing::Chunked);
        let Some((body, used)) = self.body(head_len, framing)? else {
            return Ok(None);
        };
        self.buf.drain(..head_len + used);
        Ok(Some(Request {
            method,
            target,
            headers,
            body,
            chunked,
        }))
    }

    /// The next complete response, `None` if more bytes are needed.
    pub(crate) fn next_response(&mut self) -> Result<Option<Response>, HttpError> {
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut raw);
        let head_len = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return self.partial_head(),
            Err(e) => return Err(HttpError::Parse(e)),
        };
        let status = resp.code.unwrap_or_default();
        let headers = Headers::from_httparse(resp.headers)?;
        let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else {
            // This codec does not read bodies delimited by the connection's close.
            framing(&headers)?.ok_or(HttpError::Malformed("response body without framing"))?
        };
        let Some((body, used)) = self.body(head_len, framing)? else {
            return Ok(None);
        };
        self.buf.drain(..head_len + used);
        Ok(Some(Response {
            status,
            headers,
            body,
        }))
    }

    fn partial_head<T>(&self) -> Result<Option<T>, HttpError> {
        if self.buf.len() > MAX_HEAD {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        }
    }

    fn body(&self, start: usize, framing: Framing) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
        let rest = &self.buf[start..];
        match framing {
            Framing::Length(n) => {
                if n > self.max_body {
                    return Err(HttpError::BodyTooLarge(self.max_body));
                }
                Ok((rest.len() >= n).then(|| (rest[..n].to_vec(), n)))
            }
            Framing::Chunked => decode_chunked(rest, self.max_body),
        }
    }
}

fn framing(headers: &Headers) -> Result<Option<Framing>, HttpError> {
    let te = headers.get("Transfer-Encoding")?;
    let cl = headers.get("Content-Length")?;
    match (te, cl) {
        (Some(_), Some(_)) => Err(HttpError::Malformed(
            "both Transfer-Encoding and Content-Length",
        )),
        (Some(te), None) if te.eq_ignore_ascii_case("chunked") => Ok(Some(Framing::Chunked)),
        (Some(_), None) => Err(HttpError::UnsupportedTransferEncoding),
        (None, Some(cl)) => {
            if cl.is_empty() || !cl.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Malformed("bad Content-Length"));
            }
            cl.parse()
                .map(|n| Some(Framing::Length(n)))
                .map_err(|_| HttpError::Malformed("bad Content-Length"))
        }
        (None, None) => Ok(None),
    }
}

/// Decode a chunked body at the start of `buf`: the body and the bytes it took, or
/// `None` if incomplete.
fn decode_chunked(buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line) = line_at(buf, pos)? else {
            return Ok(None);
        };
        pos += line.len() + 2;
        let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_str = std::str::from_utf8(size_part)
            .map_err(|_| HttpError::Malformed("bad chunk size"))?
            .trim_matches([' ', '\t']);
        if size_str.is_empty() || size_str.len() > 8 {
            return Err(HttpError::Malformed("bad chunk size"));
        }
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        if size == 0 {
            // Trailer section: header lines (ignored) up to an empty line.
            loop {
                let Some(line) = line_at(buf, pos)? else {
                    return Ok(None);
                };
                pos += line.len() + 2;
                if line.is_empty() {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len() + size > max_body {
            return Err(HttpError::BodyTooLarge(max_body));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size;
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
        pos += 2;
    }
}

/// The CRLF-terminated line starting at `pos` (without CRLF), `None` if incomplete.
fn line_at(buf: &[u8], pos: usize) -> Result<Option<&[u8]>, HttpError> {
    let rest = &buf[pos.min(buf.len())..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(n) if n <= MAX_LINE => Ok(Some(&rest[..n])),
        Some(_) => Err(HttpError::Malformed("line too long")),
        None if rest.len() > MAX_LINE => Err(HttpError::Malformed("line too long")),
        None => Ok(None),
    }
}

/// How a request body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEncoding {
    /// `Transfer-Encoding: chunked`, in chunks of at most this many bytes (at least 1).
    Chunked(usize),
    /// `Content-Length`.
    ContentLength,
}

/// Serialize a request. `headers` must hold no CR or LF (callers check).
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    encoding: BodyEncoding,
) {
    out.extend_from_slice(format!("POST {target} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    match encoding {
        BodyEncoding::Chunked(size) if !body.is_empty() => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in body.chunks(size.max(1)) {
                out.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        _ => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
    }
}

/// Serialize a response, framed with `Content-Length` (none for 204).
pub(crate) fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if status != 204 {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Whether a header value can be written as is.
pub(crate) fn is_safe_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_request_in_pieces() {
        let mut wire = Vec::new();
        let body: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        write_request(
            &mut wire,
            "/a?b=1",
            "h",
            &[("X-Admin-Protocol", "p")],
            &body,
            BodyEncoding::Chunked(256),
        );
        let mut d = Decoder::new(4096);
        for b in &wire[..wire.len() - 1] {
            d.push(&[*b]);
            assert!(d.next_request().unwrap().is_none());
        }
        d.push(&wire[wire.len() - 1..]);
        let r = d.next_request().unwrap().unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/a?b=1");
        assert_eq!(r.headers.get("x-admin-protocol").unwrap(), Some("p"));
        assert!(r.chunked);
        assert_eq!(r.body, body);
        assert!(d.is_empty());
    }

    #[test]
    fn chunk_extensions_and_trailers() {
        let mut d = Decoder::new(100);
        d.push(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n\
              3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nPOST",
        );
        let r = d.next_request().unwrap().unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(d.next_request().unwrap().is_none());
    }

    #[test]
    fn rejects_bad_framing() {
        for wire in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
        ] {
            let mut d = Decoder::new(100);
            d.push(wire);
            assert!(d.next_request().is_err(), "{}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn responses() {
        let mut wire = Vec::new();
        write_response(&mut wire, 200, "OK", &[("X-Admin-Next-URI", "/n")], b"xyz");
        write_response(&mut wire, 204, "No Content", &[], b"");
        let mut d = Decoder::new(100);
        d.push(&wire);
        let r = d.next_response().unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"xyz"[..]));
        assert_eq!(r.headers.get("X-ADMIN-NEXT-URI").unwrap(), Some("/n"));
        let r = d.next_response().unwrap().unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        assert!(d.is_empty());
        let text = String::from_utf8(wire).unwrap();
        assert!(text.contains("X-Admin-Next-URI: /n\r\n"));
        assert!(!text.contains("Content-Length: 0"));
    }

    #[test]
    fn head_too_large() {
        let mut d = Decoder::new(100);
        d.push(b"POST / HTTP/1.1\r\n");
        d.push(&vec![b'a'; MAX_HEAD]);
        assert!(matches!(d.next_request(), Err(HttpError::HeadTooLarge)));
    }
}
