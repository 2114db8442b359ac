//! Known answers: the keys a complete write puts on a card, checked by their KCVs against
//! public diversification vectors (`tests/vectors/write_kcv.txt`).

mod common;

use common::*;
use kms::KeyKind;
use tsm::model::InitialKeys;
use tsm::CategorySpec;

const VECTORS: &str = include_str!("vectors/write_kcv.txt");

#[test]
fn written_keys_match_public_diversification_vectors() {
    let mut n = 0;
    for line in VECTORS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let v: Vec<&str> = line.split_whitespace().collect();
        let [kind, base, number, enc, mac, dek] = v[..] else {
            panic!("bad vector line: {line}")
        };
        let (kind, mut card, kvn) = match kind {
            "3DES" => (KeyKind::Des3, SimCard::scp02(), 0x20),
            _ => (KeyKind::Aes, SimCard::scp03(), 0x30),
        };
        let f = Fixture::new(sqlite(), kind, kvn, false);
        let category = "kat/vector";
        f.store()
            .create_category(
                "admin",
                &CategorySpec {
                    id: category.into(),
                    tenant: "acme".into(),
                    description: line.into(),
                    initial_keys: InitialKeys::GpTestKey,
                    initial_kvn: kvn,
                    perso: vec![],
                },
            )
            .unwrap();
        let info = import_key(
            f.keys.as_ref(),
            category,
            kind,
            &apdu::parse_hex(base).unwrap(),
        );
        f.store()
            .register_key_version(
                "admin",
                category,
                info.version,
                category,
                kind,
                info.kcv,
                true,
            )
            .unwrap();
        let out = f
            .issuer
            .write(&f.ci, number, category, &mut card)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let steps = f.store().job_steps(out.job.id).unwrap();
        let put = steps.iter().find(|s| s.name == "put_key").unwrap();
        let kcvs = &put.detail.as_ref().unwrap()["kcvs"];
        assert_eq!(kcvs, &serde_json::json!([enc, mac, dek]), "{line}");
        // And the card opens with the base key and GP's diversification of its KDD.
        open(
            &card,
            base_spec(
                base,
                kms::diversification_for(kind),
                tsm::kvn_for_version(info.version, kvn),
            ),
        )
        .unwrap_or_else(|e| panic!("{line}: {e}"));
        n += 1;
    }
    assert_eq!(n, 4);
}
