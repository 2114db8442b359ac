//! The outlet page's routes over a real security module (`outlet::Module` on the software
//! key store) and a virtual card written like the issuer's platform writes one (keys
//! derived from the category's base key and the card number): the page and its session,
//! the catalog, the card's state, an install clicked through `POST /api/install` and
//! followed through `GET /api/state` to "installed", then checked on the card over an
//! independent GP channel (keys diversified from the base key by `scp`, not by `kms`);
//! the same click again refused as already present, a card the module has no keys for, an
//! empty reader, an unknown application.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::Router;
use card::{CardConfig, VirtualCard, VirtualChannel};
use gpclient::{ops, GpClient, KeySpec, OpenOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use scp::{Diversification, SecurityLevel};
use serde_json::{json, Value};
use server::outlet::{router, CardSource, CSRF_HEADER};
use time::{Duration as TimeSpan, OffsetDateTime};
use tower::ServiceExt;
use transport::{CardChannel, TransportError};

const ADDR: &str = "127.0.0.1:7070";
const ORIGIN: &str = "http://127.0.0.1:7070";
const CATEGORY: &str = "gold";
const CARD_NUMBER: &str = "1000000042";
/// The category's base key (AES-128): the issuer's and the outlet's token hold it.
const BASE: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";

/// A virtual card in a state file, in a reader the test can empty.
struct TestReader {
    state: PathBuf,
    config: CardConfig,
    present: AtomicBool,
}

impl CardSource for TestReader {
    fn reader(&self) -> String {
        "Test reader".into()
    }
    fn present(&self) -> Result<bool, TransportError> {
        Ok(self.present.load(Ordering::SeqCst))
    }
    fn open(&self) -> Result<Box<dyn CardChannel>, TransportError> {
        if !self.present.load(Ordering::SeqCst) {
            return Err(TransportError::NoCard("Test reader".into()));
        }
        let card = VirtualCard::open(&self.state, self.config.clone())
            .map_err(|e| TransportError::Other(e.to_string()))?;
        Ok(Box::new(VirtualChannel::named(card, "Test reader".into())))
    }
}

/// The provider's root and its package signer (P-256), made with rcgen.
struct Provider {
    root_der: Vec<u8>,
    signer_der: Vec<u8>,
    signer_pkcs8: Vec<u8>,
}

fn provider() -> Provider {
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.distinguished_name
        .push(DnType::CommonName, "Example Transit Root");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.not_before = now - TimeSpan::days(1);
    root.not_after = now + TimeSpan::days(3650);
    let root_cert = root.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(root, root_key);
    let signer_key = KeyPair::generate().unwrap();
    let mut signer = CertificateParams::new(Vec::<String>::new()).unwrap();
    signer
        .distinguished_name
        .push(DnType::CommonName, "Example Transit packages");
    signer.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    signer.not_before = now - TimeSpan::days(1);
    signer.not_after = now + TimeSpan::days(365);
    let signer_cert = signer.signed_by(&signer_key, &issuer).unwrap();
    Provider {
        root_der: root_cert.der().to_vec(),
        signer_der: signer_cert.der().to_vec(),
        signer_pkcs8: signer_key.serialize_der(),
    }
}

/// The registration applet's CAP file (`card::registration`, built like the other test CAPs).
fn registration_cap() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../gp/tests/data/cardwright_registration.cap"),
    )
    .unwrap()
}

fn application(name: &str, title: &str) -> package::Application {
    package::Application {
        name: name.into(),
        title: title.into(),
        version: "1.2.0".into(),
        load_file: String::new(),
        sha256: String::new(),
        size: 0,
        package_aid: String::new(),
        applet: String::new(),
        instance: String::new(),
        privileges: Vec::new(),
        install_params: String::new(),
        security_domain: String::new(),
        dap: Vec::new(),
        tokens: None,
        registration: Vec::new(),
    }
}

