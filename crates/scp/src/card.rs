//! Card side of a Secure Channel session (for the virtual card).

use crate::channel::{random, Channel, Inner};
use crate::error::malformed;
use crate::scp02::Scp02;
use crate::scp03::{self, Scp03};
use crate::{Error, InitUpdateResponse, Key, KeyKind, Protocol, SecurityLevel, StaticKeys};
use core::fmt;
use zeroize::Zeroizing;

enum Challenge<'a> {
    Make { context_aid: &'a [u8] },
    Given(&'a [u8]),
}

/// The card after INITIALIZE UPDATE, waiting for EXTERNAL AUTHENTICATE.
pub struct CardAuth {
    channel: Channel,
    host_cryptogram: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for CardAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardAuth")
            .field("protocol", &self.channel.protocol())
            .finish_non_exhaustive()
    }
}

impl CardAuth {
    /// Handles INITIALIZE UPDATE: derives the session keys, makes the card challenge and
    /// returns the response data (see [`InitUpdateResponse`] for the layout).
    ///
    /// * `sequence_counter`: SCP02 uses its low 16 bits, SCP03 its low 24 bits; larger values
    ///   are an error. Keeping and incrementing it (GP 2.3.1 §E.4.1: after each successful
    ///   EXTERNAL AUTHENTICATE; Amendment D §6.2.2.1: after each pseudo-random challenge) is
    ///   the caller's job.
    /// * Card challenge: SCP02 with i b7 (e.g. `55`): the first 6 bytes of the C-MAC
    ///   algorithm with S-MAC over `context_aid` (GP 2.3.1 §E.4.2.1); SCP03 with i b5 (e.g.
    ///   `70`): the KDF with Key-ENC, constant `02`, context = counter(3) ‖ `context_aid`
    ///   (Amendment D §6.2.2.1); otherwise random. The SCP03 counter is sent only in the
    ///   pseudo-random case.
    /// * `host_challenge`: 8 bytes, or 16 in SCP03 S16 mode (i b1).
    pub fn new(
        keys: &StaticKeys,
        protocol: Protocol,
        key_version: u8,
        kdd: [u8; 10],
        sequence_counter: u32,
        host_challenge: &[u8],
        context_aid: &[u8],
    ) -> Result<(Self, Vec<u8>), Error> {
        Self::build(
            keys,
            protocol,
            key_version,
            kdd,
            sequence_counter,
            host_challenge,
            Challenge::Make { context_aid },
        )
    }

    /// Like [`CardAuth::new`], with the card challenge given instead of made: for replaying
    /// recorded sessions in tests, or for a card whose challenges come from elsewhere. It
    /// must be 6 bytes (SCP02) or 8/16 (SCP03 S8/S16). The SCP03 sequence counter is sent
    /// when i b5 (pseudo-random challenge) is set, as in [`CardAuth::new`].
    pub fn with_card_challenge(
        keys: &StaticKeys,
        protocol: Protocol,
        key_version: u8,
        kdd: [u8; 10],
        sequence_counter: u32,
        host_challenge: &[u8],
        card_challenge: &[u8],
    ) -> Result<(Self, Vec<u8>), Error> {
        Self::build(
            keys,
            protocol,
            key_version,
            kdd,
            sequence_counter,
            host_challenge,
            Challenge::Given(card_challenge),
        )
    }

    fn build(
        keys: &StaticKeys,
        protocol: Protocol,
        key_version: u8,
        kdd: [u8; 10],
        sequence_counter: u32,
        host_challenge: &[u8],
        challenge: Challenge<'_>,
    ) -> Result<(Self, Vec<u8>), Error> {
        match protocol {
            Protocol::Scp02 { i } => {
                if host_challenge.len() != 8 {
                    return Err(malformed(
                        "host challenge",
                        format!("{} bytes, SCP02 uses 8", host_challenge.len()),
                    ));
                }
                let seq = u16::try_from(sequence_counter)
                    .map_err(|_| malformed("sequence counter", "SCP02 counter exceeds 16 bits"))?
                    .to_be_bytes();
                let s = Scp02::new(keys, i, SecurityLevel::NONE, seq)?;
                let card_challenge = match challenge {
                    Challenge::Given(c) if c.len() == 6 => c.to_vec(),
                    Challenge::Given(c) => {
                        return Err(malformed(
                            "card challenge",
                            format!("{} bytes, SCP02 uses 6", c.len()),
                        ))
                    }
                    Challenge::Make { context_aid } if i & 0x40 != 0 => {
                        s.pseudo_random_challenge(context_aid)?.to_vec()
                    }
                    Challenge::Make { .. } => random(6)?,
                };
                let card_cryptogram = s
                    .card_cryptogram(host_challenge, seq, &card_challenge)?
                    .to_vec();
                let host = s.host_cryptogram(host_challenge, seq, &card_challenge)?;
                let resp = InitUpdateResponse {
                    kdd,
                    key_version,
                    scp: 0x02,
                    i: None,
                    sequence_counter: Some(seq.to_vec()),
                    card_challenge,
                    card_cryptogram,
                };
                let auth = CardAuth {
                    channel: Channel::new(Inner::Scp02(s)),
                    host_cryptogram: Zeroizing::new(host.to_vec()),
                };
                Ok((auth, resp.to_bytes()))
            }
            Protocol::Scp03 { i } => {
                scp03::check_i(i)?;
                if keys.enc.kind() != KeyKind::Aes {
                    return Err(Error::Unsupported("SCP03 needs AES keys".into()));
                }
                let n = if i & 0x01 != 0 { 16 } else { 8 };
                if sequence_counter > 0xFF_FFFF {
                    return Err(malformed(
                        "sequence counter",
                        "SCP03 counter exceeds 24 bits",
                    ));
                }
                let seq = sequence_counter.to_be_bytes()[1..].to_vec();
                let pseudo = i & 0x10 != 0;
                let card_challenge = match challenge {
                    Challenge::Given(c) => c.to_vec(),
                    Challenge::Make { context_aid } if pseudo => scp03::kdf(
                        keys.enc.expose(),
                        scp03::CARD_CHALLENGE,
                        &[&seq[..], context_aid].concat(),
                        n,
                    )?
                    .to_vec(),
                    Challenge::Make { .. } => random(n)?,
                };
                let s = Scp03::new(
                    keys,
                    i,
                    SecurityLevel::NONE,
                    host_challenge,
                    &card_challenge,
                )?;
                let card_cryptogram = s
                    .cryptogram(scp03::CARD_CRYPTOGRAM, host_challenge, &card_challenge)?
                    .to_vec();
                let host = s.cryptogram(scp03::HOST_CRYPTOGRAM, host_challenge, &card_challenge)?;
                let resp = InitUpdateResponse {
                    kdd,
                    key_version,
                    scp: 0x03,
                    i: Some(i),
                    sequence_counter: pseudo.then_some(seq),
                    card_challenge,
                    card_cryptogram,
                };
                let auth = CardAuth {
                    channel: Channel::new(Inner::Scp03(s)),
                    host_cryptogram: host,
                };
                Ok((auth, resp.to_bytes()))
            }
        }
    }

