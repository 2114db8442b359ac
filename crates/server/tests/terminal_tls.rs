//! Issuing terminals over TLS (issue 13): the real TLS layer (`server::tls::serve_tls` with the
//! one client verifier), the real bearer/certificate extractor (`Auth<LendReaders>`), the real
//! relay hub, and the real terminal client (`relay::agent::run_once` with rustls), all with
//! certificates made in the test (rcgen).
//!
//! * a terminal with a client certificate of a `--terminal-ca` root connects as its
//!   certificate's commonName, without a token;
//! * the agent refuses a server certificate it does not trust (`UntrustedServer`);
//! * the server refuses a client certificate it does not trust in the handshake (the agent
//!   says `ClientCertificateRefused`; no route runs);
//! * a certificate the handshake accepts for another purpose (a partner root) is not a
//!   terminal's (401); token terminals keep working on the same listener, and a replaced
//!   token table (rotation) takes effect at the next request.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use common::certs::{Ca, Leaf};
use relay::agent::{AgentConfig, AgentError, Readers};
use relay::hub::Hub;
use relay::protocol::{ReaderReport, RelayFault};
use rustls::pki_types::CertificateDer;
use server::auth::{Auth, HasTokens, LendReaders, Principal, Role, TokenTable};
use server::tls::{self, PartnerCertVerifier};

const DESK_TOKEN: &str = "desk-2-token-0123456789";

/// The platform's side: the token table and the relay hub.
struct Platform {
    tokens: TokenTable,
    hub: Arc<Hub>,
    routes_run: AtomicUsize,
}

impl HasTokens for Platform {
    fn tokens(&self) -> &TokenTable {
        &self.tokens
    }
}

