//! Versioned migrations, embedded. Each is one SQL text for both engines with three
//! dialect tokens (`{bytes}`, `{autoid}`, `{zero_hash}`), plus per-engine statements where
//! the engines differ in kind (triggers). Applied at open, in order, each in its own
//! transaction together with its row in `schema_migrations`; applying is idempotent and
//! serialised between processes (SQLite: the write lock; PostgreSQL: an advisory lock).

use crate::db::{params, Conn, Dialect};
use crate::error::StoreError;
use crate::model::now_ms;

/// One schema change.
#[derive(Debug)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// Common SQL with dialect tokens.
    pub sql: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

const V1_CORE: &str = r#"
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('CI', 'AP')),
    created_ms  BIGINT NOT NULL
);

CREATE TABLE categories (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    description         TEXT NOT NULL,
    initial_keys        TEXT NOT NULL,
    initial_kvn         BIGINT NOT NULL CHECK (initial_kvn BETWEEN 1 AND 127),
    perso               {bytes} NOT NULL,
    current_key_version BIGINT,
    created_ms          BIGINT NOT NULL
);

CREATE TABLE base_key_versions (
    category_id  TEXT NOT NULL REFERENCES categories(id),
    version      BIGINT NOT NULL CHECK (version >= 1),
    kms_category TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('3DES', 'AES')),
    kcv          {bytes} NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (category_id, version)
);

CREATE TABLE packages (
    aid         {bytes} PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    cap         {bytes} NOT NULL,
    sha256      {bytes} NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE category_apps (
    category_id TEXT NOT NULL REFERENCES categories(id),
    position    BIGINT NOT NULL,
    instance    {bytes} NOT NULL,
    package_aid {bytes} NOT NULL REFERENCES packages(aid),
    module      {bytes} NOT NULL,
    privileges  {bytes} NOT NULL,
    params      {bytes} NOT NULL,
    perso       {bytes} NOT NULL,
    PRIMARY KEY (category_id, instance)
);

CREATE TABLE cards (
    card_number TEXT PRIMARY KEY,
    category_id TEXT NOT NULL REFERENCES categories(id),
    state       TEXT NOT NULL CHECK (state IN ('blank', 'written', 'partial')),
    key_version BIGINT,
    kvn         BIGINT,
    kdd         {bytes},
    factory_kdd {bytes},
    chip_id     {bytes},
    initial_key_kind TEXT CHECK (initial_key_kind IN ('3DES', 'AES')),
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX cards_by_category ON cards (category_id, key_version);

CREATE TABLE card_apps (
    card_number  TEXT NOT NULL REFERENCES cards(card_number),
    instance     {bytes} NOT NULL,
    package_aid  {bytes} NOT NULL,
    installed_ms BIGINT NOT NULL,
    PRIMARY KEY (card_number, instance)
);

CREATE TABLE jobs (
    id             {autoid},
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    actor          TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('write', 'rewrite', 'clear', 'app_load', 'app_delete')),
    card_number    TEXT NOT NULL,
    params         TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts       BIGINT NOT NULL,
    lease_until_ms BIGINT,
    lease_owner    TEXT,
    error          TEXT,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_one_open_per_card ON jobs (card_number) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_by_state ON jobs (state, id);

CREATE TABLE job_steps (
    job_id      BIGINT NOT NULL REFERENCES jobs(id),
    seq         BIGINT NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'started', 'done')),
    attempts    BIGINT NOT NULL,
    detail      TEXT,
    started_ms  BIGINT,
    finished_ms BIGINT,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE audit_log (
    id          BIGINT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    card_number TEXT,
    result      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   {bytes} NOT NULL,
    hash        {bytes} NOT NULL
);
CREATE INDEX audit_by_card ON audit_log (card_number, id);

CREATE TABLE audit_head (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    last_id   BIGINT NOT NULL,
    last_hash {bytes} NOT NULL
);
INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, {zero_hash});
"#;

const V1_SQLITE: &str = r#"
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"#;

const V1_POSTGRES: &str = r#"
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"#;

const V2_PKI: &str = r#"
CREATE TABLE pki_certificates (
    serial       {bytes} PRIMARY KEY,
    subject      TEXT NOT NULL,
    not_after_ms BIGINT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL
);

CREATE TABLE pki_revocations (
    serial        {bytes} PRIMARY KEY REFERENCES pki_certificates(serial),
    revoked_at_ms BIGINT NOT NULL,
    body          TEXT NOT NULL
);

