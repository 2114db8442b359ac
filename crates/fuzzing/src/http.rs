//! The HTTP request bodies of the APIs, through the real routers, in process: `server::app`
//! (payment service on an in-memory store, issuance API on SQLite), the card issuer's
//! partner API (`server::partner`, on SQLite, with a registered partner whose client
//! certificate is injected as the extension the TLS layer sets) and the application
//! provider's API (`server::ap`).

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

const ADMIN: &str = "fuzz-admin-token-0123456789";
const OPERATOR: &str = "fuzz-operator-token-0123456789";
/// The registered partner's root CA (its client certificates chain to it).
const PARTNER_ROOT: &str = include_str!("../data/partner-root.pem");
/// A client certificate of the registered partner (the private key is not kept: the TLS
/// handshake is not part of this target).
const PARTNER_CLIENT: &str = include_str!("../data/partner-client.pem");

/// The card of the partner API's fixture (written, with the partner's SSD).
const CARD: &str = "4711000000000001";
/// The partner's delegated SSD on it.
const PARTNER_SSD: &str = "A000000151BA0101";

/// A virtual card written by `issuer` (category `gold`, a base key made here).
fn written_card(
    store: &tsm::Store,
    keys: &dyn kms::KeyStore,
    issuer: &tsm::Issuer,
) -> card::VirtualChannel {
    store
        .create_category(
            "fuzz",
            &tsm::CategorySpec {
                id: "gold".into(),
                tenant: "issuer".into(),
                description: String::new(),
                initial_keys: tsm::model::InitialKeys::GpTestKey,
                initial_kvn: 0x30,
                perso: Vec::new(),
            },
        )
        .expect("category");
    // Two components (the key store's minimum): 5A… and A5…, the base key FF….
    let kcv = |b: &[u8]| kms::Key::new(kms::KeyKind::Aes, b).expect("key").kcv();
    let (c1, c2) = ([0x5Au8; 16], [0xA5u8; 16]);
    let info = keys
        .import_base_key(
            "gold",
            kms::KeyKind::Aes,
            vec![
                kms::Component::new(&c1, kcv(&c1)),
                kms::Component::new(&c2, kcv(&c2)),
            ],
            None,
        )
        .expect("base key");
    store
        .register_key_version(
            "fuzz",
            "gold",
            info.version,
            "gold",
            kms::KeyKind::Aes,
            info.kcv,
            true,
        )
        .expect("key version");
    let mut card = card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
    issuer
        .write(&tsm::Actor::new("issuer", "fuzz"), CARD, "gold", &mut card)
        .expect("card written");
    card
}

/// Which router a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// Payment service and issuance API.
    Main,
    /// The card issuer's partner API.
    Partner,
    /// The application provider's API.
    Ap,
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
    partner_app: Router,
    ap_app: Router,
    /// The partner's client chain, and a chain of no partner (its root used as a leaf).
    partner_chain: server::tls::ClientCertificate,
    stranger_chain: server::tls::ClientCertificate,
    /// Every POST route of the OpenAPI documents, path parameters filled in: those of
    /// `server::app` first (so that the seeds' route bytes keep their routes), then the
    /// partner API's, then the AP API's.
    posts: Vec<(Api, String)>,
    _dir: tempfile::TempDir,
}

/// A card issuer that refuses everything (the AP's routes need a terminal before they call
/// it, and the fuzzer has none).
struct NoCardIssuer;

fn no_ci<T>() -> tsm::Result<T> {
    Err(tsm::Error::Invalid("no card issuer in the fuzzer".into()))
}

impl tsm::ssd::CardIssuerLink for NoCardIssuer {
    fn request(&self, _: &tsm::ssd::SsdRequest) -> tsm::Result<i64> {
        no_ci()
    }
    fn exchange(&self, _: i64, _: Option<&[u8]>) -> tsm::Result<tsm::ssd::Exchange> {
        no_ci()
    }
    fn initial_keys(&self, _: i64) -> tsm::Result<tsm::ssd::WrappedKeySet> {
        no_ci()
    }
    fn confirm_rotation(&self, _: i64, _: &tsm::ssd::Rotation) -> tsm::Result<tsm::ssd::SsdRecord> {
        no_ci()
    }
    fn status(&self, _: &str, _: &str) -> tsm::Result<tsm::ssd::SsdRecord> {
        no_ci()
    }
    fn renew(&self, _: &str, _: &str) -> tsm::Result<i64> {
        no_ci()
    }
    fn report_compromised(
        &self,
        _: &str,
        _: &str,
        _: u8,
        _: &str,
    ) -> tsm::Result<tsm::ssd::SsdRecord> {
        no_ci()
    }
    fn report_renewal(
        &self,
        _: &str,
        _: &str,
        _: &tsm::ssd::Renewal,
        _: &tsm::ssd::Rotation,
    ) -> tsm::Result<tsm::ssd::SsdRecord> {
        no_ci()
    }
    fn sign_token(&self, _: &tsm::ssd::TokenRequest) -> tsm::Result<Vec<u8>> {
        no_ci()
    }
    fn check_receipt(
        &self,
        _: &str,
        _: &str,
        _: &gp::dm::ReceiptContext,
        _: &[u8],
    ) -> tsm::Result<tsm::ssd::SsdRecord> {
        no_ci()
    }
}