/// As `GET /api/v1/terminal/ws` of the issuance API: authenticated first, then the relay
/// (a token terminal stays while its token is valid, a certificate terminal while it is
/// connected).
async fn terminal_ws(
    caller: Auth<LendReaders>,
    State(p): State<Arc<Platform>>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> axum::response::Response {
    match server::auth::bearer_of(&headers) {
        Some(token) => p.hub.accept_token(caller.principal.name, token, ws),
        None => p.hub.accept(caller.principal.name, ws),
    }
}

/// Who the caller is (terminals only).
async fn whoami(caller: Auth<LendReaders>, State(p): State<Arc<Platform>>) -> String {
    p.routes_run.fetch_add(1, Ordering::SeqCst);
    caller.principal.name
}

struct Fixture {
    addr: SocketAddr,
    server_ca: Ca,
    platform: Arc<Platform>,
    dir: tempfile::TempDir,
    _served: common::tls::Served,
}

impl Fixture {
    fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

/// The platform over TLS on 127.0.0.1: `terminal_root` as `--terminal-ca`, `partner_root`
/// as `--partner-ca` (the same listener's other kind of client), one terminal token.
fn start(terminal_root: &Ca, partner_root: &Ca) -> Fixture {
    let mut server_ca = Ca::new("platform server CA");
    let server = server_ca.server();
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = tls::certificates_from_pem(server.chain_pem.as_bytes()).expect("chain");
    let key_file = dir.path().join("server-key.pem");
    std::fs::write(&key_file, &server.key_pem).expect("key");
    let key = tls::load_private_key(&key_file).expect("key");

    let tokens = TokenTable::new().with(
        DESK_TOKEN,
        Principal {
            name: "desk-2".into(),
            role: Role::Terminal,
            tenant: None,
        },
    );
    let terminal_roots = vec![CertificateDer::from(terminal_root.der.clone())];
    tokens.set_terminal_roots(terminal_roots.clone(), Vec::new());
    let verifier = PartnerCertVerifier::new(
        vec![CertificateDer::from(partner_root.der.clone())],
        Vec::new(),
    )
    .expect("verifier");
    verifier
        .set_terminal_roots(terminal_roots, Vec::new())
        .expect("terminal roots");

    let hub = Hub::new(Arc::new(tokens.clone()), Duration::from_secs(5));
    let platform = Arc::new(Platform {
        tokens,
        hub,
        routes_run: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route(relay::WS_PATH, get(terminal_ws))
        .route("/whoami", get(whoami))
        .with_state(platform.clone());
    let served = common::tls::serve(app, chain, key, Some(verifier));
    Fixture {
        addr: served.addr,
        server_ca,
        platform,
        dir,
        _served: served,
    }
}

/// One virtual reader with a card that answers 9000 to everything.
struct Desk;

impl Readers for Desk {
    fn list(&mut self) -> Vec<ReaderReport> {
        vec![ReaderReport {
            name: "Reader 0".into(),
            card_present: true,
            atr: Some("3B00".into()),
        }]
    }
    fn transmit(&mut self, _reader: &str, _capdu: &[u8]) -> Result<Vec<u8>, RelayFault> {
        Ok(vec![0x90, 0x00])
    }
    fn reset(&mut self, _reader: &str) -> Result<Vec<u8>, RelayFault> {
        Ok(vec![0x3B, 0x00])
    }
}

/// The terminal's TLS: `server_ca` (PEM) trusted, `client` presented (None: no certificate).
fn client_tls(f: &Fixture, server_ca: &str, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let ca = f.write("trusted-ca.pem", server_ca);
    match client {
        None => tls::client_config(&ca).expect("client config"),
        Some(leaf) => {
            let chain = f.write("client.pem", &leaf.chain_pem);
            let key = f.write("client-key.pem", &leaf.key_pem);
            tls::client_config_with_certificate(&ca, &chain, &key).expect("client config")
        }
    }
}

fn agent_config(
    f: &Fixture,
    tls: Arc<rustls::ClientConfig>,
    token: Option<&str>,
    terminal: &str,
) -> AgentConfig {
    AgentConfig {
        // By name: the server certificate is for 127.0.0.1 and localhost.
        server: format!("https://localhost:{}", f.addr.port()),
        token: token.map(str::to_string),
        terminal: terminal.into(),
        poll: Duration::from_millis(20),
        retry: Duration::from_millis(50),
        tls: Some(tls),
    }
}

/// Runs the terminal in a thread until the hub lists `terminal` (or 10 s pass).
fn connects(f: &Fixture, config: AgentConfig) {
    let stop = Arc::new(AtomicBool::new(false));
    let terminal = config.terminal.clone();
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || relay::agent::run_once(&config, &mut Desk, &stop))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        if f.platform
            .hub
            .terminals()
            .iter()
            .any(|t| t.terminal == terminal && t.readers.len() == 1)
        {
            break true;
        }
        if Instant::now() > deadline || handle.is_finished() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::SeqCst);
    let result = handle.join().expect("agent thread");
    assert!(listed, "{terminal} never connected: {result:?}");
    assert!(result.is_ok(), "{terminal}: {result:?}");
}

#[test]
fn terminal_authenticated_by_a_trusted_client_certificate() {
    let mut terminals = Ca::new("issuing terminals CA");
    let partners = Ca::new("partner root");
    let f = start(&terminals, &partners);
    let desk1 = terminals.client("desk-1");
    let tls = client_tls(&f, &f.server_ca.pem, Some(&desk1));
    // No token: the certificate names the terminal.
    connects(&f, agent_config(&f, tls.clone(), None, "desk-1"));
    // The hello must match the certificate's name, as it must match a token's.
    let stop = AtomicBool::new(false);
    let r = relay::agent::run_once(&agent_config(&f, tls, None, "desk-9"), &mut Desk, &stop);
    assert!(
        matches!(&r, Err(AgentError::Refused(why)) if why.contains("desk-1")),
        "{r:?}"
    );
}

#[test]
fn the_agent_refuses_a_server_certificate_it_does_not_trust() {
    let mut terminals = Ca::new("issuing terminals CA");
    let partners = Ca::new("partner root");
    let f = start(&terminals, &partners);
    let desk1 = terminals.client("desk-1");
    // The terminal trusts another CA than the one that signed the platform's certificate.
    let impostor = Ca::new("some other CA");
    for client in [None, Some(&desk1)] {
        let tls = client_tls(&f, &impostor.pem, client);
        let stop = AtomicBool::new(false);
        let r = relay::agent::run_once(
            &agent_config(&f, tls.clone(), Some(DESK_TOKEN), "desk-2"),
            &mut Desk,
            &stop,
        );
        match &r {
            Err(e @ AgentError::UntrustedServer(_)) => {
                let text = e.to_string();
                assert!(text.contains("server certificate is not trusted"), "{text}");
                assert!(text.contains("--server-ca"), "{text}");
            }
            other => panic!("expected UntrustedServer, got {other:?}"),
        }
        // And `run` (the agent's loop) gives up at once instead of retrying forever.
        let r = relay::agent::run(
            &agent_config(&f, tls, Some(DESK_TOKEN), "desk-2"),
            &mut Desk,
            &stop,
        );
        assert!(matches!(r, Err(AgentError::UntrustedServer(_))), "{r:?}");
    }
    assert!(f.platform.hub.terminals().is_empty());
}

#[test]
fn the_server_refuses_a_client_certificate_it_does_not_trust() {
    let mut terminals = Ca::new("issuing terminals CA");
    let mut partners = Ca::new("partner root");
    let mut stranger = Ca::new("unknown CA");
    let f = start(&terminals, &partners);
    let server_ca = f.server_ca.pem.clone();

    // A certificate of an unknown CA, and an expired one of the right CA: refused in the
    // handshake; the agent says so and gives up.
    for (what, leaf) in [
        ("unknown CA", stranger.client("desk-1")),
        ("expired", terminals.expired_client("desk-1")),
    ] {
        let tls = client_tls(&f, &server_ca, Some(&leaf));
        let stop = AtomicBool::new(false);
        let r = relay::agent::run(&agent_config(&f, tls, None, "desk-1"), &mut Desk, &stop);
        match &r {
            Err(e @ AgentError::ClientCertificateRefused(_)) => {
                assert!(e.to_string().contains("--client-cert"), "{e}")
            }
            other => panic!("{what}: expected ClientCertificateRefused, got {other:?}"),
        }
    }
    // Same through an ordinary HTTPS client: no route ran.
    let err = get_whoami(&f, &server_ca, Some(&stranger.client("x")), None).unwrap_err();
    assert!(
        err.contains("alert") || err.contains("Alert") || err.contains("reset"),
        "{err}"
    );
    assert_eq!(f.platform.routes_run.load(Ordering::SeqCst), 0);
    assert!(f.platform.hub.terminals().is_empty());

    // A partner's certificate passes the handshake (the listener is shared) but is not a
    // terminal's.
    let partner = partners.client("bank1 AP platform");
    let (status, body) = get_whoami(&f, &server_ca, Some(&partner), None).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not a terminal's"), "{body}");
    // The trusted terminal certificate names its terminal.
    let desk7 = terminals.client("desk-7");
    assert_eq!(
        get_whoami(&f, &server_ca, Some(&desk7), None),
        Ok((200, "desk-7".into()))
    );
}

#[test]
fn token_terminals_keep_working_and_tokens_rotate() {
    let terminals = Ca::new("issuing terminals CA");
    let partners = Ca::new("partner root");
    let f = start(&terminals, &partners);
    let server_ca = f.server_ca.pem.clone();
    // A token terminal over wss:// without a client certificate.
    let tls = client_tls(&f, &server_ca, None);
    connects(
        &f,
        agent_config(&f, tls.clone(), Some(DESK_TOKEN), "desk-2"),
    );
    assert_eq!(
        get_whoami(&f, &server_ca, None, Some(DESK_TOKEN)),
        Ok((200, "desk-2".into()))
    );
    assert_eq!(get_whoami(&f, &server_ca, None, None).unwrap().0, 401);

    // Rotation: the table is replaced (as a re-read token file does); the old token is
    // refused at the next request, the new one accepted.
    let rotated = "desk-2-rotated-token-0123456789";
    f.platform.tokens.replace_with(&TokenTable::new().with(
        rotated,
        Principal {
            name: "desk-2".into(),
            role: Role::Terminal,
            tenant: None,
        },
    ));
    assert_eq!(
        get_whoami(&f, &server_ca, None, Some(DESK_TOKEN))
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        get_whoami(&f, &server_ca, None, Some(rotated)),
        Ok((200, "desk-2".into()))
    );
    let stop = AtomicBool::new(false);
    let r = relay::agent::run_once(
        &agent_config(&f, tls.clone(), Some(DESK_TOKEN), "desk-2"),
        &mut Desk,
        &stop,
    );
    assert!(matches!(r, Err(AgentError::Unauthorized)), "{r:?}");
    connects(&f, agent_config(&f, tls, Some(rotated), "desk-2"));
}

/// `GET /whoami` over HTTPS trusting `server_ca` (PEM), with `client` and `token`.
fn get_whoami(
    f: &Fixture,
    server_ca: &str,
    client: Option<&Leaf>,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    common::tls::get(f.addr.port(), "/whoami", server_ca, client, token)
}
