//! The records of [`crate::ssd`]: partners and their contracts, the key policy, SSDs, their
//! key versions and renewals. Every change is audited in the same transaction, with the
//! actor.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::Store;
use crate::audit::{append_in, NewEntry};
use crate::db::{params, Conn, Row};
use crate::error::StoreError;
use crate::model::{now_ms, Role};
use crate::ssd::model::{
    CardRange, DmReceipt, DueRenewal, KeyHolder, KeyPolicy, KeyState, NewPartner, Partner, Renewal,
    SsdKeyVersion, SsdModel, SsdRecord, SsdState,
};

const PARTNER_COLUMNS: &str = "id, name, certificate, cert_sha256, aid_prefix, card_ranges, \
                               transport_key, revoked, revoked_ms, created_ms";

fn corrupt(what: &str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
}

fn partner_of(r: &Row) -> Result<Partner, StoreError> {
    let ranges: Vec<CardRange> =
        serde_json::from_str(&r.text(5)?).map_err(|e| corrupt("ssd_partners.card_ranges", e))?;
    let sha = r.bytes(3)?;
    Ok(Partner {
        id: r.text(0)?,
        name: r.text(1)?,
        certificate: r.bytes(2)?,
        certificate_sha256: sha
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("ssd_partners.cert_sha256", "not 32 bytes"))?,
        aid_prefix: r.bytes(4)?,
        card_ranges: ranges,
        transport_key: r.bytes(6)?,
        revoked: r.int(7)? != 0,
        revoked_ms: r.opt_int(8)?,
        created_ms: r.int(9)?,
    })
}

/// DER from DER or PEM (`-----BEGIN …-----`, base64, `-----END …-----`).
pub(crate) fn der_of(bytes: &[u8], what: &'static str) -> Result<Vec<u8>, StoreError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(bytes.to_vec());
    };
    if !text.contains("-----BEGIN") {
        return Ok(bytes.to_vec());
    }
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64_decode(body.trim()).ok_or_else(|| StoreError::Invalid {
        what,
        detail: "the PEM body is not base64".into(),
    })
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn partner_in(c: &mut Conn, id: &str) -> Result<Option<Partner>, StoreError> {
    c.query_opt(
        &format!("SELECT {PARTNER_COLUMNS} FROM ssd_partners WHERE id = $1"),
        params![id],
    )?
    .map(|r| partner_of(&r))
    .transpose()
}

pub(crate) fn key_policy_in(c: &mut Conn) -> Result<KeyPolicy, StoreError> {
    let Some(r) = c.query_opt(
        "SELECT lifetime_ms, renew_before_ms FROM ssd_key_policy WHERE id = 1",
        params![],
    )?
    else {
        return Ok(KeyPolicy::default());
    };
    let ms = |v: i64| std::time::Duration::from_millis(u64::try_from(v).unwrap_or(0));
    Ok(KeyPolicy {
        ssd_lifetime: ms(r.int(0)?),
        renew_before: ms(r.int(1)?),
    })
}