CREATE TABLE pki_counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO pki_counters (name, value) VALUES ('crl_number', 0);

CREATE TABLE pki_enrolment_challenges (
    id         {bytes} PRIMARY KEY,
    body       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'used')),
    expires_ms BIGINT NOT NULL
);

CREATE TABLE pki_payment_challenges (
    id         {bytes} PRIMARY KEY,
    body       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'used')),
    expires_ms BIGINT NOT NULL
);

CREATE TABLE pki_authorisations (
    challenge_id  {bytes} PRIMARY KEY REFERENCES pki_payment_challenges(id),
    body          TEXT NOT NULL,
    authorised_ms BIGINT NOT NULL
);
"#;

const V3_JOB_INDEX: &str = r#"
CREATE INDEX jobs_by_card ON jobs (card_number, id);
"#;

const V4_AUDIT_CHECKPOINT: &str = r#"
CREATE TABLE audit_checkpoint (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    entries    BIGINT NOT NULL,
    head       {bytes} NOT NULL,
    key_label  TEXT NOT NULL,
    signature  {bytes} NOT NULL,
    at_ms      BIGINT NOT NULL
);
"#;

const V5_SSD: &str = r#"
CREATE TABLE ssd_partners (
    id            TEXT PRIMARY KEY REFERENCES tenants(id),
    name          TEXT NOT NULL,
    certificate   {bytes} NOT NULL,
    cert_sha256   {bytes} NOT NULL UNIQUE,
    aid_prefix    {bytes} NOT NULL,
    card_ranges   TEXT NOT NULL,
    transport_key {bytes} NOT NULL,
    revoked       BIGINT NOT NULL CHECK (revoked IN (0, 1)),
    revoked_ms    BIGINT,
    created_ms    BIGINT NOT NULL
);

CREATE TABLE ssd_key_policy (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    lifetime_ms     BIGINT NOT NULL CHECK (lifetime_ms > 0),
    renew_before_ms BIGINT NOT NULL CHECK (renew_before_ms >= 0),
    updated_ms      BIGINT NOT NULL
);

CREATE TABLE ssds (
    card_number    TEXT NOT NULL,
    aid            {bytes} NOT NULL,
    owner          TEXT NOT NULL,
    model          TEXT NOT NULL CHECK (model IN ('authorized', 'delegated')),
    privileges     {bytes} NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('requested', 'created', 'handed_over', 'managed', 'locked', 'deleted', 'failed')),
    created_ms     BIGINT NOT NULL,
    handed_over_ms BIGINT,
    receipt        TEXT,
    updated_ms     BIGINT NOT NULL,
    PRIMARY KEY (card_number, aid)
);
CREATE INDEX ssds_by_owner ON ssds (owner, card_number);

CREATE TABLE ssd_key_versions (
    card_number TEXT NOT NULL,
    aid         {bytes} NOT NULL,
    seq         BIGINT NOT NULL,
    kvn         BIGINT NOT NULL CHECK (kvn BETWEEN 1 AND 127),
    label       TEXT NOT NULL,
    holder      TEXT NOT NULL CHECK (holder IN ('CI', 'AP')),
    state       TEXT NOT NULL CHECK (state IN ('active', 'replaced', 'compromised')),
    reason      TEXT,
    kcv         {bytes} NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    PRIMARY KEY (card_number, aid, seq),
    FOREIGN KEY (card_number, aid) REFERENCES ssds (card_number, aid)
);
CREATE INDEX ssd_keys_by_expiry ON ssd_key_versions (state, expires_ms);

CREATE TABLE ssd_renewals (
    card_number TEXT NOT NULL,
    aid         {bytes} NOT NULL,
    seq         BIGINT NOT NULL,
    from_kvn    BIGINT NOT NULL,
    to_kvn      BIGINT NOT NULL,
    cause       TEXT NOT NULL CHECK (cause IN ('handover', 'expiry', 'forced')),
    reason      TEXT,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (card_number, aid, seq),
    FOREIGN KEY (card_number, aid) REFERENCES ssds (card_number, aid)
);
"#;

