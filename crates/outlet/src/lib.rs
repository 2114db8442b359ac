//! The outlet security module (first source document, `docs/OUTLET.md`).
//!
//! A [`Module`] is a PKCS#11 token (the keys: trust anchors, the MAC key of its store, the
//! base key the per-card SCP03 keys are derived from or an SCP11 OCE key, the CA key that
//! certifies on-card key pairs, the symmetric registration keys it generates) plus a SQLite
//! file beside it (`outlet.db`: the verified packages, each row MAC'd in the token; the
//! install journal; the hash-chained install records). Nothing secret is in the file.
//!
//! * [`Module::add`] verifies a package ([`package::verify`]) and stores it;
//! * [`Module::install`] installs one application on the card in a reader and registers it,
//!   reporting [`Progress`]; [`Module::resume`] finishes or rolls back an install a pulled
//!   card interrupted;
//! * [`Module::records`] and [`Module::sync`] queue and upload the install records.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// One application of the catalog (what the page lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The application's short name (`wallet`).
    pub name: String,
    /// Its title.
    pub title: String,
    /// Its version.
    pub version: String,
    /// The provider (from the manifest).
    pub provider: String,
    /// The load file's size in bytes.
    pub size: u64,
    /// SHA-256 of the package it came from, hex.
    pub package_sha256: String,
}

/// How far an install is (for the page's progress bar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Progress {
    /// Opening the secure channel.
    Connecting,
    /// LOAD block `block` of `blocks` sent.
    Loading {
        /// Blocks sent so far.
        block: usize,
        /// All blocks.
        blocks: usize,
    },
    /// INSTALL sent.
    Installing,
    /// Registration: key `key` (its id in the recipe) being generated or loaded.
    Registering {
        /// The recipe's key id.
        key: String,
    },
}

/// Why an install failed, in words a clerk understands (`code()` for the page).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The card has no room for the application.
    #[error("the card is full: remove an application first")]
    CardFull,
    /// The application (its load file or instance) is already on the card.
    #[error("{0} is already on this card")]
    AlreadyPresent(String),
    /// The module has no keys for this card (another issuer's card, or another category).
    #[error("this card cannot be served here: {0}")]
    WrongCard(String),
    /// The card went away mid-install; the next click or `outlet resume` completes it.
    #[error("the card was removed: insert it again to finish")]
    CardRemoved,
    /// No card in the reader.
    #[error("no card in the reader")]
    NoCard,
    /// The stored package no longer matches its MAC (edited on disk): refused.
    #[error("the stored package for {0} was altered: add it again")]
    PackageTampered(String),
    /// No such application in the catalog.
    #[error("no application {0} in the catalog")]
    UnknownApplication(String),
    /// Anything else (card error, module error), with the detail.
    #[error("{0}")]
    Other(String),
}

impl InstallError {
    /// `card_full`, `already_present`, `wrong_card`, `card_removed`, `no_card`,
    /// `package_tampered`, `unknown_application`, `error`.
    pub fn code(&self) -> &'static str {
        match self {
            InstallError::CardFull => "card_full",
            InstallError::AlreadyPresent(_) => "already_present",
            InstallError::WrongCard(_) => "wrong_card",
            InstallError::CardRemoved => "card_removed",
            InstallError::NoCard => "no_card",
            InstallError::PackageTampered(_) => "package_tampered",
            InstallError::UnknownApplication(_) => "unknown_application",
            InstallError::Other(_) => "error",
        }
    }
}

/// What an install did (shown on the page and kept in the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallOutcome {
    /// The application's name.
    pub application: String,
    /// The card (its card number as the module knows it from the KDD, or the ISD's CIN).
    pub card: String,
    /// The instance AID installed, hex.
    pub instance: String,
    /// C-APDUs sent.
    pub apdus: u64,
    /// LOAD blocks.
    pub blocks: usize,
    /// Registration results, one per recipe key.
    pub registration: Vec<RegisteredKey>,
    /// The record's sequence number in the module's record chain.
    pub record: u64,
}

/// One key registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredKey {
    /// The recipe's key id.
    pub id: String,
    /// `ec-p256` (generated on the card) or `aes-128`/`aes-256` (generated in the module).
    pub kind: String,
    /// For on-card key pairs: the certificate the module issued (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// For symmetric keys: the key check value (hex), never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kcv: Option<String>,
}

/// The card in the reader, as far as the module can tell without authenticating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardState {
    /// The reader's name.
    pub reader: String,
    /// Whether a card is present.
    pub present: bool,
    /// Whether the module holds keys for it (from INITIALIZE UPDATE's key diversification
    /// data and key version; no authentication is attempted).
    pub known: bool,
    /// The card number (from the KDD), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
}
