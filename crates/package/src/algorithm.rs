//! Signature algorithms: their `AlgorithmIdentifier`s and verification, for the CMS
//! SignerInfo and for the certificates and CRLs of the chain.
//!
//! * `ecdsa-with-SHA256`, parameters absent (RFC 5758 §3.2), P-256 keys;
//! * `sha256WithRSAEncryption`, parameters NULL (RFC 4055 §5), RSA keys (certificates and CRLs
//!   only: the package signature itself is ECDSA or RSASSA-PSS);
//! * `id-RSASSA-PSS` with `RSASSA-PSS-params` (RFC 4055 §3.1): hash SHA-256, MGF1 with
//!   SHA-256, any salt length, trailer field 1; we write salt length 32 and SHA-256 with NULL
//!   parameters, as `openssl cms -keyopt rsa_padding_mode:pss` does.
//!
//! The signatures themselves are checked by `pki::PublicKey::verify` (ECDSA, PKCS#1 v1.5)
//! and by the `rsa` crate (PSS with the salt length of the parameters).

use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ID_MGF_1, ID_RSASSA_PSS, ID_SHA_256, SHA_256_WITH_RSA_ENCRYPTION,
};
use der::{asn1::AnyRef, Any, Decode, Encode, Sequence};
use pki::PublicKey;
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;

/// The salt length of the RSASSA-PSS signatures we make (the SHA-256 output length).
pub(crate) const PSS_SALT_LEN: u32 = 32;

/// `RSASSA-PSS-params` (RFC 4055 §3.1, RFC 8017 A.2.3). Written out here because
/// `pkcs1::RsaPssParams` holds the salt length in a `u8`, and `openssl` signs with the
/// largest salt by default (222 bytes for RSA-2048, 478 for RSA-4096).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
struct PssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mask_gen: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    salt_len: Option<u32>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    trailer: Option<u32>,
}

/// A signature algorithm this crate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// ECDSA with SHA-256.
    EcdsaSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, this salt length.
    RsaPssSha256 {
        /// Salt length in bytes.
        salt_len: usize,
    },
}

fn sha256_id() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA_256,
        parameters: Some(Any::from(AnyRef::NULL)),
    }
}

/// Whether `id` is SHA-256 with absent or NULL parameters (RFC 5754 §2: accept both).
pub(crate) fn is_sha256(id: &AlgorithmIdentifierOwned) -> bool {
    id.oid == ID_SHA_256
        && id
            .parameters
            .as_ref()
            .is_none_or(|p| p.to_der().ok().as_deref() == Some(&[0x05, 0x00][..]))
}

/// The SHA-256 `DigestAlgorithmIdentifier` we write (parameters absent, RFC 5754 §2).
pub(crate) fn sha256_digest_algorithm() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA_256,
        parameters: None,
    }
}

impl Algorithm {
    /// Reads an `AlgorithmIdentifier`.
    pub(crate) fn from_identifier(id: &AlgorithmIdentifierOwned) -> Result<Self, String> {
        let params_der = id.parameters.as_ref().map(|p| p.to_der()).transpose();
        let params_der = params_der.map_err(|e| format!("algorithm parameters: {e}"))?;
        let null = params_der.as_deref() == Some(&[0x05, 0x00][..]);
        if id.oid == ECDSA_WITH_SHA_256 {
            if params_der.is_some() {
                return Err("ecdsa-with-SHA256 with parameters (RFC 5758 §3.2: absent)".into());
            }
            return Ok(Self::EcdsaSha256);
        }
        if id.oid == SHA_256_WITH_RSA_ENCRYPTION {
            if !(null || params_der.is_none()) {
                return Err("sha256WithRSAEncryption parameters must be NULL".into());
            }
            return Ok(Self::RsaPkcs1Sha256);
        }
        if id.oid == ID_RSASSA_PSS {
            let der = params_der.ok_or("RSASSA-PSS without parameters (RFC 4055 §3.1)")?;
            let p = PssParams::from_der(&der).map_err(|e| format!("RSASSA-PSS parameters: {e}"))?;
            if !p.hash.as_ref().is_some_and(is_sha256) {
                return Err("RSASSA-PSS with a hash other than SHA-256".into());
            }
            let mgf_sha256 = p.mask_gen.as_ref().is_some_and(|m| {
                m.oid == ID_MGF_1
                    && m.parameters
                        .as_ref()
                        .and_then(|a| a.decode_as::<AlgorithmIdentifierOwned>().ok())
                        .is_some_and(|h| is_sha256(&h))
            });
            if !mgf_sha256 {
                return Err("RSASSA-PSS with a mask generation other than MGF1-SHA-256".into());
            }
            if p.trailer.unwrap_or(1) != 1 {
                return Err("RSASSA-PSS trailer field other than 1".into());
            }
            // The default salt length is 20 (RFC 4055 §3.1).
            let salt_len = p.salt_len.unwrap_or(20) as usize;
            return Ok(Self::RsaPssSha256 { salt_len });
        }
        Err(format!("unsupported signature algorithm {}", id.oid))
    }

