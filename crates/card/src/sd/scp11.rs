//! SCP11 card side (GP Card Specification v2.3 Amendment F): SD key pairs, PERFORM SECURITY
//! OPERATION with the OCE certificate chain, MUTUAL/INTERNAL AUTHENTICATE, GENERATE EC KEY,
//! the certificate store (GET DATA `BF21`), allowlists and CA identifiers (STORE DATA in
//! YubiKey's formats). The cryptography and codecs are `scp::scp11`, `gp::cert`, `gp::scp11`.

use apdu::tlv::{self, Tag};
use apdu::{Command, Response, StatusWord};
use gp::cert::{self, ChainPolicy};
use gp::scp11::{KeyRef, PerformSecurityOperation, Scp11StoreData};
use scp::scp11::{self, Curve, PrivateKey, PublicKey, Variant};

use super::Sw;
use crate::card::VirtualCard;
use crate::channel::Secure;
use crate::model::{key_ref, key_type, Aid, SdData, StoredKey};

/// `6983`: authentication method blocked (the key's failure counter is at the limit).
const SW_BLOCKED: StatusWord = StatusWord::AUTH_METHOD_BLOCKED;

/// The curve of a stored ECC key, if this card computes with it.
fn curve_of(k: &StoredKey) -> Option<Curve> {
    k.curve.and_then(Curve::from_param_ref)
}

/// The SD key pair (KID, KVN), if stored.
fn sd_key_pair(data: &SdData, kid: u8, kvn: u8) -> Option<PrivateKey> {
    let k = data
        .key_sets
        .iter()
        .find(|s| s.kvn == kvn)?
        .key(kid)
        .filter(|k| k.key_type == key_type::ECC_PRIVATE)?;
    PrivateKey::from_scalar(curve_of(k)?, &k.value.0).ok()
}

/// An ECC public key (KID, KVN) (a trust anchor PK.CA-KLOC), if stored.
fn public_key(data: &SdData, kid: u8, kvn: u8) -> Option<PublicKey> {
    let k = data
        .key_sets
        .iter()
        .find(|s| s.kvn == kvn)?
        .key(kid)
        .filter(|k| k.key_type == key_type::ECC_PUBLIC)?;
    PublicKey::from_sec1(curve_of(k)?, &k.value.0).ok()
}

/// The SCP11 variants of the SD key pairs of a security domain (for the card recognition
/// data), by KID: `11` 11a, `13` 11b, `15` 11c.
pub(crate) fn variants(data: &SdData) -> Vec<Variant> {
    let mut v: Vec<Variant> = data
        .key_sets
        .iter()
        .flat_map(|s| s.keys.iter())
        .filter(|k| k.key_type == key_type::ECC_PRIVATE)
        .filter_map(|k| Variant::from_kid(k.id))
        .collect();
    v.sort_by_key(|x| x.i());
    v.dedup();
    v
}

/// The stored key (KID, KVN), to count its failures.
fn key_mut(data: &mut SdData, kid: u8, kvn: u8) -> Option<&mut StoredKey> {
    data.key_sets
        .iter_mut()
        .find(|s| s.kvn == kvn)?
        .keys
        .iter_mut()
        .find(|k| k.id == kid)
}

fn now() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

impl VirtualCard {
    /// Takes the data of an ISO/IEC 7816-4 chained command (CLA b5): `None` while more
    /// blocks follow (answered `9000`), then the whole data.
    pub(super) fn chained(
        &mut self,
        ch: usize,
        chaining: bool,
        cmd: &Command,
    ) -> Sw<Option<Vec<u8>>> {
        let c = self.channel_mut(ch).ok_or(StatusWord::UNKNOWN)?;
        let mut data = match c.chain.take() {
            Some((ins, d)) if ins == cmd.ins => d,
            _ => Vec::new(),
        };
        data.extend_from_slice(&cmd.data);
        if data.len() > 0x1_0000 {
            return Err(StatusWord::WRONG_LENGTH);
        }
        if chaining {
            c.chain = Some((cmd.ins, data));
            return Ok(None);
        }
        Ok(Some(data))
    }

