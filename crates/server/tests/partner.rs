//! The SSD hand-over (issue #10) between two platforms over real HTTPS with client
//! certificates: the card issuer's partner API (server::partner behind server::tls) and the
//! application provider's platform whose [`tsm::ssd::CardIssuerLink`] is
//! server::partner_client, each with its own SQLite store and key store; the card is the
//! virtual card. Also: the authorisation matrix through the API, identity from the client
//! certificate, every error as `{"error", "reason"}`, and the route lists of both documents.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::certs::{Ca, Leaf};
use common::ssd::{bank1_registration, link, serve, soft_keys, transport_pem};
use common::{call, call_with};
use kms::KeyKind;
use serde_json::{json, Value};
use server::auth::{Principal, Role, TokenTable};
use server::partner::{ExchangeTimeouts, PartnerApi};
use server::partner_client::HttpCardIssuerLink;
use server::tls::{self, ClientCertificate, PartnerCertVerifier};
use tsm::ssd::{
    ApConfig, ApPlatform, CardIssuerLink, CiConfig, CiPlatform, KeySetStore, SsdModel, SsdRequest,
};
use tsm::Store;

const BASE: &str = "00112233445566778899AABBCCDDEEFF";
const CARD: &str = "1000000001";
const OTHER_CARD: &str = "2000000002";
const OPERATOR: &str = "ci-operator-token-0123456789";
const VIEWER: &str = "ci-viewer-token-0123456789";

/// The card issuer's platform with one written virtual card, partners bank1 (cards
/// 1000000000-1000000999, AIDs under A000000151BA01) and bank2 (2000000000-2000000999,
/// A000000151BA02), and the partner API.
struct Ci {
    api: Arc<PartnerApi>,
    store: Store,
    card: card::VirtualChannel,
    _dir: tempfile::TempDir,
}

fn ci_platform(verifier: Option<Arc<PartnerCertVerifier>>) -> Ci {
    ci_platform_with(
        verifier,
        ExchangeTimeouts {
            response: Duration::from_secs(10),
            command: Duration::from_secs(10),
        },
    )
}

fn ci_platform_with(verifier: Option<Arc<PartnerCertVerifier>>, timeouts: ExchangeTimeouts) -> Ci {
    ci_platform_configured(verifier, timeouts, CiConfig::default())
}

fn ci_platform_configured(
    verifier: Option<Arc<PartnerCertVerifier>>,
    timeouts: ExchangeTimeouts,
    config: CiConfig,
) -> Ci {
    let dir = tempfile::tempdir().unwrap();
    let common::issuer::WrittenCard {
        store,
        keys,
        issuer,
        card: sim,
    } = common::issuer::issuer_with_written_card(dir.path(), BASE, CARD);
    let ci = Arc::new(CiPlatform::new(
        issuer,
        keys.clone() as Arc<dyn KeySetStore>,
        config,
    ));
    let tokens = TokenTable::new()
        .with(
            OPERATOR,
            Principal {
                name: "alice".into(),
                role: Role::Operator,
                tenant: Some("issuer".into()),
            },
        )
        .with(
            VIEWER,
            Principal {
                name: "victor".into(),
                role: Role::Viewer,
                tenant: Some("issuer".into()),
            },
        );
    let api = PartnerApi::new(ci, tokens, verifier, timeouts);
    Ci {
        api,
        store,
        card: sim,
        _dir: dir,
    }
}

/// The AP platform of `partner` over `link`.
fn ap_platform(partner: &str, link: Arc<dyn CardIssuerLink>) -> (ApPlatform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("ap.db").display())).unwrap();
    let keys = soft_keys(dir.path());
    (
        ApPlatform::new(store, keys, link, ApConfig::new(partner)),
        dir,
    )
}

/// A link that is never called (the AP's transport key is made before the CI knows it).
struct NoLink;
impl CardIssuerLink for NoLink {
    fn request(&self, _: &SsdRequest) -> tsm::Result<i64> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn exchange(&self, _: i64, _: Option<&[u8]>) -> tsm::Result<tsm::ssd::Exchange> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn initial_keys(&self, _: i64) -> tsm::Result<tsm::ssd::WrappedKeySet> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn confirm_rotation(&self, _: i64, _: &tsm::ssd::Rotation) -> tsm::Result<tsm::ssd::SsdRecord> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn status(&self, _: &str, _: &str) -> tsm::Result<tsm::ssd::SsdRecord> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn renew(&self, _: &str, _: &str) -> tsm::Result<i64> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn report_compromised(
        &self,
        _: &str,
        _: &str,
        _: u8,
        _: &str,
    ) -> tsm::Result<tsm::ssd::SsdRecord> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn report_renewal(
        &self,
        _: &str,
        _: &str,
        _: &tsm::ssd::Renewal,
        _: &tsm::ssd::Rotation,
    ) -> tsm::Result<tsm::ssd::SsdRecord> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn sign_token(&self, _: &tsm::ssd::TokenRequest) -> tsm::Result<Vec<u8>> {
        Err(tsm::Error::NotImplemented("test"))
    }
    fn check_receipt(
        &self,
        _: &str,
        _: &str,
        _: &gp::dm::ReceiptContext,
        _: &[u8],
    ) -> tsm::Result<tsm::ssd::SsdRecord> {
        Err(tsm::Error::NotImplemented("test"))
    }
}

