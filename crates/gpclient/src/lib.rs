//! Host-side GlobalPlatform card management over any [`transport::CardChannel`].
//!
//! [`GpClient`] selects a security domain, opens a secure channel and sends commands
//! through it; the modules on top of it ([`ops`]) are the card-management operations
//! of the `cardwright card` commands and of the platform's workflows. [`GpClient::open_scp11`]
//! ([`scp11`]) opens an SCP11a/b/c channel instead of SCP02/SCP03; the session is the same.
//!
//! Safety of real cards (GP 2.3.1 §E.4.2 / Amd D §7.1.1): the card cryptogram in the
//! INITIALIZE UPDATE response is verified *before* EXTERNAL AUTHENTICATE is sent; when it
//! does not verify we stop with [`ClientError::WrongKeys`], so the card's authentication
//! failure counter is never spent on keys we already know are wrong, and nothing is retried.
#![forbid(unsafe_code)]

pub mod dm;
pub mod ops;
pub mod scp11;

use apdu::{Command, Response, Status, StatusWord};
use gp::aid::Aid;
use scp::{Diversification, HostAuth, HostSession, InitUpdateResponse, SecurityLevel, StaticKeys};
use std::fmt;
use transport::{CardChannel, Traced, TransportError};
use zeroize::Zeroizing;

/// A card-management command, as named in errors (GP 2.3.1 §11 and ISO/IEC 7816-4).
///
/// Callers decide what an error means by this and the error's variant, never by its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// SELECT by AID (ISO/IEC 7816-4 §11.2.2, GP 2.3.1 §11.9).
    Select,
    /// INITIALIZE UPDATE (GP 2.3.1 §E.5.1, Amd D §7.1.1).
    InitializeUpdate,
    /// EXTERNAL AUTHENTICATE (GP 2.3.1 §E.5.2, Amd D §7.1.2).
    ExternalAuthenticate,
    /// PUT KEY (GP 2.3.1 §11.8).
    PutKey,
    /// STORE DATA (GP 2.3.1 §11.11).
    StoreData,
    /// INSTALL \[for load\] (GP 2.3.1 §11.5.2.3.1).
    InstallForLoad,
    /// INSTALL \[for install\] (and make selectable) (GP 2.3.1 §11.5.2.3.2).
    InstallForInstall,
    /// INSTALL \[for extradition\] (GP 2.3.1 §11.5.2.3.5).
    InstallForExtradition,
    /// INSTALL \[for personalization\] (GP 2.3.1 §11.5.2.3.6).
    InstallForPersonalization,
    /// LOAD (GP 2.3.1 §11.6).
    Load,
    /// DELETE (GP 2.3.1 §11.2).
    Delete,
    /// SET STATUS (GP 2.3.1 §11.10).
    SetStatus,
    /// GET STATUS (GP 2.3.1 §11.4).
    GetStatus,
    /// GET DATA (GP 2.3.1 §11.3).
    GetData,
    /// A command given by the user as raw bytes.
    Apdu,
    /// PERFORM SECURITY OPERATION (GP Amendment F §7.5): an OCE certificate for SCP11a/c.
    PerformSecurityOperation,
    /// MUTUAL AUTHENTICATE (GP Amendment F §7.6, SCP11a/c).
    MutualAuthenticate,
    /// INTERNAL AUTHENTICATE (GP Amendment F §7.6, SCP11b).
    InternalAuthenticate,
    /// GENERATE (EC) KEY (`80 F1`, as YubiKeys and the virtual card take it): an SCP11 SD
    /// key pair made on the card.
    GenerateKey,
}