fn ms_of(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

// ---- SSDs ---------------------------------------------------------------------------

const SSD_COLUMNS: &str = "card_number, aid, owner, model, privileges, state, created_ms, \
                           handed_over_ms, receipt";

fn key_of(r: &Row) -> Result<SsdKeyVersion, StoreError> {
    Ok(SsdKeyVersion {
        kvn: u8::try_from(r.int(0)?).map_err(|_| corrupt("ssd_key_versions.kvn", "over 255"))?,
        created_ms: r.int(1)?,
        expires_ms: r.int(2)?,
        holder: r.text(3)?.parse()?,
        state: r.text(4)?.parse()?,
        reason: r.opt_text(5)?,
        kcv: r.bytes(6)?,
    })
}

fn kvn_of(v: i64, what: &str) -> Result<u8, StoreError> {
    u8::try_from(v).map_err(|_| corrupt(what, "over 255"))
}

pub(crate) fn ssd_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
) -> Result<Option<SsdRecord>, StoreError> {
    let Some(r) = c.query_opt(
        &format!("SELECT {SSD_COLUMNS} FROM ssds WHERE card_number = $1 AND aid = $2"),
        params![card_number, aid],
    )?
    else {
        return Ok(None);
    };
    let keys = c
        .query(
            "SELECT kvn, created_ms, expires_ms, holder, state, reason, kcv
             FROM ssd_key_versions WHERE card_number = $1 AND aid = $2 ORDER BY seq",
            params![card_number, aid],
        )?
        .iter()
        .map(key_of)
        .collect::<Result<Vec<_>, _>>()?;
    let renewals = c
        .query(
            "SELECT from_kvn, to_kvn, cause, reason, at_ms
             FROM ssd_renewals WHERE card_number = $1 AND aid = $2 ORDER BY seq",
            params![card_number, aid],
        )?
        .iter()
        .map(|r| {
            Ok(Renewal {
                from_kvn: kvn_of(r.int(0)?, "ssd_renewals.from_kvn")?,
                to_kvn: kvn_of(r.int(1)?, "ssd_renewals.to_kvn")?,
                cause: r.text(2)?,
                reason: r.opt_text(3)?,
                at_ms: r.int(4)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let receipts = receipts_in(c, card_number, aid)?;
    Ok(Some(SsdRecord {
        card_number: r.text(0)?,
        aid: apdu::hex(&r.bytes(1)?),
        owner: r.text(2)?,
        model: r.text(3)?.parse()?,
        privileges: r.bytes(4)?,
        state: r.text(5)?.parse()?,
        created_ms: r.int(6)?,
        handed_over_ms: r.opt_int(7)?,
        receipt: r.opt_text(8)?,
        keys,
        renewals,
        receipts,
    }))
}

/// The SSDs whose `(card_number, aid)` the query `sql` selects.
fn ssds_where_in(
    c: &mut Conn,
    sql: &str,
    args: &[crate::db::Value],
) -> Result<Vec<SsdRecord>, StoreError> {
    let keys = c
        .query(sql, args)?
        .iter()
        .map(|r| Ok((r.text(0)?, r.bytes(1)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut out = Vec::with_capacity(keys.len());
    for (n, a) in keys {
        if let Some(s) = ssd_in(c, &n, &a)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// The highest confirmation counter recorded for a card's receipts.
pub(crate) fn last_receipt_counter_in(
    c: &mut Conn,
    card_number: &str,
) -> Result<Option<u16>, StoreError> {
    let r = c.query_opt(
        "SELECT MAX(counter) FROM ssd_receipts WHERE card_number = $1",
        params![card_number],
    )?;
    match r.map(|r| r.opt_int(0)).transpose()?.flatten() {
        Some(n) => u16::try_from(n)
            .map(Some)
            .map_err(|_| corrupt("ssd_receipts.counter", "over 65535")),
        None => Ok(None),
    }
}

/// Records a verified Delegated Management receipt of an SSD. A second receipt with the
/// same counter for the card is refused by the primary key (a replay).
pub(crate) fn add_receipt_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
    r: &DmReceipt,
    confirmation: &[u8],
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO ssd_receipts (card_number, aid, counter, operation, object, receipt,
                                   confirmation, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![
            card_number,
            aid,
            i64::from(r.counter),
            r.operation.as_str(),
            r.object.as_str(),
            r.receipt.as_slice(),
            confirmation,
            r.at_ms
        ],
    )
    .map_err(|e| {
        e.duplicate_as(|| format!("a receipt with counter {} on card {card_number}", r.counter))
    })?;
    Ok(())
}

fn receipts_in(c: &mut Conn, card_number: &str, aid: &[u8]) -> Result<Vec<DmReceipt>, StoreError> {
    c.query(
        "SELECT counter, operation, object, receipt, at_ms
         FROM ssd_receipts WHERE card_number = $1 AND aid = $2 ORDER BY counter",
        params![card_number, aid],
    )?
    .iter()
    .map(|r| {
        Ok(DmReceipt {
            counter: u16::try_from(r.int(0)?)
                .map_err(|_| corrupt("ssd_receipts.counter", "over 65535"))?,
            operation: r.text(1)?,
            object: r.text(2)?,
            receipt: r.bytes(3)?,
            at_ms: r.int(4)?,
        })
    })
    .collect()
}

/// A new SSD row, or a deleted or failed one brought back (same card and AID), as
/// `requested`.
pub(crate) fn insert_ssd_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
    owner: &str,
    model: SsdModel,
    privileges: &[u8],
) -> Result<(), StoreError> {
    let now = now_ms();
    let n = c.execute(
        "UPDATE ssds SET owner = $3, model = $4, privileges = $5, state = 'requested',
                handed_over_ms = NULL, receipt = NULL, updated_ms = $6
         WHERE card_number = $1 AND aid = $2 AND state IN ('deleted', 'failed')",
        params![card_number, aid, owner, model.as_str(), privileges, now],
    )?;
    if n == 1 {
        return Ok(());
    }
    c.execute(
        "INSERT INTO ssds (card_number, aid, owner, model, privileges, state, created_ms, updated_ms)
         VALUES ($1, $2, $3, $4, $5, 'requested', $6, $6)",
        params![card_number, aid, owner, model.as_str(), privileges, now],
    )
    .map_err(|e| e.duplicate_as(|| format!("an SSD {} on card {card_number}", apdu::hex(aid))))?;
    Ok(())
}

pub(crate) fn set_ssd_state_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
    state: SsdState,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE ssds SET state = $3, updated_ms = $4 WHERE card_number = $1 AND aid = $2",
        params![card_number, aid, state.as_str(), now_ms()],
    )?;
    Ok(())
}

/// Marks a `requested` SSD `failed` (its creation was refused); other states stay.
pub(crate) fn fail_requested_ssd_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE ssds SET state = 'failed', updated_ms = $3
         WHERE card_number = $1 AND aid = $2 AND state = 'requested'",
        params![card_number, aid, now_ms()],
    )?;
    Ok(())
}

pub(crate) fn set_handed_over_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
    at_ms: i64,
    receipt: &str,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE ssds SET state = 'handed_over', handed_over_ms = $3, receipt = $4, updated_ms = $3
         WHERE card_number = $1 AND aid = $2",
        params![card_number, aid, at_ms, receipt],
    )?;
    Ok(())
}

/// A new key version (active), the previous active or compromised ones replaced.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_key_version_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
    kvn: u8,
    label: &str,
    holder: KeyHolder,
    kcv: &[u8],
    created_ms: i64,
    expires_ms: i64,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE ssd_key_versions SET state = 'replaced'
         WHERE card_number = $1 AND aid = $2 AND state <> 'replaced'",
        params![card_number, aid],
    )?;
    c.execute(
        "INSERT INTO ssd_key_versions (card_number, aid, seq, kvn, label, holder, state, kcv,
                                       created_ms, expires_ms)
         VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ssd_key_versions
                          WHERE card_number = $1 AND aid = $2),
                 $3, $4, $5, 'active', $6, $7, $8)",
        params![
            card_number,
            aid,
            i64::from(kvn),
            label,
            holder.as_str(),
            kcv,
            created_ms,
            expires_ms
        ],
    )?;
    Ok(())
}