fn add_partner(
    app: &axum::Router,
    id: &str,
    root: &Ca,
    cards: &str,
    prefix: &str,
    transport: &str,
) -> Value {
    let body = json!({
        "id": id, "certificate": root.pem, "ssd_aid_prefix": prefix,
        "cards": [cards], "transport_key": transport,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(call(
        app,
        Method::POST,
        "/api/v1/partners",
        Some(body.to_string()),
        Some(OPERATOR),
    ));
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

/// The certificates of a test: the CI's server CA and certificate, two partners' roots and
/// their platforms' client certificates.
struct Certs {
    server_ca: Ca,
    server_leaf: Leaf,
    bank1: Ca,
    bank1_client: Leaf,
    bank2: Ca,
    bank2_client: Leaf,
}

fn certs() -> Certs {
    let mut server_ca = Ca::new("CI server CA");
    let server_leaf = server_ca.server();
    let mut bank1 = Ca::new("bank1 AP root");
    let mut bank2 = Ca::new("bank2 AP root");
    let bank1_client = bank1.client("bank1 AP platform");
    let bank2_client = bank2.client("bank2 AP platform");
    Certs {
        server_ca,
        server_leaf,
        bank1,
        bank1_client,
        bank2,
        bank2_client,
    }
}

/// Over HTTPS with client certificates: bank2 is refused for bank1's card, bank1 for
/// another card, outside its prefix and for the ISD; each refusal carries its rule back to
/// the AP's domain error (tsm::Error::Refused).
#[test]
fn authorisation_matrix_over_https() {
    let Certs {
        server_ca,
        server_leaf,
        bank1,
        bank1_client,
        bank2,
        bank2_client,
    } = certs();

    let verifier = PartnerCertVerifier::new(Vec::new(), Vec::new()).unwrap();
    let ci = ci_platform(Some(verifier.clone()));
    let app = server::partner::router(ci.api.clone());
    let (port, _stop) = serve(app.clone(), &server_leaf, verifier);

    // bank1's AP platform: its key store makes the transport key the CI registers.
    let ap_keys_dir = tempfile::tempdir().unwrap();
    let ap_keys = soft_keys(ap_keys_dir.path());
    let other_keys_dir = tempfile::tempdir().unwrap();
    add_partner(
        &app,
        "bank1",
        &bank1,
        "1000000000-1000000999",
        "A000000151BA01",
        &transport_pem(ap_keys.as_ref()),
    );
    add_partner(
        &app,
        "bank2",
        &bank2,
        "2000000000-2000000999",
        "A000000151BA02",
        &transport_pem(soft_keys(other_keys_dir.path()).as_ref()),
    );
    let bank1_link = Arc::new(link(port, "bank1", &bank1_client, &server_ca));
    let bank2_link = link(port, "bank2", &bank2_client, &server_ca);

    // Authorisation matrix through the API.
    let aid = "A000000151BA0101";
    let refused = |l: &HttpCardIssuerLink, card: &str, aid: &str, rule: tsm::ssd::auth::Refusal| {
        let r = l.request(&SsdRequest {
            card_number: card.into(),
            aid: aid.into(),
            model: SsdModel::Authorized,
        });
        match r {
            Err(tsm::Error::Refused { reason, .. }) => assert_eq!(reason, rule, "{card} {aid}"),
            other => panic!("{card} {aid}: expected {rule:?}, got {other:?}"),
        }
    };
    use tsm::ssd::auth::Refusal as R;
    refused(
        &bank2_link,
        CARD,
        "A000000151BA0201",
        R::CardOutsideContract,
    );
    refused(&bank1_link, OTHER_CARD, aid, R::CardOutsideContract);
    refused(&bank1_link, CARD, "A000000151BA0201", R::AidOutsidePrefix);
    refused(&bank1_link, CARD, "A000000151000000", R::IsdAid);
    // Not bank2's job (job 1 is the card's issuance): refused by tsm as not its own
    // (audited); no job at all is not found.
    match bank2_link.exchange(1, None) {
        Err(tsm::Error::Refused { reason, .. }) => assert_eq!(reason, R::NotOwner),
        other => panic!("bank2 relays a job that is not its own: {other:?}"),
    }
    match bank2_link.exchange(999, None) {
        Err(tsm::Error::Invalid(m)) => assert!(m.contains("not_found"), "{m}"),
        other => panic!("bank2 relays no job: {other:?}"),
    }
    let audited = ci.store.audit_entries(0, 10_000).unwrap();
    assert!(audited.iter().any(|e| e.action == "ssd.exchange"
        && e.result == "forbidden"
        && e.actor.starts_with("bank2")));
}

/// Flow 1 over HTTPS: bank1's AP platform asks for an SSD on the card, relays the CI's
/// wrapped commands to the card, takes the initial keys over and replaces them; both
/// platforms record the hand-over, and bank2 may not see it.
#[test]
fn flow1_over_https() {
    let Certs {
        server_ca,
        server_leaf,
        bank1,
        bank1_client,
        bank2,
        bank2_client,
    } = certs();
    let verifier = PartnerCertVerifier::new(Vec::new(), Vec::new()).unwrap();
    let ci = ci_platform(Some(verifier.clone()));
    let app = server::partner::router(ci.api.clone());
    let (port, _stop) = serve(app.clone(), &server_leaf, verifier);
    let ap_keys_dir = tempfile::tempdir().unwrap();
    let ap_keys = soft_keys(ap_keys_dir.path());
    let other_keys_dir = tempfile::tempdir().unwrap();
    add_partner(
        &app,
        "bank1",
        &bank1,
        "1000000000-1000000999",
        "A000000151BA01",
        &transport_pem(ap_keys.as_ref()),
    );
    add_partner(
        &app,
        "bank2",
        &bank2,
        "2000000000-2000000999",
        "A000000151BA02",
        &transport_pem(soft_keys(other_keys_dir.path()).as_ref()),
    );
    let bank1_link = Arc::new(link(port, "bank1", &bank1_client, &server_ca));
    let bank2_link = link(port, "bank2", &bank2_client, &server_ca);
    let aid = "A000000151BA0101";
    use tsm::ssd::auth::Refusal as R;

    // Flow 1: request, relay, take-over, over HTTPS.
    let ap_dir = tempfile::tempdir().unwrap();
    let ap_store =
        Store::open(&format!("sqlite:{}", ap_dir.path().join("ap.db").display())).unwrap();
    let ap = ApPlatform::new(
        ap_store,
        ap_keys,
        bank1_link.clone(),
        ApConfig::new("bank1"),
    );
    let req = SsdRequest {
        card_number: CARD.into(),
        aid: aid.into(),
        model: SsdModel::Authorized,
    };
    let job = ap.request(&req).unwrap();
    let mut card = ci.card.clone();
    let ssd = ap.run(job, &mut card).unwrap();
    assert_eq!(ssd.state, tsm::ssd::SsdState::HandedOver, "{ssd:?}");
    let current = ssd.current_key().unwrap();
    assert_eq!(current.holder, tsm::ssd::KeyHolder::Ap);
    // The CI's record agrees, seen by bank1 through the API; bank2 may not see it.
    let at_ci = bank1_link.status(CARD, aid).unwrap();
    assert_eq!(at_ci.state, tsm::ssd::SsdState::HandedOver);
    assert!(at_ci.receipt.is_some());
    assert_eq!(at_ci.current_key().unwrap().kcv, current.kcv);
    match bank2_link.status(CARD, aid) {
        // The card is outside bank2's contract: refused before ownership is looked at.
        Err(tsm::Error::Refused { reason, .. }) => assert_eq!(reason, R::CardOutsideContract),
        other => panic!("bank2 sees bank1's SSD: {other:?}"),
    }
    assert_eq!(bank1_link.ssds().unwrap().len(), 1);
    assert!(bank2_link.ssds().unwrap().is_empty());
    // The initial keys are gone from the CI: asking again is refused.
    assert!(bank1_link.initial_keys(ci_job_of(&ci.store)).is_err());
}

/// The CI's SSD creation job (the only ssd_create job).
fn ci_job_of(store: &Store) -> i64 {
    let jobs = store.jobs_of_card(CARD).unwrap();
    jobs.iter()
        .find(|j| j.kind == tsm::model::JobKind::SsdCreate)
        .map(|j| j.id)
        .unwrap()
}

/// Without TLS (in process): partner routes need a client certificate (401), a chain of
/// no registered partner is 403 `unknown_partner`; operator routes need a bearer token
/// and a viewer may not change anything; every error is `{"error", "reason"}`.
#[tokio::test(flavor = "multi_thread")]
async fn identity_and_operator_routes() {
    let mut bank1 = Ca::new("bank1 AP root");
    let mut stranger = Ca::new("stranger");
    let bank1_leaf = bank1.client("bank1");
    let stranger_leaf = stranger.client("stranger");
    let ci = ci_platform(None);
    let app = server::partner::router(ci.api.clone());
    let keys_dir = tempfile::tempdir().unwrap();

    let r = call(&app, Method::GET, "/api/v1/partner/ssds", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "client_certificate_required");

    // Register bank1 as an operator; a viewer may not.
    let body = bank1_registration(&bank1.pem, soft_keys(keys_dir.path()).as_ref()).to_string();
    let r = call(
        &app,
        Method::POST,
        "/api/v1/partners",
        Some(body.clone()),
        Some(VIEWER),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = call(
        &app,
        Method::POST,
        "/api/v1/partners",
        Some(body.clone()),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(
        &app,
        Method::POST,
        "/api/v1/partners",
        Some(body.clone()),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["id"], "bank1");
    assert_eq!(r.json()["card_ranges"], json!(["1000000000-1000000999"]));
    let r = call(
        &app,
        Method::POST,
        "/api/v1/partners",
        Some(body),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let r = call(&app, Method::GET, "/api/v1/partners", None, Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["partners"].as_array().unwrap().len(), 1);

    let with_cert = |leaf: &Leaf| ClientCertificate {
        chain: tls::certificates_from_pem(leaf.chain_pem.as_bytes())
            .unwrap()
            .into(),
    };
    let partner_call = |leaf: &Leaf, method: Method, path: &str, body: Option<Value>| {
        let app = app.clone();
        let cert = with_cert(leaf);
        let path = path.to_string();
        async move {
            let mut req = axum::http::Request::builder().method(method).uri(&path);
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let mut req = req
                .body(axum::body::Body::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                ))
                .unwrap();
            req.extensions_mut().insert(cert);
            use tower::ServiceExt;
            let r = app.oneshot(req).await.unwrap();
            let status = r.status();
            let bytes = http_body_util::BodyExt::collect(r.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (s, b) = partner_call(&stranger_leaf, Method::GET, "/api/v1/partner/ssds", None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_partner"))
    );
    let audited = ci.store.audit_entries(0, 10_000).unwrap();
    let refusal = audited
        .iter()
        .rev()
        .find(|e| e.action == "partner.identify")
        .expect("the refusal is audited");
    assert_eq!(refusal.result, "refused");
    assert!(refusal.detail.contains("unknown_partner"), "{refusal:?}");
    let (s, b) = partner_call(&bank1_leaf, Method::GET, "/api/v1/partner/ssds", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!({"ssds": []}));
    // Outside the contract: refused with the rule, and audited by tsm.
    let (s, b) = partner_call(
        &bank1_leaf,
        Method::POST,
        "/api/v1/partner/ssd-requests",
        Some(json!({"card_number": OTHER_CARD, "aid": "A000000151BA0101", "model": "authorized"})),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("card_outside_contract")),
        "{b}"
    );
    assert!(b["reason"].as_str().unwrap().contains("bank1"), "{b}");
    // No such job: 404, whatever the body.
    let (s, b) = partner_call(
        &bank1_leaf,
        Method::POST,
        "/api/v1/partner/ssd-requests/999/exchange",
        Some(json!({"response": null})),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "{b}"
    );
    let (s, b) = partner_call(
        &bank1_leaf,
        Method::POST,
        "/api/v1/partner/ssd-requests/1/exchange",
        Some(json!({"response": "XYZ"})),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{b}"
    );

    // Key policy: read by a viewer, set by an operator, checked.
    let r = call(&app, Method::GET, "/api/v1/key-policy", None, Some(VIEWER)).await;
    assert_eq!(
        r.json(),
        json!({"ssd_lifetime_s": 365 * 86400, "renew_before_s": 30 * 86400})
    );
    let bad = json!({"ssd_lifetime_s": 10, "renew_before_s": 20}).to_string();
    let r = call(
        &app,
        Method::PUT,
        "/api/v1/key-policy",
        Some(bad),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let good = json!({"ssd_lifetime_s": 86400 * 100, "renew_before_s": 86400 * 10}).to_string();
    let r = call(
        &app,
        Method::PUT,
        "/api/v1/key-policy",
        Some(good.clone()),
        Some(VIEWER),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &app,
        Method::PUT,
        "/api/v1/key-policy",
        Some(good),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        ci.store.key_policy().unwrap().ssd_lifetime,
        Duration::from_secs(86400 * 100)
    );
    let r = call(&app, Method::GET, "/api/v1/ssds/due", None, Some(VIEWER)).await;
    assert_eq!(r.json(), json!({"due": []}));
    let r = call(&app, Method::GET, "/api/v1/ssds", None, Some(VIEWER)).await;
    assert_eq!(r.json(), json!({"ssds": []}));

    // Revocation: bank1 is refused from now on.
    let r = call(
        &app,
        Method::POST,
        "/api/v1/partners/bank1/revoke",
        None,
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["revoked"], true);
    let (s, b) = partner_call(&bank1_leaf, Method::GET, "/api/v1/partner/ssds", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let r = call(
        &app,
        Method::POST,
        "/api/v1/partners/nobody/revoke",
        None,
        Some(OPERATOR),
    )
    .await;
    assert!(r.status.is_client_error(), "{}", r.text());
    assert!(r.json()["reason"].is_string());

    // Unknown routes and methods answer JSON too.
    let r = call_with(&app, Method::DELETE, "/api/v1/partners", None, &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["error"], "method_not_allowed");
}

/// Both documents list exactly the routes of their routers, and are served.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_documents_match_the_routers() {
    let ci = ci_platform(None);
    let mut routed: Vec<(String, String)> = server::partner::route_list(ci.api.clone())
        .list()
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routed.sort();
    assert_eq!(
        routed,
        server::openapi::documented(&server::partner::openapi_document())
    );
    let app = server::partner::router(ci.api.clone());
    let r = call(&app, Method::GET, "/api/openapi-partner.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["components"]["securitySchemes"]["mutualTLS"]["type"],
        "mutualTLS"
    );

    let (ap, _dir) = ap_platform("bank1", Arc::new(NoLink));
    let api = server::ap::ApApi::new(Arc::new(ap), TokenTable::new(), Duration::from_secs(5));
    let mut routed: Vec<(String, String)> = server::ap::route_list(api.clone())
        .list()
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routed.sort();
    assert_eq!(
        routed,
        server::openapi::documented(&server::ap::openapi_document())
    );
    let app = server::ap::router(api);
    let r = call(&app, Method::GET, "/api/openapi-ap.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &app,
        Method::GET,
        "/api/v1/ssd/1000000001/A000000151BA0101",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// `method path` as the partner whose client chain is `leaf` (in process: the TLS layer's
/// extension set by hand).
async fn as_partner(
    app: &axum::Router,
    leaf: &Leaf,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .unwrap();
    req.extensions_mut().insert(ClientCertificate {
        chain: tls::certificates_from_pem(leaf.chain_pem.as_bytes())
            .unwrap()
            .into(),
    });
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The CI restarts (a new partner API, no sessions) while the AP waits with the card's
/// response to a command of the old run: the next exchange drops that response, runs the
/// job again from its journal, and the relay finishes it; the SSD is created.
#[tokio::test(flavor = "multi_thread")]
async fn the_next_exchange_after_a_ci_restart_resumes_the_job() {
    let short = ExchangeTimeouts {
        response: Duration::from_millis(500),
        command: Duration::from_secs(10),
    };
    let ci = ci_platform_with(None, short);
    let app = server::partner::router(ci.api.clone());
    let mut bank1 = Ca::new("bank1 AP root");
    let bank1_leaf = bank1.client("bank1 AP platform");
    let keys_dir = tempfile::tempdir().unwrap();
    let body = bank1_registration(&bank1.pem, soft_keys(keys_dir.path()).as_ref());
    let r = call(
        &app,
        Method::POST,
        "/api/v1/partners",
        Some(body.to_string()),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let (s, b) = as_partner(
        &app,
        &bank1_leaf,
        Method::POST,
        "/api/v1/partner/ssd-requests",
        Some(json!({"card_number": CARD, "aid": "A000000151BA0101", "model": "authorized"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let job = b["job"].as_i64().unwrap();
    let exchange = format!("/api/v1/partner/ssd-requests/{job}/exchange");
    let mut card = ci.card.clone();
    let mut relay = |command: &str| -> String {
        use transport::CardChannel;
        let c = apdu::parse_hex(command).unwrap();
        apdu::hex(&card.transmit_raw(&c).unwrap())
    };

    // Two commands through the first run; the second's answer is never delivered to it.
    let (s, b) = as_partner(
        &app,
        &bank1_leaf,
        Method::POST,
        &exchange,
        Some(json!({"response": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r1 = relay(b["command"].as_str().unwrap());
    let (s, b) = as_partner(
        &app,
        &bank1_leaf,
        Method::POST,
        &exchange,
        Some(json!({"response": r1})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let late = relay(b["command"].as_str().unwrap());

    // The CI restarts: a new API over the same platform; the old run times out meanwhile.
    let restarted = PartnerApi::new(ci.api.ci().clone(), TokenTable::new(), None, short);
    let app = server::partner::router(restarted);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut response = json!(late);
    let mut commands = 0;
    let answer = loop {
        let (s, b) = as_partner(
            &app,
            &bank1_leaf,
            Method::POST,
            &exchange,
            Some(json!({"response": response})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["done"] == true {
            break b;
        }
        commands += 1;
        assert!(commands < 100, "the job does not end");
        response = json!(relay(b["command"].as_str().unwrap()));
    };
    assert_eq!(answer["ssd"]["state"], "created", "{answer}");
    assert_eq!(answer["ssd"]["owner"], "bank1");
    // A finished job's relay answers its outcome once; starting again is refused.
    let (s, b) = as_partner(
        &app,
        &bank1_leaf,
        Method::POST,
        &exchange,
        Some(json!({"response": null})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
}

/// An AP terminal with one reader holding the (shared) virtual card.
struct DeskReaders {
    card: card::VirtualChannel,
}

const DESK_READER: &str = "AP desk reader 0";

impl relay::agent::Readers for DeskReaders {
    fn list(&mut self) -> Vec<relay::protocol::ReaderReport> {
        use transport::CardChannel;
        vec![relay::protocol::ReaderReport {
            name: DESK_READER.into(),
            card_present: true,
            atr: Some(apdu::hex(&self.card.atr())),
        }]
    }
    fn transmit(
        &mut self,
        _reader: &str,
        capdu: &[u8],
    ) -> Result<Vec<u8>, relay::protocol::RelayFault> {
        use transport::CardChannel;
        self.card
            .transmit_raw(capdu)
            .map_err(|e| relay::protocol::RelayFault::Other {
                message: e.to_string(),
            })
    }
    fn reset(&mut self, _reader: &str) -> Result<Vec<u8>, relay::protocol::RelayFault> {
        use transport::CardChannel;
        self.card
            .reset()
            .map_err(|e| relay::protocol::RelayFault::Other {
                message: e.to_string(),
            })?;
        Ok(self.card.atr())
    }
}

/// The AP's own API: an operator runs flow 1 on the card in its terminal's reader (the
/// terminal agent connected to the AP platform's relay), the AP platform relays the CI's
/// commands over HTTPS; then reads the SSD and renews its keys.
#[test]
fn ap_api_runs_flow1_through_its_terminal() {
    let Certs {
        server_ca,
        server_leaf,
        bank1,
        bank1_client,
        ..
    } = certs();
    let verifier = PartnerCertVerifier::new(Vec::new(), Vec::new()).unwrap();
    let ci = ci_platform(Some(verifier.clone()));
    let ci_app = server::partner::router(ci.api.clone());
    let (port, _stop) = serve(ci_app.clone(), &server_leaf, verifier);
    let ap_dir = tempfile::tempdir().unwrap();
    let ap_keys = soft_keys(ap_dir.path());
    add_partner(
        &ci_app,
        "bank1",
        &bank1,
        "1000000000-1000000999",
        "A000000151BA01",
        &transport_pem(ap_keys.as_ref()),
    );

    // The AP platform and its API, on plain HTTP for its terminal.
    let ap_store =
        Store::open(&format!("sqlite:{}", ap_dir.path().join("ap.db").display())).unwrap();
    let link = Arc::new(link(port, "bank1", &bank1_client, &server_ca));
    let ap = ApPlatform::new(ap_store, ap_keys, link, ApConfig::new("bank1"));
    let tokens = TokenTable::new()
        .with(
            "ap-operator-token-0123456789",
            Principal {
                name: "olga".into(),
                role: Role::Operator,
                tenant: Some("bank1".into()),
            },
        )
        .with(
            "ap-desk-token-0123456789",
            Principal {
                name: "desk".into(),
                role: Role::Terminal,
                tenant: None,
            },
        );
    let api = server::ap::ApApi::new(Arc::new(ap), tokens, Duration::from_secs(10));
    let app = server::ap::router(api.clone());
    let rt = common::runtime();
    let url = common::serve_on(&rt, app.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let agent = {
        let stop = stop.clone();
        let card = ci.card.clone();
        let cfg = relay::agent::AgentConfig {
            server: url.clone(),
            token: Some("ap-desk-token-0123456789".into()),
            terminal: "desk".into(),
            poll: Duration::from_millis(20),
            retry: Duration::from_millis(50),
            tls: None,
        };
        std::thread::spawn(move || relay::agent::run(&cfg, &mut DeskReaders { card }, &stop))
    };
    let t0 = std::time::Instant::now();
    while api.hub().terminals().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the terminal did not connect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let op = Some("ap-operator-token-0123456789");
    let aid = "A000000151BA0101";
    let body = json!({"card_number": CARD, "aid": aid, "model": "authorized", "terminal": "desk", "reader": DESK_READER});
    let r = rt.block_on(call(
        &app,
        Method::POST,
        "/api/v1/ssd/requests",
        Some(body.to_string()),
        op,
    ));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["ssd"]["state"], "handed_over", "{}", r.text());
    let first_kvn = r.json()["ssd"]["keys"].as_array().unwrap().last().unwrap()["kvn"].clone();
    let r = rt.block_on(call(
        &app,
        Method::GET,
        &format!("/api/v1/ssd/{CARD}/{aid}"),
        None,
        op,
    ));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["owner"], "bank1");
    // Renewal without a reader is refused; with one, the AP's keys are replaced.
    let r = rt.block_on(call(
        &app,
        Method::POST,
        &format!("/api/v1/ssd/{CARD}/{aid}/renew"),
        Some(json!({}).to_string()),
        op,
    ));
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let renew = json!({"terminal": "desk", "reader": DESK_READER});
    let r = rt.block_on(call(
        &app,
        Method::POST,
        &format!("/api/v1/ssd/{CARD}/{aid}/renew"),
        Some(renew.to_string()),
        op,
    ));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let keys = r.json()["ssd"]["keys"].as_array().unwrap().clone();
    assert_ne!(keys.last().unwrap()["kvn"], first_kvn, "{keys:?}");
    // The CI recorded the renewal the AP reported.
    let at_ci = ci
        .store
        .ssd(CARD, &apdu::parse_hex(aid).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        at_ci.current_key().unwrap().kvn as u64,
        keys.last().unwrap()["kvn"].as_u64().unwrap()
    );

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = agent.join();
}

/// Flow 2 and the CI's renewals at the card issuer's own desk: bank1 asks for a delegated
/// SSD; a CI operator runs the job on the card in a CI terminal's reader (the issuance
/// relay); the SSD is managed by the CI. The operator then renews the CI's key set (due),
/// marks the new one compromised and renews again (forced); each renewal is recorded.
#[test]
fn flow2_and_renewals_at_the_ci_desk() {
    let ci = ci_platform(None);
    let desk_tokens = Arc::new(TokenTable::new().with(
        "ci-desk-token-0123456789",
        Principal {
            name: "ci-desk".into(),
            role: Role::Terminal,
            tenant: None,
        },
    ));
    let hub = relay::hub::Hub::new(desk_tokens, Duration::from_secs(10));
    let tokens = TokenTable::new().with(
        OPERATOR,
        Principal {
            name: "alice".into(),
            role: Role::Operator,
            tenant: Some("issuer".into()),
        },
    );
    let api = PartnerApi::with_terminals(
        ci.api.ci().clone(),
        tokens,
        None,
        ExchangeTimeouts::default(),
        hub.clone(),
    );
    let app = server::partner::router(api);
    let rt = common::runtime();
    let url = common::serve_on(&rt, hub.router());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let agent = {
        let stop = stop.clone();
        let card = ci.card.clone();
        let cfg = relay::agent::AgentConfig {
            server: url,
            token: Some("ci-desk-token-0123456789".into()),
            terminal: "ci-desk".into(),
            poll: Duration::from_millis(20),
            retry: Duration::from_millis(50),
            tls: None,
        };
        std::thread::spawn(move || relay::agent::run(&cfg, &mut DeskReaders { card }, &stop))
    };
    let t0 = std::time::Instant::now();
    while hub.terminals().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the terminal did not connect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut bank1 = Ca::new("bank1 AP root");
    let bank1_leaf = bank1.client("bank1 AP platform");
    let keys_dir = tempfile::tempdir().unwrap();
    add_partner(
        &app,
        "bank1",
        &bank1,
        "1000000000-1000000999",
        "A000000151BA01",
        &transport_pem(soft_keys(keys_dir.path()).as_ref()),
    );
    let aid = "A000000151BA0102";
    let (s, b) = rt.block_on(as_partner(
        &app,
        &bank1_leaf,
        Method::POST,
        "/api/v1/partner/ssd-requests",
        Some(json!({"card_number": CARD, "aid": aid, "model": "delegated"})),
    ));
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let job = b["job"].as_i64().unwrap();
    let desk = json!({"terminal": "ci-desk", "reader": DESK_READER}).to_string();
    let run = |job: i64| {
        rt.block_on(call(
            &app,
            Method::POST,
            &format!("/api/v1/ssd-jobs/{job}/run"),
            Some(desk.clone()),
            Some(OPERATOR),
        ))
    };
    let r = run(job);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["state"], "managed", "{}", r.text());
    assert_eq!(r.json()["model"], "delegated");
    // Running it again: the job is finished.
    assert_eq!(run(job).status, StatusCode::CONFLICT);
    let kvn_of = |v: &Value| {
        v["keys"].as_array().unwrap().last().unwrap()["kvn"]
            .as_u64()
            .unwrap()
    };
    let first = kvn_of(&r.json());

    // A renewal of the CI's key set (due), run at the desk.
    let renew = format!("/api/v1/ssds/{CARD}/{aid}/renew");
    let r = rt.block_on(call(&app, Method::POST, &renew, None, Some(OPERATOR)));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = run(r.json()["job"].as_i64().unwrap());
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let second = kvn_of(&r.json());
    assert_ne!(first, second);
    // Forced: the key set in use marked compromised, then renewed.
    let r = rt.block_on(call(
        &app,
        Method::POST,
        &format!("/api/v1/ssds/{CARD}/{aid}/compromised"),
        Some(json!({"reason": "compromise"}).to_string()),
        Some(OPERATOR),
    ));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = rt.block_on(call(
        &app,
        Method::GET,
        "/api/v1/ssds/due",
        None,
        Some(OPERATOR),
    ));
    assert_eq!(r.json()["due"][0]["cause"], "compromised", "{}", r.text());
    let r = rt.block_on(call(&app, Method::POST, &renew, None, Some(OPERATOR)));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = run(r.json()["job"].as_i64().unwrap());
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let renewals = r.json()["renewals"].as_array().unwrap().clone();
    let causes: Vec<&str> = renewals
        .iter()
        .map(|n| n["cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes, ["expiry", "forced"], "{renewals:?}");
    let r = rt.block_on(call(
        &app,
        Method::GET,
        "/api/v1/ssds/due",
        None,
        Some(OPERATOR),
    ));
    assert_eq!(r.json(), json!({"due": []}));

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = agent.join();
}

/// The token key of the delegated model (its public half is KVN 70 on the card).
fn token_key() -> gp::dm::DmSigningKey {
    gp::dm::DmSigningKey::from_pkcs8(include_bytes!("../../gp/tests/vectors/dm/token-p256.pem"))
        .unwrap()
}

const RECEIPT_KEY: [u8; 16] = [0x71; 16];

/// The token signer of the delegated model as bank1 sees it: each token from the card
/// issuer over HTTPS.
struct LinkSigner(Arc<HttpCardIssuerLink>, &'static str);

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner")
    }
}

impl gp::dm::Signer for LinkSigner {
    fn scheme(&self) -> gp::dm::Scheme {
        gp::dm::Scheme::EcdsaP256Sha256
    }
    fn sign(&self, m: &[u8]) -> gp::Result<Vec<u8>> {
        self.0
            .sign_token(&tsm::ssd::TokenRequest {
                card_number: CARD.into(),
                aid: self.1.into(),
                input: m.to_vec(),
            })
            .map_err(|e| gp::Error::Encoding(e.to_string()))
    }
}

/// Flow 2 with receipts over HTTPS with client certificates: bank1's AP platform asks for
/// a delegated SSD and relays its creation; its application goes on the card with tokens
/// the card issuer signs; the card's receipts go back to the card issuer through
/// `POST /api/v1/partner/receipts`, which verifies and records each (200 with the SSD). A
/// replayed or forged receipt is refused `422 receipt_refused`, another partner's `403`,
/// a bad body `400`; each refusal is audited and nothing more is recorded.
#[test]
fn flow2_receipts_over_https() {
    let Certs {
        server_ca,
        server_leaf,
        bank1,
        bank1_client,
        bank2,
        bank2_client,
    } = certs();
    let verifier = PartnerCertVerifier::new(Vec::new(), Vec::new()).unwrap();
    let signer: Arc<dyn gp::dm::Signer + Send + Sync> = Arc::new(token_key());
    let ci = ci_platform_configured(
        Some(verifier.clone()),
        ExchangeTimeouts {
            response: Duration::from_secs(10),
            command: Duration::from_secs(10),
        },
        CiConfig {
            token_signer: Some(signer),
            receipt_key: Some(gp::dm::ReceiptKey::aes(&RECEIPT_KEY).unwrap()),
            ..CiConfig::default()
        },
    );
    let app = server::partner::router(ci.api.clone());
    let (port, _stop) = serve(app.clone(), &server_leaf, verifier);
    let ap_keys_dir = tempfile::tempdir().unwrap();
    let ap_keys = soft_keys(ap_keys_dir.path());
    let other_keys_dir = tempfile::tempdir().unwrap();
    add_partner(
        &app,
        "bank1",
        &bank1,
        "1000000000-1000000999",
        "A000000151BA01",
        &transport_pem(ap_keys.as_ref()),
    );
    add_partner(
        &app,
        "bank2",
        &bank2,
        "1000000000-1000000999",
        "A000000151BA02",
        &transport_pem(soft_keys(other_keys_dir.path()).as_ref()),
    );
    let bank1_link = Arc::new(link(port, "bank1", &bank1_client, &server_ca));
    let bank2_link = link(port, "bank2", &bank2_client, &server_ca);
    const SSD: &str = "A000000151BA0103";
    const INSTANCE: &str = "A000000151BA0131";
    let aid = |h: &str| gp::aid::Aid::new(&apdu::parse_hex(h).unwrap()).unwrap();

    // The issuer's set-up of its card: token key KVN 70, receipt key KVN 71 in the ISD.
    {
        let card = ci.store.card(CARD).unwrap().unwrap();
        let keys = gpclient::KeySpec::same(
            &apdu::parse_hex(BASE).unwrap(),
            kms::diversification_for(KeyKind::Aes),
            card.kvn.unwrap(),
        );
        let mut isd = gpclient::GpClient::new(transport::Traced::new(ci.card.clone(), None));
        isd.open_secure_channel(&gpclient::OpenOptions {
            keys,
            level: scp::SecurityLevel::MAC,
            scp: None,
            sd: None,
        })
        .unwrap();
        gpclient::ops::put_public_key(&mut isd, 0x70, 1, 0, &token_key().verifying_key()).unwrap();
        let rk = scp::StaticKeys {
            enc: scp::Key::aes(&RECEIPT_KEY).unwrap(),
            mac: scp::Key::aes(&RECEIPT_KEY).unwrap(),
            dek: scp::Key::aes(&RECEIPT_KEY).unwrap(),
        };
        gpclient::ops::put_key_set(&mut isd, &rk, 0x71, None).unwrap();
    }

    // Flow 2 asked by bank1's AP platform, relayed through its terminal.
    let ap_dir = tempfile::tempdir().unwrap();
    let ap_store =
        Store::open(&format!("sqlite:{}", ap_dir.path().join("ap.db").display())).unwrap();
    let ap = ApPlatform::new(
        ap_store,
        ap_keys,
        bank1_link.clone(),
        ApConfig::new("bank1"),
    );
    let job = ap
        .request(&SsdRequest {
            card_number: CARD.into(),
            aid: SSD.into(),
            model: SsdModel::Delegated,
        })
        .unwrap();
    let ssd = ap.run(job, &mut ci.card.clone()).unwrap();
    assert_eq!(ssd.state, tsm::ssd::SsdState::Managed);

    // bank1's application, with tokens the CI signs; the card's receipts collected.
    let receipts = {
        let mut chan = ci.card.clone();
        let mut client = ci.api.ci().open_managed(CARD, SSD, &mut chan).unwrap();
        client.set_delegation(gpclient::dm::Delegation::new(
            Some(gpclient::dm::TokenSource::Sign(Box::new(LinkSigner(
                bank1_link.clone(),
                SSD,
            )))),
            Some(gpclient::dm::ReceiptCheck {
                key: gp::dm::ReceiptKey::aes(&RECEIPT_KEY).unwrap(),
                last_counter: None,
            }),
        ));
        let cap = gp::cap::CapFile::from_bytes(include_bytes!(
            "../../tsm/tests/data/Empty_0102030405_8d5ac9e2_2.2.1.cap"
        ))
        .unwrap();
        let opts = gpclient::ops::InstallOptions {
            load_only: true,
            to: Some(aid(SSD)),
            ..Default::default()
        };
        gpclient::ops::install_cap(&mut client, &cap, &opts).unwrap();
        gpclient::ops::install_instance(
            &mut client,
            aid("0102030405"),
            aid("0102030405060708"),
            aid(INSTANCE),
            Default::default(),
            vec![0xC9, 0x00],
            true,
        )
        .unwrap();
        client.delegation().unwrap().receipts().to_vec()
    };
    assert_eq!(receipts.len(), 2);

    // Forwarded over HTTPS: each verified and recorded on both platforms.
    let bytes = |c: &gp::dm::Confirmation| c.to_bytes().unwrap();
    let mut at_ci = None;
    for r in &receipts {
        at_ci = Some(
            ap.forward_receipt(CARD, SSD, &r.context, &bytes(&r.confirmation))
                .unwrap(),
        );
    }
    let at_ci = at_ci.unwrap();
    let counters: Vec<u16> = at_ci.receipts.iter().map(|r| r.counter).collect();
    assert_eq!(
        counters,
        receipts
            .iter()
            .map(|r| r.confirmation.counter)
            .collect::<Vec<_>>()
    );
    assert_eq!(at_ci.receipts[1].operation, "install");
    assert_eq!(
        ap.status(CARD, SSD).unwrap().unwrap().receipts,
        at_ci.receipts
    );
    assert_eq!(
        bank1_link.status(CARD, SSD).unwrap().receipts,
        at_ci.receipts
    );

    // Replayed and forged: 422 receipt_refused, back as the domain's refusal.
    let install = &receipts[1];
    match ap.forward_receipt(CARD, SSD, &install.context, &bytes(&install.confirmation)) {
        Err(tsm::Error::ReceiptRefused(why)) => assert!(why.contains("replayed"), "{why}"),
        other => panic!("a replayed receipt: {other:?}"),
    }
    let mut forged = install.confirmation.clone();
    forged.counter += 5;
    match ap.forward_receipt(CARD, SSD, &install.context, &bytes(&forged)) {
        Err(tsm::Error::ReceiptRefused(why)) => assert!(why.contains("does not verify"), "{why}"),
        other => panic!("a forged receipt: {other:?}"),
    }
    // Another partner's SSD: 403.
    match bank2_link.check_receipt(CARD, SSD, &install.context, &bytes(&install.confirmation)) {
        Err(tsm::Error::Refused { reason, .. }) => {
            assert_eq!(reason, tsm::ssd::auth::Refusal::AidOutsidePrefix)
        }
        other => panic!("bank2 brings bank1's receipt: {other:?}"),
    }
    // The raw answers: {"error", "reason"}.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = server::ssd_wire::ReceiptBody::new(
        CARD,
        SSD,
        &install.context,
        &bytes(&install.confirmation),
    )
    .unwrap();
    let (s, b) = rt.block_on(as_partner(
        &app,
        &bank1_client,
        Method::POST,
        "/api/v1/partner/receipts",
        Some(serde_json::to_value(&body).unwrap()),
    ));
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("receipt_refused")),
        "{b}"
    );
    assert!(b["reason"].as_str().unwrap().contains("replayed"), "{b}");
    let mut bad = serde_json::to_value(&body).unwrap();
    bad["aids"] = json!(["A000000151BA0131"]);
    let (s, b) = rt.block_on(as_partner(
        &app,
        &bank1_client,
        Method::POST,
        "/api/v1/partner/receipts",
        Some(bad),
    ));
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["reason"].is_string());

    // Nothing more recorded; the refusals audited on the card issuer's side.
    assert_eq!(bank1_link.status(CARD, SSD).unwrap().receipts.len(), 2);
    let audited = ci.store.audit_entries(0, 10_000).unwrap();
    let refused = audited
        .iter()
        .filter(|e| e.action == "ssd.receipt" && e.result == "refused")
        .count();
    assert_eq!(refused, 3, "replayed, forged, replayed (raw)");
    assert!(audited
        .iter()
        .any(|e| e.action == "ssd.receipt" && e.result == "forbidden"));
    // The operator's list of every SSD.
    let r = rt.block_on(call(&app, Method::GET, "/api/v1/ssds", None, Some(VIEWER)));
    assert_eq!(r.status, StatusCode::OK);
    let ssds = r.json()["ssds"].as_array().unwrap().clone();
    assert_eq!(ssds.len(), 1);
    assert_eq!(ssds[0]["receipts"].as_array().unwrap().len(), 2);
}

/// A card reset over the wire: the exchange answers `{"reset": true}`, which the AP's HTTP
/// link gives its relay as `Exchange::Reset`; the next exchange carries the card's ATR as
/// its response. (A stand-in for the card issuer's exchange route: its flows reset no
/// card today; the route's own answer is tested in `server::partner`.)
#[test]
fn exchange_reset_over_https() {
    let Certs {
        server_ca,
        server_leaf,
        bank1,
        bank1_client,
        ..
    } = certs();
    let verifier = PartnerCertVerifier::new(
        tls::certificates_from_pem(bank1.pem.as_bytes()).unwrap(),
        Vec::new(),
    )
    .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let app = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/api/v1/partner/ssd-requests/{id}/exchange",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().unwrap();
                    seen.push(body);
                    axum::Json(if seen.len() == 1 {
                        json!({"reset": true})
                    } else {
                        json!({"done": true})
                    })
                }
            }),
        )
    };
    let (port, _stop) = serve(app, &server_leaf, verifier);
    let l = link(port, "bank1", &bank1_client, &server_ca);
    assert_eq!(l.exchange(7, None).unwrap(), tsm::ssd::Exchange::Reset);
    assert_eq!(
        l.exchange(7, Some(&[0x3B, 0x8A, 0x80, 0x01])).unwrap(),
        tsm::ssd::Exchange::Done
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [json!({"response": null}), json!({"response": "3B8A8001"})]
    );
}
