//! Dispatch over the two protocols, plus the "closed after failure" rule shared by both ends.

use crate::scp02::Scp02;
use crate::scp03::Scp03;
use crate::{Error, Key, Protocol, SecurityLevel};
use zeroize::Zeroizing;

pub(crate) enum Inner {
    Scp02(Scp02),
    Scp03(Scp03),
}

/// An authenticated channel state; once a verification fails it stays closed.
pub(crate) struct Channel {
    pub(crate) inner: Inner,
    closed: bool,
}

impl core::fmt::Debug for Channel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Channel")
            .field("protocol", &self.protocol())
            .field("level", &self.level())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Channel {
    pub(crate) fn new(inner: Inner) -> Self {
        Self {
            inner,
            closed: false,
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        match &self.inner {
            Inner::Scp02(s) => Protocol::Scp02 { i: s.i() },
            Inner::Scp03(s) => Protocol::Scp03 { i: s.i() },
        }
    }

    pub(crate) fn level(&self) -> SecurityLevel {
        match &self.inner {
            Inner::Scp02(s) => s.level(),
            Inner::Scp03(s) => s.level(),
        }
    }

    /// Runs `f`. On the verifying paths (`verify = true`: the card unwrapping a command, the
    /// host unwrapping a response) any failure closes the channel for good (a secure
    /// messaging error terminates the Secure Channel session, GP 2.3.1 §E.4.4 / Amendment D
    /// §6.2.4). On the producing paths
    /// only a closed channel is refused; an error there (e.g. data too long) sent nothing.
    fn guard<T>(
        &mut self,
        verify: bool,
        f: impl FnOnce(&mut Inner) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let r = f(&mut self.inner);
        if verify && r.is_err() {
            self.closed = true;
        }
        r
    }

    pub(crate) fn wrap_command(&mut self, cmd: &apdu::Command) -> Result<apdu::Command, Error> {
        self.guard(false, |c| match c {
            Inner::Scp02(s) => s.wrap(cmd),
            Inner::Scp03(s) => s.wrap(cmd),
        })
    }

    pub(crate) fn unwrap_command(&mut self, cmd: &apdu::Command) -> Result<apdu::Command, Error> {
        self.guard(true, |c| match c {
            Inner::Scp02(s) => s.unwrap(cmd),
            Inner::Scp03(s) => s.unwrap(cmd),
        })
    }

    pub(crate) fn wrap_response(&mut self, resp: apdu::Response) -> Result<apdu::Response, Error> {
        self.guard(false, |c| match c {
            Inner::Scp02(s) => s.wrap_response(resp),
            Inner::Scp03(s) => s.wrap_response(resp),
        })
    }

    pub(crate) fn unwrap_response(
        &mut self,
        resp: apdu::Response,
    ) -> Result<apdu::Response, Error> {
        self.guard(true, |c| match c {
            Inner::Scp02(s) => s.unwrap_response(resp),
            Inner::Scp03(s) => s.unwrap_response(resp),
        })
    }

    /// Whether a verification failure closed the channel.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn max_plain_len(&self, max_wire: usize) -> usize {
        match &self.inner {
            Inner::Scp02(s) => s.max_plain_len(max_wire),
            Inner::Scp03(s) => s.max_plain_len(max_wire),
        }
    }

    pub(crate) fn encrypt_key(&self, key: &Key) -> Result<Vec<u8>, Error> {
        match &self.inner {
            Inner::Scp02(s) => s.encrypt_key(key),
            Inner::Scp03(s) => s.encrypt_key(key),
        }
    }

    /// Encrypts secret bytes that are a whole number of blocks with the DEK, no padding.
    pub(crate) fn encrypt_secret(&self, clear: &[u8]) -> Result<Vec<u8>, Error> {
        let block = match &self.inner {
            Inner::Scp02(_) => 8,
            Inner::Scp03(_) => 16,
        };
        if clear.is_empty() || !clear.len().is_multiple_of(block) {
            return Err(crate::error::malformed(
                "secret to encrypt",
                format!(
                    "{} bytes, not a multiple of the {block}-byte block",
                    clear.len()
                ),
            ));
        }
        match &self.inner {
            Inner::Scp02(s) => s.encrypt_secret(clear),
            Inner::Scp03(s) => s.encrypt_secret(clear),
        }
    }

    pub(crate) fn decrypt_key(&self, encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        match &self.inner {
            Inner::Scp02(s) => s.decrypt_key(encrypted),
            Inner::Scp03(s) => s.decrypt_key(encrypted),
        }
    }

    /// The key that encrypts sensitive data in this session (see
    /// [`crate::HostSession::data_encryption_key`]).
    pub(crate) fn data_encryption_key(&self) -> Result<Key, Error> {
        match &self.inner {
            Inner::Scp02(s) => s.data_encryption_key(),
            Inner::Scp03(s) => Ok(s.data_encryption_key()),
        }
    }
}

/// Fills a buffer from the operating system's random number generator.
pub(crate) fn random(n: usize) -> Result<Vec<u8>, Error> {
    let mut v = vec![0u8; n];
    getrandom::fill(&mut v).map_err(|e| Error::Random(e.to_string()))?;
    Ok(v)
}
