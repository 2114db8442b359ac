//! Tenants, categories, base key versions, packages and cards. Every change is audited in
//! the same transaction as the change itself.

use gp::aid::Aid;
use gp::privileges::Privileges;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::jobs::{holds_lease, Lease};
use super::Store;
use crate::audit::{append_in, NewEntry};
use crate::db::{params, Conn, Row, Value};
use crate::error::StoreError;
use crate::model::{
    kind_of, kind_str, now_ms, parse_aid, u32_of, u8_of, AppSpec, BaseKeyVersion, Card, CardApp,
    CardState, Category, InitialKeys, KeyVersionStatus, Package, Role, Tenant,
};

/// What a new category is made of (see [`Category`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategorySpec {
    /// Identifier (a key-store category name: `tenant/product`).
    pub id: String,
    /// Owning card issuer.
    pub tenant: String,
    /// Free text.
    pub description: String,
    /// What blank cards open with.
    pub initial_keys: InitialKeys,
    /// KVN of the initial key set.
    pub initial_kvn: u8,
    /// BER-TLV objects for the ISD (not `CF`, not `45`).
    pub perso: Vec<u8>,
}

const CATEGORY_COLUMNS: &str =
    "id, tenant_id, description, initial_keys, initial_kvn, perso, current_key_version, created_ms";

fn category_of(r: &Row) -> Result<Category, StoreError> {
    let keys = r.text(3)?;
    Ok(Category {
        id: r.text(0)?,
        tenant: r.text(1)?,
        description: r.text(2)?,
        initial_keys: serde_json::from_str(&keys).map_err(|e| StoreError::Corrupt {
            what: "categories.initial_keys".into(),
            detail: e.to_string(),
        })?,
        initial_kvn: u8_of(r.int(4)?, "categories.initial_kvn")?,
        perso: r.bytes(5)?,
        current_key_version: r
            .opt_int(6)?
            .map(|v| u32_of(v, "categories.current_key_version"))
            .transpose()?,
        created_ms: r.int(7)?,
    })
}

const KEY_VERSION_COLUMNS: &str =
    "category_id, version, kms_category, kind, kcv, status, created_ms";

fn key_version_of(r: &Row) -> Result<BaseKeyVersion, StoreError> {
    let kcv = r.bytes(4)?;
    Ok(BaseKeyVersion {
        category: r.text(0)?,
        version: u32_of(r.int(1)?, "base_key_versions.version")?,
        kms_category: r.text(2)?,
        kind: kind_of(&r.text(3)?)?,
        kcv: <[u8; 3]>::try_from(kcv.as_slice()).map_err(|_| StoreError::Corrupt {
            what: "base_key_versions.kcv".into(),
            detail: format!("{} bytes", kcv.len()),
        })?,
        status: r.text(5)?.parse()?,
        created_ms: r.int(6)?,
    })
}

pub(crate) const CARD_COLUMNS: &str =
    "card_number, category_id, state, key_version, kvn, kdd, factory_kdd, chip_id, initial_key_kind, created_ms, updated_ms";

pub(crate) fn card_of(r: &Row) -> Result<Card, StoreError> {
    Ok(Card {
        card_number: r.text(0)?,
        category: r.text(1)?,
        state: r.text(2)?.parse()?,
        key_version: r
            .opt_int(3)?
            .map(|v| u32_of(v, "cards.key_version"))
            .transpose()?,
        kvn: r.opt_int(4)?.map(|v| u8_of(v, "cards.kvn")).transpose()?,
        kdd: r.opt_bytes(5)?,
        factory_kdd: r.opt_bytes(6)?,
        chip_id: r.opt_bytes(7)?,
        initial_key_kind: r.opt_text(8)?.map(|k| kind_of(&k)).transpose()?,
        created_ms: r.int(9)?,
        updated_ms: r.int(10)?,
    })
}

/// The query of a card by number.
fn card_query(number: &str) -> (String, Vec<crate::db::Value>) {
    (
        format!("SELECT {CARD_COLUMNS} FROM cards WHERE card_number = $1"),
        params![number].to_vec(),
    )
}

/// The query of a category by id.
fn category_query(id: &str) -> (String, Vec<crate::db::Value>) {
    (
        format!("SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = $1"),
        params![id].to_vec(),
    )
}