/// The POST routes of a document's `(method, path)` list, path parameters filled in (the
/// partner routes' AIDs under the registered partner's prefix), sorted.
fn post_routes(documented: Vec<(String, String)>) -> Vec<String> {
    let mut v: Vec<String> = documented
        .into_iter()
        .filter(|(m, _)| m.eq_ignore_ascii_case("post"))
        .map(|(_, p)| {
            let aid = if p.starts_with("/api/v1/partner/") {
                PARTNER_SSD
            } else {
                "A000000151000000"
            };
            p.replace("{id}", "00000000000000000000000000000000")
                .replace("{serial}", "01")
                .replace("{card_number}", CARD)
                .replace("{aid}", aid)
                .replace("{instance}", "A000000151000000")
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn chain(pem: &str) -> server::tls::ClientCertificate {
    server::tls::ClientCertificate {
        chain: server::tls::certificates_from_pem(pem.as_bytes())
            .expect("certificate")
            .into(),
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let store = Arc::new(pki::MemoryStore::new());
        let clock = Arc::new(pki::SystemClock);
        let ca = server::ca_files::ephemeral(
            "Fuzz CA",
            server::ca_files::CaKeyType::P256,
            store.clone(),
            clock,
        )
        .expect("CA");
        let pay = Arc::new(server::PayServer::new(
            Arc::new(ca),
            server::Stores::all(store),
            Arc::new(server::MemoryAudit::default()),
            server::ServerConfig {
                admin_token: Some(ADMIN.to_string().into()),
                ..server::ServerConfig::default()
            },
        ));
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = format!("sqlite:{}", dir.path().join("fuzz.db").display());
        let tsm_store = tsm::Store::open(&db).expect("SQLite store");
        tsm_store
            .create_tenant("fuzz", "issuer", "Issuer", tsm::model::Role::CardIssuer)
            .expect("tenant");
        let keys = kms::SoftwareKeyStore::create(
            dir.path().join("keys.json"),
            kms::MasterKey::generate().expect("master key"),
        )
        .expect("key store");
        let issuer = Arc::new(tsm::Issuer::new(
            tsm_store,
            Arc::new(keys),
            tsm::IssuerConfig::default(),
        ));
        let mut tokens = server::auth::TokenTable::new();
        tokens.add(
            OPERATOR,
            server::auth::Principal {
                name: "fuzzer".into(),
                role: server::auth::Role::Operator,
                tenant: Some("issuer".into()),
            },
        );
        let issuance =
            server::issuance::IssuanceApi::new(issuer, tokens, std::time::Duration::from_secs(1));
        let app = server::app(pay, Some(issuance));

        // The card issuer's partner API, with one registered partner.
        let ci_db = format!("sqlite:{}", dir.path().join("ci.db").display());
        let ci_store = tsm::Store::open(&ci_db).expect("SQLite store");
        ci_store
            .create_tenant("fuzz", "issuer", "Issuer", tsm::model::Role::CardIssuer)
            .expect("tenant");
        let ci_keys = Arc::new(
            kms::SoftwareKeyStore::create(
                dir.path().join("ci-keys.json"),
                kms::MasterKey::generate().expect("master key"),
            )
            .expect("key store"),
        );
        let transport = tsm::ssd::KeySetStore::create_transport_key(ci_keys.as_ref(), "t")
            .expect("transport key");
        ci_store
            .add_partner(
                "fuzz",
                &tsm::ssd::NewPartner {
                    id: "bank".into(),
                    name: "Fuzz Bank".into(),
                    certificate: PARTNER_ROOT.as_bytes().to_vec(),
                    aid_prefix: vec![0xA0, 0x00, 0x00, 0x01, 0x51, 0xBA],
                    card_ranges: vec![tsm::ssd::CardRange::new(
                        "4711000000000000",
                        "4711000000999999",
                    )
                    .expect("range")],
                    transport_key: transport.to_spki_der(),
                },
            )
            .expect("partner");
        let ci_issuer = tsm::Issuer::new(
            ci_store.clone(),
            ci_keys.clone() as Arc<dyn kms::KeyStore>,
            tsm::IssuerConfig::default(),
        );
        let mut card = written_card(&ci_store, ci_keys.as_ref(), &ci_issuer);
        let ci = Arc::new(tsm::ssd::CiPlatform::new(
            ci_issuer,
            ci_keys as Arc<dyn tsm::ssd::KeySetStore>,
            tsm::ssd::CiConfig {
                receipt_key: Some(gp::dm::ReceiptKey::aes(&[0x71; 16]).expect("receipt key")),
                ..tsm::ssd::CiConfig::default()
            },
        ));
        let mut ci_tokens = server::auth::TokenTable::new();
        ci_tokens.add(
            OPERATOR,
            server::auth::Principal {
                name: "fuzzer".into(),
                role: server::auth::Role::Operator,
                tenant: Some("issuer".into()),
            },
        );
        let partner_api = server::partner::PartnerApi::new(
            ci,
            ci_tokens,
            None,
            server::partner::ExchangeTimeouts {
                response: std::time::Duration::from_secs(1),
                command: std::time::Duration::from_secs(1),
            },
        );
        // A delegated SSD of the partner on the card, so that its routes (tokens, receipts,
        // renewals) reach their checks.
        let ci = partner_api.ci().clone();
        let job = ci
            .request(
                "bank",
                &tsm::ssd::SsdRequest {
                    card_number: CARD.into(),
                    aid: PARTNER_SSD.into(),
                    model: tsm::ssd::SsdModel::Delegated,
                },
            )
            .expect("SSD request");
        ci.run(job, &mut card).expect("SSD created");
        let partner_app = server::partner::router(partner_api);

        // The application provider's API.
        let ap_db = format!("sqlite:{}", dir.path().join("ap.db").display());
        let ap_store = tsm::Store::open(&ap_db).expect("SQLite store");
        let ap_keys = Arc::new(
            kms::SoftwareKeyStore::create(
                dir.path().join("ap-keys.json"),
                kms::MasterKey::generate().expect("master key"),
            )
            .expect("key store"),
        );
        let ap = tsm::ssd::ApPlatform::new(
            ap_store,
            ap_keys,
            Arc::new(NoCardIssuer),
            tsm::ssd::ApConfig::new("bank"),
        );
        let mut ap_tokens = server::auth::TokenTable::new();
        ap_tokens.add(
            OPERATOR,
            server::auth::Principal {
                name: "fuzzer".into(),
                role: server::auth::Role::Operator,
                tenant: Some("bank".into()),
            },
        );
        let ap_api =
            server::ap::ApApi::new(Arc::new(ap), ap_tokens, std::time::Duration::from_secs(1));
        let ap_app = server::ap::router(ap_api);

        let mut main = post_routes(server::openapi::documented(&server::openapi_document()));
        main.extend(post_routes(server::openapi::documented(
            &server::issuance::openapi_document(),
        )));
        main.sort();
        main.dedup();
        let posts = main
            .into_iter()
            .map(|p| (Api::Main, p))
            .chain(
                post_routes(server::openapi::documented(
                    &server::partner::openapi_document(),
                ))
                .into_iter()
                .map(|p| (Api::Partner, p)),
            )
            .chain(
                post_routes(server::openapi::documented(&server::ap::openapi_document()))
                    .into_iter()
                    .map(|p| (Api::Ap, p)),
            )
            .collect();
        Fixture {
            runtime,
            app,
            partner_app,
            ap_app,
            partner_chain: chain(PARTNER_CLIENT),
            stranger_chain: chain(PARTNER_ROOT),
            posts,
            _dir: dir,
        }
    })
}

/// The POST routes this target reaches (for the test that checks none is missed).
pub fn http_routes() -> Vec<String> {
    fixture().posts.iter().map(|(_, p)| p.clone()).collect()
}

/// `data[0]` picks a POST route of any of the APIs (payment, issuance, the card issuer's
/// partner API, the application provider's API); `data[1]` bit 0 gives the admin token,
/// bit 1 the operator token, bit 2 a content type other than JSON, bit 3 the registered
/// partner's client certificate (as the TLS layer hands it to the handlers), bit 4 (without
/// bit 3) a chain of no partner; the rest is the body. Whatever arrives, the server answers
/// below 500, and every refusal is the documented JSON `{"error", "reason"}`.
pub fn http_bodies(data: &[u8]) {
    let [route, flags, body @ ..] = data else {
        return;
    };
    let f = fixture();
    let (api, path) = &f.posts[usize::from(*route) % f.posts.len()];
    let mut req = Request::builder().method(Method::POST).uri(path.as_str());
    if flags & 1 != 0 {
        req = req.header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    } else if flags & 2 != 0 {
        req = req.header(header::AUTHORIZATION, format!("bearer {OPERATOR}"));
    }
    let content_type = if flags & 4 != 0 {
        "text/plain"
    } else {
        "application/json"
    };
    let mut req = req
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .expect("request");
    if flags & 8 != 0 {
        req.extensions_mut().insert(f.partner_chain.clone());
    } else if flags & 16 != 0 {
        req.extensions_mut().insert(f.stranger_chain.clone());
    }
    let app = match api {
        Api::Main => &f.app,
        Api::Partner => &f.partner_app,
        Api::Ap => &f.ap_app,
    };
    let (status, bytes) = f.runtime.block_on(async {
        let r = app.clone().oneshot(req).await.expect("infallible");
        let status = r.status();
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    });
    // FUZZ_TRACE=1 prints each request's route and the answer's status and error code.
    if std::env::var_os("FUZZ_TRACE").is_some() {
        let code = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        eprintln!("{path} flags {flags:#04x}: {status} {code}");
    }
    assert!(
        !status.is_server_error(),
        "{path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: {status} not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(
            v["error"].is_string() && v["reason"].is_string(),
            "{path}: {v}"
        );
    }
}