/// The key-store label of the SSD's current key version.
pub(crate) fn current_key_label_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
) -> Result<Option<(SsdKeyVersion, String)>, StoreError> {
    c.query_opt(
        "SELECT kvn, created_ms, expires_ms, holder, state, reason, kcv, label
         FROM ssd_key_versions WHERE card_number = $1 AND aid = $2 AND state <> 'replaced'
         ORDER BY seq DESC LIMIT 1",
        params![card_number, aid],
    )?
    .map(|r| Ok((key_of(&r)?, r.text(7)?)))
    .transpose()
}

pub(crate) fn mark_key_compromised_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
    kvn: u8,
    reason: &str,
) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE ssd_key_versions SET state = 'compromised', reason = $4
         WHERE card_number = $1 AND aid = $2 AND kvn = $3 AND state = 'active'",
        params![card_number, aid, i64::from(kvn), reason],
    )? > 0)
}

pub(crate) fn add_renewal_in(
    c: &mut Conn,
    card_number: &str,
    aid: &[u8],
    r: &Renewal,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO ssd_renewals (card_number, aid, seq, from_kvn, to_kvn, cause, reason, at_ms)
         VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ssd_renewals
                          WHERE card_number = $1 AND aid = $2),
                 $3, $4, $5, $6, $7)",
        params![
            card_number,
            aid,
            i64::from(r.from_kvn),
            i64::from(r.to_kvn),
            r.cause.as_str(),
            r.reason.clone(),
            r.at_ms
        ],
    )?;
    Ok(())
}

