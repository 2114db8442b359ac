//! Opening an SCP11a/b/c secure channel (GP Card Specification v2.3 Amendment F) with
//! [`GpClient::open_scp11`]; the session it makes is the same one SCP02/SCP03 give, so
//! every operation in [`crate::ops`] runs over it.
//!
//! The steps, each stopping at the first failure with a typed error that says which check
//! failed (nothing is ever retried, so a card's failure counters are not spent twice):
//!
//! 1. SELECT the security domain.
//! 2. GET DATA `BF21` with `A6{83 KID KVN}` (Amendment F §7.4.3): the SD key's certificate
//!    chain; it is verified against the trust anchor the user gave (`--sd-trust`, a CA
//!    certificate, X.509 or GP `7F21`) with [`gp::cert::verify_chain`] at the current time,
//!    and PK.SD is taken from the leaf ([`ClientError::CardCertificate`] otherwise).
//!    [`SdTrust::Any`] skips the check (trust on first use: the caller shows the leaf's
//!    fingerprint, [`Scp11Info::sd_fingerprint`]).
//! 3. SCP11a/c: before anything is sent, the OCE key must match the OCE leaf certificate;
//!    then PERFORM SECURITY OPERATION (`80 2A KVN KID`, Amendment F §7.5), one certificate
//!    per command, P2 b8 while more follow. A refusal is
//!    [`ClientError::OceCertificateRefused`] with the card's status word and what it means.
//! 4. MUTUAL AUTHENTICATE (`80 82`, 11a/11c) or INTERNAL AUTHENTICATE (`80 88`, 11b); the
//!    receipt is checked ([`ClientError::ReceiptMismatch`] if it does not verify).

use crate::{ClientError, GpClient, Operation, Result};
use apdu::StatusWord;
use gp::aid::Aid;
use gp::cert::{Certificate, ChainPolicy};
use gp::scp11::{CertificateBundle, GetCertificates, KeyRef, PerformSecurityOperation};
use scp::scp11::{HostAuth, OceKeyAgreement, Params, PublicKey, Variant};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Mutex;
use transport::CardChannel;

/// How the card's certificate chain (`BF21`) is checked.
#[derive(Debug, Clone)]
pub enum SdTrust {
    /// Verify the chain against this CA certificate's public key. If the chain starts with
    /// this very certificate, it is taken as the anchor and not checked again.
    Certificate(Box<Certificate>),
    /// Verify the chain against this public key.
    Key(PublicKey),
    /// Do not verify: take PK.SD from the leaf as it is (trust on first use). The caller
    /// must show [`Scp11Info::sd_fingerprint`] to the user.
    Any,
}

/// The OCE's static key (SK.OCE.ECKA) and its public key, for SCP11a/c.
pub struct OceKey {
    /// Performs the key agreement (in memory, or in a key store / HSM).
    pub key: Box<dyn OceKeyAgreement + Send + Sync>,
    /// The public key (checked against the OCE leaf certificate before anything is sent).
    pub public: PublicKey,
}

impl fmt::Debug for OceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OceKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// How to open an SCP11 channel.
#[derive(Debug)]
pub struct Scp11Options {
    /// Variant, SD key reference (KVN, KID), session key length, S8/S16, key usage.
    pub params: Params,
    /// Security domain to select; `None` = the ISD.
    pub sd: Option<Aid>,
    /// How the card's certificate chain is checked.
    pub sd_trust: SdTrust,
    /// SCP11a/c: the OCE's static key.
    pub oce_key: Option<OceKey>,
    /// SCP11a/c: the OCE certificate chain, the one signed by the card's trust anchor first,
    /// the OCE's own certificate last (each X.509 DER or GP `7F21`).
    pub oce_chain: Vec<Vec<u8>>,
    /// SCP11a/c: the card's trust anchor for the OCE chain (PK.CA-KLOC.ECDSA, P1/P2 of
    /// PERFORM SECURITY OPERATION); usually KID `10`.
    pub oce_anchor: KeyRef,
    /// Verification time for the card's certificates in Unix seconds; `None` = now.
    pub at: Option<u64>,
}

impl Scp11Options {
    /// The usual options: the variant's SD KID, key version `kvn`, AES-128, S8, full
    /// security (key usage `3C`), the ISD, OCE trust anchor KID `10` with the same KVN.
    pub fn new(variant: Variant, kvn: u8, sd_trust: SdTrust) -> Self {
        Self {
            params: Params::new(variant, kvn),
            sd: None,
            sd_trust,
            oce_key: None,
            oce_chain: Vec::new(),
            oce_anchor: KeyRef::new(gp::scp11::OCE_KID, kvn),
            at: None,
        }
    }
}