impl Operation {
    /// The command's name as the specifications write it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Select => "SELECT",
            Operation::InitializeUpdate => "INITIALIZE UPDATE",
            Operation::ExternalAuthenticate => "EXTERNAL AUTHENTICATE",
            Operation::PutKey => "PUT KEY",
            Operation::StoreData => "STORE DATA",
            Operation::InstallForLoad => "INSTALL [for load]",
            Operation::InstallForInstall => "INSTALL [for install]",
            Operation::InstallForExtradition => "INSTALL [for extradition]",
            Operation::InstallForPersonalization => "INSTALL [for personalization]",
            Operation::Load => "LOAD",
            Operation::Delete => "DELETE",
            Operation::SetStatus => "SET STATUS",
            Operation::GetStatus => "GET STATUS",
            Operation::GetData => "GET DATA",
            Operation::Apdu => "APDU",
            Operation::PerformSecurityOperation => "PERFORM SECURITY OPERATION",
            Operation::MutualAuthenticate => "MUTUAL AUTHENTICATE",
            Operation::InternalAuthenticate => "INTERNAL AUTHENTICATE",
            Operation::GenerateKey => "GENERATE KEY",
        }
    }

    /// Whether the card accepts the command only inside a secure channel with its security
    /// domain (GP 2.3.1 §11.1.1 table 11-1 and each command's section): [`GpClient::send`]
    /// refuses to send these in plain.
    pub fn needs_secure_channel(self) -> bool {
        matches!(
            self,
            Operation::PutKey
                | Operation::GenerateKey
                | Operation::StoreData
                | Operation::InstallForLoad
                | Operation::InstallForInstall
                | Operation::InstallForExtradition
                | Operation::InstallForPersonalization
                | Operation::Load
                | Operation::Delete
                | Operation::SetStatus
                | Operation::GetStatus
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `" OBJECT"`, or nothing for an empty object (how an error names what the command was about).
fn about(object: &str) -> String {
    if object.is_empty() {
        String::new()
    } else {
        format!(" {object}")
    }
}

/// Why a card operation failed. Every variant renders as one line for the user.
///
/// What happened is in the variant and its typed fields ([`Operation`], [`StatusWord`]);
/// the `object` strings only name the command's target in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The reader or the card went away (the command's outcome is unknown).
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The exchange with the card broke down below the command: an answer that is not an
    /// R-APDU, endless `61xx`, a command that cannot be encoded. The command's outcome is
    /// unknown.
    #[error("{op}: exchange with the card: {detail}")]
    Exchange {
        /// The command being sent.
        op: Operation,
        /// What went wrong, for the message.
        detail: String,
    },
    /// The card answered `op` with a status word other than success.
    #[error("{op}{} failed: the card answered {sw}", about(.object))]
    Card {
        /// The command.
        op: Operation,
        /// What the command was about (an AID, a block number), for the message.
        object: String,
        /// The card's answer.
        sw: StatusWord,
    },
    /// The card cryptogram did not verify; EXTERNAL AUTHENTICATE was not sent.
    #[error("the card cryptogram does not verify: wrong keys{hint} for this card (EXTERNAL AUTHENTICATE was not sent, so the card's failure counter was not spent)")]
    WrongKeys {
        /// What else may be wrong, for the message.
        hint: String,
    },
    /// The card refused INITIALIZE UPDATE / EXTERNAL AUTHENTICATE in a way that means the
    /// key set is locked or blocked.
    #[error("{op} failed: the card answered {sw}: the key set is locked after too many failed authentications")]
    KeysLocked {
        /// INITIALIZE UPDATE or EXTERNAL AUTHENTICATE.
        op: Operation,
        /// The card's answer.
        sw: StatusWord,
    },
    /// The card's answer to `op` does not verify (R-MAC, R-ENC padding): the command's
    /// outcome is unknown.
    #[error("{op}: the card's answer does not verify: {source}")]
    ResponseUnverified {
        /// The command.
        op: Operation,
        /// Why.
        source: scp::Error,
    },
    /// The card accepted PUT KEY but its answer (key version, key check values) does not
    /// confirm the keys sent (GP 2.3.1 §11.8.3): which keys the card holds is unknown.
    #[error("PUT KEY: the card's answer does not confirm the new keys: {0}")]
    KeysNotConfirmed(#[source] scp::Error),
    /// `op` needs a secure channel and none is open; nothing was sent.
    #[error("{0} needs a secure channel and none is open (nothing was sent)")]
    NoSecureChannel(Operation),
    /// SCP11: the card's certificate chain (GET DATA `BF21`) does not verify against the
    /// trust anchor given (`--sd-trust`); nothing else was sent.
    #[error("SCP11: the card's certificate chain (BF21, SD key KID {:02X} KVN {:02X}) does not verify against the trust anchor (--sd-trust): {source}", .key.kid, .key.kvn)]
    CardCertificate {
        /// The SD key whose chain was read.
        key: gp::scp11::KeyRef,
        /// Which check failed, and at which certificate (0 = the one signed by the anchor).
        source: gp::cert::ChainError,
    },
    /// SCP11a/c: the OCE certificates or key given cannot be used (checked before sending).
    #[error("SCP11: the OCE certificate chain (--oce-cert): {detail}")]
    OceCertificate {
        /// What is wrong.
        detail: String,
    },
    /// SCP11a/c: the card refused OCE certificate `index` (0 = the first sent) in PERFORM
    /// SECURITY OPERATION.
    #[error("SCP11: PERFORM SECURITY OPERATION: the card refused OCE certificate {index} with {sw}: {meaning}")]
    OceCertificateRefused {
        /// Position of the certificate in the chain sent.
        index: usize,
        /// The card's answer.
        sw: StatusWord,
        /// What the status word means here.
        meaning: &'static str,
    },
    /// SCP11: the card's receipt does not verify. The card does not hold SK.SD for the
    /// certified PK.SD, or (11a/c) it used another OCE key than the one given.
    #[error("SCP11: the card's receipt does not verify: the card does not hold the private key of its certificate, or the OCE key does not match (not retried)")]
    ReceiptMismatch,
    /// SCP11a/c: the OCE key in the key store or HSM failed.
    #[error("SCP11: {detail}")]
    OceKeyFailed {
        /// The key store's error.
        detail: String,
    },
    /// Secure-channel cryptography or an INITIALIZE UPDATE answer failed.
    #[error("secure channel: {0}")]
    Scp(#[from] scp::Error),
    /// A GlobalPlatform structure could not be built or parsed.
    #[error("{0}")]
    Gp(#[from] gp::Error),
    /// The request cannot be done as asked (checked before sending).
    #[error("{0}")]
    Invalid(String),
    /// No Delegated Management token could be had for `op` (nothing was sent).
    #[error("{op}: token: {detail}")]
    Token {
        /// The command.
        op: Operation,
        /// Why.
        detail: String,
    },
    /// The card did what `op` asked but its receipt is missing, does not verify, or repeats
    /// an old confirmation counter: the operation is not proven (GP 2.3.1 §9.1.3.3).
    #[error("{op}: receipt check failed: {detail}")]
    Receipt {
        /// The command.
        op: Operation,
        /// Which check failed.
        detail: String,
    },
}

impl ClientError {
    /// The card refused `op` (about `object`) with `sw`.
    pub fn refused(op: Operation, object: impl Into<String>, sw: StatusWord) -> Self {
        ClientError::Card {
            op,
            object: object.into(),
            sw,
        }
    }
}

/// The result of a card-management operation.
pub type Result<T> = std::result::Result<T, ClientError>;

/// Keys to open a secure channel with: static keys, or master keys plus a diversification.
///
/// The bytes are kept raw until the card announces its protocol in INITIALIZE UPDATE, since a
/// 16-byte key is a valid two-key 3DES key (SCP02) and a valid AES-128 key (SCP03).
pub struct KeySpec {
    /// Encryption key (S-ENC base), or the master key to diversify.
    pub enc: Zeroizing<Vec<u8>>,
    /// MAC key (S-MAC base), or the master key to diversify.
    pub mac: Zeroizing<Vec<u8>>,
    /// Data encryption key (DEK, for PUT KEY), or the master key to diversify.
    pub dek: Zeroizing<Vec<u8>>,
    /// How the card's keys derive from these (none: they are the card's static keys).
    pub kdf: Diversification,
    /// Key version number to ask for; 0 lets the card choose.
    pub key_version: u8,
}

/// The GlobalPlatform test key `40 41 … 4F` that factory cards and tools default to.
pub const DEFAULT_TEST_KEY: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];

impl KeySpec {
    /// The same key for ENC, MAC and DEK.
    pub fn same(key: &[u8], kdf: Diversification, key_version: u8) -> Self {
        Self {
            enc: Zeroizing::new(key.to_vec()),
            mac: Zeroizing::new(key.to_vec()),
            dek: Zeroizing::new(key.to_vec()),
            kdf,
            key_version,
        }
    }
    /// Static (already diversified) keys, for a channel opened with exactly these keys.
    pub fn from_static(keys: &StaticKeys, key_version: u8) -> Self {
        Self {
            enc: Zeroizing::new(keys.enc.expose().to_vec()),
            mac: Zeroizing::new(keys.mac.expose().to_vec()),
            dek: Zeroizing::new(keys.dek.expose().to_vec()),
            kdf: Diversification::None,
            key_version,
        }
    }
    /// The keys typed for protocol `scp` (`02`: 3DES, `03`: AES).
    pub fn static_keys(&self, scp: u8) -> Result<StaticKeys> {
        let make = |b: &[u8]| match scp {
            0x02 => scp::Key::des3(b),
            _ => scp::Key::aes(b),
        };
        Ok(StaticKeys {
            enc: make(&self.enc)?,
            mac: make(&self.mac)?,
            dek: make(&self.dek)?,
        })
    }
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpec")
            .field("keys", &"<redacted>")
            .field("kdf", &self.kdf)
            .field("key_version", &self.key_version)
            .finish()
    }
}

/// How to open the channel.
#[derive(Debug)]
pub struct OpenOptions {
    /// The keys to authenticate with.
    pub keys: KeySpec,
    /// Security level to ask for in EXTERNAL AUTHENTICATE (C-MAC at least).
    pub level: SecurityLevel,
    /// Expected protocol (2 or 3); `None` accepts what the card announces.
    pub scp: Option<u8>,
    /// Security domain to select and authenticate to; `None` = the ISD.
    pub sd: Option<Aid>,
}

/// What was learnt while opening a secure channel.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// The card's INITIALIZE UPDATE response (key diversification data, key version, protocol).
    pub init_update: InitUpdateResponse,
    /// The secure channel protocol the card speaks (SCP02 or SCP03, with its parameter).
    pub protocol: scp::Protocol,
    /// The security level of the channel.
    pub level: SecurityLevel,
    /// The security domain the channel is open to.
    pub sd: Aid,
}

/// A connection to one card, optionally with an open secure channel.
pub struct GpClient<C: CardChannel> {
    chan: Traced<C>,
    session: Option<HostSession>,
    info: Option<ChannelInfo>,
    scp11: Option<scp11::Scp11Info>,
    /// Most data a C-APDU may carry on this card (from the SD's FCI tag 9F65; 255 by default).
    max_command_data: usize,
    /// Number of C-APDUs sent on the wire (GET RESPONSE included).
    apdus_sent: u64,
    /// Delegated Management tokens and receipt checks for INSTALL and DELETE.
    delegation: Option<dm::Delegation>,
}

impl<C: CardChannel> fmt::Debug for GpClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpClient")
            .field("card", &self.chan.name())
            .field("channel", &self.info)
            .finish()
    }
}

