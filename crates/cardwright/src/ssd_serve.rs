//! `serve --role ci|ap`: the SSD platforms of issue #10 on top of `serve`.
//!
//! * `ci`: the card issuer's partner API ([`server::partner`]) over mutual TLS (required):
//!   client certificates are verified against `--partner-ca` and the roots of the
//!   partners registered in the database and not revoked (re-read every
//!   [`crate::ssd_cmd::PARTNER_REFRESH`], so `partner add|revoke` in another process takes
//!   effect while serving), with the `--partner-crl` CRLs.
//! * `ap`: the application provider's API ([`server::ap`]) with its terminals' relay, and
//!   its link to the card issuer ([`server::partner_client`]: HTTPS with `--client-cert`,
//!   `--client-key`, trusting only `--ci-ca`).
//!
//! SSD key sets and the AP's transport key live in the platform's key store
//! (`--keystore`, the same as the cards' base keys: software file or PKCS#11 token).
//! `--transport-key-out` writes the AP's transport public key for the CI's `partner add`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axum::Router;
use server::auth::TokenTable;
use server::partner::{ExchangeTimeouts, PartnerApi};
use server::tls::PartnerCertVerifier;
use tsm::ssd::{ApConfig, ApPlatform, CiConfig, CiPlatform, KeySetStore};

use crate::serve::{PlatformRole, ServeArgs};

/// What `serve` adds for a role.
pub struct Ssd {
    /// What it is, for the start-up lines.
    pub what: &'static str,
    /// Where its OpenAPI document is.
    pub document: &'static str,
    /// Its routes (merged into `serve`'s router).
    pub routes: Router,
    /// CI: the client-certificate verifier for the TLS layer.
    pub verifier: Option<Arc<PartnerCertVerifier>>,
    /// CI: the partner API (its partner roots are refreshed while serving).
    pub partner_api: Option<Arc<PartnerApi>>,
    /// The renewal at contact to start, if on ([`crate::ssd_contact`]).
    pub contact: Option<crate::ssd_contact::Contact>,
}

/// The SSD key sets in the platform's key store (`--keystore`: software file or PKCS#11).
/// The receipt key of `--receipt-key`: hex or a file holding hex, `des:` for 3DES.
fn receipt_key(spec: &str) -> Result<gp::dm::ReceiptKey> {
    let (des, v) = match spec.strip_prefix("des:") {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let text = if Path::new(v).is_file() {
        zeroize::Zeroizing::new(
            std::fs::read_to_string(v)
                .with_context(|| format!("--receipt-key: cannot read {v}"))?,
        )
    } else {
        zeroize::Zeroizing::new(v.to_string())
    };
    let bytes = zeroize::Zeroizing::new(
        apdu::parse_hex(text.trim()).map_err(|_| anyhow!("--receipt-key: not hex (nor a file)"))?,
    );
    let key = if des {
        gp::dm::ReceiptKey::des3(&bytes)
    } else {
        gp::dm::ReceiptKey::aes(&bytes)
    };
    key.map_err(|e| anyhow!("--receipt-key: {e}"))
}

fn key_sets(keystore: &str) -> Result<Arc<dyn KeySetStore>> {
    kms::open_key_sets(keystore).with_context(|| format!("--keystore {keystore} (SSD key sets)"))
}

fn need<'a, T>(v: &'a Option<T>, what: &str, role: &str) -> Result<&'a T> {
    v.as_ref()
        .ok_or_else(|| anyhow!("--role {role} needs {what}"))
}

