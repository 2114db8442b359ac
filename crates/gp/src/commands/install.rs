//! INSTALL (GP 2.3.1 §11.5) in all its roles, and install / load parameters.

use apdu::Command;

use super::{bad_p1p2, expect_ins, ins, push_lv, CLA_GP};
use crate::aid::Aid;
use crate::privileges::Privileges;
use crate::reader::Cursor;
use apdu::tlv::{self, Tag};

use crate::reader::tlv_all;
use crate::{Error, Result};

/// INSTALL, one variant per P1 role (GP 2.3.1 §11.5.2.1; data fields §11.5.2.3).
///
/// Parameter fields (`params`) are kept as the raw bytes of the wire; build and read
/// their content with [`InstallParams`]. Privileges are written on 1 byte when bytes 2
/// and 3 are zero (understood by GP 2.1.1 and later cards), on 3 bytes otherwise, and
/// read from either length. P2 is written `00`; when parsing, P2 and P1 b8 ("more
/// INSTALL commands follow") are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// P1 `02` \[for load\] (§11.5.2.3).
    ForLoad {
        /// Load file AID.
        load_file: Aid,
        /// Security domain the load file is associated with (`00` length: the current SD).
        security_domain: Option<Aid>,
        /// Load File Data Block Hash (empty when none).
        hash: Vec<u8>,
        /// Load parameters field (`EF { C6, C7, C8, … }`), raw.
        params: Vec<u8>,
        /// Load token (empty when none).
        token: Vec<u8>,
    },
    /// P1 `04` \[for install\], or `0C` \[for install and make selectable\] (§11.5.2.3).
    ForInstall {
        /// Executable load file AID.
        load_file: Aid,
        /// Executable module (applet class) AID.
        module: Aid,
        /// AID of the new application instance.
        application: Aid,
        /// Its privileges.
        privileges: Privileges,
        /// Install parameters field (`C9 …`, `EF …`), raw.
        params: Vec<u8>,
        /// Install token (empty when none).
        token: Vec<u8>,
        /// `true` for P1 `0C`: also make it selectable.
        make_selectable: bool,
    },
    /// P1 `08` \[for make selectable\] (§11.5.2.3).
    ForMakeSelectable {
        /// The application.
        application: Aid,
        /// Privileges (usually none; GP 2.3.1 ignores them here).
        privileges: Privileges,
        /// Make selectable parameters, raw (e.g. `CF` implicit selection).
        params: Vec<u8>,
        /// Make selectable token.
        token: Vec<u8>,
    },
    /// P1 `10` \[for extradition\] (§11.5.2.3).
    ForExtradition {
        /// The security domain the application or load file moves to.
        security_domain: Aid,
        /// The application or executable load file.
        application: Aid,
        /// Extradition parameters, raw.
        params: Vec<u8>,
        /// Extradition token.
        token: Vec<u8>,
    },
    /// P1 `20` \[for personalization\] (§11.5.2.3): STORE DATA that follows goes to this application.
    ForPersonalization {
        /// The application to personalise.
        application: Aid,
    },
    /// P1 `40` \[for registry update\] (§11.5.2.3).
    ForRegistryUpdate {
        /// The security domain (absent: unchanged).
        security_domain: Option<Aid>,
        /// The application (absent: the security domain itself).
        application: Option<Aid>,
        /// New privileges (absent: unchanged).
        privileges: Option<Privileges>,
        /// Registry update parameters, raw.
        params: Vec<u8>,
        /// Registry update token.
        token: Vec<u8>,
    },
}

/// The token field: its length BER-coded (a 256-byte RSA-2048 token takes `82 01 00`), as
/// GlobalPlatformPro and the GlobalPlatform library send it.
fn push_ber_lv(out: &mut Vec<u8>, v: &[u8]) {
    out.extend(apdu::tlv::encode_length(v.len()));
    out.extend_from_slice(v);
}

fn push_opt_aid(out: &mut Vec<u8>, aid: Option<&Aid>) {
    match aid {
        Some(a) => a.push_lv(out),
        None => out.push(0),
    }
}

fn push_privileges(out: &mut Vec<u8>, p: Privileges) {
    let b = p.to_bytes();
    if b[1] == 0 && b[2] == 0 {
        out.extend_from_slice(&[1, b[0]]);
    } else {
        out.push(3);
        out.extend_from_slice(&b);
    }
}

impl Install {
    /// INSTALL \[for load\] without hash, parameters or token.
    pub fn for_load(load_file: Aid, security_domain: Option<Aid>) -> Self {
        Self::ForLoad {
            load_file,
            security_domain,
            hash: Vec::new(),
            params: Vec::new(),
            token: Vec::new(),
        }
    }

