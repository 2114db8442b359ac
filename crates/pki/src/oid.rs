//! Object identifiers and fixed DER encodings used in certificates and CRLs.

use spki::ObjectIdentifier;

/// rsaEncryption (RFC 8017 Appendix C / RFC 3279 §2.3.1).
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey (RFC 5480 §2.1.1).
pub const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1 (RFC 5480 §2.1.1.1).
pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 (RFC 5480 §2.1.1.1).
pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// id-at-commonName (RFC 5280 Appendix A.1).
pub const AT_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// id-at-serialNumber (RFC 5280 Appendix A.1).
pub const AT_SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
/// id-at-countryName (RFC 5280 Appendix A.1).
pub const AT_COUNTRY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
/// id-at-organizationName (RFC 5280 Appendix A.1).
pub const AT_ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
/// userId / UID (RFC 4519 §2.39).
pub const AT_UID: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");

/// id-ce-subjectKeyIdentifier (RFC 5280 §4.2.1.2).
pub const CE_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
/// id-ce-keyUsage (RFC 5280 §4.2.1.3).
pub const CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// id-ce-basicConstraints (RFC 5280 §4.2.1.9).
pub const CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// id-ce-cRLNumber (RFC 5280 §5.2.3).
pub const CE_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
/// id-ce-cRLReasons (RFC 5280 §5.3.1).
pub const CE_CRL_REASON: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");
/// id-ce-authorityKeyIdentifier (RFC 5280 §4.2.1.1).
pub const CE_AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
/// id-ce-extKeyUsage (RFC 5280 §4.2.1.12).
pub const CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// id-kp-clientAuth (RFC 5280 §4.2.1.12).
pub const KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// DER `AlgorithmIdentifier { sha256WithRSAEncryption, NULL }` (RFC 4055 §5).
pub const SHA256_WITH_RSA_DER: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
/// DER `AlgorithmIdentifier { ecdsa-with-SHA256 }`, parameters absent (RFC 5758 §3.2).
pub const ECDSA_WITH_SHA256_DER: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

#[cfg(test)]
mod tests {
    use super::*;
    use der::{asn1::Any, Encode};
    use spki::AlgorithmIdentifierOwned;

    #[test]
    fn algorithm_identifier_constants_match_their_oids() {
        let rsa = AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
            parameters: Some(Any::null()),
        };
        assert_eq!(rsa.to_der().unwrap(), SHA256_WITH_RSA_DER);
        let ecdsa = AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
            parameters: None,
        };
        assert_eq!(ecdsa.to_der().unwrap(), ECDSA_WITH_SHA256_DER);
    }
}