    /// PERFORM SECURITY OPERATION `80 2A KVN KID` (Amendment F §7.5): one OCE certificate
    /// per command, P2 b8 = more follow. The first is verified with the trust anchor
    /// (KID, KVN), each next with the previous; validity at the card's clock; the leaf must
    /// allow key agreement and be on the allowlist, if any. A refused certificate ends the
    /// chain and counts as a failed authentication of the trust anchor's key set.
    pub(super) fn perform_security_operation(
        &mut self,
        ch: usize,
        sd: &Aid,
        cmd: &Command,
    ) -> Sw<Response> {
        let pso = PerformSecurityOperation::parse(cmd).map_err(|_| StatusWord::WRONG_DATA)?;
        let max = self.state.max_auth_failures;
        let data = self.sd_data_mut(sd)?;
        let anchor_ref = (pso.kid, pso.kvn);
        let anchor =
            public_key(data, pso.kid, pso.kvn).ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if let Some(k) = key_mut(data, pso.kid, pso.kvn) {
            if max != 0 && k.failures >= max {
                return Err(SW_BLOCKED);
            }
        }
        let r = key_ref(pso.kid, pso.kvn);
        let allowlist: Option<Vec<Vec<u8>>> = data
            .scp11
            .allowlists
            .get(&r)
            .map(|l| l.iter().filter_map(|h| apdu::parse_hex(h).ok()).collect());
        let anchor_id = data
            .scp11
            .ca_ids
            .get(&r)
            .and_then(|(_, h)| apdu::parse_hex(h).ok());
        let c = self.channel_mut(ch).ok_or(StatusWord::UNKNOWN)?;
        // A session on this channel ends; a new chain starts unless one is in progress
        // for the same anchor.
        c.secure = Secure::None;
        c.oce = None;
        let mut certs = match c.pso.take() {
            Some((a, certs)) if a == anchor_ref => certs,
            _ => Vec::new(),
        };
        certs.push(pso.certificate);
        let result = cert::parse_chain(&certs).and_then(|chain| {
            let policy = ChainPolicy {
                at: now(),
                anchor_id: anchor_id.as_deref(),
                allowlist: if pso.more { None } else { allowlist.as_deref() },
                skip_key_usage: pso.more,
            };
            cert::verify_chain(&chain, &anchor, &policy).cloned()
        });
        match result {
            Ok(leaf) => {
                let c = self.channel_mut(ch).ok_or(StatusWord::UNKNOWN)?;
                if pso.more {
                    c.pso = Some((anchor_ref, certs));
                } else {
                    c.oce = Some(leaf);
                }
                Ok(Response::ok(Vec::new()))
            }
            Err(e) => {
                tracing::debug!("PERFORM SECURITY OPERATION refused: {e}");
                let data = self.sd_data_mut(sd)?;
                if let Some(k) = key_mut(data, pso.kid, pso.kvn) {
                    k.failures = k.failures.saturating_add(1);
                }
                Err(e.status_word())
            }
        }
    }