/// SQLite cannot alter a CHECK: `jobs` (and `job_steps`, which references it) are rebuilt.
/// Renaming a parent table rewrites the children's references to the new name, so the
/// children are rebuilt too, then the old tables dropped (children first).
const V5_SQLITE: &str = r#"
DROP INDEX jobs_one_open_per_card;
DROP INDEX jobs_by_state;
DROP INDEX jobs_by_card;
ALTER TABLE jobs RENAME TO jobs_v4;
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    actor          TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('write', 'rewrite', 'clear', 'app_load', 'app_delete', 'ssd_create', 'ssd_rotate', 'ssd_renew', 'ssd_replace')),
    card_number    TEXT NOT NULL,
    params         TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts       BIGINT NOT NULL,
    lease_until_ms BIGINT,
    lease_owner    TEXT,
    error          TEXT,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL
);
INSERT INTO jobs SELECT * FROM jobs_v4;
ALTER TABLE job_steps RENAME TO job_steps_v4;
CREATE TABLE job_steps (
    job_id      BIGINT NOT NULL REFERENCES jobs(id),
    seq         BIGINT NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'started', 'done')),
    attempts    BIGINT NOT NULL,
    detail      TEXT,
    started_ms  BIGINT,
    finished_ms BIGINT,
    PRIMARY KEY (job_id, seq)
);
INSERT INTO job_steps SELECT * FROM job_steps_v4;
DROP TABLE job_steps_v4;
DROP TABLE jobs_v4;
CREATE UNIQUE INDEX jobs_one_open_per_card ON jobs (card_number) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_card ON jobs (card_number, id);
"#;

const V5_POSTGRES: &str = r#"
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('write', 'rewrite', 'clear', 'app_load', 'app_delete', 'ssd_create', 'ssd_rotate', 'ssd_renew', 'ssd_replace'));
"#;

/// Delegated Management receipts of SSDs (GP 2.3.1 §9.1.3.3, Appendix C.5): one row per
/// verified receipt; the confirmation counter rises per card (its receipt generation
/// domain), so `(card_number, counter)` is unique and a replay cannot be recorded.
const V6_SSD_RECEIPTS: &str = r#"
CREATE TABLE ssd_receipts (
    card_number  TEXT NOT NULL,
    aid          {bytes} NOT NULL,
    counter      BIGINT NOT NULL CHECK (counter BETWEEN 0 AND 65535),
    operation    TEXT NOT NULL CHECK (operation IN ('load', 'install', 'extradition', 'delete')),
    object       TEXT NOT NULL,
    receipt      {bytes} NOT NULL,
    confirmation {bytes} NOT NULL,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (card_number, counter),
    FOREIGN KEY (card_number, aid) REFERENCES ssds (card_number, aid)
);
CREATE INDEX ssd_receipts_by_ssd ON ssd_receipts (card_number, aid, counter);
"#;

/// Install records uploaded by outlet security modules (issue #11): one row per
/// `(outlet, seq)`, stored once; the chain links (`prev_hash` → previous `hash`) are checked
/// as rows arrive.
const V7_OUTLET_RECORDS: &str = r#"
CREATE TABLE outlet_records (
    outlet         TEXT NOT NULL,
    seq            BIGINT NOT NULL CHECK (seq >= 1),
    tenant_id      TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    card           TEXT NOT NULL,
    application    TEXT NOT NULL,
    package_sha256 TEXT NOT NULL,
    result         TEXT NOT NULL,
    code           TEXT NOT NULL,
    detail         TEXT NOT NULL,
    prev_hash      {bytes} NOT NULL,
    hash           {bytes} NOT NULL,
    received_ms    BIGINT NOT NULL,
    PRIMARY KEY (outlet, seq)
);
CREATE INDEX outlet_records_by_card ON outlet_records (card, at_ms);
"#;

const V8_OTA: &str = r#"
CREATE TABLE ota_catalog (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    app         TEXT NOT NULL,
    title       TEXT NOT NULL,
    package_aid {bytes} NOT NULL REFERENCES packages(aid),
    module      {bytes} NOT NULL,
    instance    {bytes} NOT NULL,
    sd_aid      {bytes} NOT NULL,
    privileges  {bytes} NOT NULL,
    params      {bytes} NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, app)
);

CREATE TABLE ota_cards (
    card_number TEXT PRIMARY KEY REFERENCES cards(card_number),
    iccid       TEXT NOT NULL UNIQUE,
    msisdn      TEXT NOT NULL,
    kvn         BIGINT NOT NULL CHECK (kvn BETWEEN 1 AND 15),
    counter_out BIGINT NOT NULL CHECK (counter_out >= 0),
    counter_in  BIGINT NOT NULL CHECK (counter_in >= 0),
    created_ms  BIGINT NOT NULL
);
CREATE INDEX ota_cards_by_msisdn ON ota_cards (msisdn);

