//! Delegated Management on the host (GP 2.3.1 §9.1.3.3, Appendix C.4, C.5): tokens put in
//! INSTALL and DELETE, receipts checked in their answers.
//!
//! A [`Delegation`] set on the client ([`crate::GpClient::set_delegation`]) applies to every
//! INSTALL and DELETE the [`crate::ops`] functions send: each gets a token — signed now
//! ([`TokenSource::Sign`], a key in a file or in a key store) or taken from a file of tokens
//! computed in advance ([`TokenSource::File`], see [`TokenFile`]) — and, with a receipt key,
//! each answer must carry a receipt that verifies and whose confirmation counter is above the
//! last one seen ([`ReceiptCheck`]). Every verified receipt is kept
//! ([`Delegation::receipts`]): it is the card's proof of the operation.

use std::fmt;

use gp::dm::{Confirmation, ReceiptContext, ReceiptKey, Signer, TokenInput};

use crate::{ClientError, Operation, Result};

/// Where tokens come from.
pub enum TokenSource {
    /// Sign each token input now.
    Sign(Box<dyn Signer + Send + Sync>),
    /// Look each token input up in a file of pre-computed tokens.
    File(TokenFile),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sign(s) => write!(f, "TokenSource::Sign({s:?})"),
            Self::File(t) => write!(f, "TokenSource::File({} tokens)", t.entries.len()),
        }
    }
}

/// A file of pre-computed tokens (`cardwright token sign` writes it, `--dm-token` reads it).
///
/// Text, one token per line: `token <token input hex> <token hex>`; `#` starts a comment
/// line. The token input (GP 2.3.1 Appendix C.4: `P1 P2 Lc data`) says which command the
/// token is for, so a token is only ever used for the exact command it was signed for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFile {
    /// (token input, token), in file order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TokenFile {
    /// Reads the text form.
    pub fn parse(text: &str) -> Result<Self> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| ClientError::Invalid(format!("token file line {}: {why}", n + 1));
            let mut parts = line.split_whitespace();
            if parts.next() != Some("token") {
                return Err(bad("expected `token <input hex> <token hex>`"));
            }
            let input = parts
                .next()
                .and_then(|h| apdu::parse_hex(h).ok())
                .ok_or_else(|| bad("token input is not hex"))?;
            let token = parts
                .next()
                .and_then(|h| apdu::parse_hex(h).ok())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad("token is not hex"))?;
            if parts.next().is_some() {
                return Err(bad("more than three fields"));
            }
            entries.push((input, token));
        }
        Ok(Self { entries })
    }

    /// The text form, with a comment line per token naming its command.
    pub fn to_text(&self) -> String {
        let mut s = String::from(
            "# Cardwright Delegated Management tokens (GP 2.3.1 Appendix C.4)\n\
             # token <token input: P1 P2 Lc data, hex> <token, hex>\n",
        );
        for (i, t) in &self.entries {
            s.push_str(&format!("token {} {}\n", apdu::hex(i), apdu::hex(t)));
        }
        s
    }

    /// The token for `input`, if the file has one.
    pub fn find(&self, input: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(i, _)| i == input)
            .map(|(_, t)| &t[..])
    }
}

/// Receipt checking: the receipt key and the last confirmation counter seen for this card's
/// receipt generation domain (kept by the caller between sessions).
#[derive(Debug)]
pub struct ReceiptCheck {
    /// The receipt key (KVN `71` on the card).
    pub key: ReceiptKey,
    /// The highest confirmation counter already seen; a receipt must be above it.
    pub last_counter: Option<u16>,
}

/// A receipt the host verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// What it confirms.
    pub context: ReceiptContext,
    /// The card's confirmation (receipt, counter, SD unique data).
    pub confirmation: Confirmation,
}

/// Delegated Management for the commands of a session.
#[derive(Debug, Default)]
pub struct Delegation {
    /// Tokens for INSTALL and DELETE (none: commands go without).
    pub tokens: Option<TokenSource>,
    /// Receipts to check (none: answers are not checked).
    pub receipts: Option<ReceiptCheck>,
    verified: Vec<VerifiedReceipt>,
}

impl Delegation {
    /// Tokens from `tokens`, receipts checked with `receipts`.
    pub fn new(tokens: Option<TokenSource>, receipts: Option<ReceiptCheck>) -> Self {
        Self {
            tokens,
            receipts,
            verified: Vec::new(),
        }
    }

    /// The receipts verified so far, in order.
    pub fn receipts(&self) -> &[VerifiedReceipt] {
        &self.verified
    }

    /// Puts the token for `cmd` in (unchanged when no token source is set).
    pub fn tokenize<T: TokenInput>(&self, op: Operation, cmd: T) -> Result<T> {
        let Some(src) = &self.tokens else {
            return Ok(cmd);
        };
        let input = cmd.token_input()?;
        let token = match src {
            TokenSource::Sign(s) => s.sign(&input).map_err(|e| ClientError::Token {
                op,
                detail: format!("signing the token failed: {e}"),
            })?,
            TokenSource::File(f) => f
                .find(&input)
                .ok_or_else(|| ClientError::Token {
                    op,
                    detail: format!(
                        "the token file has no token for this command (token input {}); nothing was sent",
                        apdu::hex(&input)
                    ),
                })?
                .to_vec(),
        };
        Ok(cmd.with_token(token)?)
    }

    /// Checks the answer to a delegated command: with a receipt key, a receipt must be there,
    /// verify, and carry a counter above the last one seen; it is then kept.
    pub fn check(&mut self, op: Operation, ctx: ReceiptContext, data: &[u8]) -> Result<()> {
        let Some(rc) = self.receipts.as_mut() else {
            return Ok(());
        };
        let bad = |detail: String| ClientError::Receipt { op, detail };
        let c = Confirmation::parse(data)
            .map_err(|e| bad(format!("the card's confirmation cannot be read: {e}")))?
            .ok_or_else(|| bad("the card returned no receipt".into()))?;
        if c.receipt.is_empty() {
            return Err(bad(
                "the card returned a confirmation without receipt".into()
            ));
        }
        let input = ctx.receipt_input(&c)?;
        rc.key.verify(&input, &c.receipt).map_err(|_| {
            bad(format!(
                "the {} receipt (counter {}) does not verify with the receipt key",
                ctx.name(),
                c.counter
            ))
        })?;
        if let Some(last) = rc.last_counter {
            if c.counter <= last {
                return Err(bad(format!(
                    "confirmation counter {} is not above the last one seen ({last}): a replayed or reset receipt",
                    c.counter
                )));
            }
        }
        rc.last_counter = Some(c.counter);
        self.verified.push(VerifiedReceipt {
            context: ctx,
            confirmation: c,
        });
        Ok(())
    }
}
