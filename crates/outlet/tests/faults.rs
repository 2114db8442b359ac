//! The card pulled at every APDU of an install (its command lost, or carried out with its
//! answer lost), then `resume` or the next click: the card ends consistent with the
//! module's records (installed and registered with an `ok` record, or untouched), never a
//! half-loaded file the module believes installed. A refusal by the card (card full) rolls
//! the install back.

mod common;

use std::str::FromStr;

use common::*;
use gp::aid::Aid;
use outlet::InstallError;

/// Whether the card holds the registration applet's load file and instance (and its life
/// cycle), through an independent channel.
fn on_card(card: &card::VirtualChannel) -> (bool, Option<u8>) {
    let mut gp = gp_client(card);
    let reg = gpclient::ops::registry(&mut gp).unwrap();
    let lf = reg
        .load_files
        .iter()
        .any(|e| e.aid == Aid::from_str(REG_PKG).unwrap());
    let inst = reg
        .applications
        .iter()
        .find(|e| e.aid == Aid::from_str(REG_INSTANCE).unwrap())
        .map(|e| e.life_cycle);
    (lf, inst)
}

/// The instance signs with the key of the certificate in the module's `ok` record.
fn registered(f: &Fixture, card: &card::VirtualChannel, number: &str) {
    let records = f.module.records().unwrap();
    let ok: Vec<_> = records
        .iter()
        .filter(|r| r.card == number && r.result == "ok")
        .collect();
    assert_eq!(ok.len(), 1, "card {number}: one ok record");
    let detail: serde_json::Value = serde_json::from_str(&ok[0].detail).unwrap();
    let pem = detail["registration"][0]["certificate_pem"]
        .as_str()
        .unwrap();
    let (_, der) = pem_rfc7468::decode_vec(pem.as_bytes()).unwrap();
    let cert = pki::Certificate::from_der(&der).unwrap();
    let mut gp = gp_client(card);
    gp.select(&Aid::from_str(REG_INSTANCE).unwrap()).unwrap();
    let sig = gp
        .send_ok(
            gpclient::Operation::Apdu,
            &apdu::Command::new(0x80, 0x2A, 0x00, 0x01)
                .with_data(b"hello".to_vec())
                .with_le(256),
            "SIGN",
        )
        .unwrap()
        .data;
    cert.public_key().unwrap().verify(b"hello", &sig).unwrap();
}

#[test]
fn card_pulled_at_every_apdu_then_resume_or_the_next_click() {
    let Some(f) = Fixture::new() else { return };
    f.module.add(&f.wallet_package()).unwrap();
    // How many APDUs a whole install takes.
    let mut probe = Recording::new(f.issuer.card("4000000000000000"));
    f.module.install(&mut probe, "wallet", &mut |_| {}).unwrap();
    let apdus = probe.sent().len();
    assert!(apdus > 20, "{apdus}");
    let mut serial = 1u64;
    for at in 0..apdus {
        for after in [false, true] {
            for next_click in [false, true] {
                serial += 1;
                let number = format!("40000000{serial:08}");
                let card = f.issuer.card(&number);
                let mut cut = Cut::new(card.clone(), at, after);
                let e = f
                    .module
                    .install(&mut cut, "wallet", &mut |_| {})
                    .expect_err("the card was pulled");
                assert!(
                    matches!(e, InstallError::CardRemoved),
                    "cut at {at} (after: {after}): {e}"
                );
                // Whatever the module has not recorded as installed is not on the card as
                // installed: no ok record yet.
                assert!(f
                    .module
                    .records()
                    .unwrap()
                    .iter()
                    .all(|r| r.card != number || r.result != "ok"));
                let mut again = card.clone();
                if next_click {
                    f.module
                        .install(&mut again, "wallet", &mut |_| {})
                        .unwrap_or_else(|e| {
                            panic!("cut at {at} (after: {after}), next click: {e}")
                        });
                } else {
                    // Resume finishes the install, finds nothing to do (the card was pulled
                    // before anything changed), or rolls it back (the card refused to
                    // finish); the next click then says it is there, or installs it.
                    match f.module.resume(&mut again, &mut |_| {}) {
                        Ok(Some(o)) => assert_eq!(o.card, number),
                        Ok(None) => assert_eq!(
                            on_card(&card),
                            (false, None),
                            "cut at {at}: nothing pending, nothing on the card"
                        ),
                        Err(e) => {
                            assert!(f.module.pending().unwrap().is_empty(), "cut at {at}: {e}");
                            assert_eq!(
                                on_card(&card),
                                (false, None),
                                "cut at {at}: rolled back ({e})"
                            );
                            let last = f.module.records().unwrap().pop().unwrap();
                            assert_eq!(last.result, "rolled_back", "cut at {at}: {e}");
                        }
                    }
                    let finished = resumed_was_some(&f, &number);
                    let second = f.module.install(&mut again, "wallet", &mut |_| {});
                    match (finished, second) {
                        (true, Err(InstallError::AlreadyPresent(_))) => {}
                        (false, Ok(_)) => {}
                        (done, other) => {
                            panic!("cut at {at} (after: {after}): resumed {done}, then {other:?}")
                        }
                    }
                }
                assert!(f.module.pending().unwrap().is_empty(), "cut at {at}");
                assert_eq!(
                    on_card(&card),
                    (true, Some(0x0F)),
                    "cut at {at} (after: {after})"
                );
                registered(&f, &card, &number);
            }
        }
    }
    let report = f.module.verify_records().unwrap();
    assert!(report.ok, "{report:?}");
}

