//! Install records uploaded by outlet security modules (issue #11): stored once per
//! `(outlet, seq)`, their chain links checked as they arrive, the upload audited.

use serde_json::json;

use super::Store;
use crate::audit::{append_in, NewEntry};
use crate::db::{params, Conn, Row};
use crate::error::{Error, StoreError};
use crate::model::{now_ms, OutletRecord, OutletUpload, StoredOutletRecord};

const COLUMNS: &str = "outlet, seq, at_ms, card, application, package_sha256, result, code, \
                       detail, prev_hash, hash, tenant_id, received_ms";

fn hash_of(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(v.as_slice()).map_err(|_| StoreError::Corrupt {
        what: what.into(),
        detail: format!("{} bytes, not 32", v.len()),
    })
}

fn seq_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        what: "outlet_records.seq".into(),
        detail: format!("{v}"),
    })
}

fn record_of(r: &Row) -> Result<StoredOutletRecord, StoreError> {
    Ok(StoredOutletRecord {
        record: OutletRecord {
            outlet: r.text(0)?,
            seq: seq_of(r.int(1)?)?,
            at_ms: r.int(2)?,
            card: r.text(3)?,
            application: r.text(4)?,
            package_sha256: r.text(5)?,
            result: r.text(6)?,
            code: r.text(7)?,
            detail: r.text(8)?,
            prev_hash: hash_of(r.bytes(9)?, "outlet_records.prev_hash")?,
            hash: hash_of(r.bytes(10)?, "outlet_records.hash")?,
        },
        tenant: r.text(11)?,
        received_ms: r.int(12)?,
    })
}

fn seq_param(seq: u64) -> Result<i64, Error> {
    i64::try_from(seq).map_err(|_| Error::Invalid(format!("sequence number {seq} is too large")))
}

/// The stored hash and tenant of `(outlet, seq)`.
fn stored_in(c: &mut Conn, outlet: &str, seq: u64) -> Result<Option<([u8; 32], String)>, Error> {
    let lock = c.for_update();
    let row = c.query_opt(
        &format!("SELECT hash, tenant_id FROM outlet_records WHERE outlet = $1 AND seq = $2{lock}"),
        params![outlet, seq_param(seq)?],
    )?;
    Ok(match row {
        None => None,
        Some(r) => Some((hash_of(r.bytes(0)?, "outlet_records.hash")?, r.text(1)?)),
    })
}

impl Store {
    /// Stores the install records an outlet uploaded (consecutive, oldest first), in one
    /// transaction: a record already stored with the same hash counts as `already`; one
    /// stored with another hash, or whose `prev_hash` is not the hash of the record before
    /// it (stored, or earlier in the upload), or that follows a record the platform does
    /// not have, is a [`Error::RecordConflict`] and nothing is stored. An outlet's records
    /// belong to the tenant that first uploaded them ([`Error::Forbidden`] for another).
    /// The caller checks each record's own hash (`outlet::records`). Audited as
    /// `outlet.records` when something was stored.
    pub fn store_outlet_records(
        &self,
        actor: &str,
        tenant: &str,
        outlet: &str,
        records: &[OutletRecord],
    ) -> Result<OutletUpload, Error> {
        for (i, pair) in records.windows(2).enumerate() {
            if pair[1].seq != pair[0].seq + 1 {
                return Err(Error::Invalid(format!(
                    "record {} follows record {}: an upload is consecutive records",
                    pair[1].seq, records[i].seq
                )));
            }
        }
        if let Some(r) = records.iter().find(|r| r.outlet != outlet || r.seq == 0) {
            return Err(Error::Invalid(format!(
                "record {} names outlet {:?}, the upload {outlet:?} (sequence numbers start at 1)",
                r.seq, r.outlet
            )));
        }
        self.tx(|c| {
            let owner = c.query_opt(
                "SELECT tenant_id FROM outlet_records WHERE outlet = $1 LIMIT 1",
                params![outlet],
            )?;
            if let Some(o) = owner {
                if o.text(0)? != tenant {
                    return Err(Error::Forbidden {
                        tenant: tenant.into(),
                        action: format!("upload the records of outlet {outlet}"),
                    });
                }
            }
            let mut up = OutletUpload {
                stored: 0,
                already: 0,
                through: 0,
            };
            let now = now_ms();
            for r in records {
                if let Some((hash, _)) = stored_in(c, outlet, r.seq)? {
                    if hash != r.hash {
                        return Err(Error::RecordConflict(format!(
                            "outlet {outlet} record {}: the platform holds another record under this number",
                            r.seq
                        )));
                    }
                    up.already += 1;
                    continue;
                }
                if r.seq > 1 {
                    match stored_in(c, outlet, r.seq - 1)? {
                        Some((prev, _)) if prev == r.prev_hash => {}
                        Some(_) => {
                            return Err(Error::RecordConflict(format!(
                                "outlet {outlet} record {}: its previous hash is not record {}'s",
                                r.seq,
                                r.seq - 1
                            )))
                        }
                        None => {
                            return Err(Error::RecordConflict(format!(
                                "outlet {outlet} record {}: record {} has not arrived; records arrive in order",
                                r.seq,
                                r.seq - 1
                            )))
                        }
                    }
                } else if r.prev_hash != [0u8; 32] {
                    return Err(Error::RecordConflict(format!(
                        "outlet {outlet} record 1 does not start the chain"
                    )));
                }
                c.execute(
                    &format!("INSERT INTO outlet_records ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
                    params![
                        outlet,
                        seq_param(r.seq)?,
                        r.at_ms,
                        r.card.as_str(),
                        r.application.as_str(),
                        r.package_sha256.as_str(),
                        r.result.as_str(),
                        r.code.as_str(),
                        r.detail.as_str(),
                        r.prev_hash.to_vec(),
                        r.hash.to_vec(),
                        tenant,
                        now
                    ],
                )
                .map_err(|e| {
                    if e.is_unique_violation() {
                        Error::RecordConflict(format!(
                            "outlet {outlet} record {}: uploaded twice at the same time",
                            r.seq
                        ))
                    } else {
                        Error::Store(e)
                    }
                })?;
                up.stored += 1;
            }
            let max = c.query_one(
                "SELECT MAX(seq) FROM outlet_records WHERE outlet = $1",
                params![outlet],
            )?;
            up.through = max.opt_int(0)?.map(seq_of).transpose()?.unwrap_or(0);
            if up.stored > 0 {
                append_in(
                    c,
                    &NewEntry::new(actor, "outlet.records", "ok").detail(json!({
                        "outlet": outlet,
                        "stored": up.stored,
                        "already": up.already,
                        "through": up.through,
                    })),
                )?;
            }
            Ok(up)
        })
    }

    /// The records of `outlet` (every outlet when `None`), by outlet and sequence number.
    pub fn outlet_records(
        &self,
        outlet: Option<&str>,
    ) -> Result<Vec<StoredOutletRecord>, StoreError> {
        self.with_conn(|c| {
            let rows = match outlet {
                Some(o) => c.query(
                    &format!("SELECT {COLUMNS} FROM outlet_records WHERE outlet = $1 ORDER BY seq"),
                    params![o],
                )?,
                None => c.query(
                    &format!("SELECT {COLUMNS} FROM outlet_records ORDER BY outlet, seq"),
                    params![],
                )?,
            };
            rows.iter().map(record_of).collect()
        })
    }
}