pub(crate) fn ssds_due_in(c: &mut Conn, at_ms: i64) -> Result<Vec<DueRenewal>, StoreError> {
    let policy = key_policy_in(c)?;
    let window = ms_of(policy.renew_before);
    c.query(
        "SELECT s.card_number, s.aid, s.owner, k.kvn, k.holder, k.expires_ms, k.state
         FROM ssd_key_versions k JOIN ssds s ON s.card_number = k.card_number AND s.aid = k.aid
         WHERE s.state IN ('created', 'handed_over', 'managed')
           AND (k.state = 'compromised' OR (k.state = 'active' AND k.expires_ms <= $1))
         ORDER BY k.expires_ms, s.card_number",
        params![at_ms.saturating_add(window)],
    )?
    .iter()
    .map(|r| {
        let state: KeyState = r.text(6)?.parse()?;
        Ok(DueRenewal {
            card_number: r.text(0)?,
            aid: apdu::hex(&r.bytes(1)?),
            owner: r.text(2)?,
            kvn: kvn_of(r.int(3)?, "ssd_key_versions.kvn")?,
            holder: r.text(4)?.parse()?,
            expires_ms: r.int(5)?,
            cause: if state == KeyState::Compromised {
                "compromised".into()
            } else {
                "expiry".into()
            },
        })
    })
    .collect()
}