CREATE TABLE ota_sessions (
    id          {autoid},
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    card_number TEXT NOT NULL REFERENCES ota_cards(card_number),
    app         TEXT NOT NULL,
    bearer      TEXT NOT NULL CHECK (bearer IN ('sms', 'https')),
    origin      TEXT NOT NULL CHECK (origin IN ('card', 'server')),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'abandoned')),
    step        BIGINT NOT NULL,
    steps       BIGINT NOT NULL,
    detail      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX ota_sessions_by_card ON ota_sessions (card_number, id);

CREATE TABLE ota_messages (
    id          {autoid},
    session_id  BIGINT REFERENCES ota_sessions(id),
    card_number TEXT NOT NULL,
    direction   TEXT NOT NULL CHECK (direction IN ('mt', 'mo')),
    kind        TEXT NOT NULL,
    counter     BIGINT,
    bytes       {bytes} NOT NULL,
    status      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX ota_messages_by_session ON ota_messages (session_id, id);
CREATE INDEX ota_messages_by_card ON ota_messages (card_number, id);
"#;

/// Every migration, in order. Never edit one that shipped: add the next.
/// Campaigns (issue 13): a batch of cards to write and its work items, claimed under a lease.
const V9_CAMPAIGNS: &str = r#"
CREATE TABLE campaigns (
    id          {autoid},
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    category_id TEXT NOT NULL REFERENCES categories(id),
    state       TEXT NOT NULL CHECK (state IN ('created', 'running', 'paused', 'cancelled')),
    parent_id   BIGINT REFERENCES campaigns(id),
    created_by  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE campaign_items (
    campaign_id    BIGINT NOT NULL REFERENCES campaigns(id),
    card_number    TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'done', 'failed')),
    attempts       BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until_ms BIGINT,
    reason         TEXT,
    finished_ms    BIGINT,
    PRIMARY KEY (campaign_id, card_number)
);
CREATE INDEX campaign_items_by_state ON campaign_items (state, campaign_id);
"#;

/// Campaigns become `finished` when nothing is left to claim (issue 13). SQLite cannot alter a
/// CHECK: `campaigns` and `campaign_items` (which references it) are rebuilt, as in V5.
const V10_SQLITE: &str = r#"
DROP INDEX campaign_items_by_state;
ALTER TABLE campaigns RENAME TO campaigns_v9;
CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    category_id TEXT NOT NULL REFERENCES categories(id),
    state       TEXT NOT NULL CHECK (state IN ('created', 'running', 'paused', 'cancelled', 'finished')),
    parent_id   BIGINT REFERENCES campaigns(id),
    created_by  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
INSERT INTO campaigns SELECT * FROM campaigns_v9 ORDER BY id;
ALTER TABLE campaign_items RENAME TO campaign_items_v9;
CREATE TABLE campaign_items (
    campaign_id    BIGINT NOT NULL REFERENCES campaigns(id),
    card_number    TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'done', 'failed')),
    attempts       BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until_ms BIGINT,
    reason         TEXT,
    finished_ms    BIGINT,
    PRIMARY KEY (campaign_id, card_number)
);
INSERT INTO campaign_items SELECT * FROM campaign_items_v9;
DROP TABLE campaign_items_v9;
DROP TABLE campaigns_v9;
CREATE INDEX campaign_items_by_state ON campaign_items (state, campaign_id);
"#;

const V10_POSTGRES: &str = r#"
ALTER TABLE campaigns DROP CONSTRAINT campaigns_state_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_state_check CHECK (state IN ('created', 'running', 'paused', 'cancelled', 'finished'));
"#;

