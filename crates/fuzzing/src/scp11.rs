//! SCP11 parsers: certificates and chains (`gp::cert`), the SCP11 command codecs
//! (`gp::scp11`), and both ends of MUTUAL/INTERNAL AUTHENTICATE (`scp::scp11`).

use apdu::{Command, Response, StatusWord};
use gp::cert::{self, Certificate, ChainPolicy};
use gp::scp11::{
    CertificateBundle, GetCertificates, KeyRef, PerformSecurityOperation, Scp11StoreData,
};
use scp::scp11::{
    card_authenticate, AuthRequest, AuthResponse, CardParams, Curve, HostAuth, OceKeyAgreement,
    Params, PrivateKey, Variant,
};

fn fixed_key(curve: Curve, seed: u8) -> PrivateKey {
    let mut s = vec![seed; curve.field_len()];
    s[0] = 0x31;
    PrivateKey::from_scalar(curve, &s).expect("a fixed valid scalar")
}

/// Certificates and chains. Byte 0: b1 picks the verification time (none or 2026-01-01),
/// b2 an allowlist holding the serial `01`, b3 the anchor curve (P-256/P-384). The rest is
/// read as one certificate, as a `BF21` bundle, and as the value of a `BF21` (certificates
/// back to back) whose chain is verified against a fixed anchor. Never panics; a GP
/// certificate that parses re-encodes (from its fields) to bytes that parse to the same
/// certificate.
pub fn scp11_certificates(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if let Ok(c) = Certificate::parse(rest) {
        let _ = (
            c.validity(),
            c.allows_key_agreement(),
            c.serial(),
            c.public_key(),
        );
        if let Certificate::Gp(g) = &c {
            let again = g.body.clone().with_signature(g.signature.clone());
            let reparsed =
                cert::GpCertificate::parse(again.to_bytes()).expect("re-encoding parses");
            assert_eq!(reparsed.body, g.body);
        }
    }
    let _ = CertificateBundle::parse(rest);
    if let Ok(bundle) = CertificateBundle::parse_value(rest) {
        assert_eq!(
            CertificateBundle::parse(&bundle.to_bytes()).as_ref(),
            Ok(&bundle)
        );
        if let Ok(chain) = cert::parse_chain(&bundle.0) {
            let curve = if flags & 4 != 0 {
                Curve::P384
            } else {
                Curve::P256
            };
            let anchor = fixed_key(curve, 7);
            let allow = vec![vec![1u8]];
            let policy = ChainPolicy {
                at: (flags & 1 != 0).then_some(1_767_225_600),
                allowlist: (flags & 2 != 0).then_some(allow.as_slice()),
                ..Default::default()
            };
            if let Err(e) = cert::verify_chain(&chain, anchor.public_key(), &policy) {
                let _ = (e.status_word(), e.to_string());
            }
        }
    }
}

/// SCP11 command codecs on the card side: the input is a command APDU (`Command::parse`)
/// read as PERFORM SECURITY OPERATION (then its certificate), GET DATA `BF21`, and its data
/// as an SCP11 STORE DATA and an `A6` key reference. Never panics; what parses re-encodes
/// to something that parses the same.
pub fn scp11_pso(data: &[u8]) {
    let Ok(cmd) = Command::parse(data) else {
        return;
    };
    if let Ok(p) = PerformSecurityOperation::parse(&cmd) {
        let _ = Certificate::parse(&p.certificate);
        if let Ok(again) = p.to_command() {
            assert_eq!(PerformSecurityOperation::parse(&again).as_ref(), Ok(&p));
        }
        if let Ok(blocks) = p.to_short_commands() {
            let joined: Vec<u8> = blocks.iter().flat_map(|b| b.data.clone()).collect();
            assert_eq!(joined, p.certificate);
        }
    }
    if let Ok(g) = GetCertificates::parse(&cmd) {
        assert_eq!(GetCertificates::parse(&g.to_command()), Ok(g));
    }
    if let Ok(s) = Scp11StoreData::parse(&cmd.data) {
        assert_eq!(Scp11StoreData::parse(&s.to_bytes()), Ok(s));
    }
    if let Ok(k) = KeyRef::parse_crt(&cmd.data) {
        assert_eq!(KeyRef::parse_crt(&k.to_crt()), Ok(k));
    }
}

/// The card's side of MUTUAL/INTERNAL AUTHENTICATE. Byte 0: b1–b2 the SD key's variant
/// (a, b, c), b3 the curve, b4 S16. The rest is the command data, parsed and answered
/// with fixed SD and OCE keys. Never panics; a request that parses re-encodes to one that
/// parses the same, and an accepted request gives a response the host parser reads.
pub fn scp11_auth_card(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let variant = match flags & 3 {
        0 => Variant::A,
        1 => Variant::B,
        _ => Variant::C,
    };
    let curve = if flags & 4 != 0 {
        Curve::P384
    } else {
        Curve::P256
    };
    if let Ok(req) = AuthRequest::parse(rest, curve) {
        assert_eq!(
            AuthRequest::parse(&req.to_bytes(), curve).as_ref(),
            Ok(&req)
        );
    }
    let sk_sd = fixed_key(curve, 1);
    let oce = fixed_key(curve, 2);
    let p = CardParams {
        sk_sd: &sk_sd,
        pk_oce: Some(oce.public_key()),
        variant,
        s16: flags & 8 != 0,
    };
    if let Ok((resp, mut session)) = card_authenticate(&p, rest) {
        let r = AuthResponse::parse(&resp).expect("the card's own answer parses");
        assert_eq!(r.to_bytes(), resp);
        let _ = session.unwrap(&Command::new(0x84, 0xCA, 0, 0x66).with_data(rest.to_vec()));
    }
}

/// The host's side: the input is the card's answer to MUTUAL/INTERNAL AUTHENTICATE (byte
/// 0: variant and curve as in [`scp11_auth_card`]; the rest is the response data, SW
/// `9000`), checked against a fixed request, SD key and OCE key. Never panics; an
/// accepted answer (only the card's true one) gives a working session.
pub fn scp11_auth_host(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let variant = match flags & 3 {
        0 => Variant::A,
        1 => Variant::B,
        _ => Variant::C,
    };
    let curve = if flags & 4 != 0 {
        Curve::P384
    } else {
        Curve::P256
    };
    if let Ok(r) = AuthResponse::parse(rest) {
        assert_eq!(AuthResponse::parse(&r.to_bytes()).as_ref(), Ok(&r));
    }
    let sk_sd = fixed_key(curve, 1);
    let oce = fixed_key(curve, 2);
    let Ok(auth) = HostAuth::with_ephemeral(Params::new(variant, 1), fixed_key(curve, 3)) else {
        return;
    };
    let resp = Response::new(rest.to_vec(), StatusWord::SUCCESS);
    let r = auth.finish(
        &resp,
        sk_sd.public_key(),
        Some(&oce as &dyn OceKeyAgreement),
    );
    if let Ok(mut session) = r {
        let _ = session.wrap(&Command::new(0x80, 0xCA, 0, 0x66).with_le(256));
    }
}
