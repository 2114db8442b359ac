//! Helpers of the SSD tests through the real binary: run `cardwright` in a directory, write
//! files, and call a platform over TLS (with or without a client certificate and token).
#![allow(dead_code)]

#[path = "../../../server/tests/common/certs.rs"]
pub mod certs;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use certs::{Ca, Leaf};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cardwright")
}

pub const MASTER: &str = "1111111111111111111111111111111111111111111111111111111111111111";
pub const OPERATOR: &str = "alice=operator-token-0123456789";

pub fn cardwright(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env("CARDWRIGHT_MASTER_KEY", MASTER)
        .env("CARDWRIGHT_LOG", "error");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run cardwright");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    let (success, out, err) = cardwright(dir, args, &[]);
    assert!(success, "cardwright {}: {err}", args.join(" "));
    out
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// `GET url` over TLS trusting `ca`, with `client` as the client certificate (if any).
pub fn get_tls(
    url: &str,
    ca: &Ca,
    client: Option<&Leaf>,
    token: Option<&str>,
) -> Result<(u16, serde_json::Value), String> {
    call_tls(url, ca, client, token, None)
}

/// `GET url` (no body) or `POST url` with a JSON body, over TLS trusting `ca`, with
/// `client` as the client certificate and `token` as the bearer token (if any).
pub fn call_tls(
    url: &str,
    ca: &Ca,
    client: Option<&Leaf>,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let pem = |t: &str| -> Vec<ureq::tls::Certificate<'static>> {
        ureq::tls::parse_pem(t.as_bytes())
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&pem(&ca.pem)));
    if let Some(c) = client {
        let key = ureq::tls::PrivateKey::from_pem(c.key_pem.as_bytes()).unwrap();
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(
            &pem(&c.chain_pem),
            key,
        )));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let answer = match body {
        None => {
            let mut req = agent.get(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        Some(b) => {
            let mut req = agent.post(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.send_json(b)
        }
    };
    match answer {
        Ok(mut r) => Ok((
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
        )),
        Err(e) => Err(e.to_string()),
    }
}
