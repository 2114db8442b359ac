//! Keystore configuration strings.

use crate::{Error, KeyStore, MasterKey, Pkcs11KeyStore, SoftwareKeyStore};
use core::fmt;
use core::str::FromStr;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Where a keystore is. Parsed from (and displayed as) a string:
///
/// * `file:/var/lib/cardwright/keys.json` (or just a path): the software keystore; its
///   master key comes from `?master-key-file=/path` if given, else from
///   `CARDWRIGHT_MASTER_KEY`.
/// * `pkcs11:/usr/lib/softhsm/libsofthsm2.so?slot=N&pin-env=VAR`, or `…?token=LABEL…`:
///   a PKCS#11 token; the user PIN comes from the environment variable `pin-env` (default
///   `CARDWRIGHT_PKCS11_PIN`) or from the file `pin-file`. `backup=wrap` makes new base
///   keys wrappable for [`KeyStore::backup`] (see [`Pkcs11Config::backup_wrap`]).
///
/// Values may be percent-encoded (`token=my%20token`). No secret is ever part of the
/// string, so it can be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The software keystore file.
    Software {
        /// The keystore file.
        path: PathBuf,
        /// A file holding the master key; `None`: the `CARDWRIGHT_MASTER_KEY` variable.
        master_key_file: Option<PathBuf>,
    },
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Config),
}

/// How to reach a PKCS#11 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// Which slot.
    pub slot: SlotSelector,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// Create base keys with `CKA_EXTRACTABLE=true` (still `CKA_SENSITIVE=true`: the value
    /// is never readable) so that [`KeyStore::backup`] can `C_WrapKey` them. Off by
    /// default: base keys are non-extractable and only the HSM's own backup/cloning can
    /// copy them. Anyone holding the user PIN can wrap an extractable key under a key of
    /// their choosing, so turn this on only where the PIN is as well guarded as the keys.
    pub backup_wrap: bool,
}

/// Which slot of a PKCS#11 module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotSelector {
    /// The slot with this slot ID (`slot=N`).
    Id(u64),
    /// The slot whose token has this label (`token=LABEL`).
    Token(String),
    /// The first slot with a token (neither given).
    First,
}

/// Where the PKCS#11 user PIN comes from (never the PIN itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline ignored).
    File(PathBuf),
}

impl PinSource {
    /// The default: `CARDWRIGHT_PKCS11_PIN`.
    pub const DEFAULT_ENV: &'static str = "CARDWRIGHT_PKCS11_PIN";

    /// Reads the PIN.
    pub(crate) fn read(&self) -> Result<Zeroizing<String>, Error> {
        match self {
            PinSource::Env(var) => std::env::var(var)
                .map(Zeroizing::new)
                .map_err(|_| Error::Config(format!("PKCS#11 PIN variable {var} is not set"))),
            PinSource::File(path) => {
                let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| Error::Config(format!("{}: PIN is not text", path.display())))?;
                Ok(Zeroizing::new(
                    text.trim_end_matches(['\r', '\n']).to_string(),
                ))
            }
        }
    }
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::Config(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::Config(format!("{s:?} is not UTF-8")))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn split_query(s: &str) -> Result<(String, Vec<(String, String)>), Error> {
    let (path, query) = s.split_once('?').unwrap_or((s, ""));
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("parameter {pair:?} has no value")))?;
        if params.iter().any(|(seen, _)| seen == k) {
            return Err(Error::Config(format!("parameter {k} given twice")));
        }
        params.push((k.to_string(), percent_decode(v)?));
    }
    Ok((percent_decode(path)?, params))
}

/// The scheme of a string that starts like a URI (`scheme:`, RFC 3986 §3.1) other than the
/// two this crate knows, so that a typo such as `fiel:keys.json` or `foo:bar` is refused
/// rather than taken as the name of a new key store file.
fn unknown_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let uri_like = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (uri_like && scheme != "file" && scheme != "pkcs11").then_some(scheme)
}

impl FromStr for StoreConfig {
    type Err = Error;

