//! The manifest: what a package holds and how the outlet installs and registers each
//! application. TOML (`manifest.toml` in the archive); the provider writes the template and
//! `package build` completes it (`sha256`, `size`, `package_aid`, `applet`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Refusal;

/// The value of [`Manifest::format`] this version writes and reads.
pub const FORMAT: &str = "cardwright-package/1";

/// A package manifest (see `docs/PACKAGE.md` for every field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The application provider, as shown on the outlet's page.
    pub provider: String,
    /// The package is valid from this instant (RFC 3339; a TOML offset date-time or string)...
    #[serde(with = "instant")]
    pub not_before: OffsetDateTime,
    /// ... until this one (RFC 3339).
    #[serde(with = "instant")]
    pub not_after: OffsetDateTime,
    /// The applications, at least one; names unique.
    #[serde(rename = "application")]
    pub applications: Vec<Application>,
}

/// One application of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Short name, `[a-z0-9][a-z0-9_-]{0,31}`: the CLI's and the archive's name for it.
    pub name: String,
    /// What the page shows ("Transit wallet").
    pub title: String,
    /// The provider's version string ("1.2.0").
    pub version: String,
    /// Path of the load file (CAP) in the archive: `load/<name>.cap` (`package build`
    /// fills it in when the template leaves it out).
    #[serde(default)]
    pub load_file: String,
    /// SHA-256 of the load file (the whole CAP file as stored in the archive), hex.
    #[serde(default)]
    pub sha256: String,
    /// Size of the load file in bytes.
    #[serde(default)]
    pub size: u64,
    /// The CAP's package AID (hex); `package build` fills it in from the CAP, verification
    /// checks that the CAP says the same.
    #[serde(default)]
    pub package_aid: String,
    /// The applet (executable module) AID to instantiate (hex; default the CAP's first).
    #[serde(default)]
    pub applet: String,
    /// The instance AID (hex; default the applet AID).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// Privileges of the instance, by the names `card install --privs` takes; verification
    /// refuses any the trust anchor's entry does not allow (see [`crate::TrustAnchor`]).
    #[serde(default)]
    pub privileges: Vec<String>,
    /// Application-specific install parameters (the value of `C9`), hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub install_params: String,
    /// The security domain to load under and to open the channel to (hex AID; default the
    /// card's ISD).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub security_domain: String,
    /// Pre-computed DAP blocks (GP 2.3.1 §9.2.1), sent with the LOAD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dap: Vec<DapBlock>,
    /// Pre-computed Delegated Management tokens (GP 2.3.1 §D.3), for a security domain with
    /// Delegated Management.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// The registration recipe, run after INSTALL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registration: Vec<RegistrationKey>,
}

/// A DAP block: the SD that verifies it and the signature (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DapBlock {
    /// The verifying security domain's AID, hex.
    pub security_domain: String,
    /// The signature over the load file data block hash, hex.
    pub signature: String,
}

/// Delegated Management tokens (hex) for INSTALL \[for load\] and INSTALL \[for install\].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// The load token.
    pub load: String,
    /// The install token.
    pub install: String,
}

/// One key of the registration recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationKey {
    /// The key's name in records ("sign", "mac").
    pub id: String,
    /// What kind of key.
    pub kind: KeyKind,
    /// Where it is generated.
    pub generate: Generate,
    /// The application's key slot (1–15).
    pub slot: u8,
    /// For keys generated on the card: the subject common name of the certificate the
    /// module issues for the public key (`{card}` is replaced by the card number's last 4
    /// digits and `{app}` by the application name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Registration key kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// An ECDSA key pair on NIST P-256 (generate = card; the module certifies it).
    EcP256,
    /// An AES-128 key (generate = module; loaded by STORE DATA under the channel's DEK).
    Aes128,
    /// An AES-256 key (like AES-128).
    Aes256,
}

/// Where a registration key is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generate {
    /// On the card, by the application; the private key never leaves it.
    Card,
    /// In the security module (the PKCS#11 token), which keeps it.
    Module,
}

impl Manifest {
    /// Parses `manifest.toml` (strictly: unknown fields refused) and checks it.
    pub fn from_toml(text: &str) -> Result<Self, Refusal> {
        let m: Manifest = toml::from_str(text)
            .map_err(|e| Refusal::Malformed(format!("manifest.toml: {}", e.message())))?;
        m.check()?;
        Ok(m)
    }

    /// Parses a provider's template for `package build`: strict TOML like
    /// [`Manifest::from_toml`], but not checked yet (build fills in the fields it computes,
    /// then checks).
    pub fn parse_template(text: &str) -> Result<Self, Refusal> {
        toml::from_str(text)
            .map_err(|e| Refusal::Malformed(format!("manifest template: {}", e.message())))
    }