pub(crate) fn card_in(conn: &mut Conn, number: &str) -> Result<Option<Card>, StoreError> {
    let (sql, values) = card_query(number);
    conn.query_opt(&sql, &values)?
        .map(|r| card_of(&r))
        .transpose()
}

pub(crate) fn category_in(conn: &mut Conn, id: &str) -> Result<Option<Category>, StoreError> {
    let (sql, values) = category_query(id);
    conn.query_opt(&sql, &values)?
        .map(|r| category_of(&r))
        .transpose()
}

const CATEGORY_APPS: &str = "SELECT instance, package_aid, module, privileges, params, perso
     FROM category_apps WHERE category_id = $1 ORDER BY position";

fn app_spec_of(r: &Row) -> Result<AppSpec, StoreError> {
    Ok(AppSpec {
        instance: parse_aid(&r.bytes(0)?, "category_apps.instance")?,
        package: parse_aid(&r.bytes(1)?, "category_apps.package_aid")?,
        module: parse_aid(&r.bytes(2)?, "category_apps.module")?,
        privileges: Privileges::from_bytes(&r.bytes(3)?).map_err(|e| StoreError::Corrupt {
            what: "category_apps.privileges".into(),
            detail: e.to_string(),
        })?,
        params: r.bytes(4)?,
        perso: r.bytes(5)?,
    })
}

pub(crate) fn category_apps_in(conn: &mut Conn, id: &str) -> Result<Vec<AppSpec>, StoreError> {
    conn.query(CATEGORY_APPS, params![id])?
        .iter()
        .map(app_spec_of)
        .collect()
}

/// What a write request is checked against, read in one round trip on PostgreSQL (the
/// reads do not depend on each other): the card's open job, the card, the requested
/// category, its current base key version and its applications.
pub(crate) struct WriteReads {
    pub open_job: Option<crate::model::Job>,
    pub card: Option<Card>,
    pub category: Option<Category>,
    /// The category's current base key version, when it has one and it is registered.
    pub current_version: Option<BaseKeyVersion>,
    pub apps: Vec<AppSpec>,
}

pub(crate) fn write_reads_in(
    conn: &mut Conn,
    number: &str,
    category: &str,
) -> Result<WriteReads, StoreError> {
    let queries = [
        crate::store::jobs::open_job_query(number),
        card_query(number),
        category_query(category),
        (
            format!(
                "SELECT {KEY_VERSION_COLUMNS} FROM base_key_versions WHERE category_id = $1
                 AND version = (SELECT current_key_version FROM categories WHERE id = $1)"
            ),
            params![category].to_vec(),
        ),
        (CATEGORY_APPS.to_string(), params![category].to_vec()),
    ];
    let rows = conn.query_many(&queries)?;
    let one = |i: usize| -> Result<Option<&Row>, StoreError> {
        match rows[i].as_slice() {
            [] => Ok(None),
            [r] => Ok(Some(r)),
            more => Err(StoreError::Corrupt {
                what: "query".into(),
                detail: format!("{} rows where at most one was expected", more.len()),
            }),
        }
    };
    Ok(WriteReads {
        open_job: one(0)?.map(crate::store::jobs::job_of).transpose()?,
        card: one(1)?.map(card_of).transpose()?,
        category: one(2)?.map(category_of).transpose()?,
        current_version: one(3)?.map(key_version_of).transpose()?,
        apps: rows[4].iter().map(app_spec_of).collect::<Result<_, _>>()?,
    })
}

pub(crate) fn card_apps_in(conn: &mut Conn, number: &str) -> Result<Vec<CardApp>, StoreError> {
    conn.query(
        "SELECT instance, package_aid, installed_ms FROM card_apps
         WHERE card_number = $1 ORDER BY installed_ms, instance",
        params![number],
    )?
    .iter()
    .map(|r| {
        Ok(CardApp {
            instance: parse_aid(&r.bytes(0)?, "card_apps.instance")?,
            package: parse_aid(&r.bytes(1)?, "card_apps.package_aid")?,
            installed_ms: r.int(2)?,
        })
    })
    .collect()
}