/// A signed package with two applications: `transit`, a ~`size`-byte CAP without
/// registration, and `id`, the registration applet with a recipe of one key pair made on
/// the card (certified by the module) and one AES-128 key made in the module.
fn package(p: &Provider, size: usize) -> Vec<u8> {
    use package::{Generate, KeyKind, RegistrationKey};
    let now = OffsetDateTime::now_utc();
    let mut id = application("id", "Transit ID");
    id.registration = vec![
        RegistrationKey {
            id: "sign".into(),
            kind: KeyKind::EcP256,
            generate: Generate::Card,
            slot: 1,
            subject: Some("Transit ID {card}".into()),
        },
        RegistrationKey {
            id: "mac".into(),
            kind: KeyKind::Aes128,
            generate: Generate::Module,
            slot: 2,
            subject: None,
        },
    ];
    let manifest = package::Manifest {
        format: package::FORMAT.into(),
        provider: "Example Transit Ltd".into(),
        not_before: now - TimeSpan::days(1),
        not_after: now + TimeSpan::days(30),
        applications: vec![application("transit", "Transit pass"), id],
    };
    let signer = package::SoftwareSigner::from_pkcs8_der(&p.signer_pkcs8).unwrap();
    package::build(
        package::BuildInput {
            manifest,
            load_files: vec![
                ("transit".into(), gp::cap::testing::synthetic_cap(size)),
                ("id".into(), registration_cap()),
            ],
            chain_der: vec![p.signer_der.clone()],
            crls_der: Vec::new(),
            signing_time: now,
        },
        &signer,
    )
    .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    reader: Arc<TestReader>,
    cap_package: gp::aid::Aid,
    /// The module's key store (for the registration keys it keeps).
    module_config: String,
    /// The module CA's certificate.
    ca_pem: String,
}

/// The outlet (software key store holding the base key, the provider's root as trust
/// anchor, one package added) and a card issued for it in `TestReader`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.key");
    std::fs::write(&master, "11".repeat(32)).unwrap();
    let module_config = format!(
        "file:{}?master-key-file={}",
        dir.path().join("keys.json").display(),
        master.display()
    );
    // The base key, brought in as two components (as `keys import-base` does).
    let store = kms::open(&module_config).unwrap();
    let base = apdu::parse_hex(BASE).unwrap();
    let c1 = vec![0x5Au8; 16];
    let c2: Vec<u8> = base.iter().zip(&c1).map(|(a, b)| a ^ b).collect();
    let component = |k: &[u8]| {
        let kcv = scp::Key::aes(k).unwrap().kcv();
        kms::Component::from_hex(&apdu::hex(k), &apdu::hex(&kcv)).unwrap()
    };
    let info = store
        .import_base_key(
            CATEGORY,
            kms::KeyKind::Aes,
            vec![component(&c1), component(&c2)],
            None,
        )
        .unwrap();
    let p = provider();
    let outlet_dir = dir.path().join("outlet");
    let module = outlet::Module::init(
        &outlet_dir,
        outlet::InitOptions {
            id: "shop-1".into(),
            module: module_config.clone(),
            trust: vec![package::TrustAnchor {
                certificate_der: p.root_der.clone(),
                grantable: gp::Privileges::default(),
            }],
            category: CATEGORY.into(),
            initial_kvn: 0x30,
            ca_name: None,
        },
    )
    .unwrap();
    let archive = package(&p, 3000);
    let added = module.add(&archive).unwrap();
    assert_eq!(added.len(), 2);
    let cap = gp::cap::CapFile::from_bytes(&gp::cap::testing::synthetic_cap(3000)).unwrap();

    // The card as the issuer's platform writes it: KDD = the card number, key set derived
    // from the base key, key version from the base key's version.
    let kdd = kms::kdd_for_card_number(CARD_NUMBER).unwrap();
    let config = CardConfig {
        keys: store.derive_for_kdd(CATEGORY, info.version, &kdd).unwrap(),
        key_version: kms::kvn_for_version(info.version, 0x30),
        kdd,
        scp11: false,
        ..CardConfig::default()
    };
    let reader = Arc::new(TestReader {
        state: dir.path().join("card.json"),
        config,
        present: AtomicBool::new(true),
    });
    let addr: SocketAddr = ADDR.parse().unwrap();
    let ca_pem = module.ca_certificate_pem();
    let app = router(Arc::new(module), reader.clone(), addr);
    Fixture {
        _dir: dir,
        app,
        reader,
        cap_package: cap.package_aid(),
        module_config,
        ca_pem,
    }
}