impl Store {
    /// Registers a partner (and its tenant, role AP, if new), audited as `partner.add`.
    /// The certificate is parsed only for its DER (PEM accepted); its SHA-256 identifies
    /// the partner's client certificates' trust anchor
    /// ([`Store::partner_for_certificate`]).
    pub fn add_partner(&self, actor: &str, p: &NewPartner) -> Result<Partner, StoreError> {
        if !valid_id(&p.id) {
            return Err(StoreError::Invalid {
                what: "partner id",
                detail: format!("'{}': want 1-64 of A-Z a-z 0-9 . _ -", p.id),
            });
        }
        if p.aid_prefix.is_empty() || p.aid_prefix.len() > 15 {
            return Err(StoreError::Invalid {
                what: "SSD AID prefix",
                detail: format!("{} bytes: want 1-15", p.aid_prefix.len()),
            });
        }
        if gp::aid::ISD_AID.as_bytes().starts_with(&p.aid_prefix) {
            return Err(StoreError::Invalid {
                what: "SSD AID prefix",
                detail: "it covers the ISD's AID".into(),
            });
        }
        if p.card_ranges.is_empty() {
            return Err(StoreError::Invalid {
                what: "card number ranges",
                detail: "at least one is needed".into(),
            });
        }
        for r in &p.card_ranges {
            CardRange::new(&r.first, &r.last)?;
        }
        let certificate = der_of(&p.certificate, "partner certificate")?;
        if certificate.first() != Some(&0x30) {
            return Err(StoreError::Invalid {
                what: "partner certificate",
                detail: "not a DER certificate (SEQUENCE)".into(),
            });
        }
        let transport = kms::TransportPublicKey::from_der_or_pem(&p.transport_key)
            .map(|k| k.to_spki_der())
            .map_err(|e| StoreError::Invalid {
                what: "partner transport key",
                detail: e.to_string(),
            })?;
        let sha: [u8; 32] = Sha256::digest(&certificate).into();
        let ranges = serde_json::to_string(&p.card_ranges).map_err(|e| StoreError::Invalid {
            what: "card number ranges",
            detail: e.to_string(),
        })?;
        let now = now_ms();
        self.tx(|c| {
            let tenant = c.query_opt("SELECT role FROM tenants WHERE id = $1", params![&p.id])?;
            match tenant {
                None => {
                    c.execute(
                        "INSERT INTO tenants (id, name, role, created_ms) VALUES ($1, $2, $3, $4)",
                        params![&p.id, &p.name, Role::ApplicationProvider.as_str(), now],
                    )?;
                }
                Some(r) if r.text(0)? != Role::ApplicationProvider.as_str() => {
                    return Err(StoreError::Invalid {
                        what: "partner id",
                        detail: format!("tenant '{}' is not an application provider", p.id),
                    })
                }
                Some(_) => {}
            }
            c.execute(
                &format!(
                    "INSERT INTO ssd_partners ({PARTNER_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, NULL, $8)"
                ),
                params![
                    &p.id,
                    &p.name,
                    certificate.clone(),
                    sha.to_vec(),
                    p.aid_prefix.clone(),
                    ranges.clone(),
                    transport.clone(),
                    now
                ],
            )
            .map_err(|e| e.duplicate_as(|| format!("partner '{}' (or its certificate)", p.id)))?;
            append_in(
                c,
                &NewEntry::new(actor, "partner.add", "ok").detail(json!({
                    "partner": p.id,
                    "certificate_sha256": apdu::hex(&sha),
                    "aid_prefix": apdu::hex(&p.aid_prefix),
                    "card_ranges": p.card_ranges,
                })),
            )?;
            partner_in(c, &p.id)?.ok_or_else(|| corrupt("ssd_partners", "row not found"))
        })
    }

    /// A partner by id.
    pub fn partner(&self, id: &str) -> Result<Option<Partner>, StoreError> {
        self.with_conn(|c| partner_in(c, id))
    }

    /// Every partner, by id.
    pub fn partners(&self) -> Result<Vec<Partner>, StoreError> {
        self.with_conn(|c| {
            c.query(
                &format!("SELECT {PARTNER_COLUMNS} FROM ssd_partners ORDER BY id"),
                params![],
            )?
            .iter()
            .map(partner_of)
            .collect()
        })
    }

    /// Revokes a partner: from now on it can do nothing (audited as `partner.revoke`).
    /// Revoking a revoked partner changes nothing.
    pub fn revoke_partner(&self, actor: &str, id: &str) -> Result<Partner, StoreError> {
        self.tx(|c| {
            let n = c.execute(
                "UPDATE ssd_partners SET revoked = 1, revoked_ms = $2 WHERE id = $1 AND revoked = 0",
                params![id, now_ms()],
            )?;
            let p = partner_in(c, id)?.ok_or_else(|| StoreError::Invalid {
                what: "partner id",
                detail: format!("no partner '{id}'"),
            })?;
            if n == 1 {
                append_in(
                    c,
                    &NewEntry::new(actor, "partner.revoke", "ok").detail(json!({"partner": id})),
                )?;
            }
            Ok(p)
        })
    }