fn package_of(r: &Row) -> Result<Package, StoreError> {
    let sha = r.bytes(3)?;
    Ok(Package {
        aid: parse_aid(&r.bytes(0)?, "packages.aid")?,
        tenant: r.text(1)?,
        name: r.text(2)?,
        sha256: <[u8; 32]>::try_from(sha.as_slice()).map_err(|_| StoreError::Corrupt {
            what: "packages.sha256".into(),
            detail: format!("{} bytes", sha.len()),
        })?,
        created_ms: r.int(4)?,
    })
}

/// Checks the category personalisation: well-formed BER-TLV, none of the workflow's own tags.
fn check_perso(perso: &[u8]) -> Result<(), StoreError> {
    let objs = apdu::tlv::parse_all(perso).map_err(|e| StoreError::Invalid {
        what: "category personalisation",
        detail: format!("not BER-TLV: {e}"),
    })?;
    for o in objs {
        let t = o.tag.value();
        if t == 0xCF || t == 0x45 {
            return Err(StoreError::Invalid {
                what: "category personalisation",
                detail: format!("tag {t:02X} is written by the workflow itself"),
            });
        }
    }
    Ok(())
}

impl Store {
    /// Registers a tenant.
    pub fn create_tenant(
        &self,
        actor: &str,
        id: &str,
        name: &str,
        role: Role,
    ) -> Result<Tenant, StoreError> {
        if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_control()) {
            return Err(StoreError::Invalid {
                what: "tenant id",
                detail: "1 to 64 printable characters".into(),
            });
        }
        let t = Tenant {
            id: id.into(),
            name: name.into(),
            role,
            created_ms: now_ms(),
        };
        self.tx(|c| {
            c.execute(
                "INSERT INTO tenants (id, name, role, created_ms) VALUES ($1, $2, $3, $4)",
                params![id, name, role.as_str(), t.created_ms],
            )
            .map_err(|e| e.duplicate_as(|| format!("tenant '{id}'")))?;
            append_in(
                c,
                &NewEntry::new(actor, "tenant.create", "ok")
                    .detail(json!({"tenant": id, "name": name, "role": role.as_str()})),
            )?;
            Ok(t.clone())
        })
    }

    /// A tenant by id.
    pub fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                "SELECT id, name, role, created_ms FROM tenants WHERE id = $1",
                params![id],
            )?
            .map(|r| {
                Ok(Tenant {
                    id: r.text(0)?,
                    name: r.text(1)?,
                    role: r.text(2)?.parse()?,
                    created_ms: r.int(3)?,
                })
            })
            .transpose()
        })
    }

    /// Creates a card category owned by a card issuer.
    pub fn create_category(
        &self,
        actor: &str,
        spec: &CategorySpec,
    ) -> Result<Category, StoreError> {
        kms::validate_category(&spec.id).map_err(|e| StoreError::Invalid {
            what: "category id",
            detail: e.to_string(),
        })?;
        if !(1..=0x7F).contains(&spec.initial_kvn) {
            return Err(StoreError::Invalid {
                what: "initial key version number",
                detail: format!("{:#04x} is outside 0x01-0x7F", spec.initial_kvn),
            });
        }
        check_perso(&spec.perso)?;
        let keys = serde_json::to_string(&spec.initial_keys).map_err(|e| StoreError::Invalid {
            what: "initial keys",
            detail: e.to_string(),
        })?;
        let created_ms = now_ms();
        self.tx(|c| {
            let role = c
                .query_opt("SELECT role FROM tenants WHERE id = $1", params![&spec.tenant])?
                .ok_or_else(|| StoreError::NotFound(format!("tenant '{}'", spec.tenant)))?
                .text(0)?;
            if role != Role::CardIssuer.as_str() {
                return Err(StoreError::Invalid {
                    what: "category owner",
                    detail: format!("tenant '{}' is not a card issuer", spec.tenant),
                });
            }
            c.execute(
                &format!(
                    "INSERT INTO categories ({CATEGORY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                params![
                    &spec.id,
                    &spec.tenant,
                    &spec.description,
                    keys.clone(),
                    i64::from(spec.initial_kvn),
                    spec.perso.clone(),
                    Option::<i64>::None,
                    created_ms
                ],
            )
            .map_err(|e| e.duplicate_as(|| format!("category '{}'", spec.id)))?;
            append_in(
                c,
                &NewEntry::new(actor, "category.create", "ok").detail(json!({
                    "category": spec.id,
                    "tenant": spec.tenant,
                    "initial_keys": spec.initial_keys,
                    "initial_kvn": spec.initial_kvn,
                })),
            )?;
            Ok(Category {
                id: spec.id.clone(),
                tenant: spec.tenant.clone(),
                description: spec.description.clone(),
                initial_keys: spec.initial_keys.clone(),
                initial_kvn: spec.initial_kvn,
                perso: spec.perso.clone(),
                current_key_version: None,
                created_ms,
            })
        })
    }

    /// A category by id.
    pub fn category(&self, id: &str) -> Result<Option<Category>, StoreError> {
        self.with_conn(|c| category_in(c, id))
    }

    /// Records a base key version of a category: where the key store keeps it and its KCV
    /// (never the key). With `make_current`, new cards are written with it from now on.
    #[allow(clippy::too_many_arguments)]
    pub fn register_key_version(
        &self,
        actor: &str,
        category: &str,
        version: u32,
        kms_category: &str,
        kind: scp::KeyKind,
        kcv: [u8; 3],
        make_current: bool,
    ) -> Result<BaseKeyVersion, StoreError> {
        if version == 0 {
            return Err(StoreError::Invalid {
                what: "key version",
                detail: "versions start at 1".into(),
            });
        }
        let created_ms = now_ms();
        self.tx(|c| {
            if category_in(c, category)?.is_none() {
                return Err(StoreError::NotFound(format!("category '{category}'")));
            }
            c.execute(
                &format!(
                    "INSERT INTO base_key_versions ({KEY_VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                params![
                    category,
                    i64::from(version),
                    kms_category,
                    kind_str(kind),
                    kcv.to_vec(),
                    KeyVersionStatus::Active.as_str(),
                    created_ms
                ],
            )
            .map_err(|e| e.duplicate_as(|| format!("key version {version} of '{category}'")))?;
            if make_current {
                c.execute(
                    "UPDATE categories SET current_key_version = $1 WHERE id = $2",
                    params![i64::from(version), category],
                )?;
            }
            append_in(
                c,
                &NewEntry::new(actor, "key_version.register", "ok").detail(json!({
                    "category": category,
                    "version": version,
                    "kms_category": kms_category,
                    "kind": kind_str(kind),
                    "kcv": apdu::hex(&kcv),
                    "current": make_current,
                })),
            )?;
            Ok(BaseKeyVersion {
                category: category.into(),
                version,
                kms_category: kms_category.into(),
                kind,
                kcv,
                status: KeyVersionStatus::Active,
                created_ms,
            })
        })
    }

    /// Makes an active version the one new cards are written with.
    pub fn set_current_key_version(
        &self,
        actor: &str,
        category: &str,
        version: u32,
    ) -> Result<(), StoreError> {
        self.tx(|c| {
            let kv = c
                .query_opt(
                    "SELECT status FROM base_key_versions WHERE category_id = $1 AND version = $2",
                    params![category, i64::from(version)],
                )?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("key version {version} of '{category}'"))
                })?;
            if kv.text(0)? != KeyVersionStatus::Active.as_str() {
                return Err(StoreError::Invalid {
                    what: "key version",
                    detail: format!("version {version} is retired"),
                });
            }
            c.execute(
                "UPDATE categories SET current_key_version = $1 WHERE id = $2",
                params![i64::from(version), category],
            )?;
            append_in(
                c,
                &NewEntry::new(actor, "key_version.make_current", "ok")
                    .detail(json!({"category": category, "version": version})),
            )?;
            Ok(())
        })
    }

    /// Retires a version: no new card is written with it (cards carrying it can still be
    /// rewritten or cleared). It stops being current.
    pub fn retire_key_version(
        &self,
        actor: &str,
        category: &str,
        version: u32,
    ) -> Result<(), StoreError> {
        self.tx(|c| {
            let n = c.execute(
                "UPDATE base_key_versions SET status = $1 WHERE category_id = $2 AND version = $3",
                params![KeyVersionStatus::Retired.as_str(), category, i64::from(version)],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "key version {version} of '{category}'"
                )));
            }
            c.execute(
                "UPDATE categories SET current_key_version = NULL WHERE id = $1 AND current_key_version = $2",
                params![category, i64::from(version)],
            )?;
            append_in(
                c,
                &NewEntry::new(actor, "key_version.retire", "ok")
                    .detail(json!({"category": category, "version": version})),
            )?;
            Ok(())
        })
    }

    /// One base key version.
    pub fn key_version(
        &self,
        category: &str,
        version: u32,
    ) -> Result<Option<BaseKeyVersion>, StoreError> {
        self.with_conn(|c| key_version_in(c, category, version))
    }

    /// Every base key version of a category, oldest first.
    pub fn key_versions(&self, category: &str) -> Result<Vec<BaseKeyVersion>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!(
                    "SELECT {KEY_VERSION_COLUMNS} FROM base_key_versions WHERE category_id = $1 ORDER BY version"
                ),
                params![category],
            )?
            .iter()
            .map(key_version_of)
            .collect()
        })
    }

    /// Registers an application package (a CAP file) owned by `tenant`. The CAP is parsed
    /// to check it and to learn its load file AID.
    pub fn add_package(
        &self,
        actor: &str,
        tenant: &str,
        name: &str,
        cap: &[u8],
    ) -> Result<Package, StoreError> {
        let parsed = gp::cap::CapFile::from_bytes(cap).map_err(|e| StoreError::Invalid {
            what: "CAP file",
            detail: e.to_string(),
        })?;
        let aid = parsed.package_aid();
        let sha256: [u8; 32] = Sha256::digest(cap).into();
        let created_ms = now_ms();
        self.tx(|c| {
            if c.query_opt("SELECT id FROM tenants WHERE id = $1", params![tenant])?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("tenant '{tenant}'")));
            }
            c.execute(
                "INSERT INTO packages (aid, tenant_id, name, cap, sha256, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                params![
                    aid.as_bytes(),
                    tenant,
                    name,
                    cap,
                    sha256.to_vec(),
                    created_ms
                ],
            )
            .map_err(|e| e.duplicate_as(|| format!("package {aid}")))?;
            append_in(
                c,
                &NewEntry::new(actor, "package.add", "ok").detail(json!({
                    "package": aid.to_string(),
                    "tenant": tenant,
                    "name": name,
                    "sha256": apdu::hex(&sha256),
                    "size": cap.len(),
                })),
            )?;
            Ok(Package {
                aid,
                tenant: tenant.into(),
                name: name.into(),
                sha256,
                created_ms,
            })
        })
    }

    /// A package's description.
    pub fn package(&self, aid: &Aid) -> Result<Option<Package>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                "SELECT aid, tenant_id, name, sha256, created_ms FROM packages WHERE aid = $1",
                params![aid.as_bytes()],
            )?
            .map(|r| package_of(&r))
            .transpose()
        })
    }

    /// A package's CAP file, checked against its recorded SHA-256.
    pub fn package_cap(&self, aid: &Aid) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_conn(|c| package_cap_in(c, aid))
    }

    /// Adds an application that every card of the category gets when written.
    pub fn add_category_app(
        &self,
        actor: &str,
        category: &str,
        app: &AppSpec,
    ) -> Result<(), StoreError> {
        if app.params.len() > 0x7F {
            return Err(StoreError::Invalid {
                what: "install parameters",
                detail: "over 127 bytes".into(),
            });
        }
        self.tx(|c| {
            if category_in(c, category)?.is_none() {
                return Err(StoreError::NotFound(format!("category '{category}'")));
            }
            let pos = c
                .query_one(
                    "SELECT COUNT(*) FROM category_apps WHERE category_id = $1",
                    params![category],
                )?
                .int(0)?;
            c.execute(
                "INSERT INTO category_apps (category_id, position, instance, package_aid, module, privileges, params, perso)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                params![
                    category,
                    pos,
                    app.instance.as_bytes(),
                    app.package.as_bytes(),
                    app.module.as_bytes(),
                    app.privileges.0.to_vec(),
                    app.params.clone(),
                    app.perso.clone()
                ],
            )
            .map_err(|e| e.duplicate_as(|| format!("application {} in '{category}'", app.instance)))?;
            append_in(
                c,
                &NewEntry::new(actor, "category.add_app", "ok").detail(json!({
                    "category": category,
                    "instance": app.instance.to_string(),
                    "package": app.package.to_string(),
                })),
            )?;
            Ok(())
        })
    }

    /// The applications of a category, in install order.
    pub fn category_apps(&self, category: &str) -> Result<Vec<AppSpec>, StoreError> {
        self.with_conn(|c| category_apps_in(c, category))
    }

    /// Registers a blank card (a card number handed out by the back office).
    pub fn register_card(
        &self,
        actor: &str,
        card_number: &str,
        category: &str,
    ) -> Result<Card, StoreError> {
        kms::kdd_for_card_number(card_number).map_err(|e| StoreError::Invalid {
            what: "card number",
            detail: e.to_string(),
        })?;
        self.tx(|c| {
            if category_in(c, category)?.is_none() {
                return Err(StoreError::NotFound(format!("category '{category}'")));
            }
            let card = insert_blank_card(c, card_number, category)?;
            append_in(
                c,
                &NewEntry::new(actor, "card.register", "ok")
                    .card(card_number)
                    .detail(json!({"category": category})),
            )?;
            Ok(card)
        })
    }

    /// A card by number.
    pub fn card(&self, card_number: &str) -> Result<Option<Card>, StoreError> {
        self.with_conn(|c| card_in(c, card_number))
    }

    /// Cards of a category, optionally only those carrying `key_version` (`Some(None)`:
    /// those on initial keys), by card number after `after`, at most `limit`: the work
    /// list of a key renewal campaign.
    pub fn cards_of_category(
        &self,
        category: &str,
        key_version: Option<Option<u32>>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Card>, StoreError> {
        self.with_conn(|c| {
            let rows = match key_version {
                None => c.query(
                    &format!("SELECT {CARD_COLUMNS} FROM cards WHERE category_id = $1 AND card_number > $2 ORDER BY card_number LIMIT $3"),
                    params![category, after, i64::from(limit)],
                )?,
                Some(None) => c.query(
                    &format!("SELECT {CARD_COLUMNS} FROM cards WHERE category_id = $1 AND key_version IS NULL AND card_number > $2 ORDER BY card_number LIMIT $3"),
                    params![category, after, i64::from(limit)],
                )?,
                Some(Some(v)) => c.query(
                    &format!("SELECT {CARD_COLUMNS} FROM cards WHERE category_id = $1 AND key_version = $2 AND card_number > $3 ORDER BY card_number LIMIT $4"),
                    params![category, i64::from(v), after, i64::from(limit)],
                )?,
            };
            rows.iter().map(card_of).collect()
        })
    }

    /// The applications the platform installed on a card.
    pub fn card_apps(&self, card_number: &str) -> Result<Vec<CardApp>, StoreError> {
        self.with_conn(|c| card_apps_in(c, card_number))
    }
}

