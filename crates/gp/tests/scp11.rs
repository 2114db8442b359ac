//! SCP11 certificates and codecs: known answers (OpenSCP-Java's GP certificates and
//! transcripts, yubikit's X.509 OCE chain) and property tests (encode → parse round trips,
//! every single-bit flip of a good chain is refused).

use apdu::{parse_hex, Command, Response};
use gp::cert::*;
use gp::scp11::*;
use proptest::prelude::*;
use scp::scp11::{Curve, PrivateKey};
use std::collections::HashMap;

fn records(text: &str) -> Vec<(String, HashMap<String, String>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut p = l.split_whitespace();
            let kind = p.next().unwrap().to_string();
            let f = p
                .filter_map(|x| x.split_once('='))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            (kind, f)
        })
        .collect()
}

fn h(f: &HashMap<String, String>, k: &str) -> Vec<u8> {
    parse_hex(&f[k]).unwrap()
}

fn opt(f: &HashMap<String, String>, k: &str) -> Option<Vec<u8>> {
    (f[k] != "-").then(|| h(f, k))
}

const CERTS: &str = include_str!("vectors/scp11_certificates.txt");

/// Unix time of a UTC date.
fn at(y: u16, m: u8, d: u8) -> u64 {
    GpDate::new(y, m, d).unix_start().unwrap()
}

#[test]
fn openscp_gp_certificates_parse() {
    let mut n = 0;
    for (kind, f) in records(CERTS) {
        if kind != "gpcert" {
            continue;
        }
        let raw = h(&f, "cert");
        let c = GpCertificate::parse(&raw).unwrap();
        let b = &c.body;
        assert_eq!(b.serial, h(&f, "serial"));
        assert_eq!(b.ca_id, h(&f, "ca"));
        assert_eq!(b.subject_id, h(&f, "subject"));
        assert_eq!(b.key_usage, h(&f, "usage"));
        assert_eq!(b.effective.map(|d| d.0.to_vec()), opt(&f, "effective"));
        assert_eq!(b.expiry.0.to_vec(), h(&f, "expiry"));
        assert_eq!(
            b.discretionary.as_ref().map(|d| d.1.clone()),
            opt(&f, "discretionary")
        );
        assert_eq!(b.restrictions, opt(&f, "restrictions"));
        assert_eq!(b.public_key.to_sec1(), h(&f, "point"));
        assert_eq!(b.public_key.curve(), Curve::P256);
        assert_eq!(c.signature, h(&f, "signature"));
        // Re-encoding the parsed fields gives the same bytes.
        assert_eq!(
            c.body
                .clone()
                .with_signature(c.signature.clone())
                .to_bytes(),
            &raw[..]
        );
        assert!(Certificate::parse(&raw).unwrap().allows_key_agreement());
        n += 1;
    }
    assert_eq!(n, 2);
}

struct X509Chain {
    anchor: Certificate,
    chain: Vec<Certificate>,
}

fn x509_chain() -> X509Chain {
    let (_, f) = records(CERTS)
        .into_iter()
        .find(|(k, _)| k == "x509chain")
        .unwrap();
    X509Chain {
        anchor: Certificate::parse(&h(&f, "anchor")).unwrap(),
        chain: parse_chain(&[h(&f, "ka"), h(&f, "oce")]).unwrap(),
    }
}