    /// The partner whose registered root CA certificate has this SHA-256 (of its DER).
    /// The mutual-TLS layer passes the fingerprint of the trust anchor the client chain
    /// verified to (the partner's registered CA). Revoked partners are returned too (with
    /// `revoked` set) so that the refusal can name them.
    pub fn partner_for_certificate(
        &self,
        sha256: &[u8; 32],
    ) -> Result<Option<Partner>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {PARTNER_COLUMNS} FROM ssd_partners WHERE cert_sha256 = $1"),
                params![sha256.to_vec()],
            )?
            .map(|r| partner_of(&r))
            .transpose()
        })
    }

    /// Sets the SSD key policy (audited as `keys.policy`). New key versions get its
    /// lifetime; [`Store::ssds_due`] uses its renewal window.
    pub fn set_key_policy(&self, actor: &str, policy: &KeyPolicy) -> Result<(), StoreError> {
        KeyPolicy::new(policy.ssd_lifetime, policy.renew_before)?;
        self.tx(|c| {
            let now = now_ms();
            c.execute("DELETE FROM ssd_key_policy WHERE id = 1", params![])?;
            c.execute(
                "INSERT INTO ssd_key_policy (id, lifetime_ms, renew_before_ms, updated_ms)
                 VALUES (1, $1, $2, $3)",
                params![ms_of(policy.ssd_lifetime), ms_of(policy.renew_before), now],
            )?;
            append_in(
                c,
                &NewEntry::new(actor, "keys.policy", "ok").detail(json!({
                    "ssd_lifetime_s": policy.ssd_lifetime.as_secs(),
                    "renew_before_s": policy.renew_before.as_secs(),
                })),
            )?;
            Ok(())
        })
    }

    /// The SSD key policy (the default, 365 days / 30 days, until one is set).
    pub fn key_policy(&self) -> Result<KeyPolicy, StoreError> {
        self.with_conn(key_policy_in)
    }

    /// The record of one SSD.
    pub fn ssd(&self, card_number: &str, aid: &[u8]) -> Result<Option<SsdRecord>, StoreError> {
        self.with_conn(|c| ssd_in(c, card_number, aid))
    }

    /// The SSDs a partner owns, by card number and AID.
    pub fn ssds_of_owner(&self, owner: &str) -> Result<Vec<SsdRecord>, StoreError> {
        self.with_conn(|c| {
            ssds_where_in(
                c,
                "SELECT card_number, aid FROM ssds WHERE owner = $1 ORDER BY card_number, aid",
                params![owner],
            )
        })
    }

    /// Every SSD recorded (every owner's), by card number and AID: what a CI operator
    /// lists.
    pub fn ssds(&self) -> Result<Vec<SsdRecord>, StoreError> {
        self.with_conn(|c| {
            ssds_where_in(
                c,
                "SELECT card_number, aid FROM ssds ORDER BY card_number, aid",
                params![],
            )
        })
    }

    /// The highest confirmation counter of the Delegated Management receipts recorded for
    /// a card (GP 2.3.1 §9.1.3.3: one counter per receipt generation domain, the ISD).
    pub fn last_receipt_counter(&self, card_number: &str) -> Result<Option<u16>, StoreError> {
        self.with_conn(|c| last_receipt_counter_in(c, card_number))
    }

    /// The key versions that fall due at `at_ms`: compromised ones, and active ones that
    /// expire within the policy's renewal window (or have expired), soonest first.
    pub fn ssds_due(&self, at_ms: i64) -> Result<Vec<DueRenewal>, StoreError> {
        self.with_conn(|c| ssds_due_in(c, at_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_to_der() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\nAA==\n-----END CERTIFICATE-----\n";
        assert_eq!(der_of(pem, "x").unwrap(), vec![0x30, 0x82, 0x01, 0x00]);
        assert_eq!(der_of(&[0x30, 1, 2], "x").unwrap(), vec![0x30, 1, 2]);
        assert!(der_of(b"-----BEGIN X-----\n!!\n-----END X-----", "x").is_err());
        // RFC 4648 §10 test vectors.
        for (t, d) in [
            ("", ""),
            ("Zg", "f"),
            ("Zm8", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(t).unwrap(), d.as_bytes());
        }
        assert!(valid_id("bank-1.ap_x"));
        assert!(!valid_id("bank 1"));
        assert!(!valid_id(""));
    }
}
