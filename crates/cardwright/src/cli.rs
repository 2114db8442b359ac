//! Command-line arguments. The command names and options are promises to users:
//! add to them freely, never rename or remove.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cardwright",
    version,
    about = "GlobalPlatform card management: cards, keys, security domains, applications"
)]
pub struct Cli {
    /// Log format on stderr: `text` (one line per event) or `json` (one JSON object per
    /// line, with the fields of the request span: `request_id`, `method`, `route`).
    #[arg(long, global = true, value_enum, env = "CARDWRIGHT_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The format of the log (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines (tracing-subscriber's JSON formatter), for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Operations on a card in a reader, or on a virtual card (--sim), like `gp`.
    Card(CardCmd),
    /// The built-in virtual card.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// The demo: an issuing platform on SQLite + software key store + a virtual card, walking
    /// one card through write → rewrite → clear; then a `gp`-style tour of the `card`
    /// commands on a virtual card.
    Demo(crate::demo::DemoArgs),
    /// Card issuance: write, rewrite, clear a card (keys derived from the category's base key).
    Issue(crate::issue_cmd::IssueCmd),
    /// Campaigns: write batches of cards (a CSV list or a range) from any number of workers
    /// sharing the database: create, start, pause, resume, cancel, status, retry, run.
    Campaign(crate::campaign_cmd::CampaignCmd),
    /// Tenants of the platform: card issuers and application providers.
    Tenant(crate::issue_cmd::TenantCmd),
    /// Application packages: CAP files registered with the platform (`add`); signed install
    /// packages for outlets (`build`, `verify`; docs/PACKAGE.md).
    Package(crate::issue_cmd::PackageCmd),
    /// Card categories: base key lineage, initial keys, personalisation.
    Category(crate::issue_cmd::CategoryCmd),
    /// Card issuer: application providers (partners) that get supplementary security
    /// domains on its cards: add, list, revoke.
    Partner(crate::ssd_cmd::PartnerCmd),
    /// Application provider: supplementary security domains from the card issuer (through
    /// the AP platform's `serve --role ap`): request, status, renew.
    Ssd(crate::ssd_cmd::SsdCmd),
    /// The platform's hash-chained audit log.
    Audit(crate::audit_cmd::AuditCmd),
    /// Base keys per card category in the key store (software or HSM).
    Keys(crate::keys_cmd::KeysCmd),
    /// Measure speed: secure-channel wrapping, CAP install on the virtual card, PC/SC round trips.
    Bench(BenchArgs),
    /// Run the server: payment API (enrolment, payment authorisation), CA, CRL, check-out page.
    Serve(crate::serve::ServeArgs),
    /// Run the local agent that lets an allowed web page (the check-out page) use the card.
    Agent(crate::agent::AgentArgs),
    /// Card-signed payments from the command line: enrol the card, sign a payment, revoke.
    Pay {
        #[command(subcommand)]
        command: crate::pay::PayCommand,
    },
    /// The outlet security module: verified install packages, install and registration
    /// at the card, install records and their upload (`docs/OUTLET.md`).
    Outlet(crate::outlet_cmd::OutletCmd),
    /// Over-the-air application download (SCP80 over SMS, SCP81): encode and decode
    /// packets, the catalog, card identities, pushes and status (`docs/OTA.md`).
    Ota(crate::ota_cmd::OtaCmd),
    /// A phone for tests and labs: holds a UICC (reader or virtual card), polls its
    /// proactive commands, sends its SMS through the SMSC, delivers SMS to it as ENVELOPEs;
    /// `handset menu --select ITEM` picks an item of the card's menu.
    Handset(crate::handset::HandsetArgs),
    /// Delegated Management tokens computed offline (GP 2.3.1 Appendix C.4).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign the tokens of a `card install|delete|extradite|create-domain` in advance and
    /// write them to a token file, which `card … --dm-token FILE` reads.
    Sign(TokenSignArgs),
}