#[test]
fn yubikit_x509_chain() {
    let X509Chain { anchor, chain } = x509_chain();
    // The root is self-signed.
    assert!(anchor.verify_signature(anchor.public_key()));
    let ski = parse_hex("31AA55669F6067E81F33DCFD04FEDE73E5719F3D").unwrap();
    let ok = ChainPolicy {
        at: Some(at(2024, 6, 1)),
        anchor_id: Some(&ski),
        ..Default::default()
    };
    let leaf = verify_chain(&chain, anchor.public_key(), &ok).unwrap();
    assert_eq!(leaf, chain[1].public_key());
    let sk = PrivateKey::from_der(
        &parse_hex(
            "308187020100301306072A8648CE3D020106082A8648CE3D030107046D306B02010104204D61B24393669B7586D077DC3618CE95AE27EDFCCA9220CDEADE068E781F7BACA1440342000498C9109414333B7DBD223B0C9A3B86B2CE9FAF87B521A2715B0AECE060A30B1E994DDEBF1CC9036EB28D09E54A995305729651351001763EEF91949BED9D80F6",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sk.public_key(),
        leaf,
        "yubikit's sk.oce.ecka.pem is the leaf's key"
    );

    let check = |p: ChainPolicy<'_>, chain: &[Certificate]| {
        verify_chain(chain, anchor.public_key(), &p).map(|k| k.clone())
    };
    assert_eq!(
        check(
            ChainPolicy {
                at: Some(at(2024, 9, 1)),
                ..ok
            },
            &chain
        ),
        Err(ChainError::Expired { index: 0 })
    );
    assert_eq!(
        check(
            ChainPolicy {
                at: Some(at(2024, 5, 1)),
                ..ok
            },
            &chain
        ),
        Err(ChainError::NotYetValid { index: 0 })
    );
    assert!(check(ChainPolicy { at: None, ..ok }, &chain).is_ok());
    assert_eq!(
        check(
            ChainPolicy {
                anchor_id: Some(&[1, 2, 3]),
                ..ok
            },
            &chain
        ),
        Err(ChainError::BrokenLink { index: 0 })
    );
    // Leaf without its intermediate: not signed by the anchor.
    assert_eq!(
        check(
            ChainPolicy {
                anchor_id: None,
                ..ok
            },
            &chain[1..]
        ),
        Err(ChainError::BadSignature { index: 0 })
    );
    // Wrong order.
    let swapped = [chain[1].clone(), chain[0].clone()];
    assert!(check(
        ChainPolicy {
            anchor_id: None,
            ..ok
        },
        &swapped
    )
    .is_err());
    assert_eq!(
        check(ok, &[chain[0].clone(), chain[0].clone()]),
        Err(ChainError::BrokenLink { index: 1 })
    );
    // The intermediate is for certificate signing, not key agreement.
    assert_eq!(
        check(ok, &chain[..1]),
        Err(ChainError::KeyUsage { index: 0 })
    );
    assert!(check(
        ChainPolicy {
            skip_key_usage: true,
            ..ok
        },
        &chain[..1]
    )
    .is_ok());
    // Allowlist.
    let listed = vec![chain[1].serial().to_vec()];
    assert!(check(
        ChainPolicy {
            allowlist: Some(&listed),
            ..ok
        },
        &chain
    )
    .is_ok());
    let other = vec![vec![1u8], chain[0].serial().to_vec()];
    let e = check(
        ChainPolicy {
            allowlist: Some(&other),
            ..ok
        },
        &chain,
    )
    .unwrap_err();
    assert!(matches!(e, ChainError::NotAllowlisted { .. }));
    assert_eq!(e.status_word(), apdu::StatusWord::SECURITY_NOT_SATISFIED);
    assert_eq!(check(ok, &[]), Err(ChainError::Empty));
    let _ = leaf;
}

#[test]
fn openscp_transcript_codecs() {
    let text = include_str!("../../scp/tests/vectors/scp11_openscp.txt");
    let mut seen = 0;
    let mut head = HashMap::new();
    let mut keys = HashMap::new();
    let mut apdus: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (kind, f) in records(text) {
        match kind.as_str() {
            "transcript" => {
                head = f;
                apdus.clear();
            }
            "keys" => keys = f,
            "apdu" => apdus.push((h(&f, "cmd"), h(&f, "rsp"))),
            "plain" => {
                let kid = h(&head, "kid")[0];
                let kvn = h(&head, "kvn")[0];
                let mut it = apdus.iter();
                let (cmd, rsp) = it.next().unwrap();
                let gd = GetCertificates {
                    key: KeyRef::new(kid, kvn),
                };
                assert_eq!(gd.to_command().to_bytes().unwrap(), *cmd);
                assert_eq!(
                    GetCertificates::parse(&Command::parse(cmd).unwrap()).unwrap(),
                    gd
                );
                let mut r = Response::parse(rsp).unwrap();
                let mut bundle = r.data.clone();
                while r.sw.sw1() == 0x61 {
                    r = Response::parse(&it.next().unwrap().1).unwrap();
                    bundle.extend_from_slice(&r.data);
                }
                let b = CertificateBundle::parse(&bundle).unwrap();
                assert_eq!(b.to_bytes(), bundle);
                let sd = parse_chain(&b.0).unwrap();
                assert!(sd.last().unwrap().allows_key_agreement());
                // The OCE certificate, sent with PERFORM SECURITY OPERATION.
                let cert = h(&keys, "cert");
                let oce = Certificate::parse(&cert).unwrap();
                assert!(oce.allows_key_agreement());
                let pso = PerformSecurityOperation::for_chain(kvn, OCE_KID, &[cert.clone()]);
                assert_eq!(pso.len(), 1);
                let blocks = pso[0].to_short_commands().unwrap();
                let mut data = Vec::new();
                for b in &blocks {
                    let (cmd, rsp) = it.next().unwrap();
                    assert_eq!(apdu::hex(&b.to_bytes().unwrap()), apdu::hex(cmd));
                    assert_eq!(rsp, &[0x90, 0]);
                    let p = PerformSecurityOperation::parse(&Command::parse(cmd).unwrap()).unwrap();
                    assert_eq!((p.kvn, p.kid, p.more), (kvn, OCE_KID, false));
                    data.extend_from_slice(&p.certificate);
                }
                assert_eq!(data, cert);
                seen += 1;
            }
            k => panic!("{k}"),
        }
    }
    assert_eq!(seen, 7);
}

