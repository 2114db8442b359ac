//! The catalog: packages verified ([`package::verify`]) and stored as one row per
//! application, each row MAC'd in the token (HMAC-SHA256 with `outlet/db-mac` over every
//! field, CAP bytes included), so that a row edited on disk is refused when it is used.

use time::OffsetDateTime;

use crate::db::{now_ms, AppRow};
use crate::{CatalogEntry, Error, InstallError, Module};

/// An application ready to install: its row checked against its MAC, its manifest entry
/// read back.
#[derive(Debug, Clone)]
pub(crate) struct StoredApp {
    pub row: AppRow,
    pub manifest: package::Application,
}

fn entry_of(s: crate::db::AppSummary) -> CatalogEntry {
    CatalogEntry {
        name: s.name,
        title: s.title,
        version: s.version,
        provider: s.provider,
        size: s.size,
        package_sha256: s.package_sha256,
    }
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl Module {
    /// Verifies a package against the module's trust anchors at the current time and, only
    /// if it passes, stores its applications (replacing applications of the same names),
    /// each row MAC'd in the token. A refusal is [`Error::Refused`] and stores nothing.
    /// Returns the catalog entries of the package's applications.
    pub fn add(&self, archive: &[u8]) -> Result<Vec<CatalogEntry>, Error> {
        let policy = package::TrustPolicy {
            anchors: self.trust.clone(),
            crls: Vec::new(),
            now: OffsetDateTime::now_utc(),
        };
        let verified = package::verify(archive, &policy).map_err(Error::Refused)?;
        let m = &verified.manifest;
        let added_ms = now_ms();
        let mut rows = Vec::with_capacity(m.applications.len());
        for app in &m.applications {
            let cap = verified
                .load_files
                .iter()
                .find(|(n, _)| n == &app.name)
                .map(|(_, c)| c.clone())
                .ok_or_else(|| {
                    Error::Refused(package::Refusal::Malformed(format!(
                        "no load file for {}",
                        app.name
                    )))
                })?;
            let mut row = AppRow {
                name: app.name.clone(),
                title: app.title.clone(),
                version: app.version.clone(),
                provider: m.provider.clone(),
                package_sha256: verified.package_sha256.clone(),
                signer: verified.signer_subject.clone(),
                not_before_ms: unix_ms(m.not_before),
                not_after_ms: unix_ms(m.not_after),
                manifest_entry: serde_json::to_string(app)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
                cap,
                added_ms,
                mac: Vec::new(),
            };
            row.mac = self.mac(&row.mac_input())?.to_vec();
            rows.push(row);
        }
        self.db.put_applications(&rows)?;
        Ok(rows
            .iter()
            .map(|r| CatalogEntry {
                name: r.name.clone(),
                title: r.title.clone(),
                version: r.version.clone(),
                provider: r.provider.clone(),
                size: r.cap.len() as u64,
                package_sha256: r.package_sha256.clone(),
            })
            .collect())
    }

    /// Removes an application from the catalog (cards that have it keep it).
    pub fn remove(&self, application: &str) -> Result<(), Error> {
        if self.db.remove_application(application)? {
            Ok(())
        } else {
            Err(Error::UnknownApplication(application.into()))
        }
    }

    /// The catalog, by name.
    pub fn catalog(&self) -> Result<Vec<CatalogEntry>, Error> {
        Ok(self.db.catalog()?.into_iter().map(entry_of).collect())
    }

    /// The stored application `name`, refused if its row does not match its MAC (edited on
    /// disk) or its manifest entry does not read back.
    pub(crate) fn stored_app(&self, name: &str) -> Result<StoredApp, InstallError> {
        let row = self
            .db
            .application(name)
            .map_err(|e| InstallError::Other(e.to_string()))?
            .ok_or_else(|| InstallError::UnknownApplication(name.into()))?;
        let mac = self
            .mac(&row.mac_input())
            .map_err(|e| InstallError::Other(e.to_string()))?;
        if !crate::bool_ct_eq(&mac, &row.mac) {
            return Err(InstallError::PackageTampered(name.into()));
        }
        let manifest: package::Application = serde_json::from_str(&row.manifest_entry)
            .map_err(|_| InstallError::PackageTampered(name.into()))?;
        if manifest.name != row.name {
            return Err(InstallError::PackageTampered(name.into()));
        }
        Ok(StoredApp { row, manifest })
    }
}