    /// The TOML text `package build` writes (and signs).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a manifest always serialises")
    }

    /// The application called `name`.
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.name == name)
    }

    /// Structural checks shared by build and verify (not the signature, hashes or policy).
    pub fn check(&self) -> Result<(), Refusal> {
        let bad = |m: String| Err(Refusal::Malformed(m));
        if self.format != FORMAT {
            return bad(format!(
                "format {:?}: this version reads {FORMAT:?}",
                self.format
            ));
        }
        if self.provider.trim().is_empty() {
            return bad("provider is empty".into());
        }
        if self.not_after <= self.not_before {
            return bad("not_after is not after not_before".into());
        }
        if self.applications.is_empty() {
            return bad("no [[application]]".into());
        }
        if self.applications.len() > crate::archive::MAX_APPLICATIONS {
            return bad(format!(
                "{} applications; a package holds at most {}",
                self.applications.len(),
                crate::archive::MAX_APPLICATIONS
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for a in &self.applications {
            let ok_name = valid_name(&a.name);
            if !ok_name {
                return bad(format!(
                    "application name {:?}: want [a-z0-9][a-z0-9_-]{{0,31}}",
                    a.name
                ));
            }
            if !names.insert(a.name.as_str()) {
                return bad(format!("application {:?} named twice", a.name));
            }
            if a.load_file != format!("load/{}.cap", a.name) {
                return bad(format!(
                    "application {:?}: load_file must be \"load/{}.cap\"",
                    a.name, a.name
                ));
            }
            check_hex_fields(a)?;
            for p in &a.privileges {
                p.parse::<gp::Privilege>().map_err(|_| {
                    Refusal::Malformed(format!("application {:?}: unknown privilege {p:?}", a.name))
                })?;
            }
            let mut ids = std::collections::BTreeSet::new();
            for k in &a.registration {
                if !ids.insert(k.id.as_str()) || !(1..=15).contains(&k.slot) {
                    return bad(format!(
                        "application {:?}: registration key {:?}: ids unique, slot 1–15",
                        a.name, k.id
                    ));
                }
                let ok = matches!(
                    (k.kind, k.generate),
                    (KeyKind::EcP256, Generate::Card)
                        | (KeyKind::Aes128 | KeyKind::Aes256, Generate::Module)
                );
                if !ok {
                    return bad(format!(
                        "application {:?}: registration key {:?}: ec-p256 keys are generated on the card, AES keys in the module",
                        a.name, k.id
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` is an application name: `[a-z0-9][a-z0-9_-]{0,31}`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
        })
}

/// The hex fields of an application: AIDs are 5–16 bytes, the hash 32 bytes, the rest hex.
fn check_hex_fields(a: &Application) -> Result<(), Refusal> {
    let bad = |field: &str, value: &str| {
        Err(Refusal::Malformed(format!(
            "application {:?}: {field} {value:?} is not valid hex of the right length",
            a.name
        )))
    };
    let aid = |v: &str| v.parse::<gp::Aid>().is_ok();
    let hex = |v: &str| apdu::parse_hex(v).is_ok();
    if apdu::parse_hex(&a.sha256).map(|h| h.len()).ok() != Some(32) {
        return bad("sha256", &a.sha256);
    }
    for (field, value) in [("package_aid", &a.package_aid), ("applet", &a.applet)] {
        if !aid(value) {
            return bad(field, value);
        }
    }
    for (field, value) in [
        ("instance", &a.instance),
        ("security_domain", &a.security_domain),
    ] {
        if !value.is_empty() && !aid(value) {
            return bad(field, value);
        }
    }
    if !hex(&a.install_params) {
        return bad("install_params", &a.install_params);
    }
    for d in &a.dap {
        if !aid(&d.security_domain) {
            return bad("dap security_domain", &d.security_domain);
        }
        if d.signature.is_empty() || !hex(&d.signature) {
            return bad("dap signature", &d.signature);
        }
    }
    if let Some(t) = &a.tokens {
        for v in [&t.load, &t.install] {
            if v.is_empty() || !hex(v) {
                return bad("token", v);
            }
        }
    }
    Ok(())
}

/// The validity instants: written as RFC 3339 strings (in TOML and in any other format),
/// read from a string or a TOML offset date-time (`not_before = 2026-01-01T00:00:00Z`).
mod instant {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use time::{format_description::well_known::Rfc3339, OffsetDateTime};

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(t, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Toml(toml::value::Datetime),
        }
        let text = match Either::deserialize(d)? {
            Either::Text(s) => s,
            Either::Toml(dt) => dt.to_string(),
        };
        OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|e| D::Error::custom(format!("{text:?} is not an RFC 3339 instant: {e}")))
    }
}
