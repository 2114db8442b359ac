//! Data objects in a PKCS#11 token.
//!
//! | attribute | value |
//! |---|---|
//! | `CKA_CLASS` | `CKO_DATA` |
//! | `CKA_APPLICATION` | `cardwright` |
//! | `CKA_LABEL` | `cw-do:<label>` |
//! | `CKA_VALUE` | the bytes |
//! | `CKA_TOKEN`, `CKA_PRIVATE` | true (private: only the logged-in user may change it) |
//!
//! A replacement ([`DataObjectStore::put`] of a label that exists) creates the new object
//! under `cw-do-new:<label>`, destroys the old one, then relabels the new one. Interrupted
//! before the destruction, the old value stays and the stray new object is removed by the
//! next `put` or `delete`; interrupted after it, [`DataObjectStore::get`] finds only the new
//! object and finishes the relabelling. There is never a moment without a value.

use super::{check_put, DataObjectStore, WHAT};
use crate::pkcs11::Pkcs11KeyStore;
use crate::Error;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use std::collections::BTreeSet;

/// The PKCS#11 label prefix of data objects.
pub const PKCS11_DATA_OBJECT_LABEL_PREFIX: &str = "cw-do:";
/// The label prefix of a replacement being written.
const NEW_PREFIX: &str = "cw-do-new:";
/// `CKA_APPLICATION` of every data object this crate makes.
const APPLICATION: &[u8] = b"cardwright";

impl Pkcs11KeyStore {
    /// Handles of the data objects labelled `full` (a prefixed label).
    fn data_objects(&self, s: &Session, full: &str) -> Result<Vec<ObjectHandle>, Error> {
        s.find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Application(APPLICATION.to_vec()),
            Attribute::Label(full.as_bytes().to_vec()),
        ])
        .map_err(|e| Error::pkcs11("C_FindObjects", full, e))
    }

    fn destroy_all(&self, s: &Session, handles: &[ObjectHandle], what: &str) -> Result<(), Error> {
        for h in handles {
            s.destroy_object(*h)
                .map_err(|e| Error::pkcs11("C_DestroyObject", what, e))?;
        }
        Ok(())
    }

    fn relabel(&self, s: &Session, h: ObjectHandle, label: &str) -> Result<(), Error> {
        let full = format!("{PKCS11_DATA_OBJECT_LABEL_PREFIX}{label}");
        s.update_attributes(h, &[Attribute::Label(full.clone().into_bytes())])
            .map_err(|e| Error::pkcs11("C_SetAttributeValue", full, e))
    }
}

impl DataObjectStore for Pkcs11KeyStore {
    fn put(&self, label: &str, value: &[u8]) -> Result<(), Error> {
        check_put(label, value)?;
        let _admin = self.lock();
        let s = self.session()?;
        let full = format!("{PKCS11_DATA_OBJECT_LABEL_PREFIX}{label}");
        let new = format!("{NEW_PREFIX}{label}");
        // A replacement interrupted earlier, not yet relabelled: superseded by this one.
        let strays = self.data_objects(&s, &new)?;
        self.destroy_all(&s, &strays, &new)?;
        let h = s
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Modifiable(true),
                Attribute::Application(APPLICATION.to_vec()),
                Attribute::Label(new.clone().into_bytes()),
                Attribute::Value(value.to_vec()),
            ])
            .map_err(|e| Error::pkcs11("C_CreateObject", &new, e))?;
        let old = self.data_objects(&s, &full)?;
        self.destroy_all(&s, &old, &full)?;
        self.relabel(&s, h, label)
    }

    fn get(&self, label: &str) -> Result<Option<Vec<u8>>, Error> {
        crate::validate_object_label(WHAT, label)?;
        let s = self.session()?;
        let full = format!("{PKCS11_DATA_OBJECT_LABEL_PREFIX}{label}");
        let mut found = self.data_objects(&s, &full)?;
        if found.is_empty() {
            // A replacement interrupted after the old object went: finish it.
            let _admin = self.lock();
            let new = self.data_objects(&s, &format!("{NEW_PREFIX}{label}"))?;
            if let [h] = new.as_slice() {
                self.relabel(&s, *h, label)?;
            }
            found = self.data_objects(&s, &full)?;
        }
        let h = match found.as_slice() {
            [] => return Ok(None),
            [h] => *h,
            _ => {
                return Err(Error::DataObjectTampered {
                    place: format!("token {}", self.token_label()),
                    label: label.into(),
                })
            }
        };
        let attrs = s
            .get_attributes(h, &[AttributeType::Value])
            .map_err(|e| Error::pkcs11("C_GetAttributeValue", &full, e))?;
        Ok(attrs.into_iter().find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let _admin = self.lock();
        let s = self.session()?;
        let handles = s
            .find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Application(APPLICATION.to_vec()),
            ])
            .map_err(|e| Error::pkcs11("C_FindObjects", "data objects", e))?;
        let mut out = BTreeSet::new();
        for h in handles {
            let attrs = s
                .get_attributes(h, &[AttributeType::Label])
                .map_err(|e| Error::pkcs11("C_GetAttributeValue", "data object label", e))?;
            let Some(l) = attrs.into_iter().find_map(|a| match a {
                Attribute::Label(l) => String::from_utf8(l).ok(),
                _ => None,
            }) else {
                continue;
            };
            let label = l
                .strip_prefix(PKCS11_DATA_OBJECT_LABEL_PREFIX)
                .or_else(|| l.strip_prefix(NEW_PREFIX));
            if let Some(label) = label {
                if label.starts_with(prefix) && crate::validate_object_label(WHAT, label).is_ok() {
                    out.insert(label.to_string());
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn delete(&self, label: &str) -> Result<bool, Error> {
        crate::validate_object_label(WHAT, label)?;
        let _admin = self.lock();
        let s = self.session()?;
        let mut any = false;
        for full in [
            format!("{PKCS11_DATA_OBJECT_LABEL_PREFIX}{label}"),
            format!("{NEW_PREFIX}{label}"),
        ] {
            let handles = self.data_objects(&s, &full)?;
            any |= !handles.is_empty();
            self.destroy_all(&s, &handles, &full)?;
        }
        Ok(any)
    }
}