    /// MUTUAL AUTHENTICATE `80 82 KVN KID` (11a/11c) and INTERNAL AUTHENTICATE `80 88 KVN
    /// KID` (11b) (Amendment F §7.6): with the SD key pair (KID, KVN) and, for 11a/11c, the
    /// OCE key of the chain verified on this channel. Opens the session; failures count on
    /// the key pair (not its whole key version) like EXTERNAL AUTHENTICATE's, and a blocked key answers
    /// `6983`. An SD without that key pair answers `6A88`.
    pub(super) fn scp11_authenticate(
        &mut self,
        ch: usize,
        sd: &Aid,
        cmd: &Command,
    ) -> Sw<Response> {
        let (kvn, kid) = (cmd.p1, cmd.p2);
        let max = self.state.max_auth_failures;
        let oce = self.channel_mut(ch).and_then(|c| {
            let oce = c.oce.take();
            c.end_session();
            oce
        });
        let data = self.sd_data_mut(sd)?;
        let sk_sd = sd_key_pair(data, kid, kvn).ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        let variant = Variant::from_kid(kid).ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if variant.ins() != cmd.ins {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let set = key_mut(data, kid, kvn).ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if max != 0 && set.failures >= max {
            return Err(SW_BLOCKED);
        }
        if variant.authenticates_oce() && oce.is_none() {
            set.failures = set.failures.saturating_add(1);
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        let params = scp11::CardParams {
            sk_sd: &sk_sd,
            pk_oce: oce.as_ref(),
            variant,
            s16: false,
        };
        match scp11::card_authenticate(&params, &cmd.data) {
            Ok((resp, session)) => {
                set.failures = 0;
                if let Some(c) = self.channel_mut(ch) {
                    c.secure = Secure::Open { session };
                }
                Ok(Response::ok(resp))
            }
            Err(e) => {
                tracing::debug!("SCP11 authenticate refused: {e}");
                set.failures = set.failures.saturating_add(1);
                Err(StatusWord::WRONG_DATA)
            }
        }
    }

    /// GENERATE EC KEY `80 F1 replace-KVN KID`, data `KVN F0 01 curve` (YubiKey's command,
    /// as yubikit sends it): a new SD key pair on the card; answers `B0 <PK.SD>`.
    pub(super) fn generate_ec_key(&mut self, sd: &Aid, cmd: &Command) -> Sw<Response> {
        let kid = cmd.p2 & 0x7F;
        let (kvn, rest) = cmd.data.split_first().ok_or(StatusWord::WRONG_DATA)?;
        let curve = match rest {
            [] => Curve::P256,
            [0xF0, 0x01, r] => Curve::from_param_ref(*r).ok_or(super::keys::SW_ALGORITHM)?,
            _ => return Err(StatusWord::WRONG_DATA),
        };
        if kid == 0 || !(0x01..=0x7F).contains(kvn) {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let key = PrivateKey::generate(curve).map_err(|_| StatusWord::UNKNOWN)?;
        let stored = StoredKey {
            curve: Some(curve.param_ref()),
            ..StoredKey::secret(kid, key_type::ECC_PRIVATE, key.expose_scalar())
        };
        self.store_keys(sd, cmd.p1 & 0x7F, *kvn, vec![stored])?;
        if let Ok(d) = self.sd_data_mut(sd) {
            d.scp11.certificates.remove(&key_ref(kid, *kvn));
        }
        self.forget_stale_scp11(sd);
        Ok(Response::ok(tlv::encode(
            Tag::new(0xB0),
            key.public_key().to_sec1(),
        )))
    }

    /// Drops certificates, allowlists and CA identifiers of keys that no longer exist.
    pub(crate) fn forget_stale_scp11(&mut self, sd: &Aid) {
        if let Ok(data) = self.sd_data_mut(sd) {
            let refs: Vec<String> = data
                .key_sets
                .iter()
                .flat_map(|s| s.keys.iter().map(|k| key_ref(k.id, s.kvn)))
                .collect();
            data.scp11.retain_keys(|r| refs.iter().any(|x| x == r));
        }
    }

    /// GET DATA `BF21` with `A6{83 KID KVN}`: the certificate chain of an SD key (`6A88`
    /// if none).
    pub(super) fn get_certificates(&mut self, sd: &Aid, cmd: &Command) -> Sw<Vec<u8>> {
        let key = KeyRef::parse_crt(&cmd.data).map_err(|_| StatusWord::WRONG_DATA)?;
        let data = self.sd_rec(sd)?.sd_data().ok_or(StatusWord::UNKNOWN)?;
        let certs = data
            .scp11
            .certificates
            .get(&key_ref(key.kid, key.kvn))
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        let certs: Vec<Vec<u8>> = certs
            .iter()
            .filter_map(|h| apdu::parse_hex(h).ok())
            .collect();
        // The certificates one after the other, without a BF21 wrapper: what a YubiKey
        // answers and yubikit's get_certificate_bundle reads (a list of X.509 TLVs).
        Ok(certs.concat())
    }

    /// GET DATA `FF33` (KLOC) / `FF34` (KLCC): the CA identifiers stored, as `42 id 83 KID
    /// KVN` pairs (what yubikit reads).
    pub(super) fn ca_identifiers(&mut self, sd: &Aid, klcc: bool) -> Sw<Vec<u8>> {
        let data = self.sd_rec(sd)?.sd_data().ok_or(StatusWord::UNKNOWN)?;
        let mut out = Vec::new();
        for (r, (k, id)) in &data.scp11.ca_ids {
            if *k != klcc {
                continue;
            }
            let (Ok(id), Ok(r)) = (apdu::parse_hex(id), apdu::parse_hex(&r.replace('-', "")))
            else {
                continue;
            };
            out.extend(tlv::encode(Tag::new(0x42), &id));
            out.extend(tlv::encode(Tag::new(0x83), &r));
        }
        if out.is_empty() {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        Ok(out)
    }

    /// STORE DATA of SCP11 objects (YubiKey's formats): certificate bundle, allowlist, CA
    /// issuer. `None` if the data is not one of them.
    pub(super) fn store_scp11(&mut self, sd: &Aid, data: &[u8]) -> Option<Sw<Response>> {
        let obj = Scp11StoreData::parse(data).ok()?;
        let d = match self.sd_data_mut(sd) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        match obj {
            Scp11StoreData::CertificateBundle { key, certificates } => {
                d.scp11.certificates.insert(
                    key_ref(key.kid, key.kvn),
                    certificates.iter().map(|c| apdu::hex(c)).collect(),
                );
            }
            Scp11StoreData::Allowlist { key, serials } => {
                let r = key_ref(key.kid, key.kvn);
                if serials.is_empty() {
                    d.scp11.allowlists.remove(&r);
                } else {
                    d.scp11
                        .allowlists
                        .insert(r, serials.iter().map(|s| apdu::hex(s)).collect());
                }
            }
            Scp11StoreData::CaIssuer { key, klcc, id } => {
                d.scp11
                    .ca_ids
                    .insert(key_ref(key.kid, key.kvn), (klcc, apdu::hex(&id)));
            }
        }
        Some(Ok(Response::ok(Vec::new())))
    }
}
