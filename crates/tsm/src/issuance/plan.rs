//! What a job does: its steps, its parameters, which key sets may be on the card, and
//! how base key versions map to key version numbers.

use gp::aid::Aid;
use gp::privileges::Privileges;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::{AppSpec, JobKind};

/// One step of a job. Each is idempotent given the state of the card, which the engine
/// re-reads after an interruption before doing a step again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// Write: the card is blank (initial keys open, no other card number); record its
    /// chip identity, factory KDD and protocol.
    Check,
    /// The keys the database says are on the card open a secure channel (proof of
    /// possession, CN102056165A "verify the current dynamic key" without reading it).
    ProveKeys,
    /// STORE DATA `CF`: the KDD derived from the card number.
    SetKdd,
    /// PUT KEY: replace the key set on the card with the target one.
    PutKey,
    /// A new secure channel with the target keys opens.
    VerifyKeys,
    /// STORE DATA to the ISD: the card number (CIN, `45`) and the category's objects.
    Personalize,
    /// Load (if absent), install (if absent) and personalise an application.
    Install(Aid),
    /// Delete an application (and its load file when no other application uses it).
    Delete(Aid),
    /// STORE DATA with empty values for the CIN and the category's objects.
    ErasePerso,
    /// STORE DATA `CF`: the KDD the card came with.
    RestoreKdd,
    /// Record the result: card state, job done.
    Finish,
}

impl StepKind {
    pub fn name(&self) -> String {
        match self {
            StepKind::Check => "check".into(),
            StepKind::ProveKeys => "prove_keys".into(),
            StepKind::SetKdd => "set_kdd".into(),
            StepKind::PutKey => "put_key".into(),
            StepKind::VerifyKeys => "verify_keys".into(),
            StepKind::Personalize => "personalize".into(),
            StepKind::Install(a) => format!("install:{a}"),
            StepKind::Delete(a) => format!("delete:{a}"),
            StepKind::ErasePerso => "erase_perso".into(),
            StepKind::RestoreKdd => "restore_kdd".into(),
            StepKind::Finish => "finish".into(),
        }
    }

    pub fn parse(name: &str) -> Result<StepKind, StoreError> {
        let aid = |hex: &str| {
            apdu::parse_hex(hex)
                .ok()
                .and_then(|b| Aid::new(&b).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    what: "job step".into(),
                    detail: format!("bad AID in '{name}'"),
                })
        };
        Ok(match name {
            "check" => StepKind::Check,
            "prove_keys" => StepKind::ProveKeys,
            "set_kdd" => StepKind::SetKdd,
            "put_key" => StepKind::PutKey,
            "verify_keys" => StepKind::VerifyKeys,
            "personalize" => StepKind::Personalize,
            "erase_perso" => StepKind::ErasePerso,
            "restore_kdd" => StepKind::RestoreKdd,
            "finish" => StepKind::Finish,
            other => match other.split_once(':') {
                Some(("install", a)) => StepKind::Install(aid(a)?),
                Some(("delete", a)) => StepKind::Delete(aid(a)?),
                _ => {
                    return Err(StoreError::Corrupt {
                        what: "job step".into(),
                        detail: format!("unknown step '{other}'"),
                    })
                }
            },
        })
    }

    /// Whether the step changes the card.
    pub fn changes_card(&self) -> bool {
        !matches!(
            self,
            StepKind::Check | StepKind::ProveKeys | StepKind::VerifyKeys | StepKind::Finish
        )
    }
}

/// A key set that may be on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRef {
    /// The category's initial keys.
    Initial,
    /// Keys derived from this base key version and the card number.
    Derived(u32),
}

impl KeyRef {
    pub fn from_version(v: Option<u32>) -> KeyRef {
        v.map_or(KeyRef::Initial, KeyRef::Derived)
    }
    pub fn version(self) -> Option<u32> {
        match self {
            KeyRef::Initial => None,
            KeyRef::Derived(v) => Some(v),
        }
    }
    pub fn describe(self, kvn: u8) -> String {
        match self {
            KeyRef::Initial => format!("initial keys (KVN {kvn:02X})"),
            KeyRef::Derived(v) => format!("keys of base version {v} (KVN {kvn:02X})"),
        }
    }
}

