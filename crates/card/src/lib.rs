//! The Cardwright virtual card: a GlobalPlatform Card Specification 2.3.1 card in Rust that
//! host tools manage byte-for-byte as a real card.
//!
//! ```
//! use card::{CardConfig, VirtualCard};
//! let mut card = VirtualCard::new(CardConfig::default());
//! // SELECT the Issuer Security Domain by its AID.
//! let r = card.transmit(&apdu::parse_hex("00A4040008A000000151000000").unwrap());
//! assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
//! ```
//!
//! # What is inside
//! * **OPEN** (GP 2.3.1 §6.1): APDU dispatch, SELECT by AID (full, partial, next
//!   occurrence), MANAGE CHANNEL with 20 logical channels, GET RESPONSE for long responses.
//! * **Card life cycle** (§5.1.1): OP_READY → INITIALIZED → SECURED ↔ CARD_LOCKED →
//!   TERMINATED with SET STATUS, one step at a time; CARD_LOCKED lets only the ISD be selected and refuses
//!   content management (`6985`); TERMINATED answers only SELECT of the ISD and GET DATA
//!   (other SELECTs `6A82`, other commands `6985`).
//! * **Registry** (§5.2, Table 11-36): load files with their modules and version,
//!   applications and security domains with life cycle, privileges, associated security
//!   domain and install parameters; GET STATUS in both formats with `6310` paging.
//! * **Security domains** (§7): the ISD `A000000151000000` and supplementary SDs created with
//!   INSTALL [for install] of module `A000000151535041` from load file `A0000001515350`.
//!   Each has its own key sets (key version numbers), sequence counter, key diversification
//!   data and per-key-set authentication failure counters. A new SD starts with a copy of
//!   the card's initial key set ([`CardConfig::keys`]).
//! * **Secure channels**: SCP02 and SCP03 card side (from the `scp` crate), INITIALIZE UPDATE
//!   and EXTERNAL AUTHENTICATE to the selected SD, every later command checked against the
//!   session's security level. Card and content management commands (GET STATUS, SET
//!   STATUS, INSTALL, LOAD, DELETE, PUT KEY, STORE DATA) need an authenticated session
//!   (`6982` otherwise); GET DATA does not. After [`CardConfig::max_auth_failures`]
//!   consecutive failed EXTERNAL AUTHENTICATEs (wrong host cryptogram or C-MAC) the key set
//!   is blocked and INITIALIZE UPDATE with it answers `6983`; a success resets the count.
//!   A blocked key set can be replaced with PUT KEY through another key set.
//! * **Asymmetric keys** (GP 2.3.1 §11.8, Table 11-16; Amendment F): PUT KEY of ECC public
//!   keys (`B0`+`F0`, P-256/P-384, checked on the curve), ECC private keys (`B1`, decrypted
//!   with the session's DEK), RSA public keys (`A1`/`A0`, also over several PUT KEY commands
//!   with P1 b8), stored in the SD's key sets next to the secure channel keys (a key set is
//!   all keys of one KVN); listed by GET DATA `E0` with their components; DELETE key by
//!   `D0`/`D2` (also yubikit's P2 = `01`). GENERATE EC KEY (`80 F1`, YubiKey's) makes an
//!   SCP11 key pair on the card.
//! * **SCP11** (Amendment F; `scp::scp11`, `gp::cert`, `gp::scp11`): SD key pairs under KID
//!   `11` (11a), `13` (11b), `15` (11c); PERFORM SECURITY OPERATION (`80 2A KVN KID`, one
//!   certificate per command, ISO chaining accepted) verifies the OCE chain against the
//!   trust anchor (an ECC public key, e.g. KID `10`), the stored CA issuer identifier,
//!   validity at the host clock and the allowlist; a refusal answers `gp::cert`'s status
//!   word (`6982`/`6A80`) and counts a failure on the anchor's key set. MUTUAL AUTHENTICATE
//!   (`80 82`, 11a/11c, needs the verified chain of this channel; used up by it) and INTERNAL
//!   AUTHENTICATE (`80 88`, 11b) open an SCP03-style session (S-DEK encrypts PUT KEY).
//!   SCP11b sessions may read (GET STATUS, GET DATA) but not manage (`6982`). Failed
//!   authentications count per key (PSO on the trust anchor, MA/IA on the key pair) like
//!   EXTERNAL AUTHENTICATE's on a key set; a blocked key answers `6983`. An SD
//!   without the key answers `6A88`. GET DATA `BF21` `A6{83 KID KVN}` returns a key's
//!   certificate chain, `FF33`/`FF34` the CA identifiers; STORE DATA takes YubiKey's
//!   certificate bundle, allowlist and CA issuer objects. The card recognition data (`66`,
//!   FCI) announces SCP11 with its i when the SD holds such a key pair.
//! * **Factory SCP11b key set** ([`CardConfig::scp11`], on by default): KID `13` KVN `01`
//!   generated at manufacture with an X.509 chain (manufacturer CA, SD certificate);
//!   [`VirtualCard::manufacturer_ca`] is the CA to trust.
//! * **Content management** (§9, §11): INSTALL [for load / install / make selectable /
//!   extradition / personalization / registry update], LOAD (block sequence, `C4`, optional
//!   load file data block hash: SHA-1, SHA-256, SHA-384 or SHA-512 by length), DELETE
//!   (objects, related objects, keys), SET STATUS, PUT KEY (3DES and AES, keys decrypted with
//!   the session's DEK, KCVs checked; answers KVN + KCVs), STORE DATA.
//! * **Applets**: see [`applet`]. Instances of packages without a built-in implementation
//!   answer SELECT with **`6999`**.
//! * **UICC for over-the-air management** (ETSI TS 102 221 §10, TS 102 223, 3GPP TS 31.111 /
//!   31.115, ETSI TS 102 225/226): TERMINAL PROFILE, FETCH, TERMINAL RESPONSE and ENVELOPE
//!   with proactive commands announced by `91xx`; SMS-PP download of SCP80 command packets
//!   (concatenated SMS reassembled, counters saved before execution, PoR in the ENVELOPE's
//!   response data or by SEND SHORT MESSAGE) to the SD a TAR names
//!   ([`CardConfig::with_scp80_keys`]); the download agent ([`DownloadAgent`]): SET UP MENU
//!   and a secured download request by SMS on MENU SELECTION. docs/OTA.md has the details.
//! * **SCP81** (GP Amendment B): PSK key sets (KVN `40`..`4F`, key type `85`;
//!   [`CardConfig::with_scp81_psk`], PUT KEY); STORE DATA of the administration session
//!   triggering parameters (`81`, [`::ota::admin`]) starts the admin agent's TLS-PSK session
//!   over BIP (OPEN CHANNEL, SEND DATA, RECEIVE DATA, CLOSE CHANNEL) with the feature
//!   `scp81`.
//! * **Persistence**: [`VirtualCard::open`] keeps the card in a JSON state file, rewritten
//!   atomically after each command that changed it.
//!
//! [`VirtualCard::transmit`] never panics, whatever the bytes.
//!
//! # Choices and limits
//! * Sequence counters: SCP03 counts every card challenge (INITIALIZE UPDATE), SCP02 every
//!   successful EXTERNAL AUTHENTICATE; new security domains start at 1.
//! * INSTALL and DELETE answer `00` (no receipts); intermediate LOAD blocks answer no data,
//!   the last one `00`.
//! * Tokens (Delegated Management) and DAP blocks are accepted but not verified; a
//!   security domain with Delegated Management but without Authorized Management cannot do
//!   content management (`6982`). Ciphered load files (`D4`) are refused (`6A80`).
//! * Memory quotas in load and install parameters are ignored; the card reports 1 MiB free
//!   (GET DATA `FF21`) and accepts load files up to 1 MiB.
//! * Encrypted STORE DATA to a security domain itself (P1 b7-b6 set) is refused (`6A80`).
//!   To an application: in the DGI format with P1 b7-b6 = `11`, the DGIs `8000`–`8FFF` are
//!   decrypted under the channel's DEK first (as PUT KEY's keys; P1 is kept, so the
//!   application knows the data came encrypted); otherwise passed on as received.
//! * One process per state file: [`VirtualCard::open`] takes an exclusive lock on
//!   `<state file>.lock` ([`CardError::InUse`] otherwise).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod applet;
mod atr;
#[cfg(feature = "scp81")]
mod bip;
mod card;
mod channel;
mod config;
mod error;
#[cfg(feature = "transport")]
pub mod host;
mod model;
mod ota;
mod persist;
pub mod registration;
mod scp81;
mod sd;
mod uicc;
mod x509;

pub use applet::{Applet, AppletContext, AppletFactory};
pub use card::{VirtualCard, PIV_INSTANCE, PIV_LOAD_FILE};
pub use config::{CardConfig, Scp80Keys, Scp81Psk, DEFAULT_CPLC, DEFAULT_KEY};
pub use error::CardError;
#[cfg(feature = "transport")]
pub use host::VirtualChannel;
pub use model::{ISD_AID, SD_MODULE, SD_PACKAGE};
pub use ota::{ScriptOutcome, ISD_TARS, SCP80_KVNS};
pub use scp81::{PSK_KID, SCP81_KVNS};
pub use uicc::{
    DownloadAgent, MenuEntry, DOWNLOAD_REQUEST_SPI, DOWNLOAD_REQUEST_TAR, TAG_AGENT_CONFIG,
    TAG_DOWNLOAD_REQUEST,
};
pub use x509::pem;
