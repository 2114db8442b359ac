//! `DIR/outlet.toml`: which outlet this is, where its security module is, and which cards
//! it serves. Nothing secret: the module's configuration string names where the PIN or
//! master key comes from, never the value (see [`kms::StoreConfig`]).
//!
//! ```toml
//! format = "cardwright-outlet/1"
//! id = "outlet-1"
//! module = "pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=outlet-1&pin-env=OUTLET_PIN"
//!
//! [cards]
//! category = "gold"      # the base key category in the module (kms), as at the issuer
//! initial_kvn = 48       # the category's initial key version (0x30)
//! scp = "scp03"          # the secure channel the module opens
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The value of [`OutletConfig::format`] this version writes and reads.
pub const FORMAT: &str = "cardwright-outlet/1";

/// The file name of the configuration in the outlet's directory.
pub const FILE: &str = "outlet.toml";

/// The outlet's configuration (`outlet.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutletConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// The outlet's identifier (in every install record and at the platform).
    pub id: String,
    /// The security module: a `kms` configuration string (`pkcs11:…`, or `file:…` for a
    /// demo without a token).
    pub module: String,
    /// The cards this outlet serves.
    pub cards: CardKeys,
}

/// How the module reaches a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardKeys {
    /// The card category whose base key (in the module) derives each card's SCP03 keys from
    /// its key diversification data, as the issuer's platform wrote the card.
    pub category: String,
    /// The category's initial key version number: base key version `v` is key set
    /// [`kms::kvn_for_version`]`(v, initial_kvn)` on the card.
    pub initial_kvn: u8,
    /// The secure channel protocol: `scp03` (the only one this version opens).
    pub scp: String,
}

/// Outlet identifiers: 1 to 32 characters from `a-z 0-9 - _ .`, starting with a letter or
/// digit (they name the outlet in records and at the platform).
pub fn validate_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b"-_.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "outlet id {:?}: want 1 to 32 of a-z 0-9 - _ . starting with a letter or digit",
            id.chars().take(40).collect::<String>()
        )))
    }
}

impl OutletConfig {
    /// Checks the fields (format, id, module string, category, key version, protocol).
    pub fn check(&self) -> Result<(), Error> {
        if self.format != FORMAT {
            return Err(Error::Config(format!(
                "format {:?}: this version reads {FORMAT:?}",
                self.format
            )));
        }
        validate_id(&self.id)?;
        self.module
            .parse::<kms::StoreConfig>()
            .map_err(|e| Error::Config(format!("module: {e}")))?;
        kms::validate_category(&self.cards.category)
            .map_err(|e| Error::Config(format!("cards.category: {e}")))?;
        if !(1..=0x7F).contains(&self.cards.initial_kvn) {
            return Err(Error::Config(format!(
                "cards.initial_kvn {:#04x} is outside 0x01-0x7F (GP 2.3.1 §11.1.8)",
                self.cards.initial_kvn
            )));
        }
        if self.cards.scp != "scp03" {
            return Err(Error::Config(format!(
                "cards.scp {:?}: this version opens scp03 only",
                self.cards.scp
            )));
        }
        Ok(())
    }

    /// Reads and checks `dir/outlet.toml`.
    pub fn read(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let c: OutletConfig = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))?;
        c.check()?;
        Ok(c)
    }

    /// The TOML text written to `outlet.toml`.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# The outlet security module (cardwright outlet init). Nothing secret is in this file.\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutletConfig {
        OutletConfig {
            format: FORMAT.into(),
            id: "outlet-1".into(),
            module: "pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=outlet-1&pin-env=PIN".into(),
            cards: CardKeys {
                category: "gold".into(),
                initial_kvn: 0x30,
                scp: "scp03".into(),
            },
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let c = config();
        c.check().unwrap();
        let back: OutletConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        for bad in [
            OutletConfig {
                id: "Outlet 1".into(),
                ..config()
            },
            OutletConfig {
                format: "x".into(),
                ..config()
            },
            OutletConfig {
                module: "nope:".into(),
                ..config()
            },
            OutletConfig {
                cards: CardKeys {
                    initial_kvn: 0x80,
                    ..config().cards
                },
                ..config()
            },
            OutletConfig {
                cards: CardKeys {
                    scp: "scp02".into(),
                    ..config().cards
                },
                ..config()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(toml::from_str::<OutletConfig>(&format!("{}\nextra = 1\n", c.to_toml())).is_err());
    }
}
