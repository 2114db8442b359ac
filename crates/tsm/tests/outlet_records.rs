//! Install records uploaded by outlets (issue #11), on SQLite and PostgreSQL: stored once
//! per `(outlet, seq)`, the chain links checked, another hash for a held number refused,
//! another tenant refused, nothing of a refused upload stored, the upload audited.

mod common;

use common::backends;
use sha2::{Digest, Sha256};
use tsm::model::OutletRecord;
use tsm::Error;

/// A chain of `n` records of `outlet` from 1 (the store checks links, not content hashes:
/// the server checks those with the outlet's canonical encoding).
fn chain(outlet: &str, n: u64) -> Vec<OutletRecord> {
    let mut prev = [0u8; 32];
    (1..=n)
        .map(|seq| {
            let hash: [u8; 32] = Sha256::new()
                .chain_update(prev)
                .chain_update(seq.to_be_bytes())
                .finalize()
                .into();
            let r = OutletRecord {
                outlet: outlet.into(),
                seq,
                at_ms: 1_700_000_000_000 + seq as i64,
                card: "4111111111111111".into(),
                application: "wallet".into(),
                package_sha256: "ab".repeat(32),
                result: "ok".into(),
                code: "ok".into(),
                detail: format!("{{\"n\":{seq}}}"),
                prev_hash: prev,
                hash,
            };
            prev = hash;
            r
        })
        .collect()
}

#[test]
fn records_arrive_once_and_conflicts_are_refused() {
    for b in backends() {
        let s = b.store();
        let all = chain("outlet-1", 5);
        let up = s
            .store_outlet_records("acme/op", "acme", "outlet-1", &all[..3])
            .unwrap();
        assert_eq!((up.stored, up.already, up.through), (3, 0, 3), "{}", b.name);
        // The same again, and overlapping with new ones: the held ones count as already.
        let up = s
            .store_outlet_records("acme/op", "acme", "outlet-1", &all[..3])
            .unwrap();
        assert_eq!((up.stored, up.already, up.through), (0, 3, 3), "{}", b.name);
        let up = s
            .store_outlet_records("acme/op", "acme", "outlet-1", &all[2..])
            .unwrap();
        assert_eq!((up.stored, up.already, up.through), (2, 1, 5), "{}", b.name);
        let held = s.outlet_records(Some("outlet-1")).unwrap();
        assert_eq!(held.len(), 5);
        assert_eq!(held[4].record, all[4]);
        assert_eq!(held[0].tenant, "acme");

        // Another hash under a held number: 409, and the new record after it not stored.
        let mut other = chain("outlet-1", 6);
        other[4].hash[0] ^= 1;
        let e = s
            .store_outlet_records("acme/op", "acme", "outlet-1", &other[4..])
            .unwrap_err();
        assert!(matches!(e, Error::RecordConflict(_)), "{e}");
        assert_eq!(s.outlet_records(Some("outlet-1")).unwrap().len(), 5);
        // A record whose link is not the held previous hash, or that skips one.
        let mut unlinked = chain("outlet-1", 6)[5].clone();
        unlinked.prev_hash = [9; 32];
        assert!(matches!(
            s.store_outlet_records("acme/op", "acme", "outlet-1", &[unlinked]),
            Err(Error::RecordConflict(_))
        ));
        let gap = chain("outlet-1", 8)[7].clone();
        assert!(matches!(
            s.store_outlet_records("acme/op", "acme", "outlet-1", &[gap]),
            Err(Error::RecordConflict(_))
        ));
        // Not consecutive, or naming another outlet: invalid.
        let c = chain("outlet-1", 8);
        assert!(matches!(
            s.store_outlet_records("acme/op", "acme", "outlet-1", &[c[5].clone(), c[7].clone()]),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            s.store_outlet_records("acme/op", "acme", "outlet-2", &c[5..6]),
            Err(Error::Invalid(_))
        ));
        // Another tenant may not write this outlet's records.
        assert!(matches!(
            s.store_outlet_records("bank/op", "bank", "outlet-1", &c[5..6]),
            Err(Error::Forbidden { .. })
        ));
        assert_eq!(s.outlet_records(None).unwrap().len(), 5);
        // The uploads that stored something are audited, and the chain still verifies.
        let audited = s
            .audit_entries(0, 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "outlet.records")
            .count();
        assert_eq!(audited, 2, "{}", b.name);
        assert!(s.audit_verify().unwrap().is_ok());
    }
}
