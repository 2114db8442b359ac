//! Which application to install: the one decision behind `cardwright issue app load` and
//! `POST /api/v1/cards/{n}/apps`.

use std::str::FromStr;

use gp::aid::Aid;
use gp::privileges::Privileges;

use crate::error::{Error, Result};
use crate::model::AppSpec;
use crate::Store;

/// An application load as a user gives it: text fields, most optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppChoice {
    /// Package (load file) AID, hex; the package must be registered.
    pub package: String,
    /// Applet (executable module) AID; default: the package's first applet.
    pub applet: Option<String>,
    /// Instance AID; default: the applet AID.
    pub instance: Option<String>,
    /// Privileges (names or hex, see `gp::privileges`); empty: none.
    pub privileges: String,
    /// Install parameters (value of `C9`), hex; empty for none.
    pub params: String,
    /// Personalisation data (one STORE DATA block), hex; empty for none.
    pub perso: String,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what}: {e}"))
}

impl AppChoice {
    /// The application spec: the package's CAP file is read from `store` to find its first
    /// applet when none is given; the instance defaults to the applet AID and the privileges
    /// to none (GP 2.3.1 §11.1.2). Refuses malformed AIDs, privileges or hex, an unregistered
    /// package and a package without applets.
    pub fn resolve(&self, store: &Store) -> Result<AppSpec> {
        let aid = |what: &str, s: &str| Aid::from_str(s.trim()).map_err(|e| invalid(what, e));
        let package = aid("package", &self.package)?;
        let module = match &self.applet {
            Some(a) => aid("applet", a)?,
            None => {
                let cap = store.package_cap(&package)?.ok_or_else(|| {
                    Error::Invalid(format!("package {package} is not registered"))
                })?;
                let parsed =
                    gp::cap::CapFile::from_bytes(&cap).map_err(|e| invalid("package", e))?;
                *parsed
                    .applet_aids()
                    .first()
                    .ok_or_else(|| Error::Invalid(format!("package {package} has no applet")))?
            }
        };
        let instance = match &self.instance {
            Some(i) => aid("instance", i)?,
            None => module,
        };
        let privileges = if self.privileges.trim().is_empty() {
            Privileges::default()
        } else {
            Privileges::from_str(&self.privileges).map_err(|e| invalid("privileges", e))?
        };
        Ok(AppSpec {
            instance,
            package,
            module,
            privileges,
            params: apdu::parse_hex(&self.params).map_err(|e| invalid("params", e))?,
            perso: apdu::parse_hex(&self.perso).map_err(|e| invalid("perso", e))?,
        })
    }
}
