//! SCP11 command codecs (GP Card Specification v2.3 Amendment F §7; the STORE DATA
//! formats are YubiKey's, as yubikit writes them): PERFORM SECURITY OPERATION, GET DATA
//! `BF21` (certificate bundle), the `A6` key reference template, and the STORE DATA
//! payloads for a certificate bundle, a serial-number allowlist and a CA issuer
//! identifier. Each has a builder and a parser, so host and virtual card share them.
//!
//! The MUTUAL/INTERNAL AUTHENTICATE data and response codecs live in `scp::scp11`
//! ([`AuthRequest`], [`AuthResponse`], re-exported here) because the key agreement needs
//! them.

use apdu::tlv::{self, Tag};
use apdu::Command;

use crate::{Error, Result};
pub use scp::scp11::{AuthRequest, AuthResponse};

/// INS of PERFORM SECURITY OPERATION.
pub const INS_PERFORM_SECURITY_OPERATION: u8 = 0x2A;
/// The GET DATA / STORE DATA tag of the certificate store.
pub const TAG_CERTIFICATE_STORE: u16 = 0xBF21;
/// The key identifier of the OCE's trust anchor (PK.CA-KLOC.ECDSA) in yubikit and OpenSCP.
pub const OCE_KID: u8 = 0x10;

const CTX_KEYREF: &str = "SCP11 key reference (A6)";
const CTX_PSO: &str = "PERFORM SECURITY OPERATION";
const CTX_BUNDLE: &str = "certificate bundle (BF21)";
const CTX_STORE: &str = "SCP11 STORE DATA";

fn invalid(context: &'static str, field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidValue {
        context,
        field,
        reason: reason.into(),
    }
}

fn tlv_err(context: &'static str, e: apdu::Error) -> Error {
    invalid(context, "TLV", e.to_string())
}

/// A key reference: key identifier and key version number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyRef {
    /// Key identifier (KID).
    pub kid: u8,
    /// Key version number (KVN).
    pub kvn: u8,
}

impl KeyRef {
    /// `KeyRef { kid, kvn }`.
    pub fn new(kid: u8, kvn: u8) -> Self {
        Self { kid, kvn }
    }

    /// The control reference template `A6 04 83 02 KID KVN`.
    pub fn to_crt(self) -> Vec<u8> {
        tlv::encode(
            Tag::new(0xA6),
            &tlv::encode(Tag::new(0x83), &[self.kid, self.kvn]),
        )
    }

    /// Parses the value of tag `83` (`KID KVN`).
    pub fn from_83(v: &[u8]) -> Result<Self> {
        match v {
            [kid, kvn] => Ok(Self::new(*kid, *kvn)),
            _ => Err(Error::FieldLength {
                context: CTX_KEYREF,
                field: "83",
                len: v.len(),
                expected: "2 (KID KVN)",
            }),
        }
    }

    /// Parses a whole `A6{83 KID KVN}` template (exactly that).
    pub fn parse_crt(data: &[u8]) -> Result<Self> {
        let a6 = tlv::TlvRef::parse(data).map_err(|e| tlv_err(CTX_KEYREF, e))?;
        if a6.tag() != Tag::new(0xA6) {
            return Err(invalid(
                CTX_KEYREF,
                "tag",
                format!("{} is not A6", a6.tag()),
            ));
        }
        let inner = tlv::parse_all_ref(a6.value()).map_err(|e| tlv_err(CTX_KEYREF, e))?;
        match inner.as_slice() {
            [k] if k.tag() == Tag::new(0x83) => Self::from_83(k.value()),
            _ => Err(invalid(CTX_KEYREF, "A6", "want exactly 83 KID KVN")),
        }
    }
}

/// PERFORM SECURITY OPERATION `80 2A KVN KID` (Amendment F §7.5): one OCE certificate
/// for the trust anchor at (KVN, KID); P2 b8 set when more certificates of the chain follow.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PerformSecurityOperation {
    /// KVN of the trust anchor (PK.CA-KLOC) the certificate is verified with.
    pub kvn: u8,
    /// KID of the trust anchor (usually [`OCE_KID`]).
    pub kid: u8,
    /// More certificates of the chain follow (P2 b8).
    pub more: bool,
    /// The certificate (X.509 DER or GP `7F21`).
    pub certificate: Vec<u8>,
}

impl PerformSecurityOperation {
    /// One command per certificate for a chain (leaf last): all but the last have P2 b8.
    pub fn for_chain<B: AsRef<[u8]>>(kvn: u8, kid: u8, chain: &[B]) -> Vec<Self> {
        chain
            .iter()
            .enumerate()
            .map(|(i, c)| Self {
                kvn,
                kid,
                more: i + 1 < chain.len(),
                certificate: c.as_ref().to_vec(),
            })
            .collect()
    }

