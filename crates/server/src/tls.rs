//! HTTPS with client certificates (mutual TLS, rustls 0.23) for `cardwright serve`, and the
//! client side of an issuing terminal (`cardwright agent --server https://…`).
//!
//! * [`server_config`]: the server's certificate chain and key (PEM files) and, for the card
//!   issuer's platform or terminals with certificates, a [`PartnerCertVerifier`].
//! * [`PartnerCertVerifier`]: rustls' [`WebPkiClientVerifier`] over the roots given on the
//!   command line (`--partner-ca`), the roots of the partners registered in the database
//!   and not revoked ([`PartnerCertVerifier::set_partner_roots`]) and the issuing terminals'
//!   roots (`--terminal-ca`, [`PartnerCertVerifier::set_terminal_roots`]), with the CRLs of
//!   `--partner-crl` and `--terminal-crl`. One verifier for every client of the listener:
//!   who a verified chain is, partner or terminal, is decided by the route
//!   ([`chain_verifies_against`] one root set at a time). A client that presents a
//!   certificate which does not chain to one of these roots, is expired, or is revoked by a
//!   CRL, is refused **in the handshake** (RFC 8446 §4.4.2.4: the server aborts with a
//!   `bad_certificate`-class alert). A client without a certificate is let through the
//!   handshake (operators and token terminals use bearer tokens on the same listener); the
//!   partner routes then refuse it (`401 client_certificate_required`).
//! * [`serve_tls`]: the accept loop (tokio-rustls + hyper-util); the client's verified chain
//!   reaches every handler as the request extension [`ClientCertificate`].
//! * [`chain_verifies_against`]: which root a verified chain belongs to (the partner's
//!   identity is the registered root its chain verifies against; a terminal's is its
//!   certificate's commonName once the chain verifies against a `--terminal-ca` root).
//! * [`client_config`], [`client_config_with_certificate`]: the terminal's side (`wss://`).

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tower::ServiceExt;

/// How long a client may take for the TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections may finish their requests after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the TLS set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable of the kind asked for.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong (no certificate, no key, bad PEM).
        what: String,
    },
    /// A root certificate or CRL was refused by rustls.
    #[error("client certificate roots: {0}")]
    Verifier(String),
    /// rustls refused the certificate and key.
    #[error("server certificate and key: {0}")]
    Config(String),
}

/// The client's certificate chain (end entity first), verified in the handshake against the
/// partner roots. Present as a request extension only when the client sent one.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// End entity first, then the intermediates the client sent.
    pub chain: Arc<[CertificateDer<'static>]>,
}

impl ClientCertificate {
    /// The end-entity certificate (DER).
    pub fn end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn pem_error(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        what: what.into(),
    }
}

/// Every certificate (`-----BEGIN CERTIFICATE-----`) of a PEM file, in file order.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates_from_pem(&read(path)?).map_err(|what| pem_error(path, what))
}

/// Every certificate of PEM text, in order; none is an error.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// The private key (PKCS#8, PKCS#1 or SEC1 PEM) of a file. The key is wiped on drop.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = zeroize::Zeroizing::new(read(path)?);
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| pem_error(path, format!("no private key: {e}")))
}

