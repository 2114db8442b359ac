//! Types shared by every backend: base key descriptions, key components, categories.

use crate::Error;
use core::fmt;
use scp::{Key, KeyKind};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::{Zeroize, Zeroizing};

/// Which backend holds a base key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The software keystore file, encrypted at rest under a master key.
    Software,
    /// A PKCS#11 token (HSM); the key never leaves it in the clear.
    Pkcs11,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Software => "software",
            Backend::Pkcs11 => "pkcs11",
        })
    }
}

/// The life-cycle state of a base key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Usable for new cards and for rewriting old ones.
    Active,
    /// Past its expiry date. Still derives keys (cards issued under it must stay
    /// manageable), but [`crate::KeyStore::current`] no longer picks it for new cards.
    Expired,
    /// Retired for good: derives nothing any more.
    Retired,
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Retired => "retired",
        })
    }
}

/// What [`crate::KeyStore::list`] tells about one base key version. Holds no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseKeyInfo {
    /// The card category the key belongs to.
    pub category: String,
    /// The version, from 1, never reused within a category.
    pub version: u32,
    /// 3DES (derived with EMV CPG 2.1) or AES (derived with KDF3).
    pub kind: KeyKind,
    /// Key length in bytes (16/24 for 3DES; 16/24/32 for AES).
    pub len: usize,
    /// Key check value (GP 2.3.1 §B.6: 3DES-ECB of `00`×8; AES-ECB of `01`×16; first 3 bytes).
    pub kcv: [u8; 3],
    /// When the key was created or imported (PKCS#11: the day, `CKA_START_DATE`).
    pub created: SystemTime,
    /// When the key expires, if ever (PKCS#11: the day, `CKA_END_DATE`).
    pub expires: Option<SystemTime>,
    /// Where the key lives.
    pub backend: Backend,
    /// Active, expired or retired, as of the call.
    pub status: KeyStatus,
}

impl fmt::Display for BaseKeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} {}-{} KCV {} {} ({}), created {}",
            self.category,
            self.version,
            self.kind,
            self.len * 8,
            apdu::hex(&self.kcv),
            self.status,
            self.backend,
            rfc3339(unix(self.created)),
        )?;
        if let Some(e) = self.expires {
            write!(f, ", expires {}", rfc3339(unix(e)))?;
        }
        Ok(())
    }
}