    /// The command (one APDU, extended length if the certificate needs it), Le = `00`.
    pub fn to_command(&self) -> Result<Command> {
        if self.kid & 0x80 != 0 {
            return Err(Error::Encoding("PSO: KID must be below 80".into()));
        }
        Ok(Command::new(
            0x80,
            INS_PERFORM_SECURITY_OPERATION,
            self.kvn,
            self.kid | if self.more { 0x80 } else { 0 },
        )
        .with_data(self.certificate.clone())
        .with_le(256))
    }

    /// The command as short APDUs with ISO command chaining (CLA b5), 255 data bytes
    /// each, Le = `00` on each, as OpenSCP-Java sends it: it also sets P1 b8 on every
    /// block but the last.
    pub fn to_short_commands(&self) -> Result<Vec<Command>> {
        let last = self.to_command()?;
        let chunks: Vec<&[u8]> = self.certificate.chunks(255).collect();
        let n = chunks.len();
        Ok(chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let mut cmd = last.clone();
                cmd.data = c.to_vec();
                if i + 1 < n {
                    cmd.cla |= 0x10;
                    cmd.p1 |= 0x80;
                }
                cmd
            })
            .collect())
    }

    /// Card side: reads a (reassembled) PSO. P1 b8 (OpenSCP's chaining mark) is ignored;
    /// an empty data field is refused.
    pub fn parse(cmd: &Command) -> Result<Self> {
        if cmd.ins != INS_PERFORM_SECURITY_OPERATION {
            return Err(Error::WrongInstruction {
                expected: CTX_PSO,
                expected_ins: INS_PERFORM_SECURITY_OPERATION,
                ins: cmd.ins,
            });
        }
        if cmd.data.is_empty() {
            return Err(invalid(CTX_PSO, "data field", "no certificate"));
        }
        Ok(Self {
            kvn: cmd.p1 & 0x7F,
            kid: cmd.p2 & 0x7F,
            more: cmd.p2 & 0x80 != 0,
            certificate: cmd.data.clone(),
        })
    }
}

/// GET DATA `BF21` with `A6{83 KID KVN}`: the certificate bundle of an SD key
/// (`00 CA BF 21 06 A6 04 83 02 KID KVN 00`, as OpenSCP and yubikit send it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GetCertificates {
    /// The SD key.
    pub key: KeyRef,
}

impl GetCertificates {
    /// The command, CLA `00`, Le = `00`.
    pub fn to_command(&self) -> Command {
        Command::new(0x00, crate::commands::ins::GET_DATA, 0xBF, 0x21)
            .with_data(self.key.to_crt())
            .with_le(256)
    }

    /// Card side: reads the command (any CLA; INS `CA`, P1P2 `BF21`, data `A6{83 …}`).
    pub fn parse(cmd: &Command) -> Result<Self> {
        if cmd.ins != crate::commands::ins::GET_DATA {
            return Err(Error::WrongInstruction {
                expected: "GET DATA",
                expected_ins: crate::commands::ins::GET_DATA,
                ins: cmd.ins,
            });
        }
        if (cmd.p1, cmd.p2) != (0xBF, 0x21) {
            return Err(Error::BadParameters {
                command: "GET DATA BF21",
                p1: cmd.p1,
                p2: cmd.p2,
            });
        }
        Ok(Self {
            key: KeyRef::parse_crt(&cmd.data)?,
        })
    }
}

/// The certificates of a `BF21` object, in order (leaf last).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CertificateBundle(pub Vec<Vec<u8>>);

impl CertificateBundle {
    /// `BF21 { cert ‖ cert … }`.
    pub fn to_bytes(&self) -> Vec<u8> {
        tlv::encode(Tag::new(0xBF21), &self.0.concat())
    }

    /// Parses a GET DATA `BF21` response: one `BF21` whose value is a sequence of
    /// certificates, each one TLV (`30…` or `7F21…`).
    ///
    /// A YubiKey (and the virtual card) answers the certificates without the `BF21`
    /// wrapper (what yubikit reads); that form is read too.
    pub fn parse(data: &[u8]) -> Result<Self> {
        if !data.starts_with(&[0xBF, 0x21]) {
            return Self::parse_value(data);
        }
        let outer = tlv::TlvRef::parse(data).map_err(|e| tlv_err(CTX_BUNDLE, e))?;
        if outer.tag() != Tag::new(0xBF21) {
            return Err(invalid(
                CTX_BUNDLE,
                "tag",
                format!("{} is not BF21", outer.tag()),
            ));
        }
        Self::parse_value(outer.value())
    }

    /// Parses the value of `BF21` (concatenated certificates).
    pub fn parse_value(value: &[u8]) -> Result<Self> {
        let certs = tlv::parse_all_ref(value).map_err(|e| tlv_err(CTX_BUNDLE, e))?;
        if certs.is_empty() {
            return Err(invalid(CTX_BUNDLE, "value", "no certificate"));
        }
        Ok(Self(certs.iter().map(|c| c.raw().to_vec()).collect()))
    }
}

