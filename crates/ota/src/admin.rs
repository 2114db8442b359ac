//! GP Card Specification Amendment B (remote application management over HTTP, "SCP81"):
//! the **administration session triggering parameters** a platform sends a security
//! domain to make the card's admin agent open an HTTPS session (Amendment B §3.8,
//! Table 3-3; the same object the GP API's `HTTPAdministration.requestHTTPAdministrationSession`
//! takes).
//!
//! ```text
//! 81 L  administration session triggering parameters
//!   83 L  administration session parameters
//!     84 L  connection parameters: OPEN CHANNEL COMPREHENSION-TLVs (ETSI TS 102 223 §6.6.27):
//!           bearer description 35, buffer size 39, network access name 47, text strings 0D
//!           (login, password), transport level 3C (TCP client + port), other address 3E
//!     85 L  security parameters: PSK identity length, PSK identity, 02, key identifier,
//!           key version number (the SD's SCP81 PSK, KVN 40..4F)
//!     86 L  retry policy: retry counter (2), retry waiting delay (the rest; kept as bytes)
//!     89 L  HTTP POST parameters
//!       8A L  administration host (the Host header)
//!       8B L  agent ID (X-Admin-From)
//!       8C L  administration URI (the first POST's request-URI)
//! ```
//!
//! Key identifier and key version in `85`: written KID then KVN (GP's key reference order,
//! as in the key information template `C0`). osmocom pySim reads them the other way round;
//! the decoder therefore takes the byte in `40..=4F` as the KVN whichever position it has
//! (a KID in that range in the second position is read as written: KID then KVN).
//! DNS resolution parameters (`B3`) and extended security parameters (`A5`) are kept as
//! raw bytes and not interpreted.

use apdu::tlv::{self, Tag};

use crate::cat::{self, BearerDescription, CommandBody, Ctlv, OpenChannel, ProactiveCommand};

/// Tag of the administration session triggering parameters.
pub const TAG_TRIGGER: u32 = 0x81;
/// Tag of the administration session parameters.
pub const TAG_SESSION: u32 = 0x83;
/// Tag of the connection parameters (OPEN CHANNEL objects).
pub const TAG_CONNECTION: u32 = 0x84;
/// Tag of the security parameters.
pub const TAG_SECURITY: u32 = 0x85;
/// Tag of the retry policy.
pub const TAG_RETRY: u32 = 0x86;
/// Tag of the HTTP POST parameters.
pub const TAG_HTTP_POST: u32 = 0x89;
/// Administration host, inside `89`.
pub const TAG_ADMIN_HOST: u32 = 0x8A;
/// Agent ID, inside `89`.
pub const TAG_AGENT_ID: u32 = 0x8B;
/// Administration URI, inside `89`.
pub const TAG_ADMIN_URI: u32 = 0x8C;
/// Key version numbers reserved for SCP81 PSKs (GP UICC Configuration; Amendment B).
pub const SCP81_KVNS: std::ops::RangeInclusive<u8> = 0x40..=0x4F;
/// Default BIP buffer size when the connection parameters name none.
pub const DEFAULT_BUFFER_SIZE: u16 = 1024;

/// What is wrong with triggering parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not BER-TLV, or a tag in the wrong place.
    #[error("malformed triggering parameters: {0}")]
    Malformed(&'static str),
    /// The connection parameters are not OPEN CHANNEL objects.
    #[error("connection parameters: {0}")]
    Connection(#[from] cat::Error),
}

/// Security parameters (`85`): which PSK secures the session.
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityParams {
    /// TLS PSK identity; empty: the one stored with the key.
    pub psk_identity: Vec<u8>,
    /// Key identifier of the PSK in its key set.
    pub kid: u8,
    /// Key version number of the PSK's key set (`40`..=`4F`).
    pub kvn: u8,
}

impl std::fmt::Debug for SecurityParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityParams")
            .field("psk_identity", &String::from_utf8_lossy(&self.psk_identity))
            .field("kid", &format_args!("{:02X}", self.kid))
            .field("kvn", &format_args!("{:02X}", self.kvn))
            .finish()
    }
}

/// Retry policy (`86`): how often the agent may try again after a failed session and
/// after how long (the delay is kept as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retry counter.
    pub counter: u16,
    /// Retry waiting delay and what follows it, as sent.
    pub rest: Vec<u8>,
}

/// The administration session triggering parameters (`81`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerParams {
    /// How the card reaches the admin server: the OPEN CHANNEL the agent issues
    /// (bearer, buffer size, transport level, destination address, …).
    pub connection: Option<OpenChannel>,
    /// The PSK.
    pub security: Option<SecurityParams>,
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
    /// Administration host (`Host` header).
    pub admin_host: Option<String>,
    /// Agent ID (`X-Admin-From`).
    pub agent_id: Option<String>,
    /// Administration URI (request-URI of the first POST).
    pub admin_uri: Option<String>,
    /// Objects of `81`/`83` not interpreted (DNS resolution `B3`, extended security `A5`),
    /// as encoded BER-TLVs.
    pub other: Vec<Vec<u8>>,
}

