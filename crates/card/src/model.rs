//! The card's persistent state: the GlobalPlatform registry (GP 2.3.1 §5.2 / §6), life
//! cycle states (§5.1, §5.3), privileges (§6.6) and the key sets of each security domain.
//!
//! Everything here is serialised as the JSON state file (the card's "EEPROM"). Byte strings
//! are stored as upper-case hex. Keys are stored in clear (the file *is* the card's secret
//! memory) but never appear in `Debug` output.

use core::fmt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// The Issuer Security Domain's AID (GP 2.3.1 §H.1.3: `A0 00 00 01 51 00 00 00`).
pub const ISD_AID: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];
/// The Executable Load File of the security domain code (what GlobalPlatformPro and most
/// cards use: `A0 00 00 01 51 53 50`).
pub const SD_PACKAGE: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50];
/// The Executable Module of the security domain code (`A0 00 00 01 51 53 50 41`).
pub const SD_MODULE: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41];

/// Card life cycle states (GP 2.3.1 §5.1.1, coding §11.1.1).
pub(crate) mod card_lc {
    pub const OP_READY: u8 = 0x01;
    pub const INITIALIZED: u8 = 0x07;
    pub const SECURED: u8 = 0x0F;
    pub const CARD_LOCKED: u8 = 0x7F;
    pub const TERMINATED: u8 = 0xFF;
}

/// Application and security domain life cycle states (GP 2.3.1 §5.3, coding §11.1.1).
/// LOCKED is bit 8 set over the previous state (`1xxxxx11`).
pub(crate) mod app_lc {
    /// Executable Load File: LOADED (§5.3.1).
    pub const LOADED: u8 = 0x01;
    pub const INSTALLED: u8 = 0x03;
    pub const SELECTABLE: u8 = 0x07;
    /// Security domains only.
    pub const PERSONALIZED: u8 = 0x0F;
    pub const LOCKED_BIT: u8 = 0x80;

    pub fn is_locked(lc: u8) -> bool {
        lc & LOCKED_BIT != 0
    }
    /// SELECTABLE, PERSONALIZED or an application-specific state (`0xxxx111`), not locked.
    pub fn is_selectable(lc: u8) -> bool {
        !is_locked(lc) && lc & 0x07 == 0x07
    }
}

/// Privileges (GP 2.3.1 §6.6.1, coding §11.1.2), as a 24-bit value:
/// byte 1 in bits 23..16, byte 2 in 15..8, byte 3 in 7..0.
/// (The complete table, for reference; `gp::privileges` has the names.)
#[allow(dead_code)]
pub(crate) mod privs {
    pub const SECURITY_DOMAIN: u32 = 0x80_0000;
    pub const DAP_VERIFICATION: u32 = 0x40_0000;
    pub const DELEGATED_MANAGEMENT: u32 = 0x20_0000;
    pub const CARD_LOCK: u32 = 0x10_0000;
    pub const CARD_TERMINATE: u32 = 0x08_0000;
    pub const CARD_RESET: u32 = 0x04_0000;
    pub const CVM_MANAGEMENT: u32 = 0x02_0000;
    pub const MANDATED_DAP: u32 = 0x01_0000;
    pub const TRUSTED_PATH: u32 = 0x00_8000;
    pub const AUTHORIZED_MANAGEMENT: u32 = 0x00_4000;
    pub const TOKEN_VERIFICATION: u32 = 0x00_2000;
    pub const GLOBAL_DELETE: u32 = 0x00_1000;
    pub const GLOBAL_LOCK: u32 = 0x00_0800;
    pub const GLOBAL_REGISTRY: u32 = 0x00_0400;
    pub const FINAL_APPLICATION: u32 = 0x00_0200;
    pub const GLOBAL_SERVICE: u32 = 0x00_0100;
    pub const RECEIPT_GENERATION: u32 = 0x00_0080;
    pub const CIPHERED_LOAD_FILE: u32 = 0x00_0040;
    pub const CONTACTLESS_ACTIVATION: u32 = 0x00_0020;
    pub const CONTACTLESS_SELF_ACTIVATION: u32 = 0x00_0010;

    /// The ISD's privileges: `9E FE 80` (security domain, card lock, card terminate, card
    /// reset, CVM management; trusted path, authorized management, token verification,
    /// global delete/lock/registry, final application; receipt generation), as on common
    /// GP 2.2+ cards.
    pub const ISD: u32 = 0x9E_FE80;

