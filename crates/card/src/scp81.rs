//! SCP81 (GP Card Specification Amendment B) on the card: the security domains' TLS
//! pre-shared keys and the administration session trigger. The session itself (the admin
//! agent's TLS-PSK client over BIP) is [`crate::bip`], behind the `scp81` feature.
//!
//! * **PSK key sets**: KVN `40`..=`4F`, key identifier `01`, key type `85` (TLS PSK, GP
//!   2.3.1 Table 11-16), 16..=64 bytes; the TLS PSK identity is kept with the SD per KVN.
//!   Set by [`crate::CardConfig::with_scp81_psk`] or by PUT KEY in an authenticated secure
//!   channel: `KVN 85 L { key length, key encrypted under the session's DEK (whole
//!   blocks) } 00` (no key check value: a PSK is not a block cipher key), answered with the
//!   KVN alone.
//! * **Trigger**: STORE DATA to a security domain (BER-TLV, unencrypted) of the
//!   administration session triggering parameters `81` ([`ota::admin`]): the SD's admin
//!   agent opens a session secured with the PSK the security parameters (`85`) name.

use apdu::{Response, StatusWord};
use zeroize::Zeroizing;

use crate::card::VirtualCard;
use crate::channel::Secure;
use crate::model::{key_type, Aid, StoredKey};

/// Key identifier of the PSK in an SCP81 key set.
pub const PSK_KID: u8 = 0x01;
/// Key version numbers of SCP81 key sets.
pub use ota::admin::SCP81_KVNS;

/// Whether `psk` can be stored as key set `kvn`'s PSK.
pub(crate) fn valid_psk(kvn: u8, psk: &[u8]) -> bool {
    SCP81_KVNS.contains(&kvn) && (16..=64).contains(&psk.len())
}

/// Whether `id` can be a TLS PSK identity (RFC 4279: 1..=128 bytes here, no NUL).
pub(crate) fn valid_identity(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && !id.contains(&0)
}

impl VirtualCard {
    /// The PSK of `sd`'s key set `kvn`, key `kid`, if it is a TLS PSK.
    #[cfg_attr(not(feature = "scp81"), allow(dead_code))]
    pub(crate) fn scp81_psk(&self, sd: &Aid, kvn: u8, kid: u8) -> Option<Zeroizing<Vec<u8>>> {
        if !SCP81_KVNS.contains(&kvn) {
            return None;
        }
        let key = self
            .state
            .app(&sd.0)?
            .sd_data()?
            .key_sets
            .iter()
            .find(|s| s.kvn == kvn)?
            .key(kid)?;
        (key.key_type == key_type::TLS_PSK).then(|| Zeroizing::new(key.value.0.to_vec()))
    }

    /// The TLS PSK identity stored for `sd`'s key set `kvn`.
    #[cfg_attr(not(feature = "scp81"), allow(dead_code))]
    pub(crate) fn scp81_identity(&self, sd: &Aid, kvn: u8) -> Option<Vec<u8>> {
        let hex = self
            .state
            .app(&sd.0)?
            .sd_data()?
            .ota
            .psk_identities
            .get(&format!("{kvn:02X}"))?
            .clone();
        apdu::parse_hex(&hex).ok()
    }

    /// PUT KEY of a TLS PSK (key type `85`), `None` if the key data is something else.
    pub(crate) fn put_psk(
        &mut self,
        ch: usize,
        sd: &Aid,
        replace: u8,
        first_id: u8,
        data: &[u8],
    ) -> Option<Result<Response, StatusWord>> {
        let [kvn, key_type::TLS_PSK, rest @ ..] = data else {
            return None;
        };
        Some(self.put_psk_inner(ch, sd, replace, first_id, *kvn, rest))
    }

    fn put_psk_inner(
        &mut self,
        ch: usize,
        sd: &Aid,
        replace: u8,
        first_id: u8,
        kvn: u8,
        rest: &[u8],
    ) -> Result<Response, StatusWord> {
        let bad = StatusWord::WRONG_DATA;
        // One key block: L (one byte or 81 xx), then the value, then KCV length 00.
        let (len, rest) = match rest {
            [0x81, l, r @ ..] if *l >= 0x80 => (usize::from(*l), r),
            [l, r @ ..] if *l < 0x80 => (usize::from(*l), r),
            _ => return Err(bad),
        };
        let (value, tail) = (rest.get(..len).ok_or(bad)?, &rest[len..]);
        if tail != [0x00] {
            return Err(bad);
        }
        let (&key_len, encrypted) = value.split_first().ok_or(bad)?;
        if !SCP81_KVNS.contains(&kvn) || first_id != PSK_KID {
            return Err(bad);
        }
        let Some(Secure::Open { session, .. }) = self.channel(ch).map(|c| &c.secure) else {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        };
        let clear = session.decrypt_secret(encrypted).map_err(|_| bad)?;
        let psk = clear.get(..usize::from(key_len)).ok_or(bad)?;
        if !valid_psk(kvn, psk) {
            return Err(bad);
        }
        let key = StoredKey::secret(PSK_KID, key_type::TLS_PSK, psk);
        self.store_keys(sd, replace, kvn, vec![key])?;
        Ok(Response::ok(vec![kvn]))
    }

    /// STORE DATA `81` (administration session triggering parameters) to `sd`: starts the
    /// SD's admin session. `None` if the data is something else.
    pub(crate) fn store_trigger(
        &mut self,
        sd: &Aid,
        data: &[u8],
    ) -> Option<Result<(), StatusWord>> {
        let t = apdu::tlv::TlvRef::parse(data).ok()?;
        if t.tag().value() != ota::admin::TAG_TRIGGER {
            return None;
        }
        let params = match ota::admin::TriggerParams::from_value(t.value()) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("SCP81 trigger refused: {e}");
                return Some(Err(StatusWord::WRONG_DATA));
            }
        };
        #[cfg(feature = "scp81")]
        {
            Some(self.start_admin_session(sd, params))
        }
        #[cfg(not(feature = "scp81"))]
        {
            let _ = (sd, params);
            tracing::debug!("SCP81 trigger refused: built without the scp81 feature");
            Some(Err(StatusWord::FUNC_NOT_SUPPORTED))
        }
    }
}