#[derive(Debug, Args)]
pub struct TokenSignArgs {
    /// The token key: a PKCS#8 private key file (RSA or P-256, PEM or DER), a file holding an
    /// AES key in hex, or a key-store signing key `pkcs11:MODULE?token=T&label=L` /
    /// `file:KEYSTORE?label=L` (P-256, or RSA with PSS).
    #[arg(long)]
    pub dm_key: String,
    /// Token file to write (default: standard output); with --append, added to.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Add to --out instead of replacing it.
    #[arg(long, requires = "out")]
    pub append: bool,
    #[command(subcommand)]
    pub op: TokenOp,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum TokenOp {
    /// The tokens of `card install` with the same arguments (INSTALL [for load] and one
    /// INSTALL [for install and make selectable] per instance).
    Install(InstallArgs),
    /// The token of `card delete AID`.
    Delete {
        /// AID (hex).
        aid: String,
        /// Also delete related objects (as `card delete --related`).
        #[arg(long)]
        related: bool,
    },
    /// The token of `card extradite AID --to SD`.
    Extradite {
        /// AID of the application, security domain or load file (hex).
        aid: String,
        /// The security domain it moves to (hex).
        #[arg(long)]
        to: String,
    },
    /// The tokens of `card create-domain` with the same arguments.
    CreateDomain {
        /// AID of the new SSD (hex).
        aid: String,
        /// Privileges, comma separated; `sd` is always added.
        #[arg(long, default_value = "")]
        privs: String,
        /// Install parameters for the SD (hex, the C9 content).
        #[arg(long)]
        params: Option<String>,
        /// Parent security domain (adds the extradition token).
        #[arg(long)]
        to: Option<String>,
    },
}

/// Delegated Management options of `card install|delete|extradite|create-domain`.
#[derive(Debug, Args, Clone, Default)]
pub struct DmArgs {
    /// Sign a Delegated Management token for each INSTALL/DELETE with this key: a PKCS#8
    /// private key file (RSA ≤ 1024: PKCS#1 v1.5 SHA-1; RSA 2048+: PSS SHA-256; P-256:
    /// ECDSA), a file holding an AES key in hex (AES-CMAC), or a key-store signing key
    /// `pkcs11:MODULE?token=T&label=L` / `file:KEYSTORE?label=L` (P-256, or RSA with PSS).
    #[arg(long, conflicts_with = "dm_token")]
    pub dm_key: Option<String>,
    /// Take the tokens from this file of pre-computed tokens (`cardwright token sign`).
    #[arg(long)]
    pub dm_token: Option<PathBuf>,
    /// Verify the receipt of each delegated operation with this key (hex, or a file holding
    /// hex; AES: CMAC; `des:HEX|FILE` for 3DES: MAC algorithm 3). A missing or wrong receipt, or a confirmation
    /// counter not above the last one in the receipt log, is an error.
    #[arg(long)]
    pub receipt_key: Option<String>,
    /// Receipt log: every verified receipt is appended, and the last confirmation counter is
    /// read from it (default: `RECEIPT-KEY-FILE.receipts`, or `cardwright-receipts.log` in
    /// the current directory when the key is given in hex).
    #[arg(long, requires = "receipt_key")]
    pub receipts: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run a virtual card; with --vpcd it joins pcscd as a card in vsmartcard's virtual reader.
    Run(SimRunArgs),
    /// Create a new virtual card state file (fails if it exists) and print its identity (ATR,
    /// IC serial, KDD) and keys (protocol, key version, KCV; the key itself only if it is the
    /// public GP test key).
    Create(SimCreateArgs),
    /// Print (PEM) the card manufacturer CA certificate of a virtual card's factory SCP11b
    /// key set: the trust anchor for the SD certificate that GET DATA BF21 returns.
    CaCert(SimCaCertArgs),
}

#[derive(Debug, Args)]
pub struct SimCaCertArgs {
    /// State file of the card (read only; the card may be running).
    #[arg(long)]
    pub state: PathBuf,
}

#[derive(Debug, Args)]
pub struct SimCreateOptions {
    /// Secure channel protocol of the ISD: 03 (AES, default) or 02 (3DES).
    #[arg(long, default_value = "03", value_parser = ["02", "03"])]
    pub scp: String,
    /// ISD key (ENC=MAC=DEK), hex; default the GlobalPlatform test key 404142…4F.
    #[arg(long)]
    pub key: Option<String>,
    /// ISD key version number (default 0x30 for SCP03, 0x20 for SCP02... see README).
    #[arg(long, value_parser = parse_u8)]
    pub keyver: Option<u8>,
    /// Key diversification data (10 bytes, hex) returned in INITIALIZE UPDATE.
    #[arg(long)]
    pub kdd: Option<String>,
    /// CPLC data (42 bytes, hex) returned by GET DATA 9F7F.
    #[arg(long)]
    pub cplc: Option<String>,
    /// Consecutive failed authentications after which a key set locks.
    #[arg(long, default_value_t = 10)]
    pub max_auth_failures: u8,
    /// Create the card without the PIV applet.
    #[arg(long)]
    pub no_piv: bool,
    /// Create the card without the factory SCP11b key set (SD key pair KID 0x13 KVN 0x01
    /// and its certificate chain).
    #[arg(long)]
    pub no_scp11: bool,
}

#[derive(Debug, Args)]
pub struct SimRunArgs {
    /// State file of the card (created, and said so, if missing; every change written
    /// atomically).
    #[arg(long)]
    pub state: PathBuf,
    /// vpcd address to connect to (pcscd's vsmartcard reader), e.g. 127.0.0.1:35963.
    #[arg(long)]
    pub vpcd: Option<String>,
    #[command(flatten)]
    pub create: SimCreateOptions,
}

#[derive(Debug, Args)]
pub struct SimCreateArgs {
    /// State file to create.
    #[arg(long)]
    pub state: PathBuf,
    #[command(flatten)]
    pub create: SimCreateOptions,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Also measure through pcscd+vpcd on this reader (needs a running `sim run --vpcd`).
    #[arg(long)]
    pub reader: Option<String>,
    /// Size of the synthetic CAP in KB.
    #[arg(long, default_value_t = 10)]
    pub cap_kb: usize,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 15)]
    pub runs: usize,
}