    /// Checks EXTERNAL AUTHENTICATE: its shape (`84 82 level 00`), the security level (valid,
    /// and for SCP03 allowed by i), the C-MAC ([`Error::MacMismatch`]) and the host
    /// cryptogram ([`Error::HostCryptogramMismatch`]). On success the session is open at
    /// the level in P1; the card answers `9000`.
    pub fn external_authenticate(mut self, cmd: &apdu::Command) -> Result<CardSession, Error> {
        match &mut self.channel.inner {
            Inner::Scp02(s) => {
                let expected: [u8; 8] = self.host_cryptogram[..]
                    .try_into()
                    .map_err(|_| Error::HostCryptogramMismatch)?;
                s.check_external_authenticate(cmd, &expected)?;
            }
            Inner::Scp03(s) => s.check_external_authenticate(cmd, &self.host_cryptogram)?,
        }
        Ok(CardSession {
            channel: self.channel,
            scp11: None,
        })
    }
}

/// An open Secure Channel session, card side.
///
/// After a verification failure the session is closed: [`CardSession::unwrap`] returns
/// [`Error::Closed`] and the card should answer `6982` and forget the session (GP 2.3.1
/// §E.4.4; Amendment D §6.2.4).
pub struct CardSession {
    channel: Channel,
    scp11: Option<crate::scp11::Variant>,
}

impl fmt::Debug for CardSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardSession")
            .field("protocol", &self.channel.protocol())
            .field("level", &self.channel.level())
            .finish_non_exhaustive()
    }
}

impl CardSession {
    pub(crate) fn from_channel(channel: Channel, scp11: Option<crate::scp11::Variant>) -> Self {
        Self { channel, scp11 }
    }

    /// The SCP11 variant that opened the session (`None` for SCP02/SCP03). An SCP11
    /// session's [`CardSession::protocol`] is SCP03 (its secure messaging), i = `60`/`61`.
    pub fn scp11(&self) -> Option<crate::scp11::Variant> {
        self.scp11
    }

    /// Verifies the C-MAC and deciphers; returns the command with its plain CLA (b3 clear)
    /// and data. A command without secure messaging when the level requires it gives
    /// [`Error::MissingSecureMessaging`]. At level `00` commands pass unchanged.
    pub fn unwrap(&mut self, cmd: &apdu::Command) -> Result<apdu::Command, Error> {
        self.channel.unwrap_command(cmd)
    }

    /// Applies R-ENCRYPTION and R-MAC per the level. At SCP03 R-MAC levels a response with
    /// an error status word (anything but `9000`, `62xx`, `63xx`) is sent as the bare status
    /// word, unprotected (Amendment D §6.2.5); SCP02 MACs every response. A closed session
    /// returns the response unchanged.
    pub fn wrap(&mut self, resp: apdu::Response) -> apdu::Response {
        let fallback = resp.clone();
        self.channel.wrap_response(resp).unwrap_or(fallback)
    }

    /// The security level of the session.
    pub fn level(&self) -> SecurityLevel {
        self.channel.level()
    }

    /// The protocol and its i parameter.
    pub fn protocol(&self) -> Protocol {
        self.channel.protocol()
    }

    /// Whether a verification failure closed the session (every call now fails with
    /// [`Error::Closed`]).
    pub fn is_closed(&self) -> bool {
        self.channel.is_closed()
    }

    /// Decrypts a key received in PUT KEY (the inverse of
    /// [`crate::HostSession::encrypt_key`]); `key_len` is the clear key length (for AES
    /// the key-length byte of the key data, for DES the block length).
    pub fn decrypt_key(
        &self,
        kind: KeyKind,
        encrypted: &[u8],
        key_len: usize,
    ) -> Result<Key, Error> {
        let clear = self.channel.decrypt_key(encrypted)?;
        let bytes = clear.get(..key_len).ok_or_else(|| {
            malformed(
                "encrypted key",
                format!(
                    "{} bytes, shorter than the key length {key_len}",
                    clear.len()
                ),
            )
        })?;
        Key::new(kind, bytes)
    }

    /// Decrypts secret bytes sent under the session's DEK (e.g. an ECC private key in PUT
    /// KEY, GP 2.3.1 §11.8.2.3): the inverse of the host's encryption, no padding removed.
    pub fn decrypt_secret(&self, encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.channel.decrypt_key(encrypted)
    }
}