/// The status of a key: retired wins, then expiry against `now`.
pub(crate) fn status_at(retired: bool, expires: Option<SystemTime>, now: SystemTime) -> KeyStatus {
    if retired {
        KeyStatus::Retired
    } else if expires.is_some_and(|e| e <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

/// Category names: 1 to 64 characters from `A-Z a-z 0-9 . _ - /`, starting with a letter or
/// digit, no `//`, not ending in `/`.
///
/// A category is a card product (for example `acme/gold-debit`): the `/` lets several
/// tenants share one keystore with `tenant/category` names. Tenants that need separate
/// master keys or HSM partitions get separate keystores instead.
pub fn validate_category(name: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::BadCategory {
            name: name.chars().take(80).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 64 {
        return bad("longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'))
    {
        return bad("only A-Z a-z 0-9 . _ - / are allowed");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if name.contains("//") || name.ends_with('/') {
        return bad("empty path segment");
    }
    Ok(())
}

/// One key component held by one custodian (dual control): the component bytes and the
/// check value written down with it. `Debug` shows only the length and the KCV.
#[derive(Clone)]
pub struct Component {
    bytes: Zeroizing<Vec<u8>>,
    kcv: [u8; 3],
}

impl Component {
    /// A component and its expected key check value.
    pub fn new(bytes: &[u8], kcv: [u8; 3]) -> Component {
        Component {
            bytes: Zeroizing::new(bytes.to_vec()),
            kcv,
        }
    }

    /// A component typed as hex (spaces allowed) and its KCV as 6 hex digits.
    pub fn from_hex(component: &str, kcv: &str) -> Result<Component, Error> {
        let bytes = decode_hex_secret(component).map_err(|detail| Error::Malformed {
            what: "key component",
            detail: detail.into(),
        })?;
        let kcv = match apdu::parse_hex(kcv) {
            Ok(v) if v.len() == 3 => [v[0], v[1], v[2]],
            _ => {
                return Err(Error::Malformed {
                    what: "key check value",
                    detail: "want 6 hex digits".into(),
                })
            }
        };
        Ok(Component { bytes, kcv })
    }

    /// The check value given with the component.
    pub fn kcv(&self) -> [u8; 3] {
        self.kcv
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Component({} bytes, KCV {})",
            self.bytes.len(),
            apdu::hex(&self.kcv)
        )
    }
}

/// Checks every component's KCV, then XORs them into the base key (dual control: GP and
/// ANSI X9.24 key ceremonies). Refuses fewer than 2 components, unequal lengths, equal
/// components and an all-zero result.
pub fn combine_components(kind: KeyKind, components: &[Component]) -> Result<Key, Error> {
    if components.len() < 2 {
        return Err(Error::TooFewComponents(components.len()));
    }
    let first = components[0].bytes.len();
    for (i, c) in components.iter().enumerate() {
        if c.bytes.len() != first {
            return Err(Error::ComponentLength {
                index: i + 1,
                len: c.bytes.len(),
                first,
            });
        }
        let key = Key::new(kind, &c.bytes)?;
        let computed = key.kcv();
        if computed != c.kcv {
            return Err(Error::ComponentKcv {
                index: i + 1,
                given: apdu::hex(&c.kcv),
                computed: apdu::hex(&computed),
            });
        }
    }
    for i in 0..components.len() {
        for j in i + 1..components.len() {
            if components[i].bytes == components[j].bytes {
                return Err(Error::DuplicateComponent {
                    first: i + 1,
                    second: j + 1,
                });
            }
        }
    }
    let mut combined = Zeroizing::new(vec![0u8; first]);
    for c in components {
        for (out, b) in combined.iter_mut().zip(c.bytes.iter()) {
            *out ^= b;
        }
    }
    if combined.iter().all(|b| *b == 0) {
        return Err(Error::ZeroKey);
    }
    Ok(Key::new(kind, &combined)?)
}

/// What is wrong with a signing or key set label, if anything: the labels are 1 to 64
/// characters, ASCII letters, digits and `-_./`.
pub(crate) fn label_problem(label: &str) -> Option<&'static str> {
    if label.is_empty() || label.len() > 64 {
        return Some("must be 1 to 64 characters");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        return Some("only ASCII letters, digits and -_./ are allowed");
    }
    None
}

/// Checks a key length for a kind.
pub(crate) fn check_len(kind: KeyKind, len: usize) -> Result<(), Error> {
    match (kind, len) {
        (KeyKind::Des3, 16 | 24) | (KeyKind::Aes, 16 | 24 | 32) => Ok(()),
        (KeyKind::Des3, _) => Err(Error::BadKeyLength { kind: "3DES", len }),
        (KeyKind::Aes, _) => Err(Error::BadKeyLength { kind: "AES", len }),
    }
}

/// A fresh random key. DES keys get odd parity (FIPS 46-3 §1; ignored by the cipher, but
/// some HSMs refuse DES keys without it).
pub(crate) fn random_key(kind: KeyKind, len: usize) -> Result<Key, Error> {
    check_len(kind, len)?;
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    loop {
        crate::error::random(&mut bytes)?;
        if kind == KeyKind::Des3 {
            for b in bytes.iter_mut() {
                *b = (*b & 0xFE) | u8::from((*b >> 1).count_ones() % 2 == 0);
            }
        }
        if bytes.iter().any(|b| *b != 0) {
            return Ok(Key::new(kind, &bytes)?);
        }
    }
}

/// The expiry of a rotated key: the same lifetime as the version it replaces.
pub(crate) fn rotated_expiry(prev: &BaseKeyInfo, now: SystemTime) -> Option<SystemTime> {
    let life = prev.expires?.duration_since(prev.created).ok()?;
    now.checked_add(life.max(Duration::from_secs(86_400)))
}

/// The newest version that is not retired (else the newest) of a category, from a list.
pub(crate) fn newest<'a>(infos: &'a [BaseKeyInfo], category: &str) -> Option<&'a BaseKeyInfo> {
    let of_cat = || infos.iter().filter(|i| i.category == category);
    of_cat()
        .filter(|i| i.status != KeyStatus::Retired)
        .max_by_key(|i| i.version)
        .or_else(|| of_cat().max_by_key(|i| i.version))
}

/// The next free version of a category.
pub(crate) fn next_version(infos: &[BaseKeyInfo], category: &str) -> u32 {
    infos
        .iter()
        .filter(|i| i.category == category)
        .map(|i| i.version)
        .max()
        .unwrap_or(0)
        .saturating_add(1)
}

/// Seconds since the Unix epoch (negative before 1970), whole seconds.
pub(crate) fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let s = e.duration();
            let secs = i64::try_from(s.as_secs()).unwrap_or(i64::MAX);
            // round towards minus infinity
            -secs - i64::from(s.subsec_nanos() > 0)
        }
    }
}