impl<C: CardChannel> GpClient<C> {
    /// A client on `chan`, with no secure channel open yet.
    pub fn new(chan: Traced<C>) -> Self {
        Self {
            chan,
            session: None,
            info: None,
            scp11: None,
            max_command_data: 255,
            apdus_sent: 0,
            delegation: None,
        }
    }

    /// Uses Delegated Management tokens and receipt checks for the INSTALL and DELETE
    /// commands sent from now on ([`dm`]).
    pub fn set_delegation(&mut self, d: dm::Delegation) {
        self.delegation = Some(d);
    }

    /// The Delegated Management settings and the receipts verified so far.
    pub fn delegation(&self) -> Option<&dm::Delegation> {
        self.delegation.as_ref()
    }

    /// Takes the Delegated Management settings (and receipts) back.
    pub fn take_delegation(&mut self) -> Option<dm::Delegation> {
        self.delegation.take()
    }

    /// Sends a command that may carry a token (INSTALL, DELETE): the token is put in when a
    /// [`dm::Delegation`] is set, and the answer's receipt checked against `ctx`.
    pub fn send_managed<T: gp::dm::TokenInput>(
        &mut self,
        op: Operation,
        cmd: T,
        to_command: impl FnOnce(&T) -> gp::Result<Command>,
        ctx: Option<gp::dm::ReceiptContext>,
        object: &str,
    ) -> Result<Response> {
        let cmd = match &self.delegation {
            Some(d) => d.tokenize(op, cmd)?,
            None => cmd,
        };
        let resp = self.send_ok(op, &to_command(&cmd)?, object)?;
        if let (Some(d), Some(ctx)) = (self.delegation.as_mut(), ctx) {
            if d.tokens.is_some() {
                d.check(op, ctx, &resp.data)?;
            }
        }
        Ok(resp)
    }

