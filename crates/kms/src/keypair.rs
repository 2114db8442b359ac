//! Token key pairs found by label, shared by signing keys ([`crate::signing`], labels
//! `cw-ca:<label>`) and key-agreement keys ([`crate::agreement`], `cw-ecka:<label>`).

use crate::pkcs11::{labelled_token_objects, Pkcs11KeyStore};
use crate::Error;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

impl Pkcs11KeyStore {
    /// Token objects of `class` labelled `what` (the full label, prefix included).
    pub(crate) fn find_labelled(
        &self,
        s: &Session,
        class: ObjectClass,
        what: &str,
    ) -> Result<Vec<ObjectHandle>, Error> {
        s.find_objects(&[
            Attribute::Class(class),
            Attribute::Token(true),
            Attribute::Label(what.as_bytes().to_vec()),
        ])
        .map_err(|e| Error::pkcs11("C_FindObjects", what, e))
    }

    /// Whether a private or a public key labelled `what` is on the token.
    pub(crate) fn pair_exists(&self, s: &Session, what: &str) -> Result<bool, Error> {
        Ok(!self
            .find_labelled(s, ObjectClass::PRIVATE_KEY, what)?
            .is_empty()
            || !self
                .find_labelled(s, ObjectClass::PUBLIC_KEY, what)?
                .is_empty())
    }

    /// The one private key labelled `what`; `not_found` if there is not exactly one.
    pub(crate) fn the_private_key(
        &self,
        s: &Session,
        what: &str,
        not_found: impl FnOnce() -> Error,
    ) -> Result<ObjectHandle, Error> {
        let found = self.find_labelled(s, ObjectClass::PRIVATE_KEY, what)?;
        match found.as_slice() {
            [h] => Ok(*h),
            _ => Err(not_found()),
        }
    }

    /// The private and the public key labelled `what`: `not_found` if either is missing, a
    /// configuration error if there are several.
    pub(crate) fn find_pair(
        &self,
        s: &Session,
        what: &str,
        not_found: impl Fn() -> Error,
    ) -> Result<(ObjectHandle, ObjectHandle), Error> {
        let one = |found: Vec<ObjectHandle>, kind: &str| match found.as_slice() {
            [] => Err(not_found()),
            [h] => Ok(*h),
            _ => Err(Error::Config(format!(
                "token holds {} {kind} objects labelled {what}",
                found.len()
            ))),
        };
        let private = one(
            self.find_labelled(s, ObjectClass::PRIVATE_KEY, what)?,
            "private key",
        )?;
        let public = one(
            self.find_labelled(s, ObjectClass::PUBLIC_KEY, what)?,
            "public key",
        )?;
        Ok((private, public))
    }

    /// A session of its own for a key that outlives the store's pool.
    pub(crate) fn key_session(&self, what: &str) -> Result<Session, Error> {
        self.ctx
            .open_rw_session(self.slot)
            .map_err(|e| Error::pkcs11("C_OpenSession", what, e))
    }

    /// The labels, without `prefix`, of every token private key whose label starts with
    /// `prefix`; sorted, without duplicates.
    pub(crate) fn private_key_labels(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let s = self.session()?;
        let mut labels = Vec::new();
        for (_, l) in labelled_token_objects(&s, ObjectClass::PRIVATE_KEY, "private keys")? {
            if let Some(rest) = l.strip_prefix(prefix) {
                labels.push(rest.to_string());
            }
        }
        labels.sort();
        labels.dedup();
        Ok(labels)
    }
}