/// The instant `secs` seconds after the Unix epoch.
pub(crate) fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Now, truncated to whole seconds (what the stores keep).
pub(crate) fn now_secs() -> SystemTime {
    from_unix(unix(SystemTime::now()))
}

/// RFC 3339 text of a Unix time (UTC, whole seconds).
pub(crate) fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

/// Parses RFC 3339 text to Unix seconds.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Hex decoding straight into a zeroized buffer (spaces, tabs and newlines ignored).
pub(crate) fn decode_hex_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 2));
    let mut high: Option<u8> = None;
    for c in text.bytes() {
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => {
                out.zeroize();
                return Err("not hex");
            }
        };
        match high.take() {
            None => high = Some(v),
            Some(h) => out.push((h << 4) | v),
        }
    }
    if high.is_some() {
        return Err("odd number of hex digits");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn comp(kind: KeyKind, hex: &str) -> Component {
        let bytes = apdu::parse_hex(hex).unwrap();
        let kcv = Key::new(kind, &bytes).unwrap().kcv();
        Component::new(&bytes, kcv)
    }

    #[test]
    fn categories() {
        for ok in ["gold", "acme/gold-debit", "a", "T1.v2_x"] {
            validate_category(ok).unwrap();
        }
        for bad in ["", "/x", "x/", "a//b", "a:b", "-x", "é", &"x".repeat(65)] {
            assert!(validate_category(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn combine_xors_after_kcv_checks() {
        let a = comp(KeyKind::Des3, "00000000000000000000000000000001");
        let b = comp(KeyKind::Des3, "404142434445464748494A4B4C4D4E4E");
        let key = combine_components(KeyKind::Des3, &[a.clone(), b]).unwrap();
        // GP default key; its KCV is public (GPP testSessionKeys_SCP01, GPNET).
        assert_eq!(apdu::hex(&key.kcv()), "8BAF47");

        let wrong = Component::new(&[0x11; 16], [1, 2, 3]);
        let e = combine_components(KeyKind::Des3, &[a.clone(), wrong]).unwrap_err();
        assert!(matches!(e, Error::ComponentKcv { index: 2, .. }), "{e}");
        assert!(matches!(
            combine_components(KeyKind::Des3, std::slice::from_ref(&a)),
            Err(Error::TooFewComponents(1))
        ));
        assert!(matches!(
            combine_components(KeyKind::Des3, &[a.clone(), a.clone()]),
            Err(Error::DuplicateComponent {
                first: 1,
                second: 2
            })
        ));
        let short = comp(
            KeyKind::Des3,
            "000102030405060708090A0B0C0D0E0F1011121314151617",
        );
        assert!(matches!(
            combine_components(KeyKind::Des3, &[a, short]),
            Err(Error::ComponentLength { index: 2, .. })
        ));
    }

    #[test]
    fn debug_is_redacted() {
        let c = Component::from_hex("0123456789ABCDEF FEDCBA9876543210", "000000").unwrap();
        let d = format!("{c:?}");
        assert_eq!(d, "Component(16 bytes, KCV 000000)");
    }

    #[test]
    fn des_keys_get_odd_parity() {
        let k = random_key(KeyKind::Des3, 24).unwrap();
        assert!(k.expose().iter().all(|b| b.count_ones() % 2 == 1));
        assert_eq!(random_key(KeyKind::Aes, 32).unwrap().len(), 32);
        assert!(random_key(KeyKind::Aes, 20).is_err());
    }

    #[test]
    fn time_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2030-01-02T03:04:05Z"), Some(1_893_553_445));
        assert_eq!(unix(from_unix(-5)), -5);
    }

    proptest! {
        #[test]
        fn hex_secret_matches_apdu(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let h = apdu::hex(&bytes);
            prop_assert_eq!(decode_hex_secret(&h).unwrap().to_vec(), bytes);
        }
    }
}
