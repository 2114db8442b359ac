//! `POST /api/v1/outlet/records` and `GET /api/v1/outlet/records/{outlet}` in process:
//! records checked against their hashes, stored once, conflicts and other tenants refused,
//! every refusal in the `{error, reason}` shape; the OpenAPI document matches the router.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::call;
use outlet::records::{self, Record};
use server::auth::{Principal, Role, TokenTable};
use server::outlet_records::OutletRecordsApi;

const OP: &str = "operator-token-acme-0001";
const VIEWER: &str = "viewer-token-acme-00001";
const OTHER: &str = "operator-token-bank-0001";

struct Platform {
    app: axum::Router,
    api: Arc<OutletRecordsApi>,
    store: Arc<tsm::Store>,
    _dir: tempfile::TempDir,
}

fn platform() -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        tsm::Store::open(&format!("sqlite:{}", dir.path().join("p.db").display())).unwrap(),
    );
    let who = |name: &str, role, tenant: &str| Principal {
        name: name.into(),
        role,
        tenant: Some(tenant.into()),
    };
    let tokens = TokenTable::new()
        .with(OP, who("op", Role::Operator, "acme"))
        .with(VIEWER, who("view", Role::Viewer, "acme"))
        .with(OTHER, who("op", Role::Operator, "bank"));
    let api = OutletRecordsApi::new(store.clone(), tokens);
    Platform {
        app: server::finish(server::outlet_records::routes(api.clone())),
        api,
        store,
        _dir: dir,
    }
}

/// A valid chain of `n` records of outlet `o1`, hashed as the outlet does.
fn chain(n: u64) -> Vec<Record> {
    let mut prev = records::ZERO_HASH;
    (1..=n)
        .map(|seq| {
            let mut r = Record {
                seq,
                at_ms: 1_700_000_000_000 + seq as i64,
                outlet: "o1".into(),
                card: "4111111111111111".into(),
                application: "wallet".into(),
                package_sha256: "ab".repeat(32),
                result: "ok".into(),
                code: "ok".into(),
                detail: format!("{{\"seq\":{seq}}}"),
                prev_hash: apdu::hex(&prev),
                hash: String::new(),
                synced: false,
            };
            let h = r.expected_hash().unwrap();
            r.hash = apdu::hex(&h);
            prev = h;
            r
        })
        .collect()
}

fn upload(records: &[Record]) -> String {
    serde_json::to_string(&records::Upload {
        outlet: "o1".into(),
        records: records.to_vec(),
    })
    .unwrap()
}

fn expect(r: &common::Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"], code, "{}", r.text());
    assert!(r.json()["reason"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn records_arrive_once() {
    let p = platform();
    let all = chain(4);
    let post = |body: String, token: Option<&'static str>| {
        let app = p.app.clone();
        async move {
            call(
                &app,
                Method::POST,
                "/api/v1/outlet/records",
                Some(body),
                token,
            )
            .await
        }
    };
    let r = post(upload(&all[..2]), Some(OP)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let a: records::UploadAnswer = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((a.stored, a.already, a.through), (2, 0, 2));
    let r = post(upload(&all), Some(OP)).await;
    let a: records::UploadAnswer = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((a.stored, a.already, a.through), (2, 2, 4));
    assert_eq!(p.store.outlet_records(Some("o1")).unwrap().len(), 4);

    // A record changed after hashing: 422, nothing stored.
    let mut next = chain(5);
    next[4].card = "4999999999999999".into();
    expect(
        &post(upload(&next[4..]), Some(OP)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "record_invalid",
    );
    // Another (well-hashed) record under a held number: 409.
    let mut other = chain(4);
    other[3].detail = "{}".into();
    other[3].hash = apdu::hex(&other[3].expected_hash().unwrap());
    expect(
        &post(upload(&other[3..]), Some(OP)).await,
        StatusCode::CONFLICT,
        "record_conflict",
    );
    // Another tenant, a viewer, no token; a malformed hash; an unknown field.
    expect(
        &post(upload(&chain(5)[4..]), Some(OTHER)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    expect(
        &post(upload(&chain(5)[4..]), Some(VIEWER)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    expect(
        &post(upload(&chain(5)[4..]), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let mut bad = chain(5);
    bad[4].prev_hash = "zz".into();
    expect(
        &post(upload(&bad[4..]), Some(OP)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let r = post(r#"{"outlet":"o1","records":[],"extra":1}"#.into(), Some(OP)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(p.store.outlet_records(Some("o1")).unwrap().len(), 4);

    // Read back by the tenant's viewer; another tenant sees none.
    let r = call(
        &p.app,
        Method::GET,
        "/api/v1/outlet/records/o1",
        None,
        Some(VIEWER),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let list = r.json();
    assert_eq!(list["records"].as_array().unwrap().len(), 4);
    assert_eq!(list["records"][3]["record"]["hash"], all[3].hash);
    let r = call(
        &p.app,
        Method::GET,
        "/api/v1/outlet/records/o1",
        None,
        Some(OTHER),
    )
    .await;
    assert_eq!(r.json()["records"].as_array().unwrap().len(), 0);
    let r = call(
        &p.app,
        Method::GET,
        "/api/v1/outlet/records/Bad%20Id",
        None,
        Some(OP),
    )
    .await;
    expect(&r, StatusCode::BAD_REQUEST, "invalid_request");
}

/// Every route of the router is in the generated OpenAPI document and every documented
/// route is in the router; the document served is the generated one.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_router() {
    let p = platform();
    let mut routed: Vec<(String, String)> = server::outlet_records::route_list(p.api.clone())
        .list()
        .iter()
        .map(|(m, path)| (m.to_string(), path.to_string()))
        .collect();
    routed.sort();
    let doc = server::outlet_records::openapi_document();
    assert_eq!(routed, server::openapi::documented(&doc));
    let r = call(&p.app, Method::GET, "/api/openapi-outlet.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::to_value(&doc).unwrap());
}