pub(crate) fn key_version_in(
    c: &mut Conn,
    category: &str,
    version: u32,
) -> Result<Option<BaseKeyVersion>, StoreError> {
    c.query_opt(
        &format!(
            "SELECT {KEY_VERSION_COLUMNS} FROM base_key_versions WHERE category_id = $1 AND version = $2"
        ),
        params![category, i64::from(version)],
    )?
    .map(|r| key_version_of(&r))
    .transpose()
}

pub(crate) fn package_cap_in(c: &mut Conn, aid: &Aid) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(r) = c.query_opt(
        "SELECT cap, sha256 FROM packages WHERE aid = $1",
        params![aid.as_bytes()],
    )?
    else {
        return Ok(None);
    };
    let cap = r.bytes(0)?;
    let sha: [u8; 32] = Sha256::digest(&cap).into();
    if sha.as_slice() != r.bytes(1)?.as_slice() {
        return Err(StoreError::Corrupt {
            what: format!("package {aid}"),
            detail: "the CAP file does not match its SHA-256".into(),
        });
    }
    Ok(Some(cap))
}

pub(crate) fn package_owner_in(c: &mut Conn, aid: &Aid) -> Result<Option<String>, StoreError> {
    c.query_opt(
        "SELECT tenant_id FROM packages WHERE aid = $1",
        params![aid.as_bytes()],
    )?
    .map(|r| r.text(0))
    .transpose()
}