/// The role's platform and routes.
pub fn build(
    role: PlatformRole,
    a: &ServeArgs,
    store: &Arc<tsm::Store>,
    tokens: TokenTable,
    tls: bool,
    issuance: Option<&Arc<server::issuance::IssuanceApi>>,
    webhook: Option<server::webhook::Webhook>,
) -> Result<Ssd> {
    // With --issuance, the CI's own terminals run SSD jobs at its desks too, announced to
    // the issuance API's webhook.
    let ci_terminals = issuance.map(|i| i.hub().clone());
    match role {
        PlatformRole::Ci => {
            if !tls {
                bail!("--role ci serves the partner API over mutual TLS: give --tls-cert and --tls-key");
            }
            let mut roots = Vec::new();
            for f in &a.partner_ca {
                roots.extend(server::tls::load_certificates(f).context("--partner-ca")?);
            }
            let mut crls = Vec::new();
            for f in &a.partner_crl {
                crls.extend(server::tls::load_crls(f).context("--partner-crl")?);
            }
            let verifier = PartnerCertVerifier::new(roots, crls).context("--partner-ca")?;
            let issuer = crate::serve::issuer_of(store, &a.keystore)?;
            let mut config = CiConfig::default();
            if let Some(spec) = &a.dm_key {
                config.token_signer = Some(Arc::from(crate::dm_cmd::signer(spec, "--dm-key")?));
            }
            if let Some(spec) = &a.receipt_key {
                config.receipt_key = Some(receipt_key(spec)?);
            }
            let ci = Arc::new(CiPlatform::new(issuer, key_sets(&a.keystore)?, config));
            let contact = crate::ssd_contact::ci(a, &ci, ci_terminals.as_ref());
            let api = PartnerApi::with_options(
                ci,
                tokens,
                Some(verifier.clone()),
                ExchangeTimeouts::default(),
                ci_terminals,
                issuance.and_then(|i| i.webhook().cloned()),
            );
            let n = api
                .refresh_partner_roots()
                .map_err(|e| anyhow!("registered partners: {}", e.body.reason))?;
            tracing::info!(
                partners = n,
                static_roots = a.partner_ca.len(),
                "partner roots trusted for client certificates"
            );
            Ok(Ssd {
                what: "card issuer's partner API (mutual TLS)",
                document: "/api/openapi-partner.json",
                routes: server::partner::routes(api.clone()),
                verifier: Some(verifier),
                partner_api: Some(api),
                contact,
            })
        }
        PlatformRole::Ap => {
            if a.issuance {
                bail!("--role ap has its own terminal relay: leave out --issuance");
            }
            let url = need(&a.ci, "--ci https://host:port", "ap")?;
            let partner = need(
                &a.partner_id,
                "--partner-id (its id at the card issuer)",
                "ap",
            )?;
            let link = server::partner_client::HttpCardIssuerLink::new(
                url,
                partner,
                need(&a.client_cert, "--client-cert", "ap")?,
                need(&a.client_key, "--client-key", "ap")?,
                need(&a.ci_ca, "--ci-ca", "ap")?,
                Duration::from_secs(120),
            )
            .context("the link to the card issuer")?;
            let mut config = ApConfig::new(partner);
            if let (Some(ca), Some(oce)) = (&a.scp11_ca, &a.scp11_oce_key) {
                config.scp11 = Some(scp11_rotation(&a.keystore, ca, oce)?);
            }
            let ap = ApPlatform::new(
                (**store).clone(),
                key_sets(&a.keystore)?,
                Arc::new(link),
                config,
            );
            let spki = ap.transport_key().context("the transport key")?;
            if let Some(out) = &a.transport_key_out {
                write_transport_key(out, &spki)?;
            }
            let api = server::ap::ApApi::with_webhook(
                Arc::new(ap),
                tokens,
                Duration::from_secs(30),
                webhook,
            );
            Ok(Ssd {
                what: "application provider's SSD API and terminal relay",
                document: "/api/openapi-ap.json",
                contact: crate::ssd_contact::ap(a, &api),
                routes: server::ap::routes(api),
                verifier: None,
                partner_api: None,
            })
        }
    }
}

fn write_transport_key(out: &Path, spki: &[u8]) -> Result<()> {
    let pem = pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, spki)
        .map_err(|e| anyhow!("transport key PEM: {e}"))?;
    std::fs::write(out, pem).with_context(|| format!("--transport-key-out {}", out.display()))?;
    eprintln!(
        "transport public key written to {} (register it at the card issuer: partner add --transport-key)",
        out.display()
    );
    Ok(())
}

/// Re-reads the registered partners' roots for the TLS layer every
/// [`crate::ssd_cmd::PARTNER_REFRESH`] (call on the runtime).
pub fn refresh_partners_periodically(api: Arc<PartnerApi>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::ssd_cmd::PARTNER_REFRESH);
        loop {
            tick.tick().await;
            let api = api.clone();
            match tokio::task::spawn_blocking(move || api.refresh_partner_roots()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(reason = %e.body.reason, "refreshing partner roots failed")
                }
                Err(_) => tracing::warn!("refreshing partner roots failed"),
            }
        }
    });
}

