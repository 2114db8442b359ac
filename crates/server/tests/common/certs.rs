//! Certificates made for the test (rcgen, ECDSA P-256): the server's CA and certificate for
//! 127.0.0.1/localhost, and partner roots with client certificates (valid, revoked in a CRL,
//! expired).
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A CA: its certificate (PEM, DER) and what signs with it.
pub struct Ca {
    pub pem: String,
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    next_serial: u64,
}

/// A leaf: certificate chain PEM (leaf, then CA) and key PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial: u64,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA cert");
        Self {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            next_serial: 100,
        }
    }

    fn leaf(&mut self, name: &str, sans: Vec<String>, server: bool, expired: bool) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        self.next_serial += 1;
        params.serial_number = Some(SerialNumber::from(self.next_serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let now = OffsetDateTime::now_utc();
        if expired {
            params.not_before = now - Duration::days(30);
            params.not_after = now - Duration::days(1);
        } else {
            params.not_before = now - Duration::hours(1);
            params.not_after = now + Duration::days(30);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial: self.next_serial,
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&mut self) -> Leaf {
        self.leaf(
            "cardwright test server",
            vec!["127.0.0.1".into(), "localhost".into()],
            true,
            false,
        )
    }

    /// A TLS client certificate.
    pub fn client(&mut self, name: &str) -> Leaf {
        self.leaf(name, Vec::new(), false, false)
    }

    /// A TLS client certificate that expired yesterday.
    pub fn expired_client(&mut self, name: &str) -> Leaf {
        self.leaf(name, Vec::new(), false, true)
    }

    /// A CRL (PEM) of this CA revoking `serials`.
    pub fn crl(&self, serials: &[u64]) -> String {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("CRL")
            .pem()
            .expect("CRL PEM")
    }
}
