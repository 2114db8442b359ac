//! Errors of the virtual card's host-facing API (opening and saving the state file).
//!
//! Errors *inside* the card are status words in R-APDUs, never Rust errors.

use std::path::PathBuf;
use thiserror::Error;

/// Why a virtual card could not be opened or its state could not be saved.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CardError {
    /// A file-system operation on the state file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation ("read", "write", "fsync", "rename", …).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be written (disk full, read-only directory, …): the card
    /// answered `6581` and kept its previous state.
    #[error("the card state could not be saved to {path}: {source}")]
    Save {
        /// The state file.
        path: PathBuf,
        /// The step that failed and why.
        #[source]
        source: atomic_file::Error,
    },
    /// The state file is not a valid card state.
    #[error("state file {path} is not a valid card state: {reason}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process has this card open (`cardwright sim run`, or `card --sim`).
    #[error("the virtual card {path} is in use by another process (close it first: a card is in one reader at a time)")]
    InUse {
        /// The state file.
        path: PathBuf,
    },
    /// The configuration cannot make a card (e.g. keys that do not fit the protocol).
    #[error("invalid card configuration: {0}")]
    Config(String),
}