/// What was learnt while opening an SCP11 channel.
#[derive(Debug, Clone)]
pub struct Scp11Info {
    /// The variant.
    pub variant: Variant,
    /// The SD key used (KID, KVN).
    pub key: KeyRef,
    /// The security level of the channel.
    pub level: scp::SecurityLevel,
    /// The security domain the channel is open to.
    pub sd: Aid,
    /// The card's certificate chain as returned by `BF21` (leaf last).
    pub sd_chain: Vec<Vec<u8>>,
    /// PK.SD, from the leaf certificate.
    pub pk_sd: PublicKey,
    /// Whether the chain was verified against a trust anchor (false with [`SdTrust::Any`]).
    pub verified: bool,
}

impl Scp11Info {
    /// SHA-256 of the leaf certificate (hex), to compare out of band with
    /// [`SdTrust::Any`].
    pub fn sd_fingerprint(&self) -> String {
        self.sd_chain
            .last()
            .map(|c| apdu::hex(&Sha256::digest(c)))
            .unwrap_or_default()
    }
}

/// What a status word to PERFORM SECURITY OPERATION means (Amendment F §7.5.3 and the
/// answers of the virtual card and YubiKeys).
pub fn pso_meaning(sw: StatusWord) -> &'static str {
    match sw.0 {
        0x6982 => "security status not satisfied: the certificate does not verify with the card's trust anchor or its predecessor (bad signature, broken link, expired, not yet valid, or not on the allowlist)",
        0x6A80 => "wrong data: the card cannot read the certificate or its key usage",
        0x6A88 | 0x6A82 => "no trust anchor on the card at this KVN/KID (--oce-kvn, or run `card scp11 setup`)",
        0x6985 => "conditions of use not satisfied (certificate out of sequence)",
        0x6D00 | 0x6E00 => "the card does not support PERFORM SECURITY OPERATION (no SCP11)",
        0x6700 => "wrong length",
        _ => "refused",
    }
}

/// An OCE key that remembers why it failed (a key store or HSM error), so the error
/// reaches the user whole instead of as a secure-channel failure.
struct Recording<'a> {
    key: &'a (dyn OceKeyAgreement + Send + Sync),
    failure: Mutex<Option<String>>,
}

