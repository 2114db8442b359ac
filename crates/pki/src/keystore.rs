//! A CA key kept in a `kms` key store (feature `kms`): the software keystore encrypted at
//! rest, or a PKCS#11 token where the key never leaves the token. One adapter for every
//! CA that signs through a key store (the platform's, the outlet security module's).

use std::fmt;

use crate::{CaSigner, KeyError, PublicKey, SignerError};

/// A [`CaSigner`] whose private key is a [`kms::SigningKey`].
pub struct KeystoreSigner {
    key: Box<dyn kms::SigningKey>,
    public: PublicKey,
}

impl fmt::Debug for KeystoreSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoreSigner")
            .field("key", &self.key)
            .field("algorithm", &self.public.algorithm())
            .finish()
    }
}

impl KeystoreSigner {
    /// Wraps a key from the store; fails if its public key is not one the CA takes.
    pub fn new(key: Box<dyn kms::SigningKey>) -> Result<Self, KeyError> {
        let public = PublicKey::from_spki_der(key.public_key_spki())?;
        Ok(Self { key, public })
    }

    /// The key's label in its store.
    pub fn label(&self) -> &str {
        self.key.label()
    }
}

impl CaSigner for KeystoreSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        self.key
            .sign_sha256(message)
            .map_err(|e| SignerError(e.to_string()))
    }
}