pub(crate) fn insert_blank_card(
    c: &mut Conn,
    card_number: &str,
    category: &str,
) -> Result<Card, StoreError> {
    let (card, sql, values) = blank_card_insert(card_number, category);
    c.execute(&sql, &values)
        .map_err(|e| e.duplicate_as(|| "card number".into()))?;
    Ok(card)
}

/// A blank card's row: the card and its INSERT.
pub(crate) fn blank_card_insert(
    card_number: &str,
    category: &str,
) -> (Card, String, Vec<crate::db::Value>) {
    let now = now_ms();
    let card = Card {
        card_number: card_number.into(),
        category: category.into(),
        state: CardState::Blank,
        key_version: None,
        kvn: None,
        kdd: None,
        factory_kdd: None,
        chip_id: None,
        initial_key_kind: None,
        created_ms: now,
        updated_ms: now,
    };
    let (sql, values) = insert_card_sql(&card);
    (card, sql, values)
}

/// The INSERT of a new card's row with everything `card` holds. A row inserted and then
/// updated by one PostgreSQL statement would keep the inserted values: the sub-statements
/// of a `WITH` share one snapshot and do not see each other's rows.
pub(crate) fn insert_card_sql(card: &Card) -> (String, Vec<Value>) {
    let sql = "INSERT INTO cards (card_number, category_id, state, key_version, kvn, kdd,
                       factory_kdd, chip_id, initial_key_kind, created_ms, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    let mut values = params![&card.card_number, &card.category].to_vec();
    values.extend(learnt_values(card));
    values.extend_from_slice(params![card.created_ms, card.updated_ms]);
    (sql.into(), values)
}