    /// Reads a privileges field of 1 (GP 2.1.1) or 3 bytes (GP 2.2+), or none (0).
    pub fn from_bytes(b: &[u8]) -> Option<u32> {
        match b {
            [] => Some(0),
            [a] => Some((*a as u32) << 16),
            [a, b, c] => Some(((*a as u32) << 16) | ((*b as u32) << 8) | *c as u32),
            _ => None,
        }
    }
    pub fn to_bytes(p: u32) -> [u8; 3] {
        [(p >> 16) as u8, (p >> 8) as u8, p as u8]
    }
}

/// An application identifier (ISO/IEC 7816-4 §8.2.1.2), stored as hex.
/// (`gp::Aid` has no serde and checks lengths; the registry stores this one.)
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Aid(pub Vec<u8>);

impl Aid {
    /// Wraps bytes without checking the 5..=16 length (the registry checks on entry).
    pub fn new(b: &[u8]) -> Self {
        Aid(b.to_vec())
    }
    /// Whether the length is the 5..=16 bytes ISO/IEC 7816-4 allows.
    pub fn is_valid_len(b: &[u8]) -> bool {
        (5..=16).contains(&b.len())
    }
}

impl fmt::Debug for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aid({})", apdu::hex(&self.0))
    }
}
impl fmt::Display for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&apdu::hex(&self.0))
    }
}

impl Serialize for Aid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&apdu::hex(&self.0))
    }
}
impl<'de> Deserialize<'de> for Aid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        hexser::deserialize(d).map(Aid)
    }
}

/// Serde helpers storing `Vec<u8>` as a hex string.
pub(crate) mod hexser {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&apdu::hex(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        apdu::parse_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Secret bytes: zeroized on drop, hex in the state file, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(b: &[u8]) -> Self {
        Secret(Zeroizing::new(b.to_vec()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = Zeroizing::new(apdu::hex(&self.0));
        s.serialize_str(&h)
    }
}
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        apdu::parse_hex(&s)
            .map(|v| Secret(Zeroizing::new(v)))
            .map_err(serde::de::Error::custom)
    }
}

/// GP key types (GP 2.3.1 §11.1.8, Table 11-16).
pub(crate) mod key_type {
    pub const DES: u8 = 0x80;
    pub const AES: u8 = 0x88;
    /// Pre-shared key for TLS (GP 2.3.1 Table 11-16): an SCP81 PSK.
    pub const TLS_PSK: u8 = 0x85;
    /// RSA public key: the modulus (`A1`), with its exponent (`A0`) in [`super::StoredKey::exponent`].
    pub const RSA_PUBLIC: u8 = 0xA1;
    /// RSA public exponent component.
    pub const RSA_EXPONENT: u8 = 0xA0;
    /// ECC public key: the uncompressed point.
    pub const ECC_PUBLIC: u8 = 0xB0;
    /// ECC private key (a key pair on the card, e.g. SK.SD): the scalar.
    pub const ECC_PRIVATE: u8 = 0xB1;
    /// ECC key parameter reference component.
    pub const ECC_PARAMS: u8 = 0xF0;
}

/// One key of a key set.
///
/// Symmetric keys (`80`, `88`): `value` is the key. Asymmetric keys (GP 2.3.1 Table 11-16;
/// Amendment F): `B0` ECC public key (`value` = uncompressed point), `B1` ECC private key
/// (`value` = scalar; the public key follows from it), both with `curve` = the key parameter
/// reference (`F0`); `A1` RSA public key (`value` = modulus, `exponent` = e). State files
/// written before asymmetric keys existed have neither `curve` nor `exponent` and still open.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct StoredKey {
    /// Key identifier (1 = ENC, 2 = MAC, 3 = DEK for secure channel key sets; 10, 11, 13,
    /// 15, 20-2F … for SCP11 keys).
    pub id: u8,
    /// Key type byte: `80` DES, `88` AES, `B0` ECC public, `B1` ECC private, `A1` RSA public.
    pub key_type: u8,
    /// The key value.
    pub value: Secret,
    /// ECC keys: the key parameter reference (`00` P-256, `01` P-384, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<u8>,
    /// RSA public keys: the public exponent.
    #[serde(default, with = "hexser", skip_serializing_if = "Vec::is_empty")]
    pub exponent: Vec<u8>,
    /// SCP11 keys (an SD key pair, a trust anchor): consecutive failed authentications
    /// with this key; at the card's limit it answers `6983`. (Secure channel key sets
    /// count in [`KeySet::failures`]; a factory SCP11b key under KVN 01 must not lock an
    /// SCP03 key set of the same version.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl StoredKey {
    /// A symmetric key (or any key with a single component).
    pub fn secret(id: u8, key_type: u8, value: &[u8]) -> Self {
        StoredKey {
            id,
            key_type,
            value: Secret::new(value),
            curve: None,
            exponent: Vec::new(),
            failures: 0,
        }
    }