    /// Sends a command that already carries its token (one computed in advance, e.g. by an
    /// application provider): as it is, without asking the delegation's token source; the
    /// answer's receipt is checked against `ctx` when a [`dm::Delegation`] with a receipt
    /// key is set.
    pub fn send_tokenized<T>(
        &mut self,
        op: Operation,
        cmd: T,
        to_command: impl FnOnce(&T) -> gp::Result<Command>,
        ctx: Option<gp::dm::ReceiptContext>,
        object: &str,
    ) -> Result<Response> {
        let resp = self.send_ok(op, &to_command(&cmd)?, object)?;
        if let (Some(d), Some(ctx)) = (self.delegation.as_mut(), ctx) {
            d.check(op, ctx, &resp.data)?;
        }
        Ok(resp)
    }

    /// Checks the receipt of a delegated load in the answer to the last LOAD.
    pub fn check_receipt(
        &mut self,
        op: Operation,
        ctx: gp::dm::ReceiptContext,
        data: &[u8],
    ) -> Result<()> {
        match self.delegation.as_mut() {
            Some(d) if d.tokens.is_some() => d.check(op, ctx, data),
            _ => Ok(()),
        }
    }

    /// The card channel.
    pub fn channel(&self) -> &Traced<C> {
        &self.chan
    }
    /// The card channel, to change its tracing.
    pub fn channel_mut(&mut self) -> &mut Traced<C> {
        &mut self.chan
    }
    /// Gives the card channel back (the secure channel, if any, is dropped).
    pub fn into_channel(self) -> Traced<C> {
        self.chan
    }
    /// The open SCP02/SCP03 secure channel, if any (see [`GpClient::scp11_channel`] for
    /// SCP11).
    pub fn secure_channel(&self) -> Option<&ChannelInfo> {
        self.info.as_ref()
    }
    /// Number of C-APDUs sent on the wire so far (GET RESPONSE included).
    pub fn apdus_sent(&self) -> u64 {
        self.apdus_sent
    }
    /// Most data a C-APDU may carry on this card (from the SD's FCI tag `9F65`; 255 by default).
    pub fn max_command_data(&self) -> usize {
        self.max_command_data
    }