impl TriggerParams {
    /// Parameters for a TCP connection through the default bearer to `open` and the rest
    /// unset.
    pub fn new(connection: OpenChannel, security: SecurityParams) -> Self {
        Self {
            connection: Some(connection),
            security: Some(security),
            retry: None,
            admin_host: None,
            agent_id: None,
            admin_uri: None,
            other: Vec::new(),
        }
    }

    /// The `81` object.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut session = Vec::new();
        if let Some(c) = &self.connection {
            session.extend(tlv::encode(
                Tag::new(TAG_CONNECTION),
                &connection_to_bytes(c)?,
            ));
        }
        if let Some(s) = &self.security {
            let len = u8::try_from(s.psk_identity.len())
                .map_err(|_| Error::Malformed("PSK identity longer than 255 bytes"))?;
            let mut v = vec![len];
            v.extend_from_slice(&s.psk_identity);
            v.extend_from_slice(&[2, s.kid, s.kvn]);
            session.extend(tlv::encode(Tag::new(TAG_SECURITY), &v));
        }
        if let Some(r) = &self.retry {
            let mut v = r.counter.to_be_bytes().to_vec();
            v.extend_from_slice(&r.rest);
            session.extend(tlv::encode(Tag::new(TAG_RETRY), &v));
        }
        let mut post = Vec::new();
        for (t, v) in [
            (TAG_ADMIN_HOST, &self.admin_host),
            (TAG_AGENT_ID, &self.agent_id),
            (TAG_ADMIN_URI, &self.admin_uri),
        ] {
            if let Some(v) = v {
                post.extend(tlv::encode(Tag::new(t), v.as_bytes()));
            }
        }
        if !post.is_empty() {
            session.extend(tlv::encode(Tag::new(TAG_HTTP_POST), &post));
        }
        let mut body = tlv::encode(Tag::new(TAG_SESSION), &session);
        for o in &self.other {
            body.extend_from_slice(o);
        }
        Ok(tlv::encode(Tag::new(TAG_TRIGGER), &body))
    }

    /// Reads the value of an `81` object.
    pub fn from_value(value: &[u8]) -> Result<Self, Error> {
        let bad = Error::Malformed;
        let mut out = Self {
            connection: None,
            security: None,
            retry: None,
            admin_host: None,
            agent_id: None,
            admin_uri: None,
            other: Vec::new(),
        };
        let mut seen_session = false;
        for o in tlv::parse_all(value).map_err(|_| bad("not BER-TLV"))? {
            if o.tag.value() != TAG_SESSION {
                out.other.push(tlv::encode(o.tag, &o.value));
                continue;
            }
            if seen_session {
                return Err(bad("two session parameter objects"));
            }
            seen_session = true;
            for p in tlv::parse_all(&o.value).map_err(|_| bad("session parameters not BER-TLV"))? {
                match p.tag.value() {
                    TAG_CONNECTION => out.connection = Some(connection_from_bytes(&p.value)?),
                    TAG_SECURITY => out.security = Some(security_from_bytes(&p.value)?),
                    TAG_RETRY => {
                        let (c, rest) = p
                            .value
                            .split_first_chunk::<2>()
                            .ok_or(bad("retry policy shorter than 2 bytes"))?;
                        out.retry = Some(RetryPolicy {
                            counter: u16::from_be_bytes(*c),
                            rest: rest.to_vec(),
                        });
                    }
                    TAG_HTTP_POST => {
                        for h in tlv::parse_all(&p.value)
                            .map_err(|_| bad("HTTP POST parameters not BER-TLV"))?
                        {
                            let text = String::from_utf8(h.value.clone())
                                .map_err(|_| bad("HTTP POST parameter not UTF-8"))?;
                            match h.tag.value() {
                                TAG_ADMIN_HOST => out.admin_host = Some(text),
                                TAG_AGENT_ID => out.agent_id = Some(text),
                                TAG_ADMIN_URI => out.admin_uri = Some(text),
                                _ => return Err(bad("unknown HTTP POST parameter")),
                            }
                        }
                    }
                    _ => out.other.push(tlv::encode(p.tag, &p.value)),
                }
            }
        }
        if !seen_session {
            return Err(bad("no administration session parameters (83)"));
        }
        Ok(out)
    }

    /// Parses a whole `81` object.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let t = tlv::TlvRef::parse(bytes).map_err(|_| Error::Malformed("not one BER-TLV"))?;
        if t.tag().value() != TAG_TRIGGER {
            return Err(Error::Malformed("not tag 81"));
        }
        Self::from_value(t.value())
    }
}

/// The connection parameters as OPEN CHANNEL objects (without command details and device
/// identities).
fn connection_to_bytes(c: &OpenChannel) -> Result<Vec<u8>, Error> {
    let cmd = ProactiveCommand::new(0, 0, CommandBody::OpenChannel(Box::new(c.clone())));
    let objects = cmd.to_ctlvs()?;
    Ok(cat::encode_ctlvs(objects.get(2..).unwrap_or_default())?)
}

