//! Host side of a Secure Channel session (the off-card entity: CLI, TSM, HSM front end).

use crate::channel::{Channel, Inner};
use crate::error::malformed;
use crate::scp02::Scp02;
use crate::scp03::{self, Scp03};
use crate::{Error, InitUpdateResponse, Key, Protocol, SecurityLevel, StaticKeys};
use core::fmt;
use subtle::ConstantTimeEq;

/// The host after INITIALIZE UPDATE: the card has proved it knows the keys, and EXTERNAL
/// AUTHENTICATE is ready to send.
///
/// ```text
/// host challenge ──INITIALIZE UPDATE──▶ card
///                ◀── KDD, KVN, card challenge, card cryptogram
/// HostAuth::new (checks the card cryptogram)
///                ──EXTERNAL AUTHENTICATE (host cryptogram + C-MAC)──▶
/// HostAuth::finish(9000) → HostSession (wrap / unwrap)
/// ```
pub struct HostAuth {
    channel: Channel,
    ext_auth: apdu::Command,
    key_version: u8,
}

impl fmt::Debug for HostAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostAuth")
            .field("protocol", &self.channel.protocol())
            .field("level", &self.channel.level())
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

impl HostAuth {
    /// Derives the session keys and verifies the card cryptogram FIRST; on mismatch returns
    /// [`Error::CardCryptogramMismatch`] (the caller must then stop: do not send EXTERNAL
    /// AUTHENTICATE, so the card's failure counter is not spent).
    ///
    /// `keys` are the card's static keys (already diversified, see
    /// [`crate::Diversification`]). `scp02_i` is the SCP02 "i" parameter, which an SCP02
    /// card does not send in its response: pass `0x55` unless the card says otherwise (its
    /// Card Recognition Data); `0x15` computes the same bytes. It is ignored for SCP03, where
    /// the card sends i.
    ///
    /// For SCP03 the requested `level` must be allowed by the card's i (R-MAC needs b6,
    /// R-ENCRYPTION b7), else [`Error::Unsupported`] before anything is computed.
    pub fn new(
        keys: &StaticKeys,
        host_challenge: &[u8],
        iu: &InitUpdateResponse,
        level: SecurityLevel,
        scp02_i: u8,
    ) -> Result<Self, Error> {
        let (channel, ext_auth) = match iu.scp {
            0x02 => {
                if host_challenge.len() != 8 {
                    return Err(malformed(
                        "host challenge",
                        format!("{} bytes, SCP02 uses 8", host_challenge.len()),
                    ));
                }
                let seq: [u8; 2] = iu
                    .sequence_counter
                    .as_deref()
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| {
                        malformed(
                            "INITIALIZE UPDATE response",
                            "SCP02 needs a 2-byte sequence counter",
                        )
                    })?;
                if iu.card_challenge.len() != 6 || iu.card_cryptogram.len() != 8 {
                    return Err(malformed(
                        "INITIALIZE UPDATE response",
                        "SCP02 card challenge 6 and cryptogram 8 bytes",
                    ));
                }
                let mut s = Scp02::new(keys, scp02_i, level, seq)?;
                let expect = s.card_cryptogram(host_challenge, seq, &iu.card_challenge)?;
                if !bool::from(expect.ct_eq(&iu.card_cryptogram[..])) {
                    return Err(Error::CardCryptogramMismatch);
                }
                let host = s.host_cryptogram(host_challenge, seq, &iu.card_challenge)?;
                let ea = s.external_authenticate(&host)?;
                (Channel::new(Inner::Scp02(s)), ea)
            }
            0x03 => {
                let i =
                    iu.i.ok_or_else(|| malformed("INITIALIZE UPDATE response", "SCP03 without i"))?;
                let mut s = Scp03::new(keys, i, level, host_challenge, &iu.card_challenge)?;
                let expect =
                    s.cryptogram(scp03::CARD_CRYPTOGRAM, host_challenge, &iu.card_challenge)?;
                if !bool::from(expect.ct_eq(&iu.card_cryptogram)) {
                    return Err(Error::CardCryptogramMismatch);
                }
                let host =
                    s.cryptogram(scp03::HOST_CRYPTOGRAM, host_challenge, &iu.card_challenge)?;
                let ea = s.external_authenticate(&host)?;
                (Channel::new(Inner::Scp03(s)), ea)
            }
            other => return Err(Error::Unsupported(format!("SCP{other:02X}"))),
        };
        Ok(Self {
            channel,
            ext_auth,
            key_version: iu.key_version,
        })
    }

    /// EXTERNAL AUTHENTICATE: `84 82 level 00 10 host-cryptogram C-MAC` (`Lc = 20` in SCP03
    /// S16 mode). GP 2.3.1 §E.5.2; Amendment D §7.1.2.
    pub fn external_authenticate(&self) -> apdu::Command {
        self.ext_auth.clone()
    }

    /// Checks the card's answer to EXTERNAL AUTHENTICATE (`9000`, no data) and opens the
    /// session. Any other status is returned as [`Error::Status`].
    pub fn finish(self, ext_auth_response: &apdu::Response) -> Result<HostSession, Error> {
        if !ext_auth_response.sw.is_success() {
            return Err(Error::Status(ext_auth_response.sw));
        }
        Ok(HostSession {
            channel: self.channel,
            key_version: self.key_version,
            scp11: None,
        })
    }
}