    /// The `AlgorithmIdentifier` we write.
    pub(crate) fn identifier(self) -> AlgorithmIdentifierOwned {
        match self {
            Self::EcdsaSha256 => AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA_256,
                parameters: None,
            },
            Self::RsaPkcs1Sha256 => AlgorithmIdentifierOwned {
                oid: SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(Any::from(AnyRef::NULL)),
            },
            Self::RsaPssSha256 { salt_len } => {
                let params = PssParams {
                    hash: Some(sha256_id()),
                    mask_gen: Some(AlgorithmIdentifierOwned {
                        oid: ID_MGF_1,
                        parameters: Any::encode_from(&sha256_id()).ok(),
                    }),
                    salt_len: Some(salt_len as u32),
                    trailer: None,
                };
                AlgorithmIdentifierOwned {
                    oid: ID_RSASSA_PSS,
                    parameters: Any::encode_from(&params).ok(),
                }
            }
        }
    }

    /// Checks `signature` over `message` with `key`.
    pub(crate) fn verify(
        self,
        key: &PublicKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        match (self, key) {
            (Self::EcdsaSha256, PublicKey::P256(_)) | (Self::RsaPkcs1Sha256, PublicKey::Rsa(_)) => {
                key.verify(message, signature).map_err(|e| e.to_string())
            }
            (Self::RsaPssSha256 { salt_len }, PublicKey::Rsa(k)) => {
                use rsa::traits::PublicKeyParts;
                if signature.len() != k.size() {
                    return Err("malformed signature".into());
                }
                k.verify(
                    rsa::pss::Pss::<Sha256>::new_with_salt(salt_len),
                    &Sha256::digest(message),
                    signature,
                )
                .map_err(|_| "signature does not verify".into())
            }
            (alg, key) => Err(format!("a {alg:?} signature by a {} key", key.algorithm())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_identifier_is_what_openssl_writes_with_salt_32() {
        // `openssl cms -sign -keyopt rsa_padding_mode:pss -keyopt rsa_pss_saltlen:32`.
        let expected = apdu::parse_hex(
            "304106092A864886F70D01010A3034A00F300D06096086480165030402010500\
             A11C301A06092A864886F70D010108300D06096086480165030402010500A203020120",
        )
        .unwrap();
        let id = Algorithm::RsaPssSha256 { salt_len: 32 }.identifier();
        assert_eq!(id.to_der().unwrap(), expected);
        assert_eq!(
            Algorithm::from_identifier(&id).unwrap(),
            Algorithm::RsaPssSha256 { salt_len: 32 }
        );
    }

    #[test]
    fn pss_defaults_and_refusals() {
        // Salt 222 (openssl's default for RSA-2048) and 478 (RSA-4096) read back.
        for salt_len in [0, 20, 222, 478] {
            let id = Algorithm::RsaPssSha256 { salt_len }.identifier();
            assert_eq!(
                Algorithm::from_identifier(&id).unwrap(),
                Algorithm::RsaPssSha256 { salt_len }
            );
        }
        // RSASSA-PSS with all defaults is SHA-1: refused.
        let sha1 = AlgorithmIdentifierOwned {
            oid: ID_RSASSA_PSS,
            parameters: Some(Any::from_der(&[0x30, 0x00]).unwrap()),
        };
        assert!(Algorithm::from_identifier(&sha1).is_err());
        let ecdsa_with_null = AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA_256,
            parameters: Some(Any::from(AnyRef::NULL)),
        };
        assert!(Algorithm::from_identifier(&ecdsa_with_null).is_err());
    }
}