/// What an SCP11 STORE DATA (P1 `90`, BER-TLV, as yubikit sends it) carries.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Scp11StoreData {
    /// `A6{83 KID KVN} BF21{certificates}`: the certificate bundle of an SD key.
    CertificateBundle {
        /// The SD key.
        key: KeyRef,
        /// The certificates, leaf last.
        certificates: Vec<Vec<u8>>,
    },
    /// `A6{83 KID KVN} 70{93 serial …}`: the serial numbers allowed for the OCE
    /// certificates checked with this trust anchor; empty = no allowlist.
    Allowlist {
        /// The trust anchor (OCE) key.
        key: KeyRef,
        /// Serial numbers (content octets, as in the certificates).
        serials: Vec<Vec<u8>>,
    },
    /// `A6{80 01 klcc, 42 id, 83 KID KVN}`: the CA issuer identifier (subject key
    /// identifier) of a key.
    CaIssuer {
        /// The key.
        key: KeyRef,
        /// `true` for a KLCC (the SD's CA), `false` for a KLOC (the OCE's CA).
        klcc: bool,
        /// The identifier.
        id: Vec<u8>,
    },
}

impl Scp11StoreData {
    /// The STORE DATA data field.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::CertificateBundle { key, certificates } => [
                key.to_crt(),
                CertificateBundle(certificates.clone()).to_bytes(),
            ]
            .concat(),
            Self::Allowlist { key, serials } => {
                let list: Vec<u8> = serials
                    .iter()
                    .flat_map(|s| tlv::encode(Tag::new(0x93), s))
                    .collect();
                [key.to_crt(), tlv::encode(Tag::new(0x70), &list)].concat()
            }
            Self::CaIssuer { key, klcc, id } => {
                let inner = [
                    tlv::encode(Tag::new(0x80), &[u8::from(*klcc)]),
                    tlv::encode(Tag::new(0x42), id),
                    tlv::encode(Tag::new(0x83), &[key.kid, key.kvn]),
                ]
                .concat();
                tlv::encode(Tag::new(0xA6), &inner)
            }
        }
    }

    /// The STORE DATA command (`00 E2 90 00`, as yubikit sends it).
    pub fn to_command(&self) -> Command {
        Command::new(0x00, crate::commands::ins::STORE_DATA, 0x90, 0x00).with_data(self.to_bytes())
    }

    /// Card side: reads the data field of a STORE DATA. Anything else is an error (the
    /// caller tries its other STORE DATA formats first or after).
    pub fn parse(data: &[u8]) -> Result<Self> {
        let items = tlv::parse_all_ref(data).map_err(|e| tlv_err(CTX_STORE, e))?;
        match items.as_slice() {
            [a6, body] if a6.tag() == Tag::new(0xA6) => {
                let key = KeyRef::parse_crt(a6.raw())?;
                match body.tag().value() {
                    0xBF21 => Ok(Self::CertificateBundle {
                        key,
                        certificates: CertificateBundle::parse_value(body.value())?.0,
                    }),
                    0x70 => {
                        let serials = tlv::parse_all_ref(body.value())
                            .map_err(|e| tlv_err(CTX_STORE, e))?
                            .iter()
                            .map(|s| {
                                if s.tag() == Tag::new(0x93) && !s.value().is_empty() {
                                    Ok(s.value().to_vec())
                                } else {
                                    Err(invalid(CTX_STORE, "70", "want 93 serial numbers"))
                                }
                            })
                            .collect::<Result<_>>()?;
                        Ok(Self::Allowlist { key, serials })
                    }
                    t => Err(invalid(CTX_STORE, "tag", format!("{t:X} after A6"))),
                }
            }
            [a6] if a6.tag() == Tag::new(0xA6) => {
                let inner = tlv::parse_all_ref(a6.value()).map_err(|e| tlv_err(CTX_STORE, e))?;
                match inner.as_slice() {
                    [k80, k42, k83]
                        if k80.tag() == Tag::new(0x80)
                            && k42.tag() == Tag::new(0x42)
                            && k83.tag() == Tag::new(0x83) =>
                    {
                        let klcc = match k80.value() {
                            [0] => false,
                            [1] => true,
                            _ => return Err(invalid(CTX_STORE, "80", "not 00 or 01")),
                        };
                        Ok(Self::CaIssuer {
                            key: KeyRef::from_83(k83.value())?,
                            klcc,
                            id: k42.value().to_vec(),
                        })
                    }
                    _ => Err(invalid(CTX_STORE, "A6", "want 80, 42, 83")),
                }
            }
            _ => Err(invalid(CTX_STORE, "data", "not an SCP11 STORE DATA")),
        }
    }
}
