//! A card that answers nonsense: the workflows never panic, never leave a job running, and
//! keep the audit chain intact.

mod common;

use common::*;
use kms::KeyKind;
use proptest::prelude::*;
use tsm::model::JobState;
use tsm::Request;

/// Forwards to a real virtual card, but replaces or mangles chosen responses.
struct Chaos {
    card: SimCard,
    n: usize,
    /// (APDU index, how to mangle).
    faults: Vec<(usize, Mangle)>,
}

#[derive(Debug, Clone)]
enum Mangle {
    /// Answer these bytes instead.
    Replace(Vec<u8>),
    /// Flip one bit of the real answer.
    Flip(usize, u8),
    /// Cut the real answer to this length.
    Truncate(usize),
}

impl transport::CardChannel for Chaos {
    fn transmit_raw(&mut self, c: &[u8]) -> Result<Vec<u8>, transport::TransportError> {
        let i = self.n;
        self.n += 1;
        let mut r = self.card.transmit_raw(c)?;
        for (at, m) in &self.faults {
            if *at == i {
                match m {
                    Mangle::Replace(b) => r = b.clone(),
                    Mangle::Flip(pos, bit) => {
                        if !r.is_empty() {
                            let p = pos % r.len();
                            r[p] ^= 1 << (bit % 8);
                        }
                    }
                    Mangle::Truncate(len) => r.truncate(*len),
                }
            }
        }
        Ok(r)
    }
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
    fn reset(&mut self) -> Result<(), transport::TransportError> {
        self.card.reset()
    }
    fn name(&self) -> String {
        "chaos".into()
    }
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Mangle::Replace),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mangle::Flip(p, b)),
        (0usize..8).prop_map(Mangle::Truncate),
    ]
}

fn next_number() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(9_000_000);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn workflows_survive_a_lying_card(
        faults in proptest::collection::vec((0usize..40, mangle()), 1..4),
        workflow in 0u8..3,
    ) {
        let f = Fixture::new(sqlite(), KeyKind::Aes, 0x30, true);
        let number = next_number();
        let card = SimCard::scp03();
        if workflow > 0 {
            f.issuer.write(&f.ci, &number, CATEGORY, &mut card.clone()).unwrap();
        }
        let req = match workflow {
            0 => Request::Write { card_number: number.clone(), category: CATEGORY.into(), install_apps: true, perso: Vec::new() },
            1 => Request::Rewrite { card_number: number.clone(), category: CATEGORY.into(), to_version: Some(1) },
            _ => Request::Clear { card_number: number.clone(), category: CATEGORY.into() },
        };
        let mut chaos = Chaos { card: card.clone(), n: 0, faults };
        // Rewrite to the version the card already has is refused up front; that is fine too.
        let _ = f.issuer.execute(&f.ci, &req, &mut chaos);
        // Whatever happened, no job is left running, and the log verifies.
        for job in f.store().jobs_of_card(&number).unwrap() {
            prop_assert_ne!(job.state, JobState::Running);
        }
        // A job the lies left pending finishes on the honest card, or fails cleanly.
        if f.store().open_job_for_card(&number).unwrap().is_some() {
            let _ = f.issuer.resume(&f.ci, &number, &mut card.clone());
        }
        prop_assert!(f.store().open_job_for_card(&number).unwrap().is_none_or(|j| j.state != JobState::Running));
        prop_assert!(f.store().audit_verify().unwrap().is_ok());
        // A job recorded as done left the card as the database says.
        let last = f.store().jobs_of_card(&number).unwrap().pop().unwrap();
        if last.state == JobState::Done {
            let row = f.store().card(&number).unwrap().unwrap();
            let spec = match row.key_version {
                Some(v) => base_spec(BASE_V1, f.diversification(), tsm::kvn_for_version(v, 0x30)),
                None => test_key_spec(0x30),
            };
            let mut c = open(&card, spec).map_err(|e| {
                TestCaseError::fail(format!("{row:?} but the card does not open: {e}"))
            })?;
            let reg = gpclient::ops::registry(&mut c).unwrap();
            let mut on_card: Vec<_> = reg.applications.iter().map(|e| e.aid).filter(|a| *a != gp::aid::ISD_AID).collect();
            let mut in_db: Vec<_> = f.store().card_apps(&number).unwrap().iter().map(|a| a.instance).collect();
            on_card.sort();
            in_db.sort();
            prop_assert_eq!(on_card, in_db);
        }
    }
}