impl OceKeyAgreement for Recording<'_> {
    fn curve(&self) -> scp::scp11::Curve {
        self.key.curve()
    }
    fn agree(
        &self,
        peer: &PublicKey,
    ) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, scp::Error> {
        self.key.agree(peer).inspect_err(|e| {
            *self
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<C: CardChannel> GpClient<C> {
    /// GET DATA `BF21` for the SD key `key`: its certificate chain as stored (leaf last).
    pub fn sd_certificates(&mut self, key: KeyRef) -> Result<Vec<Vec<u8>>> {
        let cmd = GetCertificates { key }.to_command();
        let op = Operation::GetData;
        let r = self.send(op, &cmd)?;
        if !r.sw.is_success() {
            return Err(ClientError::refused(
                op,
                format!(
                    "BF21 (certificates of key KID {:02X} KVN {:02X})",
                    key.kid, key.kvn
                ),
                r.sw,
            ));
        }
        // A YubiKey (and the virtual card) answers the certificates one after the other;
        // some cards wrap them in BF21. Both are read.
        let bundle = if r.data.starts_with(&[0xBF, 0x21]) {
            CertificateBundle::parse(&r.data)?
        } else {
            CertificateBundle::parse_value(&r.data)?
        };
        Ok(bundle.0)
    }

    /// Selects the SD and opens an SCP11 channel (see the module documentation).
    pub fn open_scp11(&mut self, opts: &Scp11Options) -> Result<Scp11Info> {
        let p = &opts.params;
        let variant = p.variant;
        // Checks that need no card first.
        let oce = if variant.authenticates_oce() {
            let key = opts.oce_key.as_ref().ok_or_else(|| {
                ClientError::Invalid(format!("SCP{variant} needs the OCE's key (--oce-key)"))
            })?;
            if opts.oce_chain.is_empty() {
                return Err(ClientError::Invalid(format!(
                    "SCP{variant} needs the OCE's certificate chain (--oce-cert)"
                )));
            }
            let chain = gp::cert::parse_chain(&opts.oce_chain).map_err(|source| {
                ClientError::OceCertificate {
                    detail: source.to_string(),
                }
            })?;
            let leaf = chain.last().map(Certificate::public_key);
            if leaf != Some(&key.public) {
                return Err(ClientError::OceCertificate {
                    detail: "the OCE key (--oce-key) is not the key of the last certificate (--oce-cert, leaf last)".into(),
                });
            }
            Some(key)
        } else {
            None
        };
        let sd = opts.sd.unwrap_or(gp::aid::ISD_AID);
        self.select(&sd)?;

        // 2. The card's certificate chain.
        let key = KeyRef::new(p.kid, p.kvn);
        let sd_chain = self.sd_certificates(key)?;
        let parsed = gp::cert::parse_chain(&sd_chain)
            .map_err(|source| ClientError::CardCertificate { key, source })?;
        let (pk_sd, verified) = match &opts.sd_trust {
            SdTrust::Any => {
                let leaf = parsed.last().ok_or(ClientError::CardCertificate {
                    key,
                    source: gp::cert::ChainError::Empty,
                })?;
                (leaf.public_key().clone(), false)
            }
            trust => {
                let (anchor, skip) = match trust {
                    SdTrust::Certificate(ca) => {
                        let skip =
                            usize::from(parsed.len() > 1 && parsed[0].to_bytes() == ca.to_bytes());
                        (ca.public_key().clone(), skip)
                    }
                    SdTrust::Key(k) => (k.clone(), 0),
                    SdTrust::Any => unreachable!(),
                };
                let policy = ChainPolicy {
                    at: Some(opts.at.unwrap_or_else(now)),
                    ..ChainPolicy::default()
                };
                let pk = gp::cert::verify_chain(&parsed[skip..], &anchor, &policy).map_err(
                    |source| ClientError::CardCertificate {
                        key,
                        source: shift(source, skip),
                    },
                )?;
                (pk.clone(), true)
            }
        };

        // 3. The OCE's certificates.
        if oce.is_some() {
            let pso = PerformSecurityOperation::for_chain(
                opts.oce_anchor.kvn,
                opts.oce_anchor.kid,
                &opts.oce_chain,
            );
            for (index, cmd) in pso.iter().enumerate() {
                let op = Operation::PerformSecurityOperation;
                let r = self.transmit_chained(op, &cmd.to_command()?)?;
                if !r.sw.is_success() {
                    return Err(ClientError::OceCertificateRefused {
                        index,
                        sw: r.sw,
                        meaning: pso_meaning(r.sw),
                    });
                }
            }
        }

        // 4. MUTUAL / INTERNAL AUTHENTICATE.
        let auth = HostAuth::new(*p, &pk_sd)?;
        let op = if variant == Variant::B {
            Operation::InternalAuthenticate
        } else {
            Operation::MutualAuthenticate
        };
        let r = self.transmit_plain(op, &auth.command())?;
        if !r.sw.is_success() {
            return Err(crate::auth_refused(op, r.sw, || {
                format!(
                    "(no SCP11 key KID {:02X} KVN {:02X} on the card)",
                    p.kid, p.kvn
                )
            }));
        }
        let recording = oce.map(|k| Recording {
            key: k.key.as_ref(),
            failure: Mutex::new(None),
        });
        let finished = auth.finish(
            &r,
            &pk_sd,
            recording.as_ref().map(|r| r as &dyn OceKeyAgreement),
        );
        let session = match finished {
            Ok(s) => s,
            Err(scp::Error::ReceiptMismatch) => return Err(ClientError::ReceiptMismatch),
            Err(e) => {
                let failure = recording.and_then(|r| {
                    r.failure
                        .into_inner()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                });
                return Err(match failure {
                    Some(detail) => ClientError::OceKeyFailed { detail },
                    None => ClientError::Scp(e),
                });
            }
        };
        let info = Scp11Info {
            variant,
            key,
            level: session.level(),
            sd,
            sd_chain,
            pk_sd,
            verified,
        };
        self.session = Some(session);
        self.info = None;
        self.scp11 = Some(info.clone());
        Ok(info)
    }

    /// The open SCP11 channel, if any.
    pub fn scp11_channel(&self) -> Option<&Scp11Info> {
        self.scp11.as_ref()
    }

    /// Sends a plain command, as short APDUs with ISO command chaining (CLA b5) when its
    /// data does not fit the card's command size (a certificate in PSO).
    fn transmit_chained(&mut self, op: Operation, cmd: &apdu::Command) -> Result<apdu::Response> {
        if cmd.data.len() <= self.max_command_data.min(255) {
            return self.transmit_plain(op, cmd);
        }
        let chunks: Vec<&[u8]> = cmd.data.chunks(255).collect();
        let n = chunks.len();
        let mut last = None;
        for (i, c) in chunks.into_iter().enumerate() {
            let mut part = cmd.clone();
            part.data = c.to_vec();
            if i + 1 < n {
                part.cla |= 0x10;
                part.le = None;
            }
            let r = self.transmit_plain(op, &part)?;
            if i + 1 < n && !r.sw.is_success() {
                return Ok(r);
            }
            last = Some(r);
        }
        last.ok_or_else(|| ClientError::Invalid("empty command".into()))
    }
}

/// An error index in a chain whose first `skip` certificates were not checked.
fn shift(e: gp::cert::ChainError, skip: usize) -> gp::cert::ChainError {
    use gp::cert::ChainError as E;
    match e {
        E::Malformed { index, detail } => E::Malformed {
            index: index + skip,
            detail,
        },
        E::BrokenLink { index } => E::BrokenLink {
            index: index + skip,
        },
        E::BadSignature { index } => E::BadSignature {
            index: index + skip,
        },
        E::Expired { index } => E::Expired {
            index: index + skip,
        },
        E::NotYetValid { index } => E::NotYetValid {
            index: index + skip,
        },
        E::KeyUsage { index } => E::KeyUsage {
            index: index + skip,
        },
        other => other,
    }
}