/// What the job engine learns or changes about a card, in this order: state, key version,
/// KVN, KDD, factory KDD, chip, initial key kind.
fn learnt_values(card: &Card) -> Vec<Value> {
    params![
        card.state.as_str(),
        card.key_version.map(i64::from),
        card.kvn.map(i64::from),
        card.kdd.clone(),
        card.factory_kdd.clone(),
        card.chip_id.clone(),
        card.initial_key_kind.map(kind_str)
    ]
    .to_vec()
}

/// Writes what the job engine learnt or changed about a card (state, keys, KDD, chip).
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) fn update_card_in(c: &mut Conn, card: &Card) -> Result<(), StoreError> {
    let (sql, values) = update_card_sql(card, None);
    c.execute(&sql, &values)?;
    Ok(())
}

/// The statement of [`update_card_in`]; with `lease`, it changes the row only while that
/// worker holds its job's lease.
pub(crate) fn update_card_sql(card: &Card, lease: Option<&Lease>) -> (String, Vec<Value>) {
    let mut values = learnt_values(card);
    values.extend_from_slice(params![now_ms(), &card.card_number]);
    let mut sql = String::from(
        "UPDATE cards SET state = $1, key_version = $2, kvn = $3, kdd = $4, factory_kdd = $5,
                chip_id = $6, initial_key_kind = $7, updated_ms = $8
         WHERE card_number = $9",
    );
    if let Some(lease) = lease {
        values.extend_from_slice(params![lease.job, &lease.owner]);
        sql.push_str(&format!(" AND {}", holds_lease("$10", "$11")));
    }
    (sql, values)
}