    /// The key's components as the Key Information Template lists them (type, length).
    pub fn components(&self) -> Vec<(u8, u16)> {
        let len = self.value.0.len() as u16;
        match self.key_type {
            key_type::ECC_PUBLIC | key_type::ECC_PRIVATE => {
                vec![(self.key_type, len), (key_type::ECC_PARAMS, 1)]
            }
            key_type::RSA_PUBLIC => vec![
                (key_type::RSA_PUBLIC, len),
                (key_type::RSA_EXPONENT, self.exponent.len() as u16),
            ],
            t => vec![(t, len)],
        }
    }
}

/// A key set: the keys sharing one key version number (GP 2.3.1 §7.2).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct KeySet {
    pub kvn: u8,
    pub keys: Vec<StoredKey>,
    /// Consecutive failed authentications with this key set; at the card's limit the key set
    /// is blocked and INITIALIZE UPDATE answers `6983`.
    #[serde(default)]
    pub failures: u8,
}

impl KeySet {
    pub fn key(&self, id: u8) -> Option<&StoredKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// Per-security-domain data (GP 2.3.1 §7).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct SdData {
    /// Key diversification data returned by INITIALIZE UPDATE and GET DATA `CF`.
    #[serde(with = "hexser")]
    pub kdd: Vec<u8>,
    /// Key sets in the order they were created.
    pub key_sets: Vec<KeySet>,
    /// Secure channel sequence counter (SCP02: 2 bytes; SCP03: 3 bytes).
    pub seq_counter: u32,
    /// Personalisation data stored with STORE DATA to the SD itself, by tag (hex) → value.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Confirmation counter of the receipts this SD generates (GP 2.3.1 §9.1.3.3): counts up
    /// with every receipt and is never reset; at `FFFF` no more receipts are given.
    #[serde(default)]
    pub confirmation_counter: u16,
    /// SCP11 data (Amendment F; YubiKey's STORE DATA formats): certificate chains of SD key
    /// pairs, OCE serial-number allowlists, CA issuer identifiers. Absent in older files.
    #[serde(default, skip_serializing_if = "Scp11Data::is_empty")]
    pub scp11: Scp11Data,
    /// Remote management over the air (ETSI TS 102 225/226): TARs and counters. Absent in
    /// older files.
    #[serde(default, skip_serializing_if = "OtaData::is_empty")]
    pub ota: Box<OtaData>,
}

/// What a security domain keeps for remote management over the air (ETSI TS 102 225 §5.1.1,
/// TS 102 226 §8.2.1.3.2).
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub(crate) struct OtaData {
    /// The TARs this SD answers besides the ones implied by its AID, hex (`"B20100"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tars: Vec<String>,
    /// The last counter (CNTR, 5 bytes) accepted per OTA key set, by KVN in hex (`"01"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// The last counter this SD used in a command packet it sent (the download agent's
    /// requests, ISD only), by KVN in hex: separate from the incoming ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub out_counters: BTreeMap<String, u64>,
    /// The download agent's configuration (ISD only; `crate::uicc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<crate::uicc::DownloadAgent>>,
    /// TLS PSK identities of the SCP81 key sets (`40`..`4F`), by KVN in hex, identity in hex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub psk_identities: BTreeMap<String, String>,
}

impl OtaData {
    pub fn is_empty(&self) -> bool {
        self.tars.is_empty()
            && self.counters.is_empty()
            && self.out_counters.is_empty()
            && self.agent.is_none()
            && self.psk_identities.is_empty()
    }
}

/// The key reference `KID KVN` as a map key in the state file (`"13-01"`).
pub(crate) fn key_ref(kid: u8, kvn: u8) -> String {
    format!("{kid:02X}-{kvn:02X}")
}

/// SCP11 objects of a security domain, by key reference ([`key_ref`]). Values are hex.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Scp11Data {
    /// Certificate chain (leaf last, DER or `7F21`) of an SD key pair: GET DATA `BF21`.
    #[serde(default)]
    pub certificates: BTreeMap<String, Vec<String>>,
    /// Serial numbers allowed for the leaf OCE certificate checked with a trust anchor.
    #[serde(default)]
    pub allowlists: BTreeMap<String, Vec<String>>,
    /// CA issuer identifiers (subject key identifier) of a key: (KLCC?, id).
    #[serde(default)]
    pub ca_ids: BTreeMap<String, (bool, String)>,
}