    /// Sends a command on the wire as it is (no secure messaging), with GET RESPONSE on
    /// `61xx` and a resend on `6Cxx` (ISO/IEC 7816-4 §5.3.4 / T=0 rules).
    fn transmit_plain(&mut self, op: Operation, cmd: &Command) -> Result<Response> {
        let chan = &mut self.chan;
        let count = &mut self.apdus_sent;
        apdu::exchange(cmd, |bytes| {
            *count += 1;
            chan.transmit_raw(bytes)
        })
        .map_err(|e| match e {
            apdu::ExchangeError::Transmit(t) => ClientError::Transport(t),
            other => ClientError::Exchange {
                op,
                detail: other.to_string(),
            },
        })
    }

    /// Sends `op` through the secure channel when one is open (C-MAC, C-DECRYPTION as
    /// negotiated; R-MAC/R-ENC checked and removed), in plain otherwise, except that an
    /// operation that [needs a secure channel](Operation::needs_secure_channel) is never
    /// sent in plain ([`ClientError::NoSecureChannel`]). The plain command is traced as a
    /// `#` line before wrapping. Returns the response whatever its status word.
    pub fn send(&mut self, op: Operation, cmd: &Command) -> Result<Response> {
        if self.session.is_none() && op.needs_secure_channel() {
            return Err(ClientError::NoSecureChannel(op));
        }
        if self.chan.is_enabled() && self.session.is_some() {
            if let Ok(b) = cmd.to_bytes() {
                self.chan.note(&apdu::hex(&b));
            }
        }
        let wire = match self.session.as_mut() {
            Some(s) => s.wrap(cmd)?,
            None => cmd.clone(),
        };
        let resp = self.transmit_plain(op, &wire)?;
        match self.session.as_mut() {
            Some(s) => s
                .unwrap(resp)
                .map_err(|source| ClientError::ResponseUnverified { op, source }),
            None => Ok(resp),
        }
    }

