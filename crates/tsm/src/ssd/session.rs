//! Secure channels with a security domain, shared by both platforms: open with the first
//! of several candidate key sets that the card accepts. Each candidate is checked against
//! the card cryptogram before EXTERNAL AUTHENTICATE (gpclient), so a wrong candidate costs
//! none of the card's authentication attempts; a refused EXTERNAL AUTHENTICATE is never
//! retried.

use gp::aid::Aid;
use gpclient::{ClientError, GpClient, KeySpec, OpenOptions};
use scp::{SecurityLevel, StaticKeys};
use transport::CardChannel;

use crate::error::{Error, Result};

/// A candidate key set: its keys, its KVN (0: the card's choice) and a name for messages.
pub(crate) struct Candidate {
    pub keys: StaticKeys,
    pub kvn: u8,
    pub name: String,
}

/// Opens a secure channel with `sd` using the first candidate that the card accepts;
/// returns its index and the KVN the card used.
pub(crate) fn open_with<C: CardChannel>(
    client: &mut GpClient<C>,
    sd: Aid,
    candidates: &[Candidate],
    level: SecurityLevel,
) -> Result<(usize, u8)> {
    let mut tried = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let opts = OpenOptions {
            keys: KeySpec::from_static(&c.keys, c.kvn),
            level,
            scp: None,
            sd: Some(sd),
        };
        match client.open_secure_channel(&opts) {
            Ok(info) => return Ok((i, info.init_update.key_version)),
            // The card cryptogram did not verify, or the KVN is not on the card: next.
            Err(ClientError::WrongKeys { .. }) => tried.push(c.name.clone()),
            Err(ClientError::Card {
                op: gpclient::Operation::InitializeUpdate,
                sw,
                ..
            }) if sw.status() == apdu::Status::ReferencedDataNotFound => tried.push(c.name.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::KeysDoNotMatch(format!(
        "{sd} opens with none of: {}",
        tried.join(", ")
    )))
}