impl Scp11Data {
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty() && self.allowlists.is_empty() && self.ca_ids.is_empty()
    }
    /// Forgets what belonged to key references that no longer exist.
    pub fn retain_keys(&mut self, exists: impl Fn(&str) -> bool) {
        self.certificates.retain(|k, _| exists(k));
        self.allowlists.retain(|k, _| exists(k));
        self.ca_ids.retain(|k, _| exists(k));
    }
}

/// What an application registry entry is.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum AppKind {
    /// A security domain with its keys.
    SecurityDomain(SdData),
    /// An applet instance: `state` is the applet's serialised state, `None` while it has
    /// no implementation on this card (unknown package) or before first use.
    Applet {
        #[serde(default)]
        state: Option<serde_json::Value>,
    },
}

/// A registry entry for an application or security domain (GP 2.3.1 §5.2 / Table 11-36).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub(crate) struct AppRec {
    pub aid: Aid,
    pub load_file: Aid,
    pub module: Aid,
    pub life_cycle: u8,
    pub privileges: u32,
    /// Associated security domain (the ISD is associated with itself).
    pub sd: Aid,
    /// The install parameters field of INSTALL [for install], as received.
    #[serde(with = "hexser", default)]
    pub install_params: Vec<u8>,
    /// Implicit selection parameter (INSTALL [for registry update] / GET STATUS `CF`).
    #[serde(default)]
    pub implicit_selection: Option<u8>,
    #[serde(flatten)]
    pub kind: AppKind,
}

impl AppRec {
    pub fn is_sd(&self) -> bool {
        matches!(self.kind, AppKind::SecurityDomain(_))
    }
    pub fn sd_data(&self) -> Option<&SdData> {
        match &self.kind {
            AppKind::SecurityDomain(d) => Some(d),
            AppKind::Applet { .. } => None,
        }
    }
    pub fn sd_data_mut(&mut self) -> Option<&mut SdData> {
        match &mut self.kind {
            AppKind::SecurityDomain(d) => Some(d),
            AppKind::Applet { .. } => None,
        }
    }
    pub fn has(&self, privilege: u32) -> bool {
        self.privileges & privilege == privilege
    }
}

/// A registry entry for an Executable Load File (GP 2.3.1 §5.2, Table 11-36).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct LoadFileRec {
    pub aid: Aid,
    /// Load file version (major, minor) from the CAP Header component, if known.
    #[serde(with = "hexser", default)]
    pub version: Vec<u8>,
    /// Executable Modules (applet classes) of the load file.
    pub modules: Vec<Aid>,
    /// Associated security domain.
    pub sd: Aid,
    /// In ROM (part of the card's operating system): cannot be deleted.
    #[serde(default)]
    pub rom: bool,
}

/// The whole persistent card: what the state file holds.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub(crate) struct CardState {
    /// State file format version.
    pub format: u32,
    /// Card life cycle state (§5.1.1).
    pub life_cycle: u8,
    /// Card Production Life Cycle data (GET DATA `9F7F`).
    #[serde(with = "hexser")]
    pub cplc: Vec<u8>,
    /// The card's default Secure Channel Protocol identifier and "i" (card data `64`).
    pub scp: u8,
    pub scp_i: u8,
    /// Consecutive authentication failures that block a key set.
    pub max_auth_failures: u8,
    /// The factory key set given to every new security domain.
    pub initial_keys: KeySet,
    /// Executable Load Files, in load order.
    pub load_files: Vec<LoadFileRec>,
    /// Applications and security domains in registry order; the ISD is first.
    pub apps: Vec<AppRec>,
}

/// The current state file format.
pub(crate) const FORMAT: u32 = 1;

impl CardState {
    pub fn app(&self, aid: &[u8]) -> Option<&AppRec> {
        self.apps.iter().find(|a| a.aid.0 == aid)
    }
    pub fn app_mut(&mut self, aid: &[u8]) -> Option<&mut AppRec> {
        self.apps.iter_mut().find(|a| a.aid.0 == aid)
    }
    pub fn load_file(&self, aid: &[u8]) -> Option<&LoadFileRec> {
        self.load_files.iter().find(|l| l.aid.0 == aid)
    }
    pub fn isd(&self) -> Option<&AppRec> {
        self.app(ISD_AID)
    }
    /// Whether any application, SD or load file already uses this AID.
    pub fn aid_in_use(&self, aid: &[u8]) -> bool {
        // Module AIDs may be reused as instance AIDs (the usual default), so they do not count.
        self.app(aid).is_some() || self.load_file(aid).is_some()
    }
}
