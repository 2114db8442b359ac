//! The real TLS layer in the tests: a router served by `server::tls::serve_tls` on its own
//! runtime, and a real TLS client (ureq with rustls) presenting the test's certificates.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use server::tls::{self, PartnerCertVerifier};

use super::certs::Leaf;

/// A router served over TLS on 127.0.0.1 until dropped.
pub struct Served {
    /// Where.
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// `app` served over TLS with `chain` and `key`, client certificates checked by `verifier`
/// (if any), on a runtime of its own thread.
pub fn serve(
    app: axum::Router,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Option<Arc<PartnerCertVerifier>>,
) -> Served {
    let config = tls::server_config(chain, key, verifier).expect("TLS config");
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let shutdown = async {
                let _ = stopped.await;
            };
            tls::serve_tls(listener, config, app, shutdown)
                .await
                .expect("serve");
        });
    });
    Served { addr, _stop: stop }
}

/// [`serve`] with the certificate and key of `server` (PEM).
pub fn serve_leaf(
    app: axum::Router,
    server: &Leaf,
    verifier: Option<Arc<PartnerCertVerifier>>,
) -> Served {
    let chain = tls::certificates_from_pem(server.chain_pem.as_bytes()).expect("chain");
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("key");
    serve(app, chain, key, verifier)
}

/// `GET https://localhost:PORT{path}` trusting `server_ca` (PEM), presenting `client` (if
/// any) and bearer `token` (if any): Ok((status, body)), or the error's text (a refusal in
/// the handshake among others).
pub fn get(
    port: u16,
    path: &str,
    server_ca: &str,
    client: Option<&Leaf>,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let root = ureq::tls::Certificate::from_pem(server_ca.as_bytes()).expect("root");
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]));
    if let Some(leaf) = client {
        let chain: Vec<_> = ureq::tls::parse_pem(leaf.chain_pem.as_bytes())
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let key = ureq::tls::PrivateKey::from_pem(leaf.key_pem.as_bytes()).expect("key");
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(format!("https://localhost:{port}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    match req.call() {
        Ok(mut r) => Ok((
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )),
        Err(e) => Err(e.to_string()),
    }
}