/// Which card, which keys, which secure channel: shared by every `card` command.
#[derive(Debug, Args, Clone)]
pub struct Connect {
    /// Reader name (or part of it); default: the first reader holding a card.
    #[arg(long, global = true, env = "CARDWRIGHT_READER")]
    pub reader: Option<String>,
    /// Use the virtual card in this state file, in process (no pcscd needed).
    #[arg(long, global = true, conflicts_with = "reader")]
    pub sim: Option<PathBuf>,
    /// Key for ENC, MAC and DEK (hex, 16/24/32 bytes); the master key when --kdf is given.
    #[arg(long, global = true, env = "CARDWRIGHT_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Separate ENC key (hex).
    #[arg(long, global = true, hide_env_values = true)]
    pub key_enc: Option<String>,
    /// Separate MAC key (hex).
    #[arg(long, global = true, hide_env_values = true)]
    pub key_mac: Option<String>,
    /// Separate DEK key (hex).
    #[arg(long, global = true, hide_env_values = true)]
    pub key_dek: Option<String>,
    /// Key set in --keystore to authenticate with (ENC, MAC, DEK by label, as `keys key-sets`
    /// lists them): an SSD's keys kept in a key store or HSM, which reach only the card's
    /// secure channel, never the command line.
    #[arg(long, global = true, conflicts_with_all = ["key", "key_enc", "key_mac", "key_dek"])]
    pub key_set: Option<String>,
    /// Key version number to authenticate with (0 = any, the card chooses).
    #[arg(long, global = true, value_parser = parse_u8, default_value = "0")]
    pub keyver: u8,
    /// Static key diversification of the master key: none, emv, visa2, kdf3.
    #[arg(long, global = true, default_value = "none", value_parser = ["none", "emv", "visa2", "kdf3"])]
    pub kdf: String,
    /// Secure channel protocol: 02 or 03 (symmetric keys; default: as the card announces in
    /// INITIALIZE UPDATE), or 11a, 11b, 11c (GP Amendment F: certificates and EC keys; see
    /// --sd-trust, --oce-key, --oce-cert).
    #[arg(long, global = true, value_parser = ["02", "03", "11a", "11b", "11c"])]
    pub scp: Option<String>,
    /// SCP11: the CA certificate (PEM or DER; X.509 or GP 7F21) that the card's certificate
    /// chain (GET DATA BF21) must verify against.
    #[arg(long, global = true)]
    pub sd_trust: Option<PathBuf>,
    /// SCP11: accept the card's certificate chain without verifying it (trust on first use);
    /// the leaf's SHA-256 fingerprint is printed to compare out of band.
    #[arg(long, global = true, conflicts_with = "sd_trust")]
    pub sd_trust_any: bool,
    /// SCP11a/c: the OCE's private key: a PEM/DER file (PKCS#8 or SEC1), a key-agreement key
    /// label in --keystore, or `pkcs11:MODULE?token=T&pin-env=VAR&label=L` (an HSM).
    #[arg(long, global = true)]
    pub oce_key: Option<String>,
    /// SCP11a/c: an OCE certificate (PEM or DER, X.509 or GP 7F21); repeat in chain order,
    /// the one signed by the card's trust anchor first, the OCE's own last.
    #[arg(long, global = true)]
    pub oce_cert: Vec<PathBuf>,
    /// SCP11: key version number of the SD key pair (P1 of MUTUAL/INTERNAL AUTHENTICATE).
    #[arg(long, global = true, value_parser = parse_u8, default_value = "1")]
    pub scp11_kvn: u8,
    /// SCP11: key identifier of the SD key pair (default 11, 13, 15 for 11a, 11b, 11c).
    #[arg(long, global = true, value_parser = parse_u8)]
    pub scp11_kid: Option<u8>,
    /// SCP11a/c: key version number of the card's OCE trust anchor (KID 10) that checks
    /// --oce-cert (default: --scp11-kvn).
    #[arg(long, global = true, value_parser = parse_u8)]
    pub oce_kvn: Option<u8>,
    /// Key store holding OCE keys (--oce-key LABEL) and CA signing keys (`scp11 setup --ca`):
    /// `file:PATH[?master-key-file=FILE]` or `pkcs11:…` (see `keys --help`).
    #[arg(
        long,
        global = true,
        env = "CARDWRIGHT_KEYSTORE",
        default_value = "file:cardwright-keys.json"
    )]
    pub keystore: String,
    /// Security level: mac, mac+enc, mac+enc+rmac, mac+enc+rmac+renc, mac+rmac (default:
    /// mac for SCP02/03, mac+enc+rmac+renc for SCP11, key usage 3C as other hosts send).
    #[arg(long, global = true)]
    pub security_level: Option<String>,
    /// Security domain to authenticate to (default: the ISD).
    #[arg(long, global = true, alias = "sdaid")]
    pub sd: Option<String>,
    /// Print every APDU exchanged on stderr (`>>` sent, `<<` received, `#` plain command).
    #[arg(long, short = 'd', global = true)]
    pub trace: bool,
}

