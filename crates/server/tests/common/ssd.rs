//! The pieces of the SSD platforms' tests (issue #10): key stores, the CI's partner API over
//! TLS, and the AP's HTTPS link to it.

use std::sync::Arc;
use std::time::Duration;

use kms::{MasterKey, SoftwareKeyStore};
use server::partner_client::HttpCardIssuerLink;
use server::tls::PartnerCertVerifier;
use tsm::ssd::KeySetStore;

use super::certs::{Ca, Leaf};

/// A software key store (SSD key sets, transport keys) in `dir`.
pub fn soft_keys(dir: &std::path::Path) -> Arc<dyn KeySetStore> {
    Arc::new(
        SoftwareKeyStore::create(dir.join("key-sets.json"), MasterKey::generate().unwrap())
            .unwrap(),
    )
}

/// The P-256 transport public key (SPKI PEM) of a key store, made on first use.
pub fn transport_pem(keys: &dyn KeySetStore) -> String {
    match keys.transport_public_key("transport") {
        Ok(k) => k.to_pem(),
        Err(_) => keys.create_transport_key("transport").unwrap().to_pem(),
    }
}

/// `app` (the CI's partner API) served over TLS on 127.0.0.1 with `server_leaf` and the
/// client `verifier`, on its own runtime: its port, and what stops it when dropped.
pub fn serve(
    app: axum::Router,
    server_leaf: &Leaf,
    verifier: Arc<PartnerCertVerifier>,
) -> (u16, super::tls::Served) {
    let served = super::tls::serve_leaf(app, server_leaf, Some(verifier));
    (served.addr.port(), served)
}

/// The AP's link to the CI at `https://localhost:PORT` as `partner`, presenting `client` and
/// trusting `server_ca`.
pub fn link(port: u16, partner: &str, client: &Leaf, server_ca: &Ca) -> HttpCardIssuerLink {
    let pem = |t: &str| -> Vec<ureq::tls::Certificate<'static>> {
        ureq::tls::parse_pem(t.as_bytes())
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    HttpCardIssuerLink::from_parts(
        &format!("https://localhost:{port}"),
        partner,
        pem(&client.chain_pem),
        ureq::tls::PrivateKey::from_pem(client.key_pem.as_bytes()).unwrap(),
        pem(&server_ca.pem),
        Duration::from_secs(30),
    )
    .unwrap()
}

/// The body of `POST /api/v1/partners` that registers the tests' application provider
/// `bank1`: its root CA (`ca_pem`), SSD AIDs `A000000151BA01…`, cards 1000000000–1000000999,
/// and the transport key of its key store `keys`.
pub fn bank1_registration(ca_pem: &str, keys: &dyn KeySetStore) -> serde_json::Value {
    serde_json::json!({
        "id": "bank1", "certificate": ca_pem, "ssd_aid_prefix": "A000000151BA01",
        "cards": ["1000000000-1000000999"], "transport_key": transport_pem(keys),
    })
}
