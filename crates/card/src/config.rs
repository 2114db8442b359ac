//! What a new virtual card is made with.

use crate::model::{key_type, KeySet, StoredKey};
use crate::uicc::DownloadAgent;
use scp::{Key, KeyKind, Protocol, StaticKeys};

/// The GlobalPlatform test key `40 41 … 4F` that factory cards and most tools default to.
pub const DEFAULT_KEY: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];

/// The manufacturing parameters of a new virtual card.
///
/// [`CardConfig::default`] is an SCP03 card (`i = 70`: pseudo-random card challenge, S8 mode)
/// whose ISD holds one AES-128 key set, version `30`, with ENC = MAC = DEK = `40…4F`.
/// [`CardConfig::scp02`] is an SCP02 card (`i = 55`) with the same key as two-key 3DES, key
/// version `20`. (`30` for SCP03 and `20` for SCP02 follow the osmocom pySim and GP
/// Amendment D examples; GP 2.3.1 §11.1.8 reserves `FF` for an initial key set, which some
/// tools treat specially, so it is not used.)
///
/// The protocol a key set speaks follows its key type: AES key sets open SCP03 sessions
/// (with this `i` if `protocol` is SCP03, else `70`), 3DES key sets open SCP02 sessions
/// (with this `i` if `protocol` is SCP02, else `55`). So a supplementary security domain given
/// AES keys by PUT KEY on an SCP02 card speaks SCP03.
#[derive(Clone, Debug)]
pub struct CardConfig {
    /// The ISD's Secure Channel Protocol (reported in the Card Recognition Data).
    pub protocol: Protocol,
    /// The ISD's initial key set; every new security domain starts with a copy of it.
    pub keys: StaticKeys,
    /// Key version number of the initial key set (`01`..=`7F`).
    pub key_version: u8,
    /// Key diversification data (INITIALIZE UPDATE, GET DATA `CF`).
    pub kdd: [u8; 10],
    /// Card Production Life Cycle data (GET DATA `9F7F`), normally 42 bytes.
    pub cplc: Vec<u8>,
    /// Consecutive failed EXTERNAL AUTHENTICATEs that block a key set.
    pub max_auth_failures: u8,
    /// Pre-install a PIV application (load file `A000000308000010`, module and instance
    /// `A000000308000010000100`). It runs once a PIV factory is registered with
    /// [`crate::VirtualCard::register_applet`]; before that, selecting it answers `6999`.
    pub with_piv: bool,
    /// Generate an SCP11b key set in the ISD at manufacture (on by default), as a
    /// factory-fresh YubiKey 5.7 has: the SD key pair SK.SD/PK.SD (P-256) under key
    /// identifier `13`, key version `01`, and its X.509 certificate chain (a card
    /// manufacturer CA made for this card, then the SD's certificate signed by it) readable
    /// with GET DATA `BF21` `A6{83 13 01}`. [`crate::VirtualCard::manufacturer_ca`] gives the
    /// CA certificate a host trusts. `false`: no SCP11 key (`cardwright sim create --no-scp11`).
    pub scp11: bool,
    /// SCP80 (OTA) key sets of the ISD, none by default ([`CardConfig::with_scp80_keys`]).
    pub scp80_keys: Vec<Scp80Keys>,
    /// The download agent's configuration, none by default
    /// ([`CardConfig::with_download_agent`]).
    pub download_agent: Option<DownloadAgent>,
    /// SCP81 (TLS-PSK) keys of the ISD, none by default ([`CardConfig::with_scp81_psk`]).
    pub scp81_psks: Vec<Scp81Psk>,
}

/// An SCP81 pre-shared key of the ISD (GP Card Spec Amendment B; docs/OTA.md): key
/// identifier `01` of key set `kvn` (`40`..=`4F`), key type `85` (TLS PSK), with the TLS
/// PSK identity the card's admin agent sends when the triggering parameters name none.
#[derive(Clone)]
pub struct Scp81Psk {
    /// Key version number, `40`..=`4F`.
    pub kvn: u8,
    /// TLS PSK identity (1..=128 bytes).
    pub identity: Vec<u8>,
    /// The pre-shared key (16..=64 bytes).
    pub psk: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Scp81Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scp81Psk")
            .field("kvn", &format_args!("{:02X}", self.kvn))
            .field("identity", &String::from_utf8_lossy(&self.identity))
            .field("psk", &"<redacted>")
            .finish()
    }
}

/// An SCP80 key set of the ISD (ETSI TS 102 225 §5.1.1; GP UICC Configuration §4.2): KIc
/// (key identifier 1) and KID (key identifier 2) under a KVN `01`..=`0F`. AES keys are
/// used with the AES algorithms (KIc/KID low nibble `2`), 3DES keys with DES CBC / 3DES
/// outer-CBC (`1`, `5`, `9` by length).
#[derive(Clone, Debug)]
pub struct Scp80Keys {
    /// Key version number, `01`..=`0F`.
    pub kvn: u8,
    /// The ciphering key (KIc).
    pub kic: Key,
    /// The cryptographic checksum key (KID).
    pub kid: Key,
}

/// A plausible 42-byte CPLC (tag `9F7F`, 42 bytes): IC fabricator `4790`, IC type `5167`, OS `4357`
/// ("CW"), dates and serial numbers.
pub const DEFAULT_CPLC: [u8; 42] = [
    0x47, 0x90, 0x51, 0x67, 0x43, 0x57, 0x63, 0x31, 0x00,
    0x01, // fab, type, OS id, OS date, OS level
    0x63, 0x31, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, // IC fab date, IC serial, IC batch
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, // module fab/date, ICC manufacturer, embedding
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // pre-perso id/date/equipment
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // perso id/date/equipment
];