    /// [`GpClient::send`], requiring a success status; `object` names what the command is
    /// about in the error message (an AID, a block number; may be empty).
    pub fn send_ok(&mut self, op: Operation, cmd: &Command, object: &str) -> Result<Response> {
        let r = self.send(op, cmd)?;
        if r.sw.is_success() {
            Ok(r)
        } else {
            Err(ClientError::refused(op, object, r.sw))
        }
    }

    /// Selects an application or security domain by AID; closes any secure channel
    /// (selection ends the session, GP 2.3.1 §10.2.2).
    pub fn select(&mut self, aid: &Aid) -> Result<Response> {
        self.session = None;
        self.info = None;
        self.scp11 = None;
        let cmd = gp::commands::Select::by_aid(aid).to_command()?;
        let r = self.transmit_plain(Operation::Select, &cmd)?;
        if !r.sw.is_success() {
            return Err(ClientError::refused(
                Operation::Select,
                aid.to_string(),
                r.sw,
            ));
        }
        if let Ok(fci) = gp::commands::Fci::parse(&r.data) {
            if let Some(max) = fci.max_command_data_length {
                // 9F65 is the maximum length of data field in a command message.
                self.max_command_data = (max as usize).clamp(16, 65535);
            }
        }
        Ok(r)
    }

    /// Selects the SD and opens a secure channel with it (GP 2.3.1 §D.3 / Amd D §7.1):
    /// INITIALIZE UPDATE, check the card cryptogram, EXTERNAL AUTHENTICATE.
    pub fn open_secure_channel(&mut self, opts: &OpenOptions) -> Result<ChannelInfo> {
        let hint = match opts.keys.kdf {
            Diversification::None => " (or a missing --kdf)",
            _ => " or diversification",
        };
        self.authenticate(opts.sd, opts.keys.key_version, opts.level, hint, |iu| {
            if let Some(want) = opts.scp {
                if iu.scp != want {
                    return Err(ClientError::Invalid(format!(
                        "the card uses SCP{:02X}, not SCP{want:02X} as asked (--scp)",
                        iu.scp
                    )));
                }
            }
            let master = opts.keys.static_keys(iu.scp)?;
            Ok(match opts.keys.kdf {
                Diversification::None => master,
                kdf => kdf.apply(&master, &iu.kdd)?,
            })
        })
    }