/// The key version number of the key set derived from a base key version (one mapping for
/// the platform and the outlet's security module: `kms::kvn_for_version`).
pub use kms::kvn_for_version;

/// An application in job parameters (hex AIDs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AppParam {
    pub instance: String,
    pub package: String,
    pub module: String,
    pub privileges: String,
    pub params: String,
    pub perso: String,
}

impl From<&AppSpec> for AppParam {
    fn from(a: &AppSpec) -> Self {
        AppParam {
            instance: a.instance.to_hex(),
            package: a.package.to_hex(),
            module: a.module.to_hex(),
            privileges: apdu::hex(&a.privileges.0),
            params: apdu::hex(&a.params),
            perso: apdu::hex(&a.perso),
        }
    }
}

impl AppParam {
    pub fn spec(&self) -> Result<AppSpec, StoreError> {
        let bad = |what: &str| StoreError::Corrupt {
            what: "job parameters".into(),
            detail: format!("bad {what}"),
        };
        let aid = |h: &str, what: &str| {
            apdu::parse_hex(h)
                .ok()
                .and_then(|b| Aid::new(&b).ok())
                .ok_or_else(|| bad(what))
        };
        Ok(AppSpec {
            instance: aid(&self.instance, "instance")?,
            package: aid(&self.package, "package")?,
            module: aid(&self.module, "module")?,
            privileges: apdu::parse_hex(&self.privileges)
                .ok()
                .and_then(|b| Privileges::from_bytes(&b).ok())
                .ok_or_else(|| bad("privileges"))?,
            params: apdu::parse_hex(&self.params).map_err(|_| bad("params"))?,
            perso: apdu::parse_hex(&self.perso).map_err(|_| bad("perso"))?,
        })
    }
}

/// An application to delete (instance and load file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AppRef {
    pub instance: String,
    pub package: String,
}

/// A job's parameters, fixed when it is submitted so that a resumed job does what was
/// asked even if the category changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct Params {
    pub category: String,
    /// Base key version of the keys on the card when the job was submitted (`None`:
    /// initial keys).
    #[serde(default)]
    pub from_version: Option<u32>,
    /// Base key version the job puts on the card (write, rewrite; `None` for clear).
    #[serde(default)]
    pub to_version: Option<u32>,
    /// Applications to install.
    #[serde(default)]
    pub install: Vec<AppParam>,
    /// Applications to delete.
    #[serde(default)]
    pub delete: Vec<AppRef>,
    /// Card-specific personalisation (write): BER-TLV objects for the ISD, hex, written
    /// after the category's.
    #[serde(default)]
    pub perso: String,
    /// Tags of card-specific personalisation written by earlier writes (clear erases them).
    #[serde(default)]
    pub erase_tags: Vec<u32>,
}

