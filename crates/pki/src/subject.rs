//! Subject names of certificates, built from the account (RFC 5280 §4.1.2.4/§4.1.2.6).

use der::{
    asn1::{Any, PrintableStringRef, Utf8StringRef},
    Decode, Encode,
};
use x509_cert::{
    attr::AttributeTypeAndValue,
    name::{Name, RdnSequence, RelativeDistinguishedName},
};

use crate::oid;

/// Upper bound of commonName, organizationName and serialNumber
/// (RFC 5280 Appendix A.1: ub-common-name, ub-organization-name, ub-serial-number).
const UB_NAME: usize = 64;
/// Our own bound for the UID attribute (RFC 4519 §2.39 sets none).
const UB_UID: usize = 128;

/// Why a subject cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// A field is empty that must not be.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A field is longer than its upper bound.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// Which attribute.
        field: &'static str,
        /// Upper bound in characters.
        max: usize,
    },
    /// A field contains characters it may not (control characters, or outside the
    /// PrintableString set for serialNumber and countryName).
    #[error("{0} contains characters that are not allowed")]
    BadCharacters(&'static str),
    /// The name could not be encoded.
    #[error("name encoding: {0}")]
    Encoding(String),
}

/// The subject of a certificate: who the card holder (or the CA) is.
///
/// Encoded as one attribute per RDN in the order C, O, CN, UID, serialNumber; CN, O and
/// UID as UTF8String (RFC 5280 §4.1.2.4), serialNumber and C as PrintableString
/// (RFC 5280 Appendix A.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subject {
    /// commonName: the holder's display name (required, 1..=64 characters).
    pub common_name: String,
    /// UID (userId, RFC 4519 §2.39): the account identifier.
    #[serde(default)]
    pub uid: Option<String>,
    /// serialNumber (X.520): e.g. the card serial number or ICCID; PrintableString.
    #[serde(default)]
    pub serial_number: Option<String>,
    /// organizationName.
    #[serde(default)]
    pub organization: Option<String>,
    /// countryName: two-letter ISO 3166 code.
    #[serde(default)]
    pub country: Option<String>,
}

impl Subject {
    /// A subject with only a common name.
    pub fn new(common_name: impl Into<String>) -> Self {
        Self {
            common_name: common_name.into(),
            uid: None,
            serial_number: None,
            organization: None,
            country: None,
        }
    }

    /// Set the UID (account identifier).
    #[must_use]
    pub fn with_uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = Some(uid.into());
        self
    }

    /// Set the serialNumber attribute.
    #[must_use]
    pub fn with_serial_number(mut self, serial: impl Into<String>) -> Self {
        self.serial_number = Some(serial.into());
        self
    }

    /// Set the organization.
    #[must_use]
    pub fn with_organization(mut self, organization: impl Into<String>) -> Self {
        self.organization = Some(organization.into());
        self
    }

    /// Set the country code.
    #[must_use]
    pub fn with_country(mut self, country: impl Into<String>) -> Self {
        self.country = Some(country.into());
        self
    }

    /// Check every field against its bounds and character set.
    pub fn validate(&self) -> Result<(), SubjectError> {
        check_text("commonName", &self.common_name, UB_NAME)?;
        if let Some(uid) = &self.uid {
            check_text("UID", uid, UB_UID)?;
        }
        if let Some(org) = &self.organization {
            check_text("organizationName", org, UB_NAME)?;
        }
        if let Some(serial) = &self.serial_number {
            check_text("serialNumber", serial, UB_NAME)?;
            if !serial.bytes().all(is_printable) {
                return Err(SubjectError::BadCharacters("serialNumber"));
            }
        }
        if let Some(c) = &self.country {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(SubjectError::BadCharacters("countryName"));
            }
        }
        Ok(())
    }

    /// The X.509 `Name`.
    pub fn to_name(&self) -> Result<Name, SubjectError> {
        self.validate()?;
        let enc = |e: der::Error| SubjectError::Encoding(e.to_string());
        let mut rdns = Vec::new();
        let mut push = |oid, value: Any| -> Result<(), SubjectError> {
            let mut rdn = RelativeDistinguishedName::default();
            rdn.insert(AttributeTypeAndValue { oid, value })
                .map_err(enc)?;
            rdns.push(rdn);
            Ok(())
        };
        let utf8 = |s: &String| {
            Utf8StringRef::new(s)
                .and_then(|v| Any::encode_from(&v))
                .map_err(enc)
        };
        let printable = |s: &String| {
            PrintableStringRef::new(s)
                .and_then(|v| Any::encode_from(&v))
                .map_err(enc)
        };
        if let Some(c) = &self.country {
            push(oid::AT_COUNTRY, printable(c)?)?;
        }
        if let Some(o) = &self.organization {
            push(oid::AT_ORGANIZATION, utf8(o)?)?;
        }
        push(oid::AT_COMMON_NAME, utf8(&self.common_name)?)?;
        if let Some(uid) = &self.uid {
            push(oid::AT_UID, utf8(uid)?)?;
        }
        if let Some(serial) = &self.serial_number {
            push(oid::AT_SERIAL_NUMBER, printable(serial)?)?;
        }
        let der = RdnSequence::from(rdns).to_der().map_err(enc)?;
        Name::from_der(&der).map_err(enc)
    }
}

/// PrintableString characters (X.680 §41.4).
fn is_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b)
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), SubjectError> {
    if value.is_empty() {
        return Err(SubjectError::Empty(field));
    }
    if value.chars().count() > max {
        return Err(SubjectError::TooLong { field, max });
    }
    if value.chars().any(char::is_control) {
        return Err(SubjectError::BadCharacters(field));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_order_and_types() {
        let s = Subject::new("Alice Example")
            .with_uid("acct-42")
            .with_serial_number("8949000012345")
            .with_organization("Cardwright")
            .with_country("CN");
        let name = s.to_name().unwrap();
        use der::Tagged;
        let attrs: Vec<_> = name.iter().map(|a| (a.oid, a.value.tag())).collect();
        assert_eq!(
            attrs,
            vec![
                (oid::AT_COUNTRY, der::Tag::PrintableString),
                (oid::AT_ORGANIZATION, der::Tag::Utf8String),
                (oid::AT_COMMON_NAME, der::Tag::Utf8String),
                (oid::AT_UID, der::Tag::Utf8String),
                (oid::AT_SERIAL_NUMBER, der::Tag::PrintableString),
            ]
        );
        assert_eq!(name.len(), 5);
    }

    #[test]
    fn rejects_bad_fields() {
        assert_eq!(
            Subject::new("").validate(),
            Err(SubjectError::Empty("commonName"))
        );
        assert!(matches!(
            Subject::new("x".repeat(65)).validate(),
            Err(SubjectError::TooLong { .. })
        ));
        assert_eq!(
            Subject::new("a\nb").validate(),
            Err(SubjectError::BadCharacters("commonName"))
        );
        assert_eq!(
            Subject::new("a").with_serial_number("ü").validate(),
            Err(SubjectError::BadCharacters("serialNumber"))
        );
        assert_eq!(
            Subject::new("a").with_country("cn").validate(),
            Err(SubjectError::BadCharacters("countryName"))
        );
    }
}