    /// INSTALL \[for install and make selectable\] with default parameters `C9 00`.
    pub fn for_install_and_make_selectable(
        load_file: Aid,
        module: Aid,
        application: Aid,
        privileges: Privileges,
    ) -> Self {
        Self::ForInstall {
            load_file,
            module,
            application,
            privileges,
            params: InstallParams::default().to_bytes(),
            token: Vec::new(),
            make_selectable: true,
        }
    }

    /// P1 of this role.
    pub fn p1(&self) -> u8 {
        match self {
            Self::ForLoad { .. } => 0x02,
            Self::ForInstall {
                make_selectable: false,
                ..
            } => 0x04,
            Self::ForInstall {
                make_selectable: true,
                ..
            } => 0x0C,
            Self::ForMakeSelectable { .. } => 0x08,
            Self::ForExtradition { .. } => 0x10,
            Self::ForPersonalization { .. } => 0x20,
            Self::ForRegistryUpdate { .. } => 0x40,
        }
    }

    /// The data field.
    pub fn data(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        match self {
            Self::ForLoad {
                load_file,
                security_domain,
                hash,
                params,
                token,
            } => {
                load_file.push_lv(&mut v);
                push_opt_aid(&mut v, security_domain.as_ref());
                push_lv(&mut v, hash, "load file data block hash")?;
                push_lv(&mut v, params, "load parameters")?;
                push_ber_lv(&mut v, token);
            }
            Self::ForInstall {
                load_file,
                module,
                application,
                privileges,
                params,
                token,
                ..
            } => {
                load_file.push_lv(&mut v);
                module.push_lv(&mut v);
                application.push_lv(&mut v);
                push_privileges(&mut v, *privileges);
                push_lv(&mut v, params, "install parameters")?;
                push_ber_lv(&mut v, token);
            }
            Self::ForMakeSelectable {
                application,
                privileges,
                params,
                token,
            } => {
                v.extend_from_slice(&[0, 0]);
                application.push_lv(&mut v);
                push_privileges(&mut v, *privileges);
                push_lv(&mut v, params, "make selectable parameters")?;
                push_ber_lv(&mut v, token);
            }
            Self::ForExtradition {
                security_domain,
                application,
                params,
                token,
            } => {
                security_domain.push_lv(&mut v);
                v.push(0);
                application.push_lv(&mut v);
                v.push(0);
                push_lv(&mut v, params, "extradition parameters")?;
                push_ber_lv(&mut v, token);
            }
            Self::ForPersonalization { application } => {
                v.extend_from_slice(&[0, 0]);
                application.push_lv(&mut v);
                v.extend_from_slice(&[0, 0, 0]);
            }
            Self::ForRegistryUpdate {
                security_domain,
                application,
                privileges,
                params,
                token,
            } => {
                push_opt_aid(&mut v, security_domain.as_ref());
                v.push(0);
                push_opt_aid(&mut v, application.as_ref());
                match privileges {
                    Some(p) => push_privileges(&mut v, *p),
                    None => v.push(0),
                }
                push_lv(&mut v, params, "registry update parameters")?;
                push_ber_lv(&mut v, token);
            }
        }
        Ok(v)
    }

    /// The command: `80 E6 P1 00 Lc data 00`.
    pub fn to_command(&self) -> Result<Command> {
        Ok(Command::new(CLA_GP, ins::INSTALL, self.p1(), 0x00)
            .with_data(self.data()?)
            .with_le(256))
    }

