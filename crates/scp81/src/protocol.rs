//! The Amendment B administration protocol's vocabulary: header names, content
//! types, script statuses, the targeted-application URI and the script type.

use core::fmt;

use gp::Aid;

/// `X-Admin-Protocol` value for this version of the protocol (Amendment B §3).
pub const ADMIN_PROTOCOL: &str = "globalplatform-remote-admin/1.0";

/// `Content-Type` of an HTTP response carrying a remote APDU script (ETSI TS 102 226
/// expanded format) from the admin server to the card.
pub const CONTENT_TYPE_SCRIPT: &str = "application/vnd.globalplatform.card-content-mgt;version=1.0";

/// `Content-Type` of an HTTP request carrying a script's response from the card to
/// the admin server.
pub const CONTENT_TYPE_RESPONSE: &str =
    "application/vnd.globalplatform.card-content-mgt-response;version=1.0";

/// The `X-Admin-*` header names, spelt as Amendment B spells them (this crate writes
/// them byte for byte like this; it reads them case-insensitively).
pub mod header {
    /// Protocol identifier, on every request and response.
    pub const PROTOCOL: &str = "X-Admin-Protocol";
    /// The admin agent's identity, on the card's requests.
    pub const FROM: &str = "X-Admin-From";
    /// Where the card posts next; absent on the server's last response.
    pub const NEXT_URI: &str = "X-Admin-Next-URI";
    /// `//aid/<RID>/<PIX>` of the application (security domain) a script is for;
    /// absent when the script is for the security domain holding the PSK.
    pub const TARGETED_APPLICATION: &str = "X-Admin-Targeted-Application";
    /// `true` when the card resumes an interrupted session on its last URI.
    pub const RESUME: &str = "X-Admin-Resume";
    /// How the card's execution of the previous script went.
    pub const SCRIPT_STATUS: &str = "X-Admin-Script-Status";
}

/// `X-Admin-Script-Status`: how the card's execution of a script went.
///
/// Amendment B defines `ok`, `unknown-application`, `not-a-security-domain` and
/// `security-error`; other tokens (later profiles such as GP SERAM add
/// `unavailable-se`, `script-format-error`, ...) are kept as [`ScriptStatus::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScriptStatus {
    /// The script was executed; the body holds its response script.
    Ok,
    /// The targeted application is not on the card.
    UnknownApplication,
    /// The targeted application is not a security domain.
    NotASecurityDomain,
    /// The security domain refused the script (e.g. a secure-channel failure).
    SecurityError,
    /// Any other status token.
    Other(String),
}

impl ScriptStatus {
    /// Parse a header value (case-insensitive, surrounding blanks ignored).
    pub fn parse(value: &str) -> Self {
        let v = value.trim();
        match v.to_ascii_lowercase().as_str() {
            "ok" => Self::Ok,
            "unknown-application" => Self::UnknownApplication,
            "not-a-security-domain" => Self::NotASecurityDomain,
            "security-error" => Self::SecurityError,
            _ => Self::Other(v.to_owned()),
        }
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ok => "ok",
            Self::UnknownApplication => "unknown-application",
            Self::NotASecurityDomain => "not-a-security-domain",
            Self::SecurityError => "security-error",
            Self::Other(s) => s,
        }
    }

    /// Whether the script was executed (`ok`).
    pub fn is_ok(&self) -> bool {
        *self == Self::Ok
    }

    /// Whether the value can go into a header: a non-empty HTTP token.
    pub(crate) fn is_valid_token(&self) -> bool {
        let s = self.as_str();
        !s.is_empty() && s.bytes().all(is_tchar)
    }
}

impl fmt::Display for ScriptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Format an AID as Amendment B's targeted-application URI, `//aid/<RID>/<PIX>`
/// (upper-case hex; the PIX part is empty for a RID-only AID).
pub fn targeted_application(aid: &Aid) -> String {
    let mut s = String::from("//aid/");
    push_hex(&mut s, aid.rid());
    s.push('/');
    push_hex(&mut s, aid.pix());
    s
}

/// Parse `//aid/<RID>/<PIX>` (hex in either case; `//aid/<RID>` alone is accepted too).
pub fn parse_targeted_application(value: &str) -> Option<Aid> {
    let rest = value.trim().strip_prefix("//aid/")?;
    let (rid, pix) = rest.split_once('/').unwrap_or((rest, ""));
    if rid.len() != 10 {
        return None;
    }
    let mut bytes = decode_hex(rid)?;
    bytes.extend(decode_hex(pix)?);
    Aid::new(&bytes).ok()
}

pub(crate) fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = char::from(p[0]).to_digit(16)?;
            let lo = char::from(p[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// One remote APDU script for a card: opaque bytes (ETSI TS 102 226 expanded remote
/// command format, built elsewhere) and the application it is for.
#[derive(Clone, PartialEq, Eq)]
pub struct Script {
    /// The script, sent as the HTTP response body.
    pub bytes: Vec<u8>,
    /// `X-Admin-Targeted-Application`; `None` for the security domain whose PSK
    /// secures the session.
    pub target: Option<Aid>,
}

impl Script {
    /// A script for `target` (or the PSK's own security domain when `None`).
    pub fn new(bytes: impl Into<Vec<u8>>, target: Option<Aid>) -> Self {
        Self {
            bytes: bytes.into(),
            target,
        }
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Scripts may carry wrapped keys (PUT KEY): length only.
        f.debug_struct("Script")
            .field("len", &self.bytes.len())
            .field("target", &self.target)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targeted_application_round_trips() {
        let aid = Aid::new(&[0xA0, 0, 0, 0, 0x51, 0, 0, 0xAB]).unwrap();
        let s = targeted_application(&aid);
        assert_eq!(s, "//aid/A000000051/0000AB");
        assert_eq!(parse_targeted_application(&s), Some(aid));
        assert_eq!(
            parse_targeted_application("//aid/a000000051/0000ab"),
            Some(aid)
        );
        let rid = Aid::new(&[0xA0, 0, 0, 0, 0x51]).unwrap();
        assert_eq!(targeted_application(&rid), "//aid/A000000051/");
        assert_eq!(parse_targeted_application("//aid/A000000051"), Some(rid));
        assert_eq!(parse_targeted_application("//aid/A0000000/51"), None);
        assert_eq!(parse_targeted_application("/aid/A000000051/00"), None);
        assert_eq!(parse_targeted_application("//aid/A000000051/0"), None);
    }

    #[test]
    fn script_status_tokens() {
        for s in [
            ScriptStatus::Ok,
            ScriptStatus::UnknownApplication,
            ScriptStatus::NotASecurityDomain,
            ScriptStatus::SecurityError,
        ] {
            assert_eq!(ScriptStatus::parse(s.as_str()), s);
            assert!(s.is_valid_token());
        }
        assert_eq!(ScriptStatus::parse(" OK "), ScriptStatus::Ok);
        assert_eq!(
            ScriptStatus::parse("unavailable-se"),
            ScriptStatus::Other("unavailable-se".into())
        );
        assert!(!ScriptStatus::Other("a\r\nb".into()).is_valid_token());
        assert!(!ScriptStatus::Other(String::new()).is_valid_token());
    }
}