    fn from_str(s: &str) -> Result<StoreConfig, Error> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("pkcs11:") {
            let (module, params) = split_query(rest)?;
            if module.is_empty() {
                return Err(Error::Config("pkcs11: needs the module path".into()));
            }
            let mut slot = SlotSelector::First;
            let mut pin = None;
            let mut backup_wrap = false;
            for (k, v) in params {
                match k.as_str() {
                    "slot" => {
                        if slot != SlotSelector::First {
                            return Err(Error::Config("give slot or token, not both".into()));
                        }
                        slot = SlotSelector::Id(v.parse().map_err(|_| {
                            Error::Config(format!("slot {v:?} is not a number"))
                        })?);
                    }
                    "token" => {
                        if slot != SlotSelector::First {
                            return Err(Error::Config("give slot or token, not both".into()));
                        }
                        slot = SlotSelector::Token(v);
                    }
                    "pin-env" | "pin-file" if pin.is_some() => {
                        return Err(Error::Config("give pin-env or pin-file, not both".into()))
                    }
                    "pin-env" => pin = Some(PinSource::Env(v)),
                    "pin-file" => pin = Some(PinSource::File(PathBuf::from(v))),
                    "backup" => match v.as_str() {
                        "wrap" => backup_wrap = true,
                        "none" => backup_wrap = false,
                        _ => return Err(Error::Config(format!("backup={v}: want wrap or none"))),
                    },
                    "pin" | "pin-value" => {
                        return Err(Error::Config(
                            "a PIN in the configuration string would end up in logs; use pin-env or pin-file"
                                .into(),
                        ))
                    }
                    _ => return Err(Error::Config(format!("unknown pkcs11 parameter {k:?}"))),
                }
            }
            return Ok(StoreConfig::Pkcs11(Pkcs11Config {
                module: PathBuf::from(module),
                slot,
                pin: pin.unwrap_or_else(|| PinSource::Env(PinSource::DEFAULT_ENV.into())),
                backup_wrap,
            }));
        }
        if let Some(scheme) = unknown_scheme(s) {
            return Err(Error::Config(format!(
                "unknown key store scheme '{scheme}:' in {s:?}: use file:PATH or pkcs11:MODULE?… \
                 (write file:{s} for a file whose name has a colon)"
            )));
        }
        let rest = s.strip_prefix("file:").unwrap_or(s);
        let (path, params) = split_query(rest)?;
        if path.is_empty() {
            return Err(Error::Config("empty keystore path".into()));
        }
        let mut master_key_file = None;
        for (k, v) in params {
            match k.as_str() {
                "master-key-file" => master_key_file = Some(PathBuf::from(v)),
                _ => return Err(Error::Config(format!("unknown file parameter {k:?}"))),
            }
        }
        Ok(StoreConfig::Software {
            path: PathBuf::from(path),
            master_key_file,
        })
    }
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Software {
                path,
                master_key_file,
            } => {
                write!(f, "file:{}", percent_encode(&path.to_string_lossy()))?;
                if let Some(m) = master_key_file {
                    write!(
                        f,
                        "?master-key-file={}",
                        percent_encode(&m.to_string_lossy())
                    )?;
                }
                Ok(())
            }
            StoreConfig::Pkcs11(c) => {
                write!(f, "pkcs11:{}", percent_encode(&c.module.to_string_lossy()))?;
                let mut sep = '?';
                let mut param = |f: &mut fmt::Formatter<'_>, k: &str, v: &str| {
                    let r = write!(f, "{sep}{k}={}", percent_encode(v));
                    sep = '&';
                    r
                };
                match &c.slot {
                    SlotSelector::Id(n) => param(f, "slot", &n.to_string())?,
                    SlotSelector::Token(t) => param(f, "token", t)?,
                    SlotSelector::First => {}
                }
                match &c.pin {
                    PinSource::Env(v) => param(f, "pin-env", v)?,
                    PinSource::File(p) => param(f, "pin-file", &p.to_string_lossy())?,
                }
                if c.backup_wrap {
                    param(f, "backup", "wrap")?;
                }
                Ok(())
            }
        }
    }
}

impl StoreConfig {
    /// Opens the keystore. A software keystore that does not exist yet is created (empty)
    /// under the configured master key.
    pub fn open(&self) -> Result<Box<dyn KeyStore>, Error> {
        self.open_with_master(None)
    }

    /// Like [`StoreConfig::open`], with the software master key given by the caller (for
    /// example from the CLI's `--master-key-file`); ignored for PKCS#11.
    pub fn open_with_master(&self, master: Option<MasterKey>) -> Result<Box<dyn KeyStore>, Error> {
        self.open_as(master, |s| Box::new(s) as _, |p| Box::new(p) as _)
    }

