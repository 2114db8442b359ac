//! The PIV card application of the Cardwright virtual card.
//!
//! A card-side implementation of NIST SP 800-73-4 Part 2 (card commands) on the
//! data model of Part 1, with the YubiKey PIV extensions that `yubico-piv-tool`,
//! `ykman` and OpenSC's PIV driver use, so that unmodified host tools can use the
//! virtual card through pcscd. `crates/cardwright/tests/piv_tools.rs` proves it with
//! Debian 12's yubico-piv-tool 2.2.0, OpenSC 0.23 (`pkcs11-tool`) and OpenSSL through
//! pcscd + vsmartcard-vpcd; `tests/flows.rs` replays their recorded encodings.
//!
//! [`PivApplet`] is self-contained: the card selects it ([`PivApplet::select`]),
//! passes it every other command ([`PivApplet::process`]) and stores its
//! serialized state when [`PivApplet::changed`] says so. Keys live in the state:
//! the applet *is* the card.
//!
//! # Commands
//!
//! | INS | command | reference |
//! |---|---|---|
//! | `A4` | SELECT (answers the application property template `61`) | Part 2 §3.1.1 |
//! | `CB` | GET DATA | §3.1.2 |
//! | `20` | VERIFY (PIN `80`; empty data = status; `P1=FF` = log out) | §3.2.1 |
//! | `24` | CHANGE REFERENCE DATA (PIN `80`, PUK `81`) | §3.2.2 |
//! | `2C` | RESET RETRY COUNTER | §3.2.3 |
//! | `87` | GENERAL AUTHENTICATE (management key, signatures, RSA decryption, ECDH) | §3.2.4 |
//! | `DB` | PUT DATA | §3.3.1 |
//! | `47` | GENERATE ASYMMETRIC KEY PAIR | §3.3.2 |
//! | `C0` | GET RESPONSE (responses longer than Ne are returned with `61xx`) | ISO/IEC 7816-4 §7.6.1 |
//! | `FD` `F8` `FF` `FB` `FA` `FE` `F7` | YubiKey: GET VERSION, GET SERIAL, SET MANAGEMENT KEY, RESET, SET PIN RETRIES, IMPORT KEY, GET METADATA | Yubico PIV extensions |
//!
//! Command chaining (`CLA` bit `10`) and extended-length APDUs are accepted for
//! every command.
#![forbid(unsafe_code)]

mod applet;
mod error;
mod keys;
mod mgmt;
pub mod objects;
mod secret;

pub use applet::{PivApplet, PivConfig, PIV_AID, PIV_PACKAGE_AID};
pub use error::Error;
pub use keys::{KeyAlgorithm, KeyOrigin, PinPolicy, TouchPolicy};
pub use mgmt::{ManagementKey, MgmtAlgorithm};
pub use secret::Secret;

/// Instruction bytes handled by the applet.
pub mod ins {
    /// SELECT.
    pub const SELECT: u8 = 0xA4;
    /// GET DATA.
    pub const GET_DATA: u8 = 0xCB;
    /// VERIFY.
    pub const VERIFY: u8 = 0x20;
    /// CHANGE REFERENCE DATA.
    pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
    /// RESET RETRY COUNTER.
    pub const RESET_RETRY_COUNTER: u8 = 0x2C;
    /// GENERAL AUTHENTICATE.
    pub const GENERAL_AUTHENTICATE: u8 = 0x87;
    /// PUT DATA.
    pub const PUT_DATA: u8 = 0xDB;
    /// GENERATE ASYMMETRIC KEY PAIR.
    pub const GENERATE_ASYMMETRIC_KEY_PAIR: u8 = 0x47;
    /// GET RESPONSE.
    pub const GET_RESPONSE: u8 = 0xC0;
    /// YubiKey GET METADATA.
    pub const GET_METADATA: u8 = 0xF7;
    /// YubiKey GET SERIAL.
    pub const GET_SERIAL: u8 = 0xF8;
    /// YubiKey SET PIN RETRIES.
    pub const SET_PIN_RETRIES: u8 = 0xFA;
    /// YubiKey RESET.
    pub const RESET: u8 = 0xFB;
    /// YubiKey GET VERSION.
    pub const GET_VERSION: u8 = 0xFD;
    /// YubiKey IMPORT KEY.
    pub const IMPORT_KEY: u8 = 0xFE;
    /// YubiKey SET MANAGEMENT KEY.
    pub const SET_MANAGEMENT_KEY: u8 = 0xFF;
}

/// Key references (SP 800-73-4 Part 1 Table 4a).
pub mod slot {
    /// Card application administration key (the management key).
    pub const MANAGEMENT: u8 = 0x9B;
    /// PIV Authentication.
    pub const AUTHENTICATION: u8 = 0x9A;
    /// Digital Signature.
    pub const SIGNATURE: u8 = 0x9C;
    /// Key Management.
    pub const KEY_MANAGEMENT: u8 = 0x9D;
    /// Card Authentication.
    pub const CARD_AUTHENTICATION: u8 = 0x9E;
    /// PIV Card Application PIN.
    pub const PIN: u8 = 0x80;
    /// PIN Unblocking Key.
    pub const PUK: u8 = 0x81;

    /// Whether `r` names an asymmetric key slot: 9A, 9C, 9D, 9E or a retired
    /// key management slot 82..95.
    pub const fn is_key_slot(r: u8) -> bool {
        matches!(r, 0x9A | 0x9C | 0x9D | 0x9E | 0x82..=0x95)
    }
}