/// Whether the module holds an ok record for the card (the resume finished its install).
fn resumed_was_some(f: &Fixture, number: &str) -> bool {
    f.module
        .records()
        .unwrap()
        .iter()
        .any(|r| r.card == number && r.result == "ok")
}

/// A card that answers `status` (unprotected, as a card does for an error) to the `n`-th
/// command with instruction `ins`, which it never sees: a card that runs out of room.
struct Refusing<C> {
    inner: C,
    ins: u8,
    n: usize,
    seen: usize,
    status: [u8; 2],
}

impl<C: transport::CardChannel> transport::CardChannel for Refusing<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, transport::TransportError> {
        if capdu.get(1) == Some(&self.ins) {
            self.seen += 1;
            if self.seen == self.n {
                return Ok(self.status.to_vec());
            }
        }
        self.inner.transmit_raw(capdu)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), transport::TransportError> {
        self.inner.reset()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

#[test]
fn a_card_that_refuses_is_rolled_back() {
    let Some(f) = Fixture::new() else { return };
    f.module.add(&f.wallet_package()).unwrap();
    // Card full at the last LOAD block (nothing registered yet), at the INSTALL [for
    // install] (the load file is there: deleted), at the STORE DATA of the registration
    // (the instance is there: deleted with its load file and the module's keys).
    for (serial, ins, n, code) in [
        (1, 0xE8, 1, "card_full"),
        (2, 0xE6, 2, "card_full"),
        (3, 0xE2, 1, "error"),
    ] {
        let number = format!("42000000000000{serial:02}");
        let card = f.issuer.card(&number);
        let mut refusing = Refusing {
            inner: card.clone(),
            ins,
            n,
            seen: 0,
            status: if code == "card_full" {
                [0x6A, 0x84]
            } else {
                [0x6A, 0x80]
            },
        };
        let e = f
            .module
            .install(&mut refusing, "wallet", &mut |_| {})
            .unwrap_err();
        assert_eq!(e.code(), code, "{ins:02X}: {e}");
        let last = f.module.records().unwrap().pop().unwrap();
        assert_eq!(
            (last.result.as_str(), last.code.as_str()),
            ("rolled_back", code),
            "{ins:02X}"
        );
        assert!(f.module.pending().unwrap().is_empty());
        assert_eq!(on_card(&card), (false, None), "{ins:02X}: rolled back");
        let secrets = kms::open_secret_keys(&f.config).unwrap();
        assert!(secrets.list(&format!("reg/{number}/")).unwrap().is_empty());
        // The next click installs it.
        let mut again = card.clone();
        f.module.install(&mut again, "wallet", &mut |_| {}).unwrap();
        registered(&f, &card, &number);
    }
    assert!(f.module.verify_records().unwrap().ok);
}