    /// Opens the configured store (the one place that does) and hands it to `software` or
    /// `pkcs11`, which box it as the trait the caller wants. A software keystore that does
    /// not exist yet is created; its master key is `master`, else the configured file, else
    /// the environment.
    pub(crate) fn open_as<T>(
        &self,
        master: Option<MasterKey>,
        software: impl FnOnce(SoftwareKeyStore) -> T,
        pkcs11: impl FnOnce(Pkcs11KeyStore) -> T,
    ) -> Result<T, Error> {
        match self {
            StoreConfig::Software {
                path,
                master_key_file,
            } => {
                let master = match (master, master_key_file) {
                    (Some(m), _) => m,
                    (None, Some(file)) => MasterKey::from_file(file)?,
                    (None, None) => MasterKey::from_env()?,
                };
                Ok(software(SoftwareKeyStore::open_or_create(path, master)?))
            }
            StoreConfig::Pkcs11(c) => Ok(pkcs11(Pkcs11KeyStore::open(c)?)),
        }
    }
}

/// Parses a configuration string (see [`StoreConfig`]) and opens the keystore.
pub fn open(config: &str) -> Result<Box<dyn KeyStore>, Error> {
    config.parse::<StoreConfig>()?.open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_pkcs11() {
        let c: StoreConfig = "pkcs11:/usr/lib/softhsm/libsofthsm2.so?slot=3&pin-env=HSM_PIN"
            .parse()
            .unwrap();
        assert_eq!(
            c,
            StoreConfig::Pkcs11(Pkcs11Config {
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                slot: SlotSelector::Id(3),
                pin: PinSource::Env("HSM_PIN".into()),
                backup_wrap: false,
            })
        );
        let c: StoreConfig = "pkcs11:/m.so?token=cw%20test&pin-file=/run/pin&backup=wrap"
            .parse()
            .unwrap();
        let StoreConfig::Pkcs11(p) = &c else {
            panic!("{c:?}")
        };
        assert_eq!(p.slot, SlotSelector::Token("cw test".into()));
        assert_eq!(p.pin, PinSource::File("/run/pin".into()));
        assert!(p.backup_wrap);
        assert_eq!(c.to_string().parse::<StoreConfig>().unwrap(), c);
        let d: StoreConfig = "pkcs11:/m.so".parse().unwrap();
        assert_eq!(d.to_string(), "pkcs11:/m.so?pin-env=CARDWRIGHT_PKCS11_PIN");
    }

    #[test]
    fn parse_software() {
        let c: StoreConfig = "/var/lib/cw/keys.json".parse().unwrap();
        assert_eq!(
            c,
            StoreConfig::Software {
                path: "/var/lib/cw/keys.json".into(),
                master_key_file: None
            }
        );
        let c: StoreConfig = "file:keys.json?master-key-file=/etc/cw/master"
            .parse()
            .unwrap();
        assert_eq!(
            c.to_string(),
            "file:keys.json?master-key-file=/etc/cw/master"
        );
    }

    #[test]
    fn paths_with_colons() {
        for (given, path) in [
            ("file:foo:bar", "foo:bar"),
            ("./foo:bar", "./foo:bar"),
            ("/var/lib/a:b/keys.json", "/var/lib/a:b/keys.json"),
        ] {
            let c: StoreConfig = given.parse().unwrap();
            assert_eq!(
                c,
                StoreConfig::Software {
                    path: path.into(),
                    master_key_file: None
                },
                "{given}"
            );
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "pkcs11:",
            "pkcs11:/m.so?slot=x",
            "pkcs11:/m.so?slot=1&token=a",
            "pkcs11:/m.so?pin=1234",
            "pkcs11:/m.so?colour=red",
            "pkcs11:/m.so?slot",
            "pkcs11:/m.so?token=%zz",
            "pkcs11:/m.so?slot=1&slot=2",
            "file:",
            "file:k.json?x=1",
            "foo:bar",
            "fiel:keys.json",
            "pkcs:/m.so",
        ] {
            let e = bad.parse::<StoreConfig>().unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{bad}: {e}");
            assert!(!e.to_string().contains("1234"), "{e}");
        }
    }
}
