//! Response chaining without I/O: automatic GET RESPONSE on `61xx` and resend on `6Cxx`.
//!
//! A card that has more response bytes than it could return answers `61xx`
//! (ISO/IEC 7816-4 §5.1.3, §5.6: "`xx` bytes still available"); the host fetches
//! them with GET RESPONSE (§7.6.1, `CLA C0 00 00 xx`) until a final status word, and
//! the response data is the concatenation of every part. A card that refuses the
//! command's Le answers `6Cxx` ("wrong Le, `xx` bytes available"); the host sends the
//! same command again with Le = `xx` (ISO/IEC 7816-3 §10.3.3, T=0 procedure).
//!
//! [`exchange`] does both around a caller-supplied `transmit` function, so it works
//! for any transport (PC/SC, a virtual card, a relay) and is tested with scripted
//! fake cards. Every loop is bounded: see [`ExchangeOptions`].

use crate::{Command, Error, Response, StatusWord};

/// The CLA byte [`exchange`] puts on GET RESPONSE commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetResponseCla {
    /// The interindustry class `0X` with only the command's logical channel kept
    /// (ISO/IEC 7816-4 §5.4.1): channels 0-3 from CLA b2-b1 when b7 = 0
    /// (`00`-`3F`, `80`-`BF`), channels 4-19 as `4X` from CLA b4-b1 when b7 = 1
    /// (`40`-`7F`, `C0`-`FF`). Secure messaging and chaining bits are cleared:
    /// GET RESPONSE is never wrapped (GP Card Specification 2.3.1 §11.1.4).
    #[default]
    Interindustry,
    /// The command's own CLA byte, unchanged (some cards and tools, e.g. pySim,
    /// send GET RESPONSE with the CLA of the command it continues).
    SameAsCommand,
}

impl GetResponseCla {
    /// The CLA of a GET RESPONSE that continues a command with class `cla`.
    pub const fn for_command(self, cla: u8) -> u8 {
        match self {
            Self::SameAsCommand => cla,
            Self::Interindustry if cla & 0x40 == 0 => cla & 0x03,
            Self::Interindustry => 0x40 | (cla & 0x0F),
        }
    }
}

/// Limits and choices for [`exchange_with`]. `Default` gives the values of [`exchange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangeOptions {
    /// The largest response data accepted, summed over all parts (default 1 MiB).
    pub max_response_len: usize,
    /// The most GET RESPONSE commands sent for one command (default 4096, i.e. 1 MiB
    /// in 256-byte parts). A card that keeps answering `61xx` beyond this is an error.
    pub max_get_responses: usize,
    /// The class byte of GET RESPONSE commands.
    pub get_response_cla: GetResponseCla,
}

impl Default for ExchangeOptions {
    fn default() -> Self {
        Self {
            max_response_len: 1 << 20,
            max_get_responses: 4096,
            get_response_cla: GetResponseCla::Interindustry,
        }
    }
}