// ---- property tests ----

fn key(seed: u8, curve: Curve) -> PrivateKey {
    let mut s = vec![seed | 1; curve.field_len()];
    s[0] = 0x11;
    PrivateKey::from_scalar(curve, &s).unwrap()
}

fn body(subject: &PrivateKey, ca_id: &[u8], subject_id: &[u8], usage: &[u8]) -> GpCertificateBody {
    GpCertificateBody {
        serial: subject_id.to_vec(),
        ca_id: ca_id.to_vec(),
        subject_id: subject_id.to_vec(),
        key_usage: usage.to_vec(),
        effective: Some(GpDate::new(2025, 1, 1)),
        expiry: GpDate::new(2035, 12, 31),
        discretionary: None,
        restrictions: None,
        public_key: subject.public_key().clone(),
    }
}

/// A GP chain anchor → KA (signing) → OCE (key agreement); returns (anchor key, chain bytes).
fn gp_chain(curve: Curve) -> (PrivateKey, Vec<Vec<u8>>) {
    let ca = key(1, curve);
    let ka = key(2, Curve::P256);
    let oce = key(3, curve);
    let c1 = body(&ka, b"CA", b"KA-KLOC", &[0x00, 0x82])
        .sign(&ca)
        .unwrap();
    let c2 = body(&oce, b"KA-KLOC", b"OCE", &KEY_USAGE_KEY_AGREEMENT)
        .sign(&ka)
        .unwrap();
    (ca, vec![c1.to_bytes().to_vec(), c2.to_bytes().to_vec()])
}

fn check_gp(anchor: &PrivateKey, chain: &[Vec<u8>]) -> Result<(), ChainError> {
    let certs = parse_chain(chain)?;
    let p = ChainPolicy {
        at: Some(at(2026, 1, 1)),
        anchor_id: Some(b"CA"),
        ..Default::default()
    };
    verify_chain(&certs, anchor.public_key(), &p).map(|_| ())
}

#[test]
fn gp_chain_good_and_every_bit_flip_refused() {
    for curve in [Curve::P256, Curve::P384] {
        let (anchor, chain) = gp_chain(curve);
        check_gp(&anchor, &chain).unwrap();
        for c in 0..chain.len() {
            for i in 0..chain[c].len() * 8 {
                let mut bad = chain.clone();
                bad[c][i / 8] ^= 1 << (i % 8);
                assert!(
                    check_gp(&anchor, &bad).is_err(),
                    "{curve}: flip of bit {i} of certificate {c} accepted"
                );
            }
        }
    }
}

#[test]
fn x509_chain_every_bit_flip_refused() {
    let X509Chain { anchor, chain } = x509_chain();
    let raw: Vec<Vec<u8>> = chain.iter().map(|c| c.to_bytes().to_vec()).collect();
    let p = ChainPolicy {
        at: Some(at(2024, 6, 1)),
        ..Default::default()
    };
    for c in 0..raw.len() {
        for i in 0..raw[c].len() * 8 {
            let mut bad = raw.clone();
            bad[c][i / 8] ^= 1 << (i % 8);
            let r = parse_chain(&bad)
                .and_then(|certs| verify_chain(&certs, anchor.public_key(), &p).map(|k| k.clone()));
            assert!(r.is_err(), "flip of bit {i} of certificate {c} accepted");
        }
    }
}

