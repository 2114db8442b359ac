//! Delegated Management (GP Card Specification 2.3.1 §9.1.3.3, Appendix C.4 and C.5) and
//! Data Authentication Pattern (§9.2.1, Appendix C.2): what is signed, what is MACed, and the
//! confirmation a card returns.
//!
//! * [`token`]: the **token input** of INSTALL \[for load / install / make selectable /
//!   install and make selectable / extradition / registry update\] and DELETE (Tables C-4 …
//!   C-9): `P1 ‖ P2 ‖ Lc ‖ data field without the token`, where Lc is one byte, or `00 hh ll`
//!   when the data field is longer than 255 bytes (sent with command chaining); and the
//!   commands with their token put in (the INSTALL token field; tag `9E` in DELETE).
//! * [`receipt`]: the **receipt input** (Appendix C.5): the confirmation data (counter, SD
//!   unique data, optional token identifier and token data digest) followed by the
//!   operation's AIDs; [`receipt::ReceiptKey`] computes and checks the receipt (DES: ISO/IEC
//!   9797-1 MAC algorithm 3, 8 bytes; AES: CMAC, 16 bytes).
//! * [`crypto`]: the signature schemes of Appendix B used for tokens and DAP signatures:
//!   RSA ≤ 1024 bits PKCS#1 v1.5 with SHA-1 (B.3.1, scheme 1), larger RSA PSS with SHA-256,
//!   MGF1-SHA-256, 32-byte salt (B.3.2, scheme 2), ECDSA P-256 with SHA-256 as plain `r ‖ s`
//!   (B.4.3), and AES-CMAC (16 bytes) for a symmetric token key.
//! * [`dap_input`]: a DAP signature is computed over the load file data block hash.

pub mod crypto;
pub mod receipt;
pub mod token;

pub use crypto::{DmSigningKey, DmVerifyingKey, Scheme, Signer};
pub use receipt::{Confirmation, ReceiptContext, ReceiptKey};
pub use token::TokenInput;

/// Key version number of the token verification key in a security domain with the Token
/// Verification privilege (GP 2.3.1 §9.1.3.3: `70`).
pub const TOKEN_KVN: u8 = 0x70;
/// Key version number of the receipt generation key (GP 2.3.1 §9.1.3.3: `71`).
pub const RECEIPT_KVN: u8 = 0x71;
/// Key version number of a DAP verification key (GP 2.3.1 §9.2.1: `73`).
pub const DAP_KVN: u8 = 0x73;

/// The input of a DAP signature (GP 2.3.1 Appendix C.2): the load file data block hash
/// itself (the signature scheme hashes it once more).
pub fn dap_input(load_file_data_block_hash: &[u8]) -> &[u8] {
    load_file_data_block_hash
}