/// OPEN CHANNEL objects → the command; a missing bearer is the default bearer, a missing
/// buffer size [`DEFAULT_BUFFER_SIZE`].
fn connection_from_bytes(v: &[u8]) -> Result<OpenChannel, Error> {
    let mut objects = vec![
        Ctlv::required(
            cat::tag::COMMAND_DETAILS,
            [0, cat::command_type::OPEN_CHANNEL, 0],
        ),
        Ctlv::required(cat::tag::DEVICE_IDENTITIES, [0x81, 0x82]),
    ];
    let given = cat::parse_ctlvs(v)?;
    if !given
        .iter()
        .any(|c| c.tag.value == cat::tag::BEARER_DESCRIPTION)
    {
        objects.push(Ctlv::required(
            cat::tag::BEARER_DESCRIPTION,
            [BearerDescription::default_bearer().bearer_type],
        ));
    }
    if !given.iter().any(|c| c.tag.value == cat::tag::BUFFER_SIZE) {
        objects.push(Ctlv::required(
            cat::tag::BUFFER_SIZE,
            DEFAULT_BUFFER_SIZE.to_be_bytes(),
        ));
    }
    objects.extend(given);
    match ProactiveCommand::from_ctlvs(objects)?.body {
        CommandBody::OpenChannel(c) => Ok(*c),
        _ => Err(Error::Malformed("connection parameters")),
    }
}

fn security_from_bytes(v: &[u8]) -> Result<SecurityParams, Error> {
    let bad = Error::Malformed;
    let (&n, rest) = v.split_first().ok_or(bad("empty security parameters"))?;
    let id = rest
        .get(..usize::from(n))
        .ok_or(bad("PSK identity truncated"))?;
    match rest.get(usize::from(n)..) {
        Some([2, a, b, ..]) => {
            // KID then KVN; the other order (pySim) is recognised by the KVN range.
            let (kid, kvn) = if !SCP81_KVNS.contains(b) && SCP81_KVNS.contains(a) {
                (*b, *a)
            } else {
                (*a, *b)
            };
            Ok(SecurityParams {
                psk_identity: id.to_vec(),
                kid,
                kvn,
            })
        }
        _ => Err(bad("key identifier and version missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cat::{OtherAddress, TransportLevel};

    fn open(port: u16) -> OpenChannel {
        OpenChannel {
            alpha: None,
            bearer: BearerDescription::default_bearer(),
            buffer_size: 1400,
            network_access_name: None,
            local_address: None,
            login: None,
            password: None,
            transport: Some(TransportLevel::tcp_client(port)),
            destination: Some(OtherAddress::Ipv4([10, 0, 0, 7].into())),
            other: Vec::new(),
        }
    }

    #[test]
    fn round_trip() {
        let mut t = TriggerParams::new(
            open(8443),
            SecurityParams {
                psk_identity: b"card-0001".to_vec(),
                kid: 1,
                kvn: 0x40,
            },
        );
        t.admin_host = Some("tsm.example".into());
        t.agent_id = Some("//se-id/CUD/01".into());
        t.admin_uri = Some("/gp/admin".into());
        t.retry = Some(RetryPolicy {
            counter: 3,
            rest: vec![0, 0, 0, 0, 0x3C],
        });
        let b = t.encode().unwrap();
        assert_eq!(b[0], 0x81);
        assert_eq!(TriggerParams::decode(&b).unwrap(), t);
        // The connection parameters are the OPEN CHANNEL objects, CR set.
        let hex = apdu::hex(&b);
        assert!(
            hex.contains("B50103B9020578BC030220FBBE05210A000007"),
            "{hex}"
        );
    }

    #[test]
    fn security_parameters_in_either_order() {
        // pySim's example: identity DEADBEEF, then 00 40.
        let s = security_from_bytes(&apdu::parse_hex("04DEADBEEF020040").unwrap()).unwrap();
        assert_eq!((s.kid, s.kvn), (0x00, 0x40));
        let s = security_from_bytes(&apdu::parse_hex("00024101").unwrap()).unwrap();
        assert_eq!((s.kid, s.kvn), (0x01, 0x41));
        assert!(security_from_bytes(&[4, 1, 2]).is_err());
        assert!(security_from_bytes(&[0, 1, 2]).is_err());
    }

    #[test]
    fn defaults_and_nonsense() {
        // Only a transport level: default bearer and buffer size.
        let v = apdu::parse_hex("8309 8407 3C030201BB 3E00").unwrap();
        let t = TriggerParams::from_value(&v).unwrap();
        let c = t.connection.unwrap();
        assert_eq!(c.buffer_size, DEFAULT_BUFFER_SIZE);
        assert_eq!(c.bearer, BearerDescription::default_bearer());
        assert_eq!(c.transport, Some(TransportLevel::tcp_client(443)));
        for bad in [
            "",
            "8400",
            "8303850100",
            "8300 8300",
            "830489028800",
            "83038401FF",
        ] {
            let b = apdu::parse_hex(bad).unwrap();
            assert!(TriggerParams::from_value(&b).is_err(), "{bad}");
        }
    }
}