    /// Like [`GpClient::open_secure_channel`], with the card's static keys chosen from its
    /// INITIALIZE UPDATE answer (key diversification data, key version, protocol): a host
    /// that serves many cards identifies the card and derives its keys in the one
    /// INITIALIZE UPDATE. When `keys_for` fails nothing more is sent (no EXTERNAL
    /// AUTHENTICATE), and its error is returned as it is.
    pub fn open_secure_channel_with<E: From<ClientError>>(
        &mut self,
        sd: Option<Aid>,
        key_version: u8,
        level: SecurityLevel,
        keys_for: impl FnOnce(&InitUpdateResponse) -> std::result::Result<StaticKeys, E>,
    ) -> std::result::Result<ChannelInfo, E> {
        self.authenticate(sd, key_version, level, "", keys_for)
    }

    /// SELECT, INITIALIZE UPDATE, the keys from `keys_for`, the card cryptogram checked,
    /// EXTERNAL AUTHENTICATE. `hint` completes [`ClientError::WrongKeys`]'s message.
    fn authenticate<E: From<ClientError>>(
        &mut self,
        sd: Option<Aid>,
        key_version: u8,
        level: SecurityLevel,
        hint: &str,
        keys_for: impl FnOnce(&InitUpdateResponse) -> std::result::Result<StaticKeys, E>,
    ) -> std::result::Result<ChannelInfo, E> {
        let sd = sd.unwrap_or(gp::aid::ISD_AID);
        self.select(&sd)?;
        let mut host_challenge = [0u8; 8];
        getrandom::getrandom(&mut host_challenge)
            .map_err(|e| ClientError::Invalid(format!("random number generator: {e}")))?;
        let iu_cmd = scp::initialize_update(key_version, &host_challenge);
        let op = Operation::InitializeUpdate;
        let r = self.transmit_plain(op, &iu_cmd)?;
        if !r.sw.is_success() {
            return Err(auth_refused(op, r.sw, || {
                format!("(key version {key_version:#04x} not on the card)")
            })
            .into());
        }
        let iu = InitUpdateResponse::parse(&r.data).map_err(ClientError::from)?;
        let keys = keys_for(&iu)?;
        let auth = match HostAuth::new(&keys, &host_challenge, &iu, level, 0x55) {
            Ok(a) => a,
            Err(scp::Error::CardCryptogramMismatch) => {
                return Err(ClientError::WrongKeys { hint: hint.into() }.into());
            }
            Err(e) => return Err(ClientError::from(e).into()),
        };
        let ext = auth.external_authenticate();
        let op = Operation::ExternalAuthenticate;
        let r = self.transmit_plain(op, &ext)?;
        if !r.sw.is_success() {
            return Err(match r.sw.status() {
                Status::AuthMethodBlocked => ClientError::KeysLocked { op, sw: r.sw },
                _ => ClientError::refused(op, "", r.sw),
            }
            .into());
        }
        let session = auth.finish(&r).map_err(ClientError::from)?;
        let info = ChannelInfo {
            protocol: session.protocol(),
            level: session.level(),
            init_update: iu,
            sd,
        };
        self.session = Some(session);
        self.info = Some(info.clone());
        Ok(info)
    }

    /// The open host session (for DEK encryption of keys in PUT KEY).
    pub fn session(&self) -> Option<&HostSession> {
        self.session.as_ref()
    }

    /// Largest plain data field that still fits one C-APDU once wrapped.
    pub fn max_plain_data(&self) -> usize {
        match &self.session {
            Some(s) => s.max_plain_len(self.max_command_data.min(255)),
            None => self.max_command_data.min(255),
        }
    }
}

/// The error for a card's refusal of an authentication command (INITIALIZE UPDATE, MUTUAL /
/// INTERNAL AUTHENTICATE): blocked keys (`6983`, `6984`) are [`ClientError::KeysLocked`];
/// `6A88` names the key that is not there (`missing`); anything else is refused as is.
pub(crate) fn auth_refused(
    op: Operation,
    sw: StatusWord,
    missing: impl FnOnce() -> String,
) -> ClientError {
    match sw.status() {
        Status::AuthMethodBlocked | Status::ReferenceDataNotUsable => {
            ClientError::KeysLocked { op, sw }
        }
        Status::ReferencedDataNotFound => ClientError::refused(op, missing(), sw),
        _ => ClientError::refused(op, "", sw),
    }
}