    /// Reads INSTALL.
    pub fn parse(cmd: &Command) -> Result<Self> {
        const CTX: &str = "INSTALL";
        expect_ins(cmd, ins::INSTALL, CTX)?;
        let mut c = Cursor::new(&cmd.data, CTX);
        let aid = |b: &[u8]| Aid::new(b);
        let opt_aid = |b: &[u8]| {
            if b.is_empty() {
                Ok(None)
            } else {
                Aid::new(b).map(Some)
            }
        };
        let privileges = |b: &[u8]| Privileges::from_bytes(b);
        let empty = |b: &[u8], field: &'static str| {
            if b.is_empty() {
                Ok(())
            } else {
                Err(Error::FieldLength {
                    context: CTX,
                    field,
                    len: b.len(),
                    expected: "0",
                })
            }
        };
        let out = match cmd.p1 & 0x7F {
            0x02 => Self::ForLoad {
                load_file: aid(c.lv("load file AID")?)?,
                security_domain: opt_aid(c.lv("security domain AID")?)?,
                hash: c.lv("load file data block hash")?.to_vec(),
                params: c.lv("load parameters")?.to_vec(),
                token: c.ber_lv("load token")?.to_vec(),
            },
            p1 @ (0x04 | 0x0C) => Self::ForInstall {
                load_file: aid(c.lv("executable load file AID")?)?,
                module: aid(c.lv("executable module AID")?)?,
                application: aid(c.lv("application AID")?)?,
                privileges: privileges(c.lv("privileges")?)?,
                params: c.lv("install parameters")?.to_vec(),
                token: c.ber_lv("install token")?.to_vec(),
                make_selectable: p1 == 0x0C,
            },
            0x08 => {
                empty(
                    c.lv("executable load file AID")?,
                    "executable load file AID",
                )?;
                empty(c.lv("executable module AID")?, "executable module AID")?;
                let application = aid(c.lv("application AID")?)?;
                let p = c.lv("privileges")?;
                Self::ForMakeSelectable {
                    application,
                    privileges: if p.is_empty() {
                        Privileges::NONE
                    } else {
                        privileges(p)?
                    },
                    params: c.lv("make selectable parameters")?.to_vec(),
                    token: c.ber_lv("make selectable token")?.to_vec(),
                }
            }
            0x10 => {
                let security_domain = aid(c.lv("security domain AID")?)?;
                empty(c.lv("executable module AID")?, "executable module AID")?;
                let application = aid(c.lv("application AID")?)?;
                empty(c.lv("privileges")?, "privileges")?;
                Self::ForExtradition {
                    security_domain,
                    application,
                    params: c.lv("extradition parameters")?.to_vec(),
                    token: c.ber_lv("extradition token")?.to_vec(),
                }
            }
            0x20 => {
                empty(
                    c.lv("executable load file AID")?,
                    "executable load file AID",
                )?;
                empty(c.lv("executable module AID")?, "executable module AID")?;
                let application = aid(c.lv("application AID")?)?;
                empty(c.lv("privileges")?, "privileges")?;
                empty(c.lv("install parameters")?, "install parameters")?;
                empty(c.lv("install token")?, "install token")?;
                Self::ForPersonalization { application }
            }
            0x40 => {
                let security_domain = opt_aid(c.lv("security domain AID")?)?;
                empty(c.lv("executable module AID")?, "executable module AID")?;
                let application = opt_aid(c.lv("application AID")?)?;
                let p = c.lv("privileges")?;
                Self::ForRegistryUpdate {
                    security_domain,
                    application,
                    privileges: if p.is_empty() {
                        None
                    } else {
                        Some(privileges(p)?)
                    },
                    params: c.lv("registry update parameters")?.to_vec(),
                    token: c.ber_lv("registry update token")?.to_vec(),
                }
            }
            _ => return Err(bad_p1p2(cmd, CTX)),
        };
        c.finish()?;
        Ok(out)
    }
}

/// Install (and load) parameters (GP 2.3.1 §11.5.2.3.7, Tables 11-48 and 11-49):
///
/// * `C9 len data`: application specific parameters, passed to the applet's `install()`.
///   [for install] requires it, even empty (`C9 00`).
/// * `EF len { … }`: system specific parameters, e.g. `C6` non-volatile code, `C7`
///   volatile and `C8` non-volatile memory quotas, `CA` ETSI TS 102 226 UICC toolkit
///   parameters, `D7`/`D8` reserved memory.
/// * Other objects (e.g. `EA` TS 102 226 template, `B6` control reference template).
///
/// Load parameters use the same coding without `C9`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallParams {
    /// `C9` value; `None` omits the tag (load parameters).
    pub application: Option<Vec<u8>>,
    /// The objects inside `EF`, as (tag, value), in order; `EF` is omitted when empty.
    pub system: Vec<(Tag, Vec<u8>)>,
    /// Other top-level objects after `EF`, as (tag, value).
    pub other: Vec<(Tag, Vec<u8>)>,
}

impl Default for InstallParams {
    /// `C9 00`.
    fn default() -> Self {
        Self {
            application: Some(Vec::new()),
            system: Vec::new(),
            other: Vec::new(),
        }
    }
}

/// Minimal big-endian encoding of a memory quota, at least 2 bytes (GP uses 2, or 4 above 32767).
fn quota(n: u32) -> Vec<u8> {
    if n <= 0xFFFF {
        (n as u16).to_be_bytes().to_vec()
    } else {
        n.to_be_bytes().to_vec()
    }
}

