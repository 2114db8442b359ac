//! `GpClient::open_scp11` against a small SCP11 security domain built from the `scp`/`gp`
//! card-side functions (the virtual card's own SCP11 is tested in `cardwright`'s CLI
//! tests): each variant opens and carries a wrapped command; each failed check stops with
//! the error that names it, and nothing after it is sent.

use std::sync::{Arc, Mutex};

use apdu::{Command, Response, StatusWord};
use gp::cert::{Certificate, ChainError, ChainPolicy, GpCertificateBody, GpDate};
use gp::scp11::{CertificateBundle, GetCertificates, PerformSecurityOperation};
use gpclient::scp11::{OceKey, Scp11Options, SdTrust};
use gpclient::{ClientError, GpClient, Operation};
use scp::scp11::{card_authenticate, CardParams, Curve, PrivateKey, PublicKey, Variant};
use scp::CardSession;
use transport::{CardChannel, Traced, TransportError};

fn cert(issuer: &PrivateKey, subject: &PublicKey, serial: u8, expiry: GpDate) -> Vec<u8> {
    GpCertificateBody {
        serial: vec![serial],
        ca_id: vec![0xCA],
        subject_id: vec![0xCA],
        key_usage: gp::cert::KEY_USAGE_KEY_AGREEMENT.to_vec(),
        effective: Some(GpDate::new(2020, 1, 1)),
        expiry,
        discretionary: None,
        restrictions: None,
        public_key: subject.clone(),
    }
    .sign(issuer)
    .unwrap()
    .to_bytes()
    .to_vec()
}

fn far() -> GpDate {
    GpDate::new(2099, 12, 31)
}

struct State {
    sk_sd: PrivateKey,
    /// What the card certifies (normally SK.SD's public key).
    chain: Vec<Vec<u8>>,
    oce_anchor: PublicKey,
    pso: Vec<Vec<u8>>,
    pk_oce: Option<PublicKey>,
    session: Option<CardSession>,
    ins: Vec<u8>,
    /// Answer PSO with this instead of checking.
    pso_sw: Option<u16>,
}

#[derive(Clone)]
struct Sd(Arc<Mutex<State>>);

impl Sd {
    fn ins(&self) -> Vec<u8> {
        self.0.lock().unwrap().ins.clone()
    }
}

fn sw(s: u16) -> Vec<u8> {
    s.to_be_bytes().to_vec()
}

impl CardChannel for Sd {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let mut st = self.0.lock().unwrap();
        let cmd = Command::parse(capdu).unwrap();
        st.ins.push(cmd.ins);
        let out = match cmd.ins {
            0xA4 => {
                st.session = None;
                sw(0x9000)
            }
            0xCA => {
                let g = GetCertificates::parse(&cmd).unwrap();
                assert_eq!(g.key.kvn, 1);
                let mut r = CertificateBundle(st.chain.clone()).to_bytes();
                r.extend(sw(0x9000));
                r
            }
            0x2A => {
                if let Some(s) = st.pso_sw {
                    return Ok(sw(s));
                }
                let p = PerformSecurityOperation::parse(&cmd).unwrap();
                st.pso.push(p.certificate);
                if p.more {
                    return Ok(sw(0x9000));
                }
                let chain = gp::cert::parse_chain(&st.pso).unwrap();
                let anchor = st.oce_anchor.clone();
                match gp::cert::verify_chain(&chain, &anchor, &ChainPolicy::default()) {
                    Ok(pk) => {
                        st.pk_oce = Some(pk.clone());
                        sw(0x9000)
                    }
                    Err(e) => sw(e.status_word().0),
                }
            }
            0x82 | 0x88 => {
                let variant = match (cmd.ins, cmd.p2) {
                    (0x88, _) => Variant::B,
                    (_, 0x15) => Variant::C,
                    _ => Variant::A,
                };
                let sk = st.sk_sd.clone();
                let pk_oce = st.pk_oce.clone();
                let p = CardParams {
                    sk_sd: &sk,
                    pk_oce: pk_oce.as_ref(),
                    variant,
                    s16: false,
                };
                let (mut data, session) = card_authenticate(&p, &cmd.data).unwrap();
                st.session = Some(session);
                data.extend(sw(0x9000));
                data
            }
            _ => {
                let s = st.session.as_mut().expect("a command before the channel");
                let plain = s.unwrap(&cmd).unwrap();
                assert_eq!(plain.ins, 0xF2);
                let r = s.wrap(Response::new(vec![0xE3, 0x00], StatusWord(0x9000)));
                let mut out = r.data;
                out.extend(sw(r.sw.0));
                out
            }
        };
        Ok(out)
    }
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x00]
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn name(&self) -> String {
        "SCP11 test SD".into()
    }
}

