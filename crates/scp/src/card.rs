//! Card side of a Secure Channel session (for the virtual card).

use crate::{Error, Key, KeyKind, Protocol, SecurityLevel, StaticKeys};

/// The card after INITIALIZE UPDATE, waiting for EXTERNAL AUTHENTICATE.
#[derive(Debug)]
pub struct CardAuth {
    _p: (),
}

impl CardAuth {
    /// Handles INITIALIZE UPDATE: derives the session keys, makes the card challenge and
    /// returns the response data.
    pub fn new(
        keys: &StaticKeys,
        protocol: Protocol,
        key_version: u8,
        kdd: [u8; 10],
        sequence_counter: u32,
        host_challenge: &[u8],
        context_aid: &[u8],
    ) -> Result<(Self, Vec<u8>), Error> {
        let _ = (
            keys,
            protocol,
            key_version,
            kdd,
            sequence_counter,
            host_challenge,
            context_aid,
        );
        Err(Error::Unsupported("not implemented yet".into()))
    }

    /// Checks EXTERNAL AUTHENTICATE (host cryptogram and its C-MAC).
    pub fn external_authenticate(self, cmd: &apdu::Command) -> Result<CardSession, Error> {
        let _ = cmd;
        Err(Error::Unsupported("not implemented yet".into()))
    }
}

/// An open Secure Channel session, card side.
#[derive(Debug)]
pub struct CardSession {
    protocol: Protocol,
    level: SecurityLevel,
}

impl CardSession {
    /// Verifies the C-MAC and decrypts; returns the command with its plain CLA.
    pub fn unwrap(&mut self, cmd: &apdu::Command) -> Result<apdu::Command, Error> {
        let _ = cmd;
        Err(Error::Unsupported("not implemented yet".into()))
    }
    /// Applies R-MAC / R-ENCRYPTION per the security level.
    pub fn wrap(&mut self, resp: apdu::Response) -> apdu::Response {
        resp
    }
    /// The security level of the session.
    pub fn level(&self) -> SecurityLevel {
        self.level
    }
    /// The protocol and its i parameter.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    /// Decrypts a key received in PUT KEY (the inverse of `HostSession::encrypt_key`).
    pub fn decrypt_key(
        &self,
        kind: KeyKind,
        encrypted: &[u8],
        key_len: usize,
    ) -> Result<Key, Error> {
        let _ = (kind, encrypted, key_len);
        Err(Error::Unsupported("not implemented yet".into()))
    }
}
