//! Sensitive data encryption under a secure channel's DEK: what PUT KEY does to key values
//! and encrypted STORE DATA (GP 2.3.1 §11.11.2.2, P1 b7-b6 = `11`) does to its data, as a
//! function of the DEK alone, so that a key store can compute the same bytes (PKCS#11:
//! `C_WrapKey`) and a card can undo them.

use crate::crypto;
use crate::error::malformed;
use crate::{Error, Key, KeyKind};
use zeroize::Zeroizing;

fn check_blocks(kind: KeyKind, data: &[u8], what: &'static str) -> Result<(), Error> {
    let block = kind.block_len();
    if data.is_empty() || !data.len().is_multiple_of(block) {
        return Err(malformed(
            what,
            format!(
                "{} bytes, not a whole number of {block}-byte blocks",
                data.len()
            ),
        ));
    }
    Ok(())
}

/// Encrypts `clear` (a whole number of cipher blocks, no padding added) under `dek`, the
/// key of [`crate::HostSession::data_encryption_key`]: a 3DES DEK (SCP02's session DEK) in
/// 3DES-ECB (GP 2.3.1 §E.4.7), an AES DEK (SCP03's Key-DEK, SCP11's S-DEK) in AES-CBC
/// with a zero ICV (Amendment D, sensitive data encryption). The same bytes as
/// [`crate::HostSession::encrypt_key`] for a key of a block multiple.
pub fn encrypt_sensitive_data(dek: &Key, clear: &[u8]) -> Result<Vec<u8>, Error> {
    check_blocks(dek.kind(), clear, "sensitive data to encrypt")?;
    match dek.kind() {
        KeyKind::Des3 => Ok(crypto::tdes_ecb_encrypt(dek.expose(), clear)?.to_vec()),
        KeyKind::Aes => crypto::aes_cbc_encrypt(dek.expose(), [0; 16], clear),
    }
}

/// The inverse of [`encrypt_sensitive_data`] (what a card does with the session's DEK).
pub fn decrypt_sensitive_data(dek: &Key, encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    check_blocks(dek.kind(), encrypted, "encrypted sensitive data")?;
    match dek.kind() {
        KeyKind::Des3 => crypto::tdes_ecb_decrypt(dek.expose(), encrypted),
        KeyKind::Aes => crypto::aes_cbc_decrypt(dek.expose(), [0; 16], encrypted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt; its first block has IV 000102…, so the
    /// zero-ICV vector is its first block alone, ECB = CBC for one block with a zero IV:
    /// F.1.1 ECB-AES128 block 1).
    #[test]
    fn aes_cbc_zero_icv_known_answer() {
        let dek = Key::aes(&apdu::parse_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap()).unwrap();
        let clear = apdu::parse_hex("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let enc = encrypt_sensitive_data(&dek, &clear).unwrap();
        assert_eq!(apdu::hex(&enc), "3AD77BB40D7A3660A89ECAF32466EF97");
        assert_eq!(
            decrypt_sensitive_data(&dek, &enc).unwrap().as_slice(),
            clear
        );
        assert!(encrypt_sensitive_data(&dek, &clear[..15]).is_err());
        assert!(decrypt_sensitive_data(&dek, &[]).is_err());
    }
}
