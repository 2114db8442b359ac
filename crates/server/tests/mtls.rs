//! Mutual TLS of `cardwright serve` (server::tls) with certificates made in the test: a real
//! TLS client (ureq with rustls and a client certificate; `openssl s_client` too when
//! `CARDWRIGHT_OPENSSL_TESTS` is set) shows which client certificates are accepted and that
//! unknown, revoked and expired ones are refused in the handshake, before any route runs.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use common::certs::{Ca, Leaf};
use rustls::pki_types::CertificateDer;
use server::tls::{self, ClientCertificate, PartnerCertVerifier};

/// The roots a client chain may belong to, by name.
struct Named(Vec<(&'static str, CertificateDer<'static>)>);

struct Fixture {
    addr: SocketAddr,
    server_ca: Ca,
    verifier: Arc<PartnerCertVerifier>,
    routes_run: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
    _served: common::tls::Served,
}

/// A server on 127.0.0.1 with `--partner-ca` = `static_roots` and `--partner-crl` = `crls`.
/// `GET /whoami` answers the name of the root the client chain verifies against, or 401.
fn start(static_roots: &[&Ca], crls: &[String], names: Named) -> Fixture {
    let mut server_ca = Ca::new("test server CA");
    let server = server_ca.server();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let chain = tls::load_certificates(&write("server.pem", &server.chain_pem)).expect("chain");
    let key = tls::load_private_key(&write("server-key.pem", &server.key_pem)).expect("key");
    let roots = static_roots
        .iter()
        .flat_map(|ca| tls::certificates_from_pem(ca.pem.as_bytes()).expect("root"))
        .collect();
    let mut crl_ders = Vec::new();
    for (i, crl) in crls.iter().enumerate() {
        crl_ders.extend(tls::load_crls(&write(&format!("crl{i}.pem"), crl)).expect("crl"));
    }
    let verifier = PartnerCertVerifier::new(roots, crl_ders).expect("verifier");
    let routes_run = Arc::new(AtomicUsize::new(0));
    let counter = routes_run.clone();
    let names = Arc::new(names);
    let crls_for_id = verifier.crls().to_vec();
    let app = Router::new().route(
        "/whoami",
        get(move |client: Option<Extension<ClientCertificate>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let names = names.clone();
            let crls = crls_for_id.clone();
            async move {
                let Some(Extension(client)) = client else {
                    return (
                        axum::http::StatusCode::UNAUTHORIZED,
                        "no certificate".to_string(),
                    );
                };
                let who = names
                    .0
                    .iter()
                    .find(|(_, root)| tls::chain_verifies_against(&client.chain, root, &crls))
                    .map_or("nobody", |(n, _)| n);
                (axum::http::StatusCode::OK, who.to_string())
            }
        }),
    );
    let served = common::tls::serve(app, chain, key, Some(verifier.clone()));
    Fixture {
        addr: served.addr,
        server_ca,
        verifier,
        routes_run,
        dir,
        _served: served,
    }
}

/// `GET /whoami` with `client` (None: no certificate): Ok((status, body)) or the error text.
fn whoami(f: &Fixture, client: Option<&Leaf>) -> Result<(u16, String), String> {
    common::tls::get(f.addr.port(), "/whoami", &f.server_ca.pem, client, None)
}

fn refused_in_handshake(f: &Fixture, client: &Leaf, what: &str) {
    let before = f.routes_run.load(Ordering::SeqCst);
    match whoami(f, Some(client)) {
        Ok(answer) => panic!("{what}: accepted, answered {answer:?}"),
        Err(e) => {
            // The server's alert (TLS 1.3: after the client's Finished, on the first read).
            assert!(
                e.contains("alert")
                    || e.contains("Alert")
                    || e.contains("reset")
                    || e.contains("closed"),
                "{what}: not a TLS refusal: {e}"
            );
        }
    }
    assert_eq!(
        f.routes_run.load(Ordering::SeqCst),
        before,
        "{what}: a route ran although the handshake should have failed"
    );
}