/// Marks a card partial (a failed job changed it).
pub(crate) fn mark_card_partial_in(c: &mut Conn, number: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE cards SET state = $1, updated_ms = $2 WHERE card_number = $3",
        params![CardState::Partial.as_str(), now_ms(), number],
    )?;
    Ok(())
}

/// Records an application instance installed on a card (idempotent).
pub(crate) fn add_card_app_in(
    c: &mut Conn,
    number: &str,
    instance: &Aid,
    package: &Aid,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO card_apps (card_number, instance, package_aid, installed_ms)
         VALUES ($1, $2, $3, $4) ON CONFLICT (card_number, instance) DO NOTHING",
        params![number, instance.as_bytes(), package.as_bytes(), now_ms()],
    )?;
    Ok(())
}

/// Forgets an application instance of a card.
pub(crate) fn remove_card_app_in(
    c: &mut Conn,
    number: &str,
    instance: &Aid,
) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM card_apps WHERE card_number = $1 AND instance = $2",
        params![number, instance.as_bytes()],
    )?;
    Ok(())
}

/// Forgets every application of a card (it was cleared).
pub(crate) fn clear_card_apps_in(c: &mut Conn, number: &str) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM card_apps WHERE card_number = $1",
        params![number],
    )?;
    Ok(())
}