/// Why [`exchange`] did not produce a response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError<E> {
    /// The transport failed.
    #[error("transmit failed: {0}")]
    Transmit(#[source] E),
    /// The command (or the resend with a corrected Le) cannot be encoded.
    #[error("cannot encode the command: {0}")]
    Encode(#[source] Error),
    /// The card's answer is not an R-APDU (fewer than two bytes).
    #[error("malformed response: {0}")]
    BadResponse(#[source] Error),
    /// The concatenated response data would exceed
    /// [`ExchangeOptions::max_response_len`].
    #[error("response data exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The card still answered `61xx` after [`ExchangeOptions::max_get_responses`]
    /// GET RESPONSE commands.
    #[error("card still reports more data (61xx) after {limit} GET RESPONSE commands")]
    TooManyGetResponses {
        /// The limit in force.
        limit: usize,
    },
}

/// Sends `cmd` through `transmit` and completes the response with GET RESPONSE and
/// Le correction, using the default [`ExchangeOptions`]:
///
/// 1. `transmit` receives the encoded command and returns the raw R-APDU.
/// 2. On `61xx` the data received so far is kept and GET RESPONSE
///    `00 C0 00 00 xx` is sent (`xx` = `00` asks for 256; the CLA keeps only the
///    command's logical channel, see [`GetResponseCla`]); repeated until the card
///    gives another status word.
/// 3. On `6Cxx` the command just sent (the original or a GET RESPONSE) is sent once
///    more with Le = `xx` (`00` meaning 256), its data discarded. A second `6Cxx`
///    for the same command is returned to the caller as the final status.
/// 4. The result is all data received, in order, with the last status word, whatever
///    it is: error statuses are not errors here, the caller decides.
///
/// At most 1 MiB of data and 4096 GET RESPONSE commands are accepted
/// ([`ExchangeError::ResponseTooLarge`], [`ExchangeError::TooManyGetResponses`]).
///
/// ```
/// use apdu::{exchange, Command, StatusWord};
/// let mut script = vec![vec![0x61, 0x02], vec![0xAB, 0xCD, 0x90, 0x00]].into_iter();
/// let mut sent = Vec::new();
/// let resp = exchange(&Command::new(0x00, 0xA4, 0x04, 0x00).with_data(vec![0xA0]), |apdu| {
///     sent.push(apdu.to_vec());
///     script.next().ok_or("card mute")
/// })
/// .unwrap();
/// assert_eq!((resp.data, resp.sw), (vec![0xAB, 0xCD], StatusWord::SUCCESS));
/// assert_eq!(sent[1], vec![0x00, 0xC0, 0x00, 0x00, 0x02]);
/// ```
pub fn exchange<E>(
    cmd: &Command,
    transmit: impl FnMut(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Response, ExchangeError<E>> {
    exchange_with(cmd, &ExchangeOptions::default(), transmit)
}

/// [`exchange`] with explicit limits and GET RESPONSE class.
pub fn exchange_with<E>(
    cmd: &Command,
    options: &ExchangeOptions,
    mut transmit: impl FnMut(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Response, ExchangeError<E>> {
    let mut current = cmd.clone();
    let mut data: Vec<u8> = Vec::new();
    let mut get_responses = 0usize;
    let mut le_corrected = false;
    loop {
        let bytes = current.to_bytes().map_err(ExchangeError::Encode)?;
        let raw = transmit(&bytes).map_err(ExchangeError::Transmit)?;
        let resp = Response::parse(&raw).map_err(ExchangeError::BadResponse)?;
        let (sw1, sw2) = (resp.sw.sw1(), resp.sw.sw2());

        if sw1 == 0x6C && !le_corrected {
            // ISO/IEC 7816-3 §10.3.3: resend with the exact length; the data of a
            // 6Cxx answer (normally none) is not part of the response.
            le_corrected = true;
            current.le = Some(if sw2 == 0 { 256 } else { sw2 as u32 });
            continue;
        }

        if data.len().saturating_add(resp.data.len()) > options.max_response_len {
            return Err(ExchangeError::ResponseTooLarge {
                limit: options.max_response_len,
            });
        }
        data.extend_from_slice(&resp.data);

        if sw1 != 0x61 {
            return Ok(Response { data, sw: resp.sw });
        }
        if get_responses >= options.max_get_responses {
            return Err(ExchangeError::TooManyGetResponses {
                limit: options.max_get_responses,
            });
        }
        get_responses += 1;
        le_corrected = false;
        // ISO/IEC 7816-4 §7.6.1 GET RESPONSE: P1-P2 = 0000, Le = SW2 ('00' = 256).
        current = Command::new(
            options.get_response_cla.for_command(cmd.cla),
            0xC0,
            0x00,
            0x00,
        )
        .with_le(if sw2 == 0 { 256 } else { sw2 as u32 });
    }
}

/// Sends a command whose data may exceed `max_data` bytes as a chain
/// ([`Command::chain`]), each part through [`exchange_with`]. Stops at the first part
/// that does not end with `9000` and returns that response (a card refusing chaining
/// answers `6884`, one expecting the last part `6883`); otherwise returns the last
/// part's response.
pub fn exchange_chained<E>(
    cmd: &Command,
    max_data: usize,
    options: &ExchangeOptions,
    mut transmit: impl FnMut(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Response, ExchangeError<E>> {
    let parts = cmd.chain(max_data);
    let (last, init) = match parts.split_last() {
        Some((last, init)) => (last, init),
        None => (cmd, &[][..]),
    };
    for part in init {
        let resp = exchange_with(part, options, &mut transmit)?;
        if resp.sw != StatusWord::SUCCESS {
            return Ok(resp);
        }
    }
    exchange_with(last, options, transmit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_response_cla() {
        let i = GetResponseCla::Interindustry;
        assert_eq!(i.for_command(0x00), 0x00);
        assert_eq!(i.for_command(0x84), 0x00);
        assert_eq!(i.for_command(0x87), 0x03);
        assert_eq!(i.for_command(0x0D), 0x01);
        assert_eq!(i.for_command(0x1C), 0x00);
        assert_eq!(i.for_command(0x41), 0x41);
        assert_eq!(i.for_command(0xC3), 0x43);
        assert_eq!(i.for_command(0xEF), 0x4F);
        assert_eq!(i.for_command(0x7A), 0x4A);
        assert_eq!(GetResponseCla::SameAsCommand.for_command(0x84), 0x84);
    }
}