#[test]
fn client_certificates_accepted_and_refused_at_the_tls_layer() {
    let mut bank1 = Ca::new("bank1 AP root");
    let mut bank2 = Ca::new("bank2 AP root");
    let mut stranger = Ca::new("unknown root");
    let bank1_ap = bank1.client("bank1 AP platform");
    let bank1_revoked = bank1.client("bank1 AP platform (revoked)");
    let bank1_expired = bank1.expired_client("bank1 AP platform (expired)");
    let bank2_ap = bank2.client("bank2 AP platform");
    let stranger_ap = stranger.client("somebody");
    let crl = bank1.crl(&[bank1_revoked.serial]);
    let bank1_root = CertificateDer::from(bank1.der.clone());
    let bank2_root = CertificateDer::from(bank2.der.clone());
    let f = start(
        &[&bank1],
        &[crl],
        Named(vec![("bank1", bank1_root), ("bank2", bank2_root.clone())]),
    );

    // The --partner-ca root: its valid certificate is accepted and named.
    assert_eq!(whoami(&f, Some(&bank1_ap)), Ok((200, "bank1".into())));
    // No certificate: the handshake passes (operators use bearer tokens), the route refuses.
    assert_eq!(whoami(&f, None), Ok((401, "no certificate".into())));
    // Unknown root, revoked (CRL), expired: refused in the handshake.
    refused_in_handshake(&f, &stranger_ap, "unknown root");
    refused_in_handshake(&f, &bank1_revoked, "revoked by the CRL");
    refused_in_handshake(&f, &bank1_expired, "expired");
    // bank2 is not known yet; registered (the partner roots from the database), it is
    // accepted and named bank2; revoked (removed from the set), refused again.
    refused_in_handshake(&f, &bank2_ap, "bank2 before registration");
    f.verifier
        .set_partner_roots(vec![bank2_root])
        .expect("partner roots");
    assert_eq!(whoami(&f, Some(&bank2_ap)), Ok((200, "bank2".into())));
    assert_eq!(whoami(&f, Some(&bank1_ap)), Ok((200, "bank1".into())));
    f.verifier.set_partner_roots(Vec::new()).expect("none");
    refused_in_handshake(&f, &bank2_ap, "bank2 after revocation");
    assert_eq!(whoami(&f, Some(&bank1_ap)), Ok((200, "bank1".into())));

    // No root at all (no --partner-ca, every partner revoked): a certificate is still asked
    // for, and refused in the handshake; without one, the route refuses.
    let none = start(&[], &[], Named(Vec::new()));
    refused_in_handshake(&none, &bank1_ap, "no trusted root at all");
    assert_eq!(whoami(&none, None), Ok((401, "no certificate".into())));

    if std::env::var_os("CARDWRIGHT_OPENSSL_TESTS").is_some() {
        openssl_s_client(&f, &bank1_ap, true, "bank1");
        openssl_s_client(&f, &stranger_ap, false, "unknown root");
        openssl_s_client(&f, &bank1_revoked, false, "revoked");
        openssl_s_client(&f, &bank1_expired, false, "expired");
    }
}

/// `openssl s_client -cert … -key …` against the server: a plain HTTP/1.1 request answered
/// 200 when `accepted`, else a TLS alert and no HTTP answer.
fn openssl_s_client(f: &Fixture, client: &Leaf, accepted: bool, what: &str) {
    use std::io::Write;
    let path = |name: &str, text: &str| {
        let p = f.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let cert = path("client.pem", &client.chain_pem);
    let key = path("client-key.pem", &client.key_pem);
    let ca = path("server-ca.pem", &f.server_ca.pem);
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &f.addr.to_string(),
            "-servername",
            "localhost",
        ])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-CAfile")
        .arg(&ca)
        .args(["-verify_return_error", "-ign_eof"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl s_client (CARDWRIGHT_OPENSSL_TESTS is set)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let out = child.wait_with_output().expect("s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if accepted {
        assert!(text.contains("HTTP/1.1 200"), "{what}: {text}");
        assert!(text.contains(what), "{what}: {text}");
    } else {
        assert!(!text.contains("HTTP/1.1 "), "{what}: answered: {text}");
        assert!(text.contains("alert"), "{what}: no TLS alert: {text}");
    }
}