impl InstallParams {
    /// Application specific parameters only: `C9 len data`.
    pub fn application(data: &[u8]) -> Self {
        Self {
            application: Some(data.to_vec()),
            ..Self::default()
        }
    }

    /// Adds a system parameter inside `EF`.
    pub fn with_system(mut self, tag: Tag, value: &[u8]) -> Self {
        self.system.push((tag, value.to_vec()));
        self
    }

    /// `EF/C8`: non-volatile memory quota for \[for install\] (GP 2.3.1 Table 11-49, ETSI TS
    /// 102 226), or the non-volatile data minimum requirement in load parameters (Table 11-48).
    pub fn with_non_volatile_memory(self, bytes: u32) -> Self {
        self.with_system(Tag::new(0xC8), &quota(bytes))
    }

    /// `EF/C7`: volatile memory quota (install) or volatile data minimum requirement (load).
    pub fn with_volatile_memory(self, bytes: u32) -> Self {
        self.with_system(Tag::new(0xC7), &quota(bytes))
    }

    /// `EF/C6`: non-volatile code minimum requirement (load parameters, Table 11-48).
    pub fn with_non_volatile_code(self, bytes: u32) -> Self {
        self.with_system(Tag::new(0xC6), &quota(bytes))
    }

    /// `EF/CA`: ETSI TS 102 226 UICC system specific parameters (toolkit), raw.
    pub fn with_uicc_toolkit(self, value: &[u8]) -> Self {
        self.with_system(Tag::new(0xCA), value)
    }

    /// The value of system parameter `tag` as an unsigned number, if present and ≤ 4 bytes.
    pub fn system_u32(&self, tag: Tag) -> Option<u32> {
        self.system
            .iter()
            .find(|(t, _)| *t == tag)
            .filter(|(_, v)| v.len() <= 4)
            .map(|(_, v)| v.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)))
    }

    /// Encodes `C9 …`, `EF { … }`, then the other objects.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        if let Some(a) = &self.application {
            tlv::encode_into(&mut v, Tag::new(0xC9), a);
        }
        if !self.system.is_empty() {
            let mut ef = Vec::new();
            for (t, x) in &self.system {
                tlv::encode_into(&mut ef, *t, x);
            }
            tlv::encode_into(&mut v, Tag::new(0xEF), &ef);
        }
        for (t, x) in &self.other {
            tlv::encode_into(&mut v, *t, x);
        }
        v
    }

    /// Reads a parameters field. An empty field reads as no `C9`, no `EF`.
    pub fn parse(data: &[u8]) -> Result<Self> {
        const CTX: &str = "install parameters";
        let mut out = Self {
            application: None,
            system: Vec::new(),
            other: Vec::new(),
        };
        for t in tlv_all(data, CTX)? {
            match t.tag().value() {
                0xC9 if out.application.is_none() => out.application = Some(t.value().to_vec()),
                0xEF if out.system.is_empty() => {
                    for s in tlv_all(t.value(), CTX)? {
                        out.system.push((s.tag(), s.value().to_vec()));
                    }
                }
                _ => out.other.push((t.tag(), t.value().to_vec())),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::{hex, parse_hex};

    #[test]
    fn pysim_install_parameter_vectors() {
        // pySim test_globalplatform.py Install_param_Test (VECTORS.md §6.4).
        assert_eq!(hex(&InstallParams::default().to_bytes()), "C900");
        let p = InstallParams::default()
            .with_non_volatile_memory(256)
            .with_volatile_memory(256)
            .with_uicc_toolkit(&parse_hex("010001001505000000000000000000000000").unwrap());
        let b = p.to_bytes();
        assert_eq!(
            hex(&b),
            "C900EF1CC8020100C7020100CA12010001001505000000000000000000000000"
        );
        let back = InstallParams::parse(&b).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.system_u32(Tag::new(0xC8)), Some(256));
    }

    #[test]
    fn install_for_install_and_make_selectable_layout() {
        let lf: Aid = "D07002CA44".parse().unwrap();
        let m: Aid = "D07002CA44900101".parse().unwrap();
        let i = Install::for_install_and_make_selectable(lf, m, m, Privileges::NONE);
        let c = i.to_command().unwrap();
        assert_eq!(
            hex(&c.to_bytes().unwrap()),
            "80E60C001E05D07002CA4408D07002CA4490010108D07002CA44900101010002C9000000"
        );
        assert_eq!(Install::parse(&c).unwrap(), i);
    }
}