#[derive(Debug, Args)]
pub struct CardCmd {
    #[command(flatten)]
    pub connect: Connect,
    #[command(subcommand)]
    pub op: CardOp,
}

#[derive(Debug, Subcommand)]
pub enum CardOp {
    /// ATR, CPLC, card data (tag 66), key information (E0), life cycle.
    Info,
    /// Registry: ISD, SSDs, applets, load files with AIDs, life cycles, privileges.
    List,
    /// Load a CAP file and install its applet(s).
    Install(InstallArgs),
    /// Delete an applet, security domain or load file.
    Delete {
        /// AID (hex).
        aid: String,
        /// Also delete related objects (instances of a load file, applets of an SD).
        #[arg(long)]
        related: bool,
        #[command(flatten)]
        dm: DmArgs,
    },
    /// Associate an application, security domain or load file with another security domain
    /// (INSTALL [for extradition]).
    Extradite {
        /// AID of what moves (hex).
        aid: String,
        /// The security domain it moves to (hex).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        dm: DmArgs,
    },
    /// PUT KEY of a public key (RSA or P-256, from an SPKI or PKCS#8 file): a token
    /// verification key (KVN 70) or a DAP verification key (KVN 73).
    PutPublicKey {
        /// The key file (PEM or DER; of a private key only the public part is sent).
        file: PathBuf,
        /// Key version number (70: token verification, 73: DAP verification).
        #[arg(long, value_parser = parse_u8)]
        kvn: u8,
        /// Key identifier.
        #[arg(long, value_parser = parse_u8, default_value = "1")]
        kid: u8,
        /// Replace the key set with this KVN instead of adding one.
        #[arg(long)]
        replace: bool,
    },
    /// Create a supplementary security domain (INSTALL [for install] of the SD class).
    CreateDomain {
        /// AID of the new SSD (hex).
        aid: String,
        /// Privileges, comma separated (e.g. am,dm,sd); `sd` is always added.
        #[arg(long, default_value = "")]
        privs: String,
        /// Install parameters for the SD (hex, the C9 content).
        #[arg(long)]
        params: Option<String>,
        /// Parent security domain for the new SSD (default: the ISD).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        dm: DmArgs,
    },
    /// Add a key set (DES or AES) with PUT KEY.
    PutKey(PutKeyArgs),
    /// Replace the key set in use; with --new-kdf the new keys are diversified from the master key.
    Lock(PutKeyArgs),
    /// Lock an applet (SET STATUS).
    LockApplet {
        /// AID of the applet (hex).
        aid: String,
    },
    /// Unlock an applet (SET STATUS).
    UnlockApplet {
        /// AID of the applet (hex).
        aid: String,
    },
    /// Lock the card (SECURED → CARD_LOCKED).
    LockCard,
    /// Unlock the card (CARD_LOCKED → SECURED).
    UnlockCard,
    /// Move the card to SECURED.
    SetSecured,
    /// Move the card to INITIALIZED.
    SetInitialized,
    /// Terminate the card: irreversible.
    Terminate {
        /// Required: confirms that the card becomes unusable.
        #[arg(long)]
        really: bool,
    },
    /// INSTALL [for personalization] of AID and STORE DATA of each block (hex).
    StoreData {
        /// AID of the application or security domain to personalise (hex).
        aid: String,
        /// STORE DATA blocks (hex), one command each, in order.
        #[arg(required = true)]
        data: Vec<String>,
    },
    /// SCP11 keys and certificates of the security domain: set up, show.
    Scp11 {
        #[command(subcommand)]
        op: Scp11Op,
    },
    /// Send raw APDUs (hex), inside the secure channel with --secure.
    Apdu {
        /// Command APDUs (hex), sent in order.
        #[arg(required = true)]
        apdus: Vec<String>,
        /// Open a secure channel first and wrap the APDUs in it.
        #[arg(long)]
        secure: bool,
        /// Select this AID (hex) first.
        #[arg(long)]
        select: Option<String>,
        /// Stop with an error (exit 1) at the first response whose status is not success.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Scp11Op {
    /// Generate an SCP11 key pair on the card (GENERATE EC KEY), certify PK.SD with a CA
    /// key of the key store (GP 7F21 certificate, stored with STORE DATA BF21), load that
    /// CA's public key as the OCE trust anchor (PUT KEY, KID 10) and optionally an allowlist.
    /// Runs over the channel the connection options open (--scp 03 … or --scp 11…).
    Setup(Scp11SetupArgs),
    /// Print the SD key's certificate chain (GET DATA BF21), leaf last.
    Certs {
        /// Key identifier of the SD key (default: 13, or --scp11-kid).
        #[arg(long, value_parser = parse_u8)]
        kid: Option<u8>,
        /// Key version number of the SD key (default: --scp11-kvn).
        #[arg(long, value_parser = parse_u8)]
        kvn: Option<u8>,
        /// Also write the chain as PEM/`7F21` files FILE.0, FILE.1, … (DER or 7F21 bytes).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct Scp11SetupArgs {
    /// Signing key label (P-256) in --keystore of the CA that certifies PK.SD (created if
    /// missing) and whose public key becomes the OCE trust anchor.
    #[arg(long)]
    pub ca: String,
    /// Which SD key to make: 11a (KID 11), 11b (KID 13) or 11c (KID 15).
    #[arg(long, default_value = "11b", value_parser = ["11a", "11b", "11c"])]
    pub variant: String,
    /// Key version number of the new SD key pair.
    #[arg(long, value_parser = parse_u8, default_value = "1")]
    pub kvn: u8,
    /// Key version number the new key pair replaces (0: none, a new key).
    #[arg(long, value_parser = parse_u8, default_value = "0")]
    pub replace_kvn: u8,
    /// Key version number of the OCE trust anchor (KID 10) to load (default: --kvn).
    #[arg(long, value_parser = parse_u8)]
    pub oce_kvn: Option<u8>,
    /// Do not load the OCE trust anchor (SCP11b only needs the SD key).
    #[arg(long)]
    pub no_oce_anchor: bool,
    /// Serial number (hex) of an OCE certificate to allow; repeat. Without it any OCE
    /// certificate signed by the CA is accepted.
    #[arg(long)]
    pub allow: Vec<String>,
    /// Validity of the SD certificate in days.
    #[arg(long, default_value_t = 3650)]
    pub days: u32,
    /// Write the CA's self-signed certificate (the --sd-trust for this card) to this file.
    #[arg(long)]
    pub ca_cert_out: Option<PathBuf>,
    /// Form of the SD certificate and of the CA certificate written: x509 (X.509 v3, what
    /// yubikit and most SCP11 hosts read) or gp (GP `7F21`).
    #[arg(long, value_enum, default_value_t = CertFormat::X509)]
    pub cert_format: CertFormat,
}

/// The form of the SCP11 certificates that `card scp11 setup` and `keys` issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertFormat {
    /// X.509 v3 (RFC 5280; Amendment F §6 profile): keyUsage keyAgreement, SKI/AKI.
    X509,
    /// GlobalPlatform certificate `7F21` (Amendment F §6.3).
    Gp,
}

impl std::fmt::Display for CertFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::X509 => "X.509",
            Self::Gp => "GP 7F21",
        })
    }
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The CAP file.
    pub cap: PathBuf,
    /// Install parameters for the applet (hex, the C9 content).
    #[arg(long)]
    pub params: Option<String>,
    /// Privileges for the applet instance, comma separated.
    #[arg(long, default_value = "")]
    pub privs: String,
    /// Load into and associate with this security domain (default: the ISD).
    #[arg(long)]
    pub to: Option<String>,
    /// Instance AID (default: the applet AID from the CAP).
    #[arg(long)]
    pub create: Option<String>,
    /// Applet (class) AID to instantiate when the CAP holds several.
    #[arg(long)]
    pub applet: Option<String>,
    /// Only load, do not install.
    #[arg(long)]
    pub load_only: bool,
    /// Send a load file hash in INSTALL [for load]: sha1 or sha256 (sha256 by default with
    /// --dap-key).
    #[arg(long, value_parser = ["sha1", "sha256"])]
    pub hash: Option<String>,
    /// Sign a DAP block (GP 2.3.1 §9.2.1) over the load file data block hash with this key
    /// (PKCS#8 RSA or P-256 file, AES hex file, or a key-store key as for --dm-key).
    #[arg(long, requires = "dap_sd")]
    pub dap_key: Option<String>,
    /// The security domain that verifies the DAP (DAP Verification or Mandated DAP).
    #[arg(long, requires = "dap_key")]
    pub dap_sd: Option<String>,
    #[command(flatten)]
    pub dm: DmArgs,
}

