//! Key sets in a PKCS#11 token (first version: not yet implemented).

use super::{KeySetInfo, KeySetStore, TransportPublicKey, WrappedKeySet};
use crate::pkcs11::Pkcs11KeyStore;
use crate::Error;
use scp::{KeyKind, StaticKeys};

fn todo() -> Error {
    Error::Config("key sets in a PKCS#11 token: not implemented yet".into())
}

impl KeySetStore for Pkcs11KeyStore {
    fn generate_key_set(&self, _: &str, _: KeyKind, _: usize) -> Result<KeySetInfo, Error> {
        Err(todo())
    }
    fn key_set(&self, _: &str) -> Result<StaticKeys, Error> {
        Err(todo())
    }
    fn key_set_info(&self, _: &str) -> Result<Option<KeySetInfo>, Error> {
        Err(todo())
    }
    fn list_key_sets(&self) -> Result<Vec<KeySetInfo>, Error> {
        Err(todo())
    }
    fn delete_key_set(&self, _: &str) -> Result<bool, Error> {
        Err(todo())
    }
    fn wrap_key_set_for(&self, _: &str, _: &TransportPublicKey) -> Result<WrappedKeySet, Error> {
        Err(todo())
    }
    fn import_wrapped_key_set(
        &self,
        _: &str,
        _: &WrappedKeySet,
        _: &str,
    ) -> Result<KeySetInfo, Error> {
        Err(todo())
    }
    fn create_transport_key(&self, label: &str) -> Result<TransportPublicKey, Error> {
        let spki =
            crate::AgreementKeyStore::create_agreement_key(self, label, crate::EckaCurve::P256)?;
        TransportPublicKey::from_spki_der(&spki)
    }
    fn transport_public_key(&self, label: &str) -> Result<TransportPublicKey, Error> {
        super::transport_public_of(self, label)
    }
}