struct Answer {
    status: StatusCode,
    json: Value,
    text: String,
    headers: axum::http::HeaderMap,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    Answer {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        headers,
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::HOST, ADDR)
        .body(Body::empty())
        .unwrap()
}

/// The page's session: (cookie, CSRF token from the page's meta tag).
async fn open_page(app: &Router) -> (String, String) {
    let a = send(app, get("/")).await;
    assert_eq!(a.status, StatusCode::OK);
    let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let cookie = a.headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let marker = "<meta name=\"csrf-token\" content=\"";
    let start = a.text.find(marker).expect("csrf meta") + marker.len();
    let csrf = a.text[start..start + 64].to_string();
    assert!(csrf.bytes().all(|b| b.is_ascii_hexdigit()), "{csrf}");
    assert!(a.text.contains("Test reader"));
    (cookie, csrf)
}

fn post(uri: &str, session: &(String, String), body: Value) -> Request<Body> {
    Request::post(uri)
        .header(header::HOST, ADDR)
        .header(header::ORIGIN, ORIGIN)
        .header(header::COOKIE, HeaderValue::from_str(&session.0).unwrap())
        .header(CSRF_HEADER, &session.1)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Polls `GET /api/state` until the job `id` has finished; returns the job and the
/// progress steps seen on the way.
async fn finished(app: &Router, id: u64) -> (Value, Vec<Value>) {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    loop {
        let a = send(app, get("/api/state")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let job = &a.json["job"];
        assert_eq!(job["id"], id, "{job}");
        if job["state"] != "running" {
            return (job.clone(), seen);
        }
        if !job["progress"].is_null() && seen.last() != Some(&job["progress"]) {
            seen.push(job["progress"].clone());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "job {id} never ended"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Lists the card's registry over an independent channel: the keys diversified from the
/// base key with KDF3 by `scp`/`gpclient` (not by the module or `kms`).
fn registry(state: &Path, config: &CardConfig) -> ops::Registry {
    let card = VirtualCard::open(state, config.clone()).unwrap();
    let mut gp = GpClient::new(transport::Traced::new(
        VirtualChannel::named(card, "check".into()),
        None,
    ));
    gp.open_secure_channel(&OpenOptions {
        keys: KeySpec::same(
            &apdu::parse_hex(BASE).unwrap(),
            Diversification::Kdf3,
            config.key_version,
        ),
        level: SecurityLevel::MAC_ENC_RMAC,
        scp: Some(3),
        sd: None,
    })
    .unwrap();
    ops::registry(&mut gp).unwrap()
}

/// Sends one APDU (hex) to the card, with GET RESPONSE on `61xx`; returns (data, SW).
fn apdu(chan: &mut VirtualChannel, hex: &str) -> (Vec<u8>, u16) {
    let cmd = apdu::Command::parse(&apdu::parse_hex(hex).unwrap()).unwrap();
    let r = apdu::exchange(&cmd, |b| chan.transmit_raw(b)).unwrap();
    (r.data, r.sw.0)
}

/// What the page showed of a registration is what the card and the module hold: the
/// applet signs with the key pair the page's certificate (issued by the module's CA)
/// certifies, and MACs with the key the module keeps (its KCV as shown).
fn registration_works(f: &Fixture, o: &Value) {
    use der::Encode;
    let reg = o["registration"].as_array().unwrap();
    assert_eq!(reg.len(), 2, "{o}");
    let sign = reg.iter().find(|k| k["id"] == "sign").unwrap();
    let mac = reg.iter().find(|k| k["id"] == "mac").unwrap();
    assert_eq!(sign["kind"], "ec-p256");
    let subject = sign["subject"].as_str().unwrap();
    assert!(subject.contains("Transit ID 0042"), "{sign}");
    let ca_der = server::ca_files::pem_decode(&f.ca_pem, "CERTIFICATE").unwrap();
    let ca = pki::Certificate::from_der(&ca_der).unwrap();
    assert_eq!(sign["issuer"], ca.subject());
    let cert_der =
        server::ca_files::pem_decode(sign["certificate_pem"].as_str().unwrap(), "CERTIFICATE")
            .unwrap();
    let cert = pki::Certificate::from_der(&cert_der).unwrap();
    // Issued by the module's CA.
    let tbs = cert.x509().tbs_certificate().to_der().unwrap();
    ca.public_key()
        .unwrap()
        .verify(&tbs, cert.x509().signature().raw_bytes())
        .expect("the certificate is the module CA's");
    assert_eq!(mac["kind"], "aes-128");
    let kcv = mac["kcv"].as_str().unwrap();
    assert_eq!(kcv.len(), 6, "{mac}");

    let card = VirtualCard::open(&f.reader.state, f.reader.config.clone()).unwrap();
    let mut chan = VirtualChannel::named(card, "check".into());
    let instance = o["instance"].as_str().unwrap();
    let (_, sw) = apdu(
        &mut chan,
        &format!("00A40400{:02X}{instance}00", instance.len() / 2),
    );
    assert_eq!(sw, 0x9000);
    // The certificate on the card is the one shown.
    let (on_card, sw) = apdu(&mut chan, "80CA010100");
    assert_eq!(sw, 0x9000);
    assert_eq!(on_card, cert_der);
    // SIGN over a fresh challenge verifies under the certificate's key.
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge).unwrap();
    let (signature, sw) = apdu(&mut chan, &format!("802A000120{}00", apdu::hex(&challenge)));
    assert_eq!(sw, 0x9000);
    cert.public_key()
        .unwrap()
        .verify(&challenge, &signature)
        .expect("the card's signature verifies under the certificate the module issued");
    // MAC equals the CMAC of the key the module keeps.
    let (card_mac, sw) = apdu(&mut chan, &format!("804C000220{}00", apdu::hex(&challenge)));
    assert_eq!(sw, 0x9000);
    let secrets = kms::open_secret_keys(&f.module_config).unwrap();
    let label = outlet::labels::registration_key(CARD_NUMBER, "id", 2);
    let module_mac = secrets.cmac(&label, &challenge).unwrap();
    assert_eq!(card_mac, module_mac.to_vec());
    let info = secrets.info(&label).unwrap().unwrap();
    assert_eq!(apdu::hex(&info.kcv), kcv.to_uppercase());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_click_installs_and_a_second_is_refused_in_the_clerks_words() {
    let f = fixture();
    let app = &f.app;
    let session = open_page(app).await;

    let a = send(app, get("/api/catalog")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let apps = a.json["applications"].as_array().unwrap();
    assert_eq!(apps.len(), 2, "{}", a.text);
    let transit = apps.iter().find(|a| a["name"] == "transit").unwrap();
    assert_eq!(transit["title"], "Transit pass");
    assert_eq!(transit["version"], "1.2.0");
    assert_eq!(transit["provider"], "Example Transit Ltd");
    let cap_size = gp::cap::testing::synthetic_cap(3000).len() as u64;
    assert_eq!(transit["size"], cap_size, "{}", a.text);
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");

    let a = send(app, get("/api/state")).await;
    assert_eq!(a.json["reader"], "Test reader");
    assert_eq!(a.json["card"]["status"], "ready", "{}", a.text);
    assert_eq!(a.json["card"]["card"], CARD_NUMBER);
    assert_eq!(a.json["job"]["state"], "idle");
    assert_eq!(a.json["pending"], json!([]));

    // The click.
    let a = send(
        app,
        post("/api/install", &session, json!({"application": "transit"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.json["state"], "running");
    assert_eq!(a.json["application"], "transit");
    let id = a.json["id"].as_u64().unwrap();
    let (job, seen) = finished(app, id).await;
    assert_eq!(job["state"], "installed", "{job}");
    let o = &job["outcome"];
    assert_eq!(o["application"], "transit");
    assert_eq!(o["card"], CARD_NUMBER);
    let blocks = o["blocks"].as_u64().unwrap();
    assert!(blocks >= 2, "{o}");
    assert!(o["apdus"].as_u64().unwrap() > blocks, "{o}");
    for p in &seen {
        if p["step"] == "loading" {
            assert_eq!(p["blocks"], blocks, "{p}");
            assert!(p["block"].as_u64().unwrap() <= blocks, "{p}");
        }
    }

    // On the card, seen through an independent channel.
    let reg = registry(&f.reader.state, &f.reader.config);
    assert!(
        reg.find(&f.cap_package).is_some(),
        "the load file is not on the card"
    );
    let instance: gp::aid::Aid = o["instance"].as_str().unwrap().parse().unwrap();
    assert!(reg.find(&instance).is_some(), "instance {instance} missing");

    // The same click again: already on this card.
    let a = send(
        app,
        post("/api/install", &session, json!({"application": "transit"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let (job, _) = finished(app, a.json["id"].as_u64().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"], "already_present", "{job}");
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .contains("already on this card"),
        "{job}"
    );

    // An application the module does not hold.
    let a = send(
        app,
        post("/api/install", &session, json!({"application": "wallet"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    assert_eq!(a.json["error"], "unknown_application");

    // A body that is not the install request: the JSON error shape.
    let a = send(
        app,
        post("/api/install", &session, json!({"app": "transit"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(a.json["error"], "invalid_request");

    // The card taken out: the page says so, and a click says "no card".
    f.reader.present.store(false, Ordering::SeqCst);
    let a = send(app, get("/api/state")).await;
    assert_eq!(a.json["card"]["status"], "absent", "{}", a.text);
    f.reader.present.store(true, Ordering::SeqCst);
    let a = send(app, get("/api/state")).await;
    assert_eq!(a.json["card"]["status"], "ready", "{}", a.text);
    f.reader.present.store(false, Ordering::SeqCst);
    let a = send(app, get("/api/state")).await;
    assert_eq!(a.json["card"]["status"], "absent", "{}", a.text);
    let a = send(
        app,
        post("/api/install", &session, json!({"application": "transit"})),
    )
    .await;
    let (job, _) = finished(app, a.json["id"].as_u64().unwrap()).await;
    assert_eq!(job["error"], "no_card", "{job}");

    // The card back; the registration applet: installed, then registered.
    f.reader.present.store(true, Ordering::SeqCst);
    let a = send(
        app,
        post("/api/install", &session, json!({"application": "id"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let (job, _) = finished(app, a.json["id"].as_u64().unwrap()).await;
    assert_eq!(job["state"], "installed", "{job}");
    registration_works(&f, &job["outcome"]);

    // Nothing to resume on a card with no interrupted install.
    let a = send(app, post("/api/resume", &session, json!({}))).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let (job, _) = finished(app, a.json["id"].as_u64().unwrap()).await;
    assert_eq!(job["state"], "resumed", "{job}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_the_module_has_no_keys_for_is_shown_as_foreign() {
    let f = fixture();
    // Another issuer's card: the factory keys, no card number.
    let dir = tempfile::tempdir().unwrap();
    let other = Arc::new(TestReader {
        state: dir.path().join("other.json"),
        config: CardConfig {
            scp11: false,
            ..CardConfig::default()
        },
        present: AtomicBool::new(true),
    });
    drop(f.app);
    let module = outlet::Module::open(&f._dir.path().join("outlet")).unwrap();
    let app = router(Arc::new(module), other, ADDR.parse().unwrap());
    let session = open_page(&app).await;
    let a = send(&app, get("/api/state")).await;
    assert_eq!(a.json["card"]["status"], "foreign", "{}", a.text);
    assert!(a.json["card"]["reason"]
        .as_str()
        .unwrap()
        .contains("cannot be served here"));
    let a = send(
        &app,
        post("/api/install", &session, json!({"application": "transit"})),
    )
    .await;
    let (job, _) = finished(&app, a.json["id"].as_u64().unwrap()).await;
    assert_eq!(job["error"], "wrong_card", "{job}");
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be served here"),
        "{job}"
    );
}