#[test]
fn gp_dates() {
    let ymd = |y, m, d| GpDate::new(y, m, d).unix_start().unwrap();
    assert_eq!(ymd(1970, 1, 1), 0);
    assert_eq!(ymd(2024, 6, 1), 1_717_200_000);
    assert_eq!(
        GpDate([0x14, 0x1C, 0x0C, 0x1F]).ymd(),
        None,
        "binary, not BCD"
    );
    let (_, chain) = gp_chain(Curve::P256);
    let c = Certificate::parse(&chain[1]).unwrap();
    assert_eq!(
        c.validity().unwrap(),
        (Some(ymd(2025, 1, 1)), ymd(2035, 12, 31) + 86_399)
    );
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn gp_certificate_round_trip(
        serial in bytes(20), ca in bytes(30), subject in bytes(30), usage in bytes(3),
        eff in prop::option::of((1990u16..2100, 1u8..13, 1u8..29)),
        exp in (1990u16..2100, 1u8..13, 1u8..29),
        disc in prop::option::of(bytes(40)), restr in prop::option::of(bytes(40)),
        seed in any::<u8>(), p384 in any::<bool>(), sig in bytes(100),
    ) {
        let curve = if p384 { Curve::P384 } else { Curve::P256 };
        let b = GpCertificateBody {
            serial, ca_id: ca, subject_id: subject, key_usage: usage,
            effective: eff.map(|(y, m, d)| GpDate::new(y, m, d)),
            expiry: GpDate::new(exp.0, exp.1, exp.2),
            discretionary: disc.map(|d| (0x53, d)),
            restrictions: restr,
            public_key: key(seed, curve).public_key().clone(),
        };
        let c = b.clone().with_signature(sig);
        let parsed = GpCertificate::parse(c.to_bytes()).unwrap();
        prop_assert_eq!(&parsed, &c);
        prop_assert_eq!(parsed.body, b);
    }

    #[test]
    fn gp_certificate_parse_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Certificate::parse(&data);
        let mut d = vec![0x7F, 0x21];
        d.extend_from_slice(&data);
        let _ = Certificate::parse(&d);
    }

    #[test]
    fn codecs_round_trip(kid in 0u8..0x80, kvn in any::<u8>(), more in any::<bool>(),
                         cert in bytes(700), certs in prop::collection::vec(bytes(40), 1..4),
                         serials in prop::collection::vec(bytes(20), 0..4), klcc in any::<bool>()) {
        let k = KeyRef::new(kid, kvn);
        prop_assert_eq!(KeyRef::parse_crt(&k.to_crt()).unwrap(), k);
        let pso = PerformSecurityOperation { kvn: kvn & 0x7F, kid, more, certificate: cert.clone() };
        prop_assert_eq!(PerformSecurityOperation::parse(&pso.to_command().unwrap()).unwrap(), pso.clone());
        let blocks = pso.to_short_commands().unwrap();
        prop_assert_eq!(blocks.iter().flat_map(|b| b.data.clone()).collect::<Vec<_>>(), cert.clone());
        let gd = GetCertificates { key: k };
        prop_assert_eq!(GetCertificates::parse(&gd.to_command()).unwrap(), gd);
        // Bundles of TLV-shaped certificates.
        let certs: Vec<Vec<u8>> = certs.iter().map(|c| apdu::tlv::encode(apdu::tlv::Tag::new(0x30), c)).collect();
        let b = CertificateBundle(certs.clone());
        prop_assert_eq!(CertificateBundle::parse(&b.to_bytes()).unwrap(), b);
        for sd in [
            Scp11StoreData::CertificateBundle { key: k, certificates: certs },
            Scp11StoreData::Allowlist { key: k, serials },
            Scp11StoreData::CaIssuer { key: k, klcc, id: cert[..cert.len().min(20)].to_vec() },
        ] {
            prop_assert_eq!(Scp11StoreData::parse(&sd.to_bytes()).unwrap(), sd);
        }
    }

    #[test]
    fn codec_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = CertificateBundle::parse(&data);
        let _ = Scp11StoreData::parse(&data);
        let _ = KeyRef::parse_crt(&data);
        let cmd = Command::new(0x80, 0x2A, 3, 0x90).with_data(data.clone());
        let _ = PerformSecurityOperation::parse(&cmd);
    }
}