/// Room on every page for the new versions of the rows a write updates, so that PostgreSQL
/// keeps them on the same page (HOT updates: no index entry written, the old version
/// reclaimed by the next reader of the page). The rows of a job are updated at every step
/// record; a card's several times per write; the audit head and checkpoint at every seal.
const V11_POSTGRES: &str = r#"
ALTER TABLE job_steps SET (fillfactor = 70);
ALTER TABLE jobs SET (fillfactor = 70);
ALTER TABLE cards SET (fillfactor = 70);
ALTER TABLE campaign_items SET (fillfactor = 80);
ALTER TABLE audit_head SET (fillfactor = 50);
ALTER TABLE audit_checkpoint SET (fillfactor = 50);
"#;

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core: tenants, categories, key versions, packages, cards, jobs, audit log",
        sql: V1_CORE,
        sqlite: V1_SQLITE,
        postgres: V1_POSTGRES,
    },
    Migration {
        version: 2,
        name: "pki: certificates, revocations, challenges, authorisations",
        sql: V2_PKI,
        sqlite: "",
        postgres: "",
    },
    Migration {
        version: 3,
        name: "jobs: index by card (a card's history without a scan)",
        sql: V3_JOB_INDEX,
        sqlite: "",
        postgres: "",
    },
    Migration {
        version: 4,
        name: "audit: the signed checkpoint of the chain head",
        sql: V4_AUDIT_CHECKPOINT,
        sqlite: "",
        postgres: "",
    },
    Migration {
        version: 5,
        name: "ssd: partners, key policy, SSDs, their key versions and renewals; SSD job kinds",
        sql: V5_SSD,
        sqlite: V5_SQLITE,
        postgres: V5_POSTGRES,
    },
    Migration {
        version: 6,
        name: "ssd: Delegated Management receipts",
        sql: V6_SSD_RECEIPTS,
        sqlite: "",
        postgres: "",
    },
    Migration {
        version: 7,
        name: "outlet: install records uploaded by outlets",
        sql: V7_OUTLET_RECORDS,
        sqlite: "",
        postgres: "",
    },
    Migration {
        version: 8,
        name: "ota: catalog, cards' OTA identities and counters, sessions, messages",
        sql: V8_OTA,
        sqlite: "",
        postgres: "",
    },
    Migration {
        version: 9,
        name: "campaigns: batches of cards to write, work items claimed under a lease",
        sql: V9_CAMPAIGNS,
        sqlite: "",
        postgres: "",
    },
    Migration {
        version: 10,
        name: "campaigns: finished when nothing is left to claim",
        sql: "",
        sqlite: V10_SQLITE,
        postgres: V10_POSTGRES,
    },
    Migration {
        version: 11,
        name: "PostgreSQL: free room on the pages of rows updated at every step (HOT updates)",
        sql: "",
        sqlite: "",
        postgres: V11_POSTGRES,
    },
];

/// The SQL of a migration for one engine.
pub(crate) fn render(m: &Migration, dialect: Dialect) -> String {
    let (bytes, autoid, zero, extra) = match dialect {
        Dialect::Sqlite => (
            "BLOB",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "zeroblob(32)",
            m.sqlite,
        ),
        Dialect::Postgres => (
            "BYTEA",
            "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            "decode(repeat('00', 32), 'hex')",
            m.postgres,
        ),
    };
    let mut sql = m
        .sql
        .replace("{bytes}", bytes)
        .replace("{autoid}", autoid)
        .replace("{zero_hash}", zero);
    sql.push_str(extra);
    sql
}

/// Arbitrary constant for `pg_advisory_xact_lock` ("Card" in ASCII).
const PG_MIGRATION_LOCK: i64 = 0x4361_7264;

/// Applies the migrations the database lacks. Returns the versions applied now.
pub(crate) fn migrate(conn: &mut Conn) -> Result<Vec<i64>, StoreError> {
    let dialect = conn.dialect();
    conn.tx(|c| {
        if dialect == Dialect::Postgres {
            c.execute(
                "SELECT pg_advisory_xact_lock($1)",
                params![PG_MIGRATION_LOCK],
            )?;
        }
        c.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    BIGINT PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_ms BIGINT NOT NULL
            )",
        )?;
        let applied: Vec<i64> = c
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                params![],
            )?
            .iter()
            .map(|r| r.int(0))
            .collect::<Result<_, _>>()?;
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        if let Some(&found) = applied.last() {
            if found > known {
                return Err(StoreError::SchemaTooNew { found, known });
            }
        }
        let mut done = Vec::new();
        for m in MIGRATIONS {
            if applied.contains(&m.version) {
                continue;
            }
            c.batch(&render(m, dialect))?;
            c.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
                params![m.version, m.name, now_ms()],
            )?;
            done.push(m.version);
        }
        Ok(done)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_rendered() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version > last);
            last = m.version;
            for d in [Dialect::Sqlite, Dialect::Postgres] {
                let sql = render(m, d);
                assert!(
                    !sql.contains('{'),
                    "unrendered token in migration {}",
                    m.version
                );
            }
        }
    }
}