/// Every CRL (`-----BEGIN X509 CRL-----`) of a PEM file; a DER file is one CRL.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, format!("bad PEM: {e}")))?;
    if crls.is_empty() {
        return Err(pem_error(path, "no CRL (-----BEGIN X509 CRL-----) in it"));
    }
    Ok(crls)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The inner verifier for one set of roots; no roots: `None` (every certificate presented
/// is refused).
fn webpki_verifier(
    roots: &[CertificateDer<'static>],
    crls: &[CertificateRevocationListDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if roots.is_empty() {
        return Ok(None);
    }
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .with_crls(crls.iter().cloned())
        // CRLs are optional and per issuer: a partner root without a CRL is not refused for
        // that (RFC 5280 §6.3 leaves the policy to the relying party).
        .allow_unknown_revocation_status()
        // Operators (bearer tokens) share the listener; the partner routes require a chain.
        .allow_unauthenticated()
        .build()
        .map(Some)
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// The client-certificate verifier of the card issuer's platform: the `--partner-ca` roots
/// plus the registered partners' roots (replaceable while serving), with the `--partner-crl`
/// CRLs.
pub struct PartnerCertVerifier {
    static_roots: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Current>,
}

struct Current {
    partner_roots: Vec<CertificateDer<'static>>,
    /// The issuing terminals' roots (`--terminal-ca`) and their CRLs (`--terminal-crl`).
    terminal_roots: Vec<CertificateDer<'static>>,
    terminal_crls: Vec<CertificateRevocationListDer<'static>>,
    /// `None`: no root at all; a client certificate is still asked for, and refused.
    inner: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for PartnerCertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let partner_roots = self.current.read().map(|c| c.partner_roots.len()).ok();
        let terminal_roots = self.current.read().map(|c| c.terminal_roots.len()).ok();
        f.debug_struct("PartnerCertVerifier")
            .field("static_roots", &self.static_roots.len())
            .field("partner_roots", &partner_roots)
            .field("terminal_roots", &terminal_roots)
            .field("crls", &self.crls.len())
            .finish()
    }
}

impl PartnerCertVerifier {
    /// A verifier over `static_roots` (`--partner-ca`) and `crls` (`--partner-crl`); no
    /// partner roots yet.
    pub fn new(
        static_roots: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let inner = webpki_verifier(&static_roots, &crls, &provider)?;
        Ok(Arc::new(Self {
            static_roots,
            crls,
            provider,
            current: RwLock::new(Current {
                partner_roots: Vec::new(),
                terminal_roots: Vec::new(),
                terminal_crls: Vec::new(),
                inner,
            }),
        }))
    }

    /// Replaces the roots of the registered partners (those not revoked). A partner revoked
    /// in the database is refused in the next handshake after this call. Does nothing when
    /// the set is unchanged.
    pub fn set_partner_roots(
        &self,
        mut roots: Vec<CertificateDer<'static>>,
    ) -> Result<(), TlsError> {
        roots.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        roots.dedup();
        let Ok(mut c) = self.current.write() else {
            return Err(TlsError::Verifier("poisoned lock".into()));
        };
        if c.partner_roots == roots {
            return Ok(());
        }
        c.inner = self.build(&roots, &c.terminal_roots, &c.terminal_crls)?;
        c.partner_roots = roots;
        Ok(())
    }

    /// Also accepts client certificates of the issuing terminals' `roots` (`serve
    /// --terminal-ca`), checked against `crls` (`--terminal-crl`) on top of the partner
    /// CRLs. Which terminal a chain names is the service's decision
    /// ([`crate::auth::TokenTable::terminal_for_chain`]); here it only has to verify.
    pub fn set_terminal_roots(
        &self,
        roots: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<(), TlsError> {
        let Ok(mut c) = self.current.write() else {
            return Err(TlsError::Verifier("poisoned lock".into()));
        };
        c.inner = self.build(&c.partner_roots, &roots, &crls)?;
        c.terminal_roots = roots;
        c.terminal_crls = crls;
        Ok(())
    }

    /// The inner verifier over the static, partner and terminal roots and every CRL.
    fn build(
        &self,
        partner_roots: &[CertificateDer<'static>],
        terminal_roots: &[CertificateDer<'static>],
        terminal_crls: &[CertificateRevocationListDer<'static>],
    ) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
        let all: Vec<_> = self
            .static_roots
            .iter()
            .chain(partner_roots)
            .chain(terminal_roots)
            .cloned()
            .collect();
        let crls: Vec<_> = self.crls.iter().chain(terminal_crls).cloned().collect();
        webpki_verifier(&all, &crls, &self.provider)
    }

    /// Every root a client chain may verify against now: `--partner-ca` first, then the
    /// registered partners'.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        let partner = self
            .current
            .read()
            .map(|c| c.partner_roots.clone())
            .unwrap_or_default();
        self.static_roots.iter().cloned().chain(partner).collect()
    }

    /// The CRLs (`--partner-crl`).
    pub fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    /// The verifier of now; `None` refuses every certificate (no roots, or a poisoned lock:
    /// refuse rather than guess).
    fn inner(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.current.read().ok().and_then(|c| c.inner.clone())
    }
}

impl ClientCertVerifier for PartnerCertVerifier {
    fn offer_client_auth(&self) -> bool {
        // Always asked for, so that a certificate of no (or no longer a) trusted root is
        // refused in the handshake rather than silently not sent.
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The set changes while serving; no hints (RFC 8446 §4.2.4 makes them optional).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = match self.inner() {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "client certificate refused in the TLS handshake");
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether `chain` (end entity first) verifies against `root` alone, now, with `crls`: the
/// test that names the partner a verified client chain belongs to.
pub fn chain_verifies_against(
    chain: &[CertificateDer<'static>],
    root: &CertificateDer<'static>,
    crls: &[CertificateRevocationListDer<'static>],
) -> bool {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return false;
    };
    let Ok(Some(verifier)) = webpki_verifier(std::slice::from_ref(root), crls, &provider()) else {
        return false;
    };
    verifier
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .is_ok()
}

/// The rustls server configuration: `cert_chain` (leaf first) and `key` of the server, and
/// `clients` to verify client certificates (`None`: none asked for). ALPN h2 and http/1.1.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    clients: Option<Arc<PartnerCertVerifier>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(cert_chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A rustls client configuration that trusts exactly the certificates of the PEM file
/// `roots` (a platform's CA: an issuing terminal's `agent --server-ca`), no client
/// certificate. Protocol versions and algorithms are rustls' safe defaults.
pub fn client_config(roots: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    Ok(Arc::new(client_builder(Some(roots))?.with_no_client_auth()))
}

/// The client configuration of an issuing terminal (`agent --server https://…`): the
/// platform's certificate must chain to `roots` (PEM, `--server-ca`) or, without it, to the
/// Mozilla root program's CAs (`webpki-roots`: a platform with a publicly trusted
/// certificate); with `client`, the terminal's certificate chain and key (PEM files) are
/// presented when the server asks for one (mutual TLS, RFC 8446 §4.4.2).
pub fn terminal_client_config(
    roots: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = client_builder(roots)?;
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(load_certificates(chain)?, load_private_key(key)?)
            .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?,
    };
    Ok(Arc::new(config))
}

/// As [`client_config`], and presents the client certificate `chain` (PEM, leaf first) with
/// its `key` when the server asks for one.
pub fn client_config_with_certificate(
    roots: &Path,
    chain: &Path,
    key: &Path,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    terminal_client_config(Some(roots), Some((chain, key)))
}

fn client_builder(
    roots: Option<&Path>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, TlsError>
{
    let store = match roots {
        Some(roots) => {
            let mut store = RootCertStore::empty();
            for root in load_certificates(roots)? {
                store.add(root).map_err(|e| TlsError::Pem {
                    path: roots.display().to_string(),
                    what: format!("not a usable CA certificate: {e}"),
                })?;
            }
            store
        }
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(store))
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves; open connections then get
/// [`SHUTDOWN_GRACE`] to finish. A failed handshake (an unknown, expired or revoked client
/// certificate among others) closes that connection only. The client's chain, when it sent
/// one, reaches the handlers as the extension [`ClientCertificate`].
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let client = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|chain| ClientCertificate {
                    chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
                });
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    if let Some(c) = &client {
                        request.extensions_mut().insert(c.clone());
                    }
                    app.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after the grace period; closing them");
        },
    }
    Ok(())
}