impl Params {
    pub fn parse(v: &serde_json::Value) -> Result<Params, StoreError> {
        serde_json::from_value(v.clone()).map_err(|e| StoreError::Corrupt {
            what: "job parameters".into(),
            detail: e.to_string(),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The steps of a job of `kind` with these parameters.
pub(crate) fn plan(kind: JobKind, p: &Params, blank: bool) -> Vec<StepKind> {
    let aid = |h: &str| apdu::parse_hex(h).ok().and_then(|b| Aid::new(&b).ok());
    let installs = p
        .install
        .iter()
        .filter_map(|a| aid(&a.instance))
        .map(StepKind::Install);
    let deletes = p
        .delete
        .iter()
        .filter_map(|a| aid(&a.instance))
        .map(StepKind::Delete);
    let mut steps = Vec::new();
    match kind {
        JobKind::Write => {
            steps.extend([
                StepKind::Check,
                StepKind::SetKdd,
                StepKind::PutKey,
                StepKind::VerifyKeys,
                StepKind::Personalize,
            ]);
            steps.extend(installs);
        }
        JobKind::Rewrite => {
            steps.extend([StepKind::ProveKeys, StepKind::PutKey, StepKind::VerifyKeys]);
        }
        JobKind::Clear if blank => {}
        JobKind::Clear => {
            steps.push(StepKind::ProveKeys);
            steps.extend(deletes);
            steps.extend([
                StepKind::ErasePerso,
                StepKind::RestoreKdd,
                StepKind::PutKey,
                StepKind::VerifyKeys,
            ]);
        }
        JobKind::AppLoad => {
            steps.push(StepKind::ProveKeys);
            steps.extend(installs);
        }
        JobKind::AppDelete => {
            steps.push(StepKind::ProveKeys);
            steps.extend(deletes);
        }
        // SSD jobs are planned and run by `crate::ssd`, never by the issuer.
        JobKind::SsdCreate | JobKind::SsdRotate | JobKind::SsdRenew | JobKind::SsdReplace => {}
    }
    steps.push(StepKind::Finish);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn install_and_delete_names_round_trip(bytes in proptest::collection::vec(any::<u8>(), 5..=16)) {
            let a = Aid::new(&bytes).unwrap();
            prop_assert_eq!(StepKind::parse(&StepKind::Install(a).name()).unwrap(), StepKind::Install(a));
            prop_assert_eq!(StepKind::parse(&StepKind::Delete(a).name()).unwrap(), StepKind::Delete(a));
        }

        /// Stored step names are data: any text parses or is refused, never panics.
        #[test]
        fn step_names_never_panic(name in ".{0,40}") {
            let _ = StepKind::parse(&name);
        }

        #[test]
        fn params_round_trip(
            from in proptest::option::of(1u32..1000),
            to in proptest::option::of(1u32..1000),
            cat in "[a-z]{1,8}/[a-z]{1,8}",
            inst in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 5..=16), 0..3),
            params in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let apps: Vec<AppParam> = inst
                .iter()
                .map(|b| {
                    let a = Aid::new(b).unwrap();
                    AppParam::from(&AppSpec {
                        instance: a,
                        package: a,
                        module: a,
                        privileges: Privileges::default(),
                        params: params.clone(),
                        perso: vec![],
                    })
                })
                .collect();
            let p = Params { category: cat, from_version: from, to_version: to, install: apps.clone(), delete: vec![], ..Default::default() };
            let back = Params::parse(&p.to_json()).unwrap();
            prop_assert_eq!(&back, &p);
            for a in &apps {
                prop_assert_eq!(AppParam::from(&a.spec().unwrap()), a.clone());
            }
        }

        /// Parameters read back from the database are data too.
        #[test]
        fn params_from_any_json_never_panic(v in any::<u64>(), s in ".{0,10}") {
            let _ = Params::parse(&serde_json::json!({"category": s, "from_version": v}));
            let _ = Params::parse(&serde_json::json!([s]));
        }
    }

    #[test]
    fn step_names_round_trip() {
        let a = Aid::new(&[0xF0, 0x43, 0x57, 0x44, 0x53, 0x01, 0x01]).unwrap();
        for s in [
            StepKind::Check,
            StepKind::ProveKeys,
            StepKind::SetKdd,
            StepKind::PutKey,
            StepKind::VerifyKeys,
            StepKind::Personalize,
            StepKind::Install(a),
            StepKind::Delete(a),
            StepKind::ErasePerso,
            StepKind::RestoreKdd,
            StepKind::Finish,
        ] {
            assert_eq!(StepKind::parse(&s.name()).unwrap(), s);
        }
        assert!(StepKind::parse("install:zz").is_err());
        assert!(StepKind::parse("bogus").is_err());
    }

    #[test]
    fn plans() {
        let p = Params {
            category: "c".into(),
            from_version: None,
            to_version: Some(1),
            install: vec![],
            delete: vec![],
            ..Default::default()
        };
        let names: Vec<String> = plan(JobKind::Write, &p, true)
            .iter()
            .map(StepKind::name)
            .collect();
        assert_eq!(
            names,
            [
                "check",
                "set_kdd",
                "put_key",
                "verify_keys",
                "personalize",
                "finish"
            ]
        );
        assert_eq!(plan(JobKind::Clear, &p, true), vec![StepKind::Finish]);
        assert_eq!(Params::parse(&p.to_json()).unwrap(), p);
    }
}
