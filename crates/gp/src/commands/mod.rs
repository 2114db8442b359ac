//! GlobalPlatform card management commands (GP Card Specification 2.3.1 chapter 11),
//! each with a builder *and* a parser, and their responses, each with a parser *and*
//! a builder, so that the host and the virtual card share one codec.
//!
//! Conventions:
//! * `to_command()` builds (or fails with [`Error::Encoding`] when a field is too long) the plain APDU with CLA `80` (GP proprietary, §11.1.4) or
//!   `00` for SELECT; secure messaging (CLA `84`, MAC, encryption) is added by the
//!   `scp` crate.
//! * `parse(&Command)` checks INS, P1, P2 and the data field but not CLA: the card
//!   checks class and secure messaging before it parses.
//! * Response types have `parse(&[u8])` (the response data field, no status word) and
//!   `to_bytes()`.
//! * [`GpCommand::parse`] dispatches any command on its INS.

use apdu::{Command, Response, StatusWord};

use crate::{Error, Result};

mod delete;
pub mod dgi;
mod get_data;
mod get_status;
mod install;
mod load;
mod put_key;
mod select;
mod set_status;
mod store_data;

pub use delete::Delete;
pub use dgi::{dgi_store_data, parse_dgi_prefix, parse_dgis, Dgi};
pub use get_data::{
    CardData, Cplc, DataObject, GetData, KeyComponent, KeyInfo, KeyInfoEntry, ScpOption,
};
pub use get_status::{
    GetStatus, GetStatusResponse, RegistryEntry, RegistryKind, StatusFormat, StatusPage,
    StatusSubset,
};
pub use install::{Install, InstallParams};
pub use load::{
    load_blocks, load_blocks_with_dap, DapBlock, Load, LoadAssembler, LoadFileStructure,
};
pub use put_key::PutKey;
pub use select::{Fci, Occurrence, Select};
pub use set_status::{SetStatus, SetStatusScope};
pub use store_data::{StoreData, StoreDataEncryption, StoreDataStructure};

/// Class byte of ISO/IEC 7816-4 interindustry commands (SELECT).
pub const CLA_ISO: u8 = 0x00;
/// Class byte of GlobalPlatform proprietary commands without secure messaging (§11.1.4).
pub const CLA_GP: u8 = 0x80;

/// Instruction bytes of GP 2.3.1 §11.1.4 and the command sections.
pub mod ins {
    /// DELETE (§11.2).
    pub const DELETE: u8 = 0xE4;
    /// GET DATA (§11.3), data field absent.
    pub const GET_DATA: u8 = 0xCA;
    /// GET STATUS (§11.4).
    pub const GET_STATUS: u8 = 0xF2;
    /// INSTALL (§11.5).
    pub const INSTALL: u8 = 0xE6;
    /// LOAD (§11.6).
    pub const LOAD: u8 = 0xE8;
    /// MANAGE CHANNEL (§11.7).
    pub const MANAGE_CHANNEL: u8 = 0x70;
    /// PUT KEY (§11.8).
    pub const PUT_KEY: u8 = 0xD8;
    /// SELECT (§11.9).
    pub const SELECT: u8 = 0xA4;
    /// SET STATUS (§11.10).
    pub const SET_STATUS: u8 = 0xF0;
    /// STORE DATA (§11.11).
    pub const STORE_DATA: u8 = 0xE2;
    /// INITIALIZE UPDATE (Amendment D / Appendix E).
    pub const INITIALIZE_UPDATE: u8 = 0x50;
    /// EXTERNAL AUTHENTICATE.
    pub const EXTERNAL_AUTHENTICATE: u8 = 0x82;
    /// GET RESPONSE (ISO/IEC 7816-4).
    pub const GET_RESPONSE: u8 = 0xC0;
}

pub(crate) fn expect_ins(cmd: &Command, ins: u8, name: &'static str) -> Result<()> {
    if cmd.ins == ins {
        Ok(())
    } else {
        Err(Error::WrongInstruction {
            expected: name,
            expected_ins: ins,
            ins: cmd.ins,
        })
    }
}