struct World {
    card_ca: PrivateKey,
    oce_ca: PrivateKey,
    oce: PrivateKey,
    sd: Sd,
}

fn world() -> World {
    let card_ca = PrivateKey::generate(Curve::P256).unwrap();
    let oce_ca = PrivateKey::generate(Curve::P256).unwrap();
    let sk_sd = PrivateKey::generate(Curve::P256).unwrap();
    let chain = vec![cert(&card_ca, sk_sd.public_key(), 1, far())];
    let oce = PrivateKey::generate(Curve::P256).unwrap();
    let sd = Sd(Arc::new(Mutex::new(State {
        sk_sd,
        chain,
        oce_anchor: oce_ca.public_key().clone(),
        pso: Vec::new(),
        pk_oce: None,
        session: None,
        ins: Vec::new(),
        pso_sw: None,
    })));
    World {
        card_ca,
        oce_ca,
        oce,
        sd,
    }
}

fn client(w: &World) -> GpClient<Sd> {
    GpClient::new(Traced::new(w.sd.clone(), None))
}

fn opts(w: &World, variant: Variant) -> Scp11Options {
    let mut o = Scp11Options::new(variant, 1, SdTrust::Key(w.card_ca.public_key().clone()));
    if variant.authenticates_oce() {
        o.oce_key = Some(OceKey {
            key: Box::new(w.oce.clone()),
            public: w.oce.public_key().clone(),
        });
        o.oce_chain = vec![cert(&w.oce_ca, w.oce.public_key(), 7, far())];
    }
    o
}

/// A wrapped GET STATUS through the open channel.
fn use_channel(cl: &mut GpClient<Sd>) {
    let r = cl
        .send(
            Operation::GetStatus,
            &Command::new(0x80, 0xF2, 0x80, 0x02)
                .with_data(vec![0x4F, 0x00])
                .with_le(256),
        )
        .unwrap();
    assert_eq!(r.data, [0xE3, 0x00]);
}

#[test]
fn each_variant_opens_and_carries_commands() {
    for variant in [Variant::A, Variant::B, Variant::C] {
        let w = world();
        let mut cl = client(&w);
        let info = cl.open_scp11(&opts(&w, variant)).unwrap();
        assert!(info.verified);
        assert_eq!(info.variant, variant);
        assert_eq!(info.level.0, 0x33);
        assert!(cl.scp11_channel().is_some() && cl.secure_channel().is_none());
        use_channel(&mut cl);
        let want: Vec<u8> = match variant {
            Variant::B => vec![0xA4, 0xCA, 0x88, 0xF2],
            _ => vec![0xA4, 0xCA, 0x2A, 0x82, 0xF2],
        };
        assert_eq!(w.sd.ins(), want, "{variant}");
    }
}

#[test]
fn a_key_store_oce_key_opens_11a() {
    use kms::{AgreementKeyStore, EckaCurve};
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let store = kms::SoftwareKeyStore::create(
        dir.path().join("k.json"),
        kms::MasterKey::generate().unwrap(),
    )
    .unwrap();
    store.create_agreement_key("oce", EckaCurve::P256).unwrap();
    let key = store.agreement_key("oce").unwrap();
    let public = PublicKey::from_sec1(Curve::P256, key.public_point()).unwrap();
    let mut o = opts(&w, Variant::A);
    o.oce_chain = vec![cert(&w.oce_ca, &public, 9, far())];
    o.oce_key = Some(OceKey {
        key: Box::new(key),
        public,
    });
    client(&w).open_scp11(&o).unwrap();
}