/// Validity of the certificates issued for the SCP11a rotation (the SSD's, the OCE's).
const SCP11_CERT_DAYS: u32 = 3650;

/// What the AP needs to rotate the initial keys inside SCP11a: its CA (`ca`, a P-256
/// signing key) and OCE key (`oce`, a P-256 key-agreement key) in `keystore`, both created
/// on first use; the OCE certificate (X.509, Amendment F §6) is issued now by the CA.
fn scp11_rotation(keystore: &str, ca: &str, oce: &str) -> Result<Arc<tsm::ssd::ap::Scp11Rotation>> {
    use crate::cli::CertFormat;
    use crate::scp11_cmd::{ca_public, issue_cert};
    let signing = kms::open_signing(keystore).context("--scp11-ca")?;
    let (ca_key, created) = signing
        .signing_key_or_create(ca, kms::SigningAlgorithm::P256)
        .context("--scp11-ca")?;
    if created {
        eprintln!("created the AP's SCP11 CA signing key {ca} (P-256) in the key store");
    }
    let ca_key: Arc<dyn kms::SigningKey> = Arc::from(ca_key);
    let ca_pub = ca_public(ca_key.as_ref())?;
    let agreement = kms::open_agreement(keystore).context("--scp11-oce-key")?;
    let oce_key = match agreement.agreement_key(oce) {
        Ok(k) => k,
        Err(_) => {
            agreement
                .create_agreement_key(oce, kms::EckaCurve::P256)
                .context("--scp11-oce-key")?;
            eprintln!("created the AP's OCE key-agreement key {oce} (P-256) in the key store");
            agreement.agreement_key(oce).context("--scp11-oce-key")?
        }
    };
    if oce_key.curve() != kms::EckaCurve::P256 {
        bail!("--scp11-oce-key {oce}: a P-256 key is needed");
    }
    let oce_public =
        scp::scp11::PublicKey::from_sec1(scp::scp11::Curve::P256, oce_key.public_point())?;
    let oce_cert = issue_cert(
        CertFormat::X509,
        ca_key.as_ref(),
        &oce_public,
        &format!("SCP11 OCE {oce}"),
        SCP11_CERT_DAYS,
    )?;
    let signer = ca_key.clone();
    Ok(Arc::new(tsm::ssd::ap::Scp11Rotation {
        kvn: 0x01,
        ca_public: ca_pub,
        certify_sd: Box::new(move |pk| {
            issue_cert(
                CertFormat::X509,
                signer.as_ref(),
                pk,
                "SCP11 SSD",
                SCP11_CERT_DAYS,
            )
            .map_err(|e| tsm::Error::Invalid(format!("certifying the SSD key: {e}")))
        }),
        oce_key: Arc::new(oce_key),
        oce_public,
        oce_chain: vec![oce_cert],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--receipt-key`: AES hex, `des:` 3DES, a file; bad input names the option, never
    /// the key.
    #[test]
    fn receipt_key_from_hex_or_file() {
        let input = [0x02, 0x00, 0x01, 0x00];
        let aes = receipt_key("71717171717171717171717171717171").unwrap();
        let same = gp::dm::ReceiptKey::aes(&[0x71; 16]).unwrap();
        assert_eq!(aes.receipt(&input).unwrap(), same.receipt(&input).unwrap());
        let des = receipt_key("des:404142434445464748494A4B4C4D4E4F").unwrap();
        assert_eq!(des.receipt(&input).unwrap().len(), 8);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("receipt.key");
        std::fs::write(&f, "71717171717171717171717171717171\n").unwrap();
        let from_file = receipt_key(f.to_str().unwrap()).unwrap();
        assert_eq!(
            from_file.receipt(&input).unwrap(),
            same.receipt(&input).unwrap()
        );
        let e = receipt_key("71717171ZZ").unwrap_err().to_string();
        assert!(e.contains("--receipt-key") && !e.contains("7171"), "{e}");
        assert!(receipt_key("7171").is_err());
    }
}