#[derive(Debug, Args)]
pub struct PutKeyArgs {
    /// The new key (hex) for ENC, MAC and DEK; the master key with --new-kdf.
    #[arg(long)]
    pub new_key: String,
    /// Diversify the new keys from --new-key with the card's KDD: emv, visa2, kdf3.
    #[arg(long, value_parser = ["none", "emv", "visa2", "kdf3"])]
    pub new_kdf: Option<String>,
    /// Key version number of the new key set.
    #[arg(long, value_parser = parse_u8)]
    pub new_keyver: Option<u8>,
    /// Key type of the new keys: aes or des (default: the type of the current channel).
    #[arg(long, value_parser = ["aes", "des"])]
    pub new_key_type: Option<String>,
}

/// Reads 0x30, 30h, 48 or plain hex "30" as a byte. Plain digits are decimal unless
/// prefixed with 0x.
pub fn parse_u8(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u8::from_str_radix(h, 16)
    } else if let Some(h) = t.strip_suffix('h') {
        u8::from_str_radix(h, 16)
    } else {
        t.parse::<u8>()
    };
    r.map_err(|_| format!("'{s}' is not a byte (0-255, or 0x00-0xFF)"))
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "cardwright", &mut missing);
        assert!(
            missing.is_empty(),
            "arguments without help text: {missing:#?}"
        );
    }
}
