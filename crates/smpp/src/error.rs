//! Errors.

use std::time::Duration;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The URL does not parse.
    #[error("invalid SMPP URL: {0}")]
    Url(String),
    /// The URL's scheme is not `smpp`.
    #[error("the URL scheme is {0:?}, not \"smpp\"")]
    Scheme(String),
    /// A query parameter is unknown or its value is invalid.
    #[error("invalid or unknown SMPP URL parameter {0:?}")]
    Parameter(String),
    /// A field is longer than SMPP 3.4 allows.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its longest allowed length.
        max: usize,
    },
    /// A field has a NUL or a non-ASCII character.
    #[error("{field} must be ASCII without NUL")]
    NotAscii {
        /// The field.
        field: &'static str,
    },
}

/// A message that cannot be put in a PDU.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The short_message is longer than 254 octets (use message_payload).
    #[error("short_message is {0} octets, more than 254 (use message_payload)")]
    ShortMessageTooLong(usize),
    /// An address is longer than 20 characters or is not ASCII.
    #[error("address {0:?} is longer than 20 characters or not ASCII")]
    Address(String),
    /// A C-octet string field (service_type, times) is invalid.
    #[error("invalid {0}")]
    Field(&'static str),
}

/// What an ESME or endpoint operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message cannot be encoded.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The SMSC answered with a non-zero command_status (submit_sm_resp, generic_nack, …).
    #[error("rejected by the peer: command_status 0x{status:08X} ({name})")]
    Rejected {
        /// The command_status.
        status: u32,
        /// Its SMPP name.
        name: String,
    },
    /// The SMSC refused the bind for bad credentials; the ESME does not retry.
    #[error("bind refused: command_status 0x{status:08X} ({name}); not retrying")]
    BindRefused {
        /// The command_status of the bind response.
        status: u32,
        /// Its SMPP name.
        name: String,
    },
    /// No response came in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection was lost before the response came; the message may or may not have been
    /// accepted.
    #[error("the connection was lost before the response came")]
    ConnectionLost,
    /// The ESME or endpoint was shut down.
    #[error("closed")]
    Closed,
    /// No SMSC is bound to the endpoint (as a receiver or transceiver).
    #[error("no SMSC is bound to the endpoint")]
    NotBound,
    /// An I/O error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn rejected(status: u32) -> Self {
        Error::Rejected {
            status,
            name: status_name(status),
        }
    }
}

/// The SMPP name of a command_status (`ESME_RINVPASWD`, …), or its hex form.
pub fn status_name(status: u32) -> String {
    let name = match status {
        0x00 => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN",
        0x02 => "ESME_RINVCMDLEN",
        0x03 => "ESME_RINVCMDID",
        0x04 => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        0x06 => "ESME_RINVPRTFLG",
        0x07 => "ESME_RINVREGDLVFLG",
        0x08 => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        0x0B => "ESME_RINVDSTADR",
        0x0C => "ESME_RINVMSGID",
        0x0D => "ESME_RBINDFAIL",
        0x0E => "ESME_RINVPASWD",
        0x0F => "ESME_RINVSYSID",
        0x14 => "ESME_RMSGQFUL",
        0x45 => "ESME_RSUBMITFAIL",
        0x58 => "ESME_RTHROTTLED",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x64 => "ESME_RX_T_APPN",
        0x65 => "ESME_RX_P_APPN",
        0x66 => "ESME_RX_R_APPN",
        0xC0 => "ESME_ROPTPARNOTALLWD",
        0xC1 => "ESME_RINVPARLEN",
        0xC2 => "ESME_RMISSINGOPTPARAM",
        0xC3 => "ESME_RINVOPTPARAMVAL",
        0xFE => "ESME_RDELIVERYFAILURE",
        0xFF => "ESME_RUNKNOWNERR",
        _ => return format!("0x{status:08X}"),
    };
    name.to_owned()
}