/// An open Secure Channel session, host side.
///
/// Every command sent in the session must go through [`HostSession::wrap`] and every
/// response through [`HostSession::unwrap`], in order: the MAC chaining (and the SCP03
/// encryption counter) tie each APDU to the previous ones. After a verification failure the
/// session is closed and every call returns [`Error::Closed`].
pub struct HostSession {
    channel: Channel,
    key_version: u8,
    scp11: Option<crate::scp11::Variant>,
}

impl fmt::Debug for HostSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSession")
            .field("protocol", &self.channel.protocol())
            .field("level", &self.channel.level())
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

impl HostSession {
    pub(crate) fn from_channel(
        channel: Channel,
        key_version: u8,
        scp11: Option<crate::scp11::Variant>,
    ) -> Self {
        Self {
            channel,
            key_version,
            scp11,
        }
    }

    /// The SCP11 variant that opened the session (`None` for SCP02/SCP03). An SCP11
    /// session's [`HostSession::protocol`] is SCP03 (its secure messaging), i = `60`/`61`.
    pub fn scp11(&self) -> Option<crate::scp11::Variant> {
        self.scp11
    }

    /// Applies C-MAC and C-DECRYPTION per the session's security level.
    ///
    /// The command must be plain: CLA in the first interindustry coding (`0x`–`3x`, or the
    /// GlobalPlatform `8x`–`Bx`) without the secure messaging bits. The result has CLA b3
    /// set, the (encrypted) data, the MAC, and the same Le. Errors if the wrapped data would
    /// not fit (255 bytes for SCP02, 65535 for SCP03).
    pub fn wrap(&mut self, cmd: &apdu::Command) -> Result<apdu::Command, Error> {
        self.channel.wrap_command(cmd)
    }

    /// Verifies and strips the R-MAC and deciphers R-ENCRYPTION per the security level.
    /// [`Error::MacMismatch`] (or [`Error::BadPadding`]) closes the session.
    pub fn unwrap(&mut self, resp: apdu::Response) -> Result<apdu::Response, Error> {
        self.channel.unwrap_response(resp)
    }

    /// The protocol and its i parameter.
    pub fn protocol(&self) -> Protocol {
        self.channel.protocol()
    }

    /// The security level of the session.
    pub fn level(&self) -> SecurityLevel {
        self.channel.level()
    }

    /// Whether a verification failure closed the session (every call now fails with
    /// [`Error::Closed`]).
    pub fn is_closed(&self) -> bool {
        self.channel.is_closed()
    }

    /// The key version number of the key set the card authenticated with.
    pub fn key_version(&self) -> u8 {
        self.key_version
    }

    /// The largest plain data length whose wrapped form fits in `max_wire_data` bytes (e.g.
    /// 255 for short APDUs): the LOAD block size.
    pub fn max_plain_len(&self, max_wire_data: usize) -> usize {
        self.channel.max_plain_len(max_wire_data)
    }

    /// Encrypts a key for PUT KEY: SCP02 with the session DEK in 3DES-ECB (GP 2.3.1 §E.4.7);
    /// SCP03 with the static Key-DEK in AES-CBC, zero ICV (Amendment D, sensitive data encryption). An AES-192
    /// key is padded with `80 00…` to 32 bytes first.
    pub fn encrypt_key(&self, key: &Key) -> Result<Vec<u8>, Error> {
        self.channel.encrypt_key(key)
    }

    /// The key that encrypts sensitive data (PUT KEY key values, encrypted STORE DATA) in
    /// this session: the SCP02 session DEK (GP 2.3.1 §E.4.1), the SCP03 static Key-DEK
    /// (Amendment D), the SCP11 S-DEK (Amendment F). With [`crate::encrypt_sensitive_data`] it
    /// gives the bytes [`HostSession::encrypt_key`] gives; a key store that holds the
    /// secret to send encrypts it under this key itself (e.g. inside an HSM), so that the
    /// secret never exists in the host in the clear.
    pub fn data_encryption_key(&self) -> Result<Key, Error> {
        self.channel.data_encryption_key()
    }

    /// Encrypts secret bytes (a whole number of cipher blocks, e.g. an ECC private key)
    /// with the session's DEK, as [`HostSession::encrypt_key`] does a key.
    pub(crate) fn encrypt_secret(&self, clear: &[u8]) -> Result<Vec<u8>, Error> {
        self.channel.encrypt_secret(clear)
    }
}