impl Default for CardConfig {
    fn default() -> Self {
        let key = Key::aes(&DEFAULT_KEY).unwrap_or_else(|_| unreachable_key());
        CardConfig {
            protocol: Protocol::Scp03 { i: 0x70 },
            keys: StaticKeys::same(key),
            key_version: 0x30,
            kdd: [0; 10],
            cplc: DEFAULT_CPLC.to_vec(),
            max_auth_failures: 10,
            with_piv: false,
            scp11: true,
            scp80_keys: Vec::new(),
            download_agent: None,
            scp81_psks: Vec::new(),
        }
    }
}

// `Key::aes`/`Key::des3` only fail on a wrong length, and DEFAULT_KEY is 16 bytes.
fn unreachable_key() -> Key {
    unreachable!("16-byte default key rejected")
}

impl CardConfig {
    /// An SCP02 (`i = 55`) card with the 3DES default key, key version `20`.
    pub fn scp02() -> Self {
        let key = Key::des3(&DEFAULT_KEY).unwrap_or_else(|_| unreachable_key());
        CardConfig {
            protocol: Protocol::Scp02 { i: 0x55 },
            keys: StaticKeys::same(key),
            key_version: 0x20,
            ..CardConfig::default()
        }
    }

    /// Adds an SCP80 key set to the ISD: `kic` (key 1) and `kid` (key 2) under `kvn`
    /// (`01`..=`0F`; other values are ignored at manufacture). The keys join the key set
    /// of that version if there is one (the factory SCP11b key pair is KVN `01`, KID
    /// `13`).
    ///
    /// Not on by default: a default card keeps the key listing (GET DATA `E0`) and state
    /// files it always had, and a card without OTA keys refuses every packet (PoR `06`).
    pub fn with_scp80_keys(mut self, kvn: u8, kic: Key, kid: Key) -> Self {
        self.scp80_keys.retain(|k| k.kvn != kvn);
        self.scp80_keys.push(Scp80Keys { kvn, kic, kid });
        self
    }

    /// Installs the download agent ([`DownloadAgent`]) with this configuration.
    pub fn with_download_agent(mut self, agent: DownloadAgent) -> Self {
        self.download_agent = Some(agent);
        self
    }

    /// Adds an SCP81 PSK to the ISD ([`Scp81Psk`]): key `01` of key set `kvn` (`40`..=`4F`,
    /// key type `85`), and `identity` as its TLS PSK identity. Out-of-range KVNs, PSKs
    /// outside 16..=64 bytes and identities outside 1..=128 bytes are ignored at
    /// manufacture. Not on by default (the default card's key listing stays as it was).
    pub fn with_scp81_psk(mut self, kvn: u8, identity: &[u8], psk: &[u8]) -> Self {
        self.scp81_psks.retain(|k| k.kvn != kvn);
        self.scp81_psks.push(Scp81Psk {
            kvn,
            identity: identity.to_vec(),
            psk: zeroize::Zeroizing::new(psk.to_vec()),
        });
        self
    }

    /// The SCP80 key sets as stored in the registry (key identifiers 1 and 2).
    pub(crate) fn scp80_key_sets(&self) -> Vec<KeySet> {
        self.scp80_keys
            .iter()
            .filter(|k| crate::ota::SCP80_KVNS.contains(&k.kvn))
            .map(|k| KeySet {
                kvn: k.kvn,
                keys: vec![
                    StoredKey::secret(1, k.kic.kind().key_type(), k.kic.expose()),
                    StoredKey::secret(2, k.kid.kind().key_type(), k.kid.expose()),
                ],
                failures: 0,
            })
            .collect()
    }

    /// The initial key set as stored in the registry (key identifiers 1, 2, 3).
    pub(crate) fn key_set(&self) -> KeySet {
        let keys = self
            .keys
            .iter()
            .zip(1u8..)
            .map(|(k, id)| StoredKey::secret(id, k.kind().key_type(), k.expose()))
            .collect();
        KeySet {
            kvn: self.key_version,
            keys,
            failures: 0,
        }
    }
}

/// The protocol a key set speaks on this card (see [`CardConfig`]).
pub(crate) fn protocol_for(card_scp: u8, card_i: u8, kind: KeyKind) -> Protocol {
    match kind {
        KeyKind::Aes => Protocol::Scp03 {
            i: if card_scp == 0x03 { card_i } else { 0x70 },
        },
        KeyKind::Des3 => Protocol::Scp02 {
            i: if card_scp == 0x02 { card_i } else { 0x55 },
        },
    }
}

/// The scp kind of a GP key type byte.
pub(crate) fn kind_of(kt: u8) -> Option<KeyKind> {
    match kt {
        key_type::DES => Some(KeyKind::Des3),
        key_type::AES => Some(KeyKind::Aes),
        _ => None,
    }
}

/// The ENC/MAC/DEK keys (identifiers 1, 2, 3) of a key set, if it has all three of one kind.
pub(crate) fn static_keys(set: &KeySet) -> Option<StaticKeys> {
    let get = |id| {
        let k = set.key(id)?;
        Key::new(kind_of(k.key_type)?, &k.value.0).ok()
    };
    let keys = StaticKeys {
        enc: get(1)?,
        mac: get(2)?,
        dek: get(3)?,
    };
    keys.kind().map(|_| keys)
}