pub(crate) fn bad_p1p2(cmd: &Command, name: &'static str) -> Error {
    Error::BadParameters {
        command: name,
        p1: cmd.p1,
        p2: cmd.p2,
    }
}

/// The response data of a successful response, or [`Error::Status`].
pub fn check_success(resp: &Response) -> Result<&[u8]> {
    if resp.sw == StatusWord::SUCCESS {
        Ok(&resp.data)
    } else {
        Err(Error::Status(resp.sw))
    }
}

/// Any GlobalPlatform card management command this crate models, for the card side.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum GpCommand {
    /// SELECT by AID.
    Select(Select),
    /// GET DATA.
    GetData(GetData),
    /// GET STATUS.
    GetStatus(GetStatus),
    /// INSTALL.
    Install(Install),
    /// LOAD.
    Load(Load),
    /// DELETE.
    Delete(Delete),
    /// SET STATUS.
    SetStatus(SetStatus),
    /// STORE DATA.
    StoreData(StoreData),
    /// PUT KEY (header + opaque key data).
    PutKey(PutKey),
}

impl GpCommand {
    /// Parses a command by its INS. Secure messaging must already be removed.
    pub fn parse(cmd: &Command) -> Result<Self> {
        Ok(match cmd.ins {
            ins::SELECT => Self::Select(Select::parse(cmd)?),
            ins::GET_DATA => Self::GetData(GetData::parse(cmd)?),
            ins::GET_STATUS => Self::GetStatus(GetStatus::parse(cmd)?),
            ins::INSTALL => Self::Install(Install::parse(cmd)?),
            ins::LOAD => Self::Load(Load::parse(cmd)?),
            ins::DELETE => Self::Delete(Delete::parse(cmd)?),
            ins::SET_STATUS => Self::SetStatus(SetStatus::parse(cmd)?),
            ins::STORE_DATA => Self::StoreData(StoreData::parse(cmd)?),
            ins::PUT_KEY => Self::PutKey(PutKey::parse(cmd)?),
            other => return Err(Error::UnknownInstruction(other)),
        })
    }

    /// Builds the plain command APDU.
    pub fn to_command(&self) -> Result<Command> {
        match self {
            Self::Select(c) => c.to_command(),
            Self::GetData(c) => c.to_command(),
            Self::GetStatus(c) => c.to_command(),
            Self::Install(c) => c.to_command(),
            Self::Load(c) => c.to_command(),
            Self::Delete(c) => c.to_command(),
            Self::SetStatus(c) => c.to_command(),
            Self::StoreData(c) => c.to_command(),
            Self::PutKey(c) => c.to_command(),
        }
    }

    /// The command's name as the specification writes it (`INSTALL`, `GET STATUS`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Select(_) => "SELECT",
            Self::GetData(_) => "GET DATA",
            Self::GetStatus(_) => "GET STATUS",
            Self::Install(_) => "INSTALL",
            Self::Load(_) => "LOAD",
            Self::Delete(_) => "DELETE",
            Self::SetStatus(_) => "SET STATUS",
            Self::StoreData(_) => "STORE DATA",
            Self::PutKey(_) => "PUT KEY",
        }
    }
}

/// Response data of INSTALL, LOAD and DELETE (GP 2.3.1 §11.2.3.1, §11.5.3.1, §11.6.3.1):
/// see [`crate::dm::receipt::Confirmation`].
pub use crate::dm::receipt::Confirmation;

/// Encodes `len || bytes` with a one-byte length.
pub(crate) fn push_lv(out: &mut Vec<u8>, bytes: &[u8], field: &str) -> Result<()> {
    let n = u8::try_from(bytes.len())
        .map_err(|_| Error::Encoding(format!("{field} of {} bytes exceeds 255", bytes.len())))?;
    out.push(n);
    out.extend_from_slice(bytes);
    Ok(())
}
