//! Host side of a Secure Channel session.

use crate::{Error, InitUpdateResponse, Key, Protocol, SecurityLevel, StaticKeys};

/// The host after INITIALIZE UPDATE: the card is authenticated, EXTERNAL AUTHENTICATE is
/// ready to send.
#[derive(Debug)]
pub struct HostAuth {
    _p: (),
}

impl HostAuth {
    /// Derives the session keys and verifies the card cryptogram FIRST; on mismatch returns
    /// [`Error::CardCryptogramMismatch`] (the caller must then stop: do not send EXTERNAL
    /// AUTHENTICATE, so the card's failure counter is not spent).
    ///
    /// `scp02_i` is the SCP02 "i" parameter, which the card does not send (use `0x55` when
    /// the card does not say otherwise, e.g. in its Card Recognition Data).
    pub fn new(
        keys: &StaticKeys,
        host_challenge: &[u8],
        iu: &InitUpdateResponse,
        level: SecurityLevel,
        scp02_i: u8,
    ) -> Result<Self, Error> {
        let _ = (keys, host_challenge, iu, level, scp02_i);
        Err(Error::Unsupported("not implemented yet".into()))
    }

    /// EXTERNAL AUTHENTICATE: `84 82 level 00 10 host-cryptogram C-MAC`.
    pub fn external_authenticate(&self) -> apdu::Command {
        apdu::Command::new(0x84, 0x82, 0, 0)
    }

    /// Checks the card's answer to EXTERNAL AUTHENTICATE and opens the session.
    pub fn finish(self, ext_auth_response: &apdu::Response) -> Result<HostSession, Error> {
        let _ = ext_auth_response;
        Err(Error::Unsupported("not implemented yet".into()))
    }
}

/// An open Secure Channel session, host side.
#[derive(Debug)]
pub struct HostSession {
    protocol: Protocol,
    level: SecurityLevel,
}

impl HostSession {
    /// Applies C-MAC and C-DECRYPTION per the session's security level.
    pub fn wrap(&mut self, cmd: &apdu::Command) -> Result<apdu::Command, Error> {
        let _ = cmd;
        Err(Error::Unsupported("not implemented yet".into()))
    }
    /// Verifies and strips the R-MAC and decrypts R-ENCRYPTION per the security level.
    pub fn unwrap(&mut self, resp: apdu::Response) -> Result<apdu::Response, Error> {
        let _ = resp;
        Err(Error::Unsupported("not implemented yet".into()))
    }
    /// The protocol and its i parameter.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    /// The security level of the session.
    pub fn level(&self) -> SecurityLevel {
        self.level
    }
    /// The largest plain data length whose wrapped form fits in `max_wire_data` bytes.
    pub fn max_plain_len(&self, max_wire_data: usize) -> usize {
        max_wire_data
    }
    /// Encrypts a key for PUT KEY with the data encryption key.
    pub fn encrypt_key(&self, key: &Key) -> Result<Vec<u8>, Error> {
        let _ = key;
        Err(Error::Unsupported("not implemented yet".into()))
    }
}