#[test]
fn a_wrong_trust_anchor_stops_after_get_data() {
    let w = world();
    let mut o = opts(&w, Variant::B);
    o.sd_trust = SdTrust::Key(w.oce_ca.public_key().clone());
    let e = client(&w).open_scp11(&o).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::CardCertificate {
                source: ChainError::BadSignature { index: 0 },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("--sd-trust"), "{e}");
    assert_eq!(w.sd.ins(), [0xA4, 0xCA]);
}

#[test]
fn an_expired_card_certificate_is_named() {
    let w = world();
    {
        let mut st = w.sd.0.lock().unwrap();
        let pk = st.sk_sd.public_key().clone();
        st.chain = vec![cert(&w.card_ca, &pk, 1, GpDate::new(2021, 1, 1))];
    }
    let e = client(&w).open_scp11(&opts(&w, Variant::B)).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::CardCertificate {
                source: ChainError::Expired { index: 0 },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn trust_any_takes_the_leaf_and_gives_its_fingerprint() {
    let w = world();
    let mut o = opts(&w, Variant::B);
    o.sd_trust = SdTrust::Any;
    let info = client(&w).open_scp11(&o).unwrap();
    assert!(!info.verified);
    assert_eq!(info.sd_fingerprint().len(), 64);
}

#[test]
fn the_ca_certificate_at_the_head_of_the_chain_is_the_anchor() {
    let w = world();
    let ca_cert = cert(&w.card_ca, w.card_ca.public_key(), 2, far());
    {
        let mut st = w.sd.0.lock().unwrap();
        st.chain.insert(0, ca_cert.clone());
    }
    let mut o = opts(&w, Variant::B);
    o.sd_trust = SdTrust::Certificate(Box::new(Certificate::parse(&ca_cert).unwrap()));
    client(&w).open_scp11(&o).unwrap();
}

#[test]
fn a_card_that_does_not_hold_the_certified_key_fails_the_receipt() {
    let w = world();
    w.sd.0.lock().unwrap().sk_sd = PrivateKey::generate(Curve::P256).unwrap();
    let e = client(&w).open_scp11(&opts(&w, Variant::B)).unwrap_err();
    assert!(matches!(e, ClientError::ReceiptMismatch), "{e}");
}

#[test]
fn a_refused_oce_certificate_names_the_card_answer() {
    for (code, words) in [(0x6982u16, "security status"), (0x6A88, "no trust anchor")] {
        let w = world();
        w.sd.0.lock().unwrap().pso_sw = Some(code);
        let e = client(&w).open_scp11(&opts(&w, Variant::A)).unwrap_err();
        match &e {
            ClientError::OceCertificateRefused { index: 0, sw, .. } => assert_eq!(sw.0, code),
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains(words), "{e}");
        // No MUTUAL AUTHENTICATE after a refusal.
        assert_eq!(w.sd.ins(), [0xA4, 0xCA, 0x2A]);
    }
    // The real check: an OCE certificate from another CA.
    let w = world();
    let mut o = opts(&w, Variant::A);
    o.oce_chain = vec![cert(&w.card_ca, w.oce.public_key(), 7, far())];
    let e = client(&w).open_scp11(&o).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::OceCertificateRefused {
                sw: StatusWord(0x6982),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn an_oce_key_that_is_not_the_certificate_key_is_refused_before_sending() {
    let w = world();
    let mut o = opts(&w, Variant::C);
    let other = PrivateKey::generate(Curve::P256).unwrap();
    o.oce_key = Some(OceKey {
        public: other.public_key().clone(),
        key: Box::new(other),
    });
    let e = client(&w).open_scp11(&o).unwrap_err();
    assert!(matches!(e, ClientError::OceCertificate { .. }), "{e}");
    assert!(w.sd.ins().is_empty());
    // 11a without a key or chain: refused before sending too.
    let mut o = opts(&w, Variant::A);
    o.oce_key = None;
    assert!(matches!(
        client(&w).open_scp11(&o).unwrap_err(),
        ClientError::Invalid(_)
    ));
    assert!(w.sd.ins().is_empty());
}
