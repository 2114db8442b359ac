//! The pieces of the SSD platforms' tests (issue #10): key stores, the CI's partner API over
//! TLS, and the AP's HTTPS link to it.

use std::sync::Arc;
use std::time::Duration;

use kms::{MasterKey, SoftwareKeyStore};
use rustls::pki_types::pem::PemObject;
use server::partner_client::HttpCardIssuerLink;
use server::tls::{self, PartnerCertVerifier};
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
/// client `verifier`, on its own runtime; returns its port and a stop handle.
pub fn serve(
    app: axum::Router,
    server_leaf: &Leaf,
    verifier: Arc<PartnerCertVerifier>,
) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let chain = tls::certificates_from_pem(server_leaf.chain_pem.as_bytes()).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(server_leaf.key_pem.as_bytes()).unwrap();
    let config = tls::server_config(chain, key, Some(verifier)).unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            tls::serve_tls(listener, config, app, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    (port, stop)
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
