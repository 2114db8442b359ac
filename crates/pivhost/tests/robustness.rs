//! Whatever a card (or a relay pretending to be one) answers, the client returns an error
//! and never panics.

use pivhost::{objects, MgmtAlgorithm, MgmtKey, PivAlgorithm, PivClient, Slot};
use proptest::prelude::*;
use transport::{CardChannel, TransportError};

/// A card that answers each command with the next scripted response.
struct Scripted(Vec<Vec<u8>>);

impl CardChannel for Scripted {
    fn transmit_raw(&mut self, _: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.0.is_empty() {
            return Err(TransportError::NoResponse("script ended".into()));
        }
        Ok(self.0.remove(0))
    }
    fn atr(&self) -> Vec<u8> {
        Vec::new()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn name(&self) -> String {
        "scripted".into()
    }
}

fn response() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (proptest::collection::vec(any::<u8>(), 0..80), any::<u8>()).prop_map(|(mut v, b)| {
            v.extend([0x90, 0x00]);
            v[0] = [0x7C, 0x53, 0x7F, 0x61][b as usize % 4];
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_answers_never_panic(script in proptest::collection::vec(response(), 0..6)) {
        let mut piv = PivClient::new(Scripted(script.clone()));
        let _ = piv.select();
        let _ = piv.pin_status();
        let _ = piv.verify_pin(b"123456");
        let _ = piv.authenticate(&MgmtKey::default_for(MgmtAlgorithm::Tdes).unwrap());
        let _ = piv.management_key_algorithm();
        let mut piv = PivClient::new(Scripted(script.clone()));
        let _ = piv.generate(Slot::SIGNATURE, PivAlgorithm::EccP256);
        let _ = piv.generate(Slot::SIGNATURE, PivAlgorithm::Rsa2048);
        let _ = piv.sign_digest(Slot::SIGNATURE, PivAlgorithm::Rsa2048, &[0; 32]);
        let mut piv = PivClient::new(Scripted(script));
        let _ = piv.read_certificate(Slot::SIGNATURE);
        let _ = piv.serial();
    }

    #[test]
    fn certificate_object_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = objects::decode_certificate_object(&bytes);
    }

    #[test]
    fn certificate_object_round_trip(der in proptest::collection::vec(any::<u8>(), 1..2000)) {
        let obj = objects::encode_certificate_object(&der);
        prop_assert_eq!(objects::decode_certificate_object(&obj).unwrap(), der);
    }
}

#[test]
fn certificate_object_errors() {
    use objects::decode_certificate_object as d;
    assert!(matches!(
        d(&[0x70, 0x01, 0x30, 0x71, 0x01, 0x01]),
        Err(pivhost::PivError::CompressedCertificate)
    ));
    for bad in [
        &[][..],
        &[0x71, 0x01, 0x00],
        &[0x70, 0x00],
        &[0x70, 0x01, 0x30, 0x70, 0x01, 0x30],
        &[0x70, 0x01, 0x30, 0xFE, 0x01, 0x00],
        &[0x70, 0x01, 0x30, 0x99, 0x00],
        &[0x70, 0x05, 0x30],
    ] {
        assert!(d(bad).is_err(), "{bad:02X?}");
    }
    // 72 (MSCUID) is tolerated; 71 and FE are optional.
    assert_eq!(d(&[0x70, 0x01, 0x30, 0x72, 0x00]).unwrap(), [0x30]);
}
