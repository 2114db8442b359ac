//! `cardwright card …`: gp-style operations on a reader or the virtual card.

use crate::cli::{CardCmd, CardOp, Connect, InstallArgs, PutKeyArgs};
use anyhow::{anyhow, bail, Context, Result};
use gp::aid::Aid;
use gp::privileges::Privileges;
use gpclient::{ops, GpClient, KeySpec, OpenOptions};
use scp::{Diversification, SecurityLevel};
use std::str::FromStr;
use transport::{CardChannel, Traced};
use zeroize::Zeroizing;

type Client = GpClient<Box<dyn CardChannel>>;

/// Opens the card named by `--sim` or `--reader` (default: the first reader with a card).
pub fn connect_channel(c: &Connect) -> Result<Box<dyn CardChannel>> {
    open_card(c.reader.as_deref(), c.sim.as_deref())
}

/// The virtual card in `sim` (in process), or the card in `reader` (default: the first
/// reader holding a card).
pub fn open_card(
    reader: Option<&str>,
    sim: Option<&std::path::Path>,
) -> Result<Box<dyn CardChannel>> {
    if let Some(path) = sim {
        return Ok(Box::new(crate::sim::open_channel(path)?));
    }
    connect_reader(reader)
}

#[cfg(feature = "pcsc")]
fn connect_reader(name: Option<&str>) -> Result<Box<dyn CardChannel>> {
    Ok(Box::new(transport::pcsc::PcscChannel::connect(name)?))
}

#[cfg(not(feature = "pcsc"))]
fn connect_reader(_name: Option<&str>) -> Result<Box<dyn CardChannel>> {
    bail!("this cardwright was built without PC/SC support: use --sim FILE, or rebuild with `--features pcsc`")
}

fn hex_arg(name: &str, v: &str) -> Result<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(
        apdu::parse_hex(v).with_context(|| name.to_string())?,
    ))
}

fn aid_arg(v: &str) -> Result<Aid> {
    Aid::from_str(v).map_err(|e| anyhow!("'{v}' is not an AID: {e}"))
}

fn kdf_arg(v: &str) -> Result<Diversification> {
    Ok(match v {
        "none" => Diversification::None,
        "emv" => Diversification::Emv,
        "visa2" => Diversification::Visa2,
        "kdf3" => Diversification::Kdf3,
        other => bail!("unknown key diversification '{other}' (none, emv, visa2, kdf3)"),
    })
}

/// The keys given on the command line (default: the GP test key 40..4F).
pub fn key_spec(c: &Connect) -> Result<KeySpec> {
    if let Some(label) = &c.key_set {
        if c.kdf != "none" {
            bail!("--key-set names the card's own keys: --kdf does not apply");
        }
        let store = crate::keys_cmd::open_key_sets(&c.keystore)?;
        let keys = store
            .key_set(label)
            .with_context(|| format!("key set {label} in {}", c.keystore))?;
        return Ok(KeySpec::from_static(&keys, c.keyver));
    }
    let base = match &c.key {
        Some(k) => hex_arg("--key", k)?,
        None => Zeroizing::new(gpclient::DEFAULT_TEST_KEY.to_vec()),
    };
    let pick = |name: &str, v: &Option<String>| -> Result<Zeroizing<Vec<u8>>> {
        match v {
            Some(h) => hex_arg(name, h),
            None => Ok(base.clone()),
        }
    };
    Ok(KeySpec {
        enc: pick("--key-enc", &c.key_enc)?,
        mac: pick("--key-mac", &c.key_mac)?,
        dek: pick("--key-dek", &c.key_dek)?,
        kdf: kdf_arg(&c.kdf)?,
        key_version: c.keyver,
    })
}

/// The security level asked for: `--security-level`, or by default C-MAC for SCP02/03 and
/// everything (key usage 3C, as other SCP11 hosts send) for SCP11.
fn level(c: &Connect) -> Result<SecurityLevel> {
    let default = if crate::scp11_cmd::variant(c).is_some() {
        "mac+enc+rmac+renc"
    } else {
        "mac"
    };
    let text = c.security_level.as_deref().unwrap_or(default);
    SecurityLevel::from_str(text).map_err(|e| anyhow!("--security-level {text}: {e}"))
}

fn open_options(c: &Connect) -> Result<OpenOptions> {
    Ok(OpenOptions {
        keys: key_spec(c)?,
        level: level(c)?,
        scp: match c.scp.as_deref() {
            Some("02") => Some(2),
            Some("03") => Some(3),
            _ => None,
        },
        sd: c.sd.as_deref().map(aid_arg).transpose()?,
    })
}

/// Opens the secure channel the command line asks for: SCP11 with `--scp 11…`, else
/// SCP02/SCP03 with the symmetric keys.
fn authenticate(cl: &mut Client, c: &Connect) -> Result<()> {
    match crate::scp11_cmd::variant(c) {
        Some(v) => crate::scp11_cmd::open(cl, c, v, level(c)?),
        None => {
            cl.open_secure_channel(&open_options(c)?)?;
            Ok(())
        }
    }
}

fn client(c: &Connect) -> Result<Client> {
    let chan = connect_channel(c)?;
    let traced = if c.trace {
        Traced::stderr(chan)
    } else {
        Traced::new(chan, None)
    };
    Ok(GpClient::new(traced))
}

fn authenticated(c: &Connect) -> Result<Client> {
    let mut cl = client(c)?;
    authenticate(&mut cl, c)?;
    Ok(cl)
}

pub fn run(cmd: CardCmd) -> Result<()> {
    let c = &cmd.connect;
    match cmd.op {
        CardOp::Info => info(c),
        CardOp::List => list(c),
        CardOp::Install(a) => install(c, a),
        CardOp::Delete { aid, related, dm } => {
            let aid = aid_arg(&aid)?;
            let (mut cl, log) = managed(c, &dm)?;
            let r = ops::delete(&mut cl, &aid, related);
            crate::dm_cmd::finish(&mut cl, log.as_ref())?;
            r?;
            println!(
                "deleted {aid}{}",
                if related { " and related objects" } else { "" }
            );
            Ok(())
        }
        CardOp::Extradite { aid, to, dm } => {
            let aid = aid_arg(&aid)?;
            let to = aid_arg(&to)?;
            let (mut cl, log) = managed(c, &dm)?;
            let r = ops::extradite(&mut cl, aid, to, None);
            crate::dm_cmd::finish(&mut cl, log.as_ref())?;
            r?;
            println!("extradited {aid} to {to}");
            Ok(())
        }
        CardOp::PutPublicKey {
            file,
            kvn,
            kid,
            replace,
        } => {
            let key = crate::dm_cmd::public_key(&file)?;
            if !(1..=0x7F).contains(&kvn) || !(1..=0x7F).contains(&kid) {
                bail!("--kvn and --kid are 0x01 to 0x7F (GP 2.3.1 §11.1.8)");
            }
            let mut cl = authenticated(c)?;
            ops::put_public_key(&mut cl, kvn, kid, if replace { kvn } else { 0 }, &key)?;
            println!(
                "put {} public key as KVN {kvn:02X} KID {kid:02X}",
                key.scheme()
            );
            Ok(())
        }
        CardOp::CreateDomain {
            aid,
            privs,
            params,
            to,
            dm,
        } => {
            let (install, privileges) = create_domain_install(&aid, &privs, params.as_deref())?;
            let gp::commands::Install::ForInstall {
                application: aid,
                params,
                ..
            } = install
            else {
                bail!("internal: not INSTALL [for install]");
            };
            let params = params.get(2..).unwrap_or_default().to_vec();
            let parent = to.as_deref().map(aid_arg).transpose()?;
            let (mut cl, log) = managed(c, &dm)?;
            let r = ops::create_domain(&mut cl, aid, privileges, &params, parent);
            crate::dm_cmd::finish(&mut cl, log.as_ref())?;
            r?;
            println!("created security domain {aid} with privileges {privileges}");
            Ok(())
        }
        CardOp::PutKey(a) => put_key(c, a, false),
        CardOp::Lock(a) => put_key(c, a, true),
        CardOp::LockApplet { aid } => set_app(c, &aid, true),
        CardOp::UnlockApplet { aid } => set_app(c, &aid, false),
        CardOp::LockCard => set_card(c, gp::lifecycle::CardLifeCycle::CardLocked),
        CardOp::UnlockCard => set_card(c, gp::lifecycle::CardLifeCycle::Secured),
        CardOp::SetSecured => set_card(c, gp::lifecycle::CardLifeCycle::Secured),
        CardOp::SetInitialized => set_card(c, gp::lifecycle::CardLifeCycle::Initialized),
        CardOp::Terminate { really } => {
            if !really {
                bail!("terminating a card is irreversible: add --really to confirm");
            }
            set_card(c, gp::lifecycle::CardLifeCycle::Terminated)
        }
        CardOp::StoreData { aid, data } => {
            let aid = aid_arg(&aid)?;
            let blocks = data
                .iter()
                .map(|d| apdu::parse_hex(d).with_context(|| format!("STORE DATA block '{d}'")))
                .collect::<Result<Vec<_>>>()?;
            check_store_data_blocks(&blocks, level(c)?)?;
            let mut cl = authenticated(c)?;
            ops::personalize(&mut cl, &aid, &blocks)?;
            println!("stored {} block(s) into {aid}", blocks.len());
            Ok(())
        }
        CardOp::Apdu {
            apdus,
            secure,
            select,
            check,
        } => raw_apdus(c, &apdus, secure, select, check),
        CardOp::Scp11 { op } => {
            // `certs` only reads (GET DATA works without a channel); `setup` changes keys.
            let mut cl = match op {
                crate::cli::Scp11Op::Certs { .. } if c.scp.is_none() => {
                    let mut cl = client(c)?;
                    let sd = c.sd.as_deref().map(aid_arg).transpose()?;
                    cl.select(&sd.unwrap_or(gp::aid::ISD_AID))?;
                    cl
                }
                _ => authenticated(c)?,
            };
            crate::scp11_cmd::run(c, op, &mut cl)
        }
    }
}

/// An authenticated client with the Delegated Management settings of `dm`.
fn managed(
    c: &Connect,
    dm: &crate::cli::DmArgs,
) -> Result<(Client, Option<crate::dm_cmd::ReceiptLog>)> {
    let settings = crate::dm_cmd::delegation(dm)?;
    let mut cl = authenticated(c)?;
    let mut log = None;
    if let Some((d, l)) = settings {
        cl.set_delegation(d);
        log = l;
    }
    Ok((cl, log))
}

/// The INSTALL [for install and make selectable] `create-domain` sends (and its privileges).
pub fn create_domain_install(
    aid: &str,
    privs: &str,
    params: Option<&str>,
) -> Result<(gp::commands::Install, Privileges)> {
    let aid = aid_arg(aid)?;
    let privileges = parse_privs(privs)?.with(gp::privileges::Privilege::SecurityDomain);
    check_privileges(privileges)?;
    let params = match params {
        Some(p) => apdu::parse_hex(p).context("--params")?,
        None => Vec::new(),
    };
    if params.len() > 0x7F {
        bail!("--params: SD install parameters over 127 bytes");
    }
    let mut c9 = vec![0xC9, params.len() as u8];
    c9.extend_from_slice(&params);
    Ok((
        gp::commands::Install::ForInstall {
            load_file: Aid::new(&ops::SD_LOAD_FILE)?,
            module: Aid::new(&ops::SD_MODULE)?,
            application: aid,
            privileges,
            params: c9,
            token: Vec::new(),
            make_selectable: true,
        },
        privileges,
    ))
}

/// The install options of `card install` (and `token sign install`), with its DAP signers.
pub fn install_options(
    a: &InstallArgs,
    dap: Vec<(Aid, std::sync::Arc<dyn gp::dm::Signer + Send + Sync>)>,
) -> Result<ops::InstallOptions> {
    let privileges = parse_privs(&a.privs)?;
    check_privileges(privileges)?;
    Ok(ops::InstallOptions {
        to: a.to.as_deref().map(aid_arg).transpose()?,
        params: match &a.params {
            Some(p) => apdu::parse_hex(p).context("--params")?,
            None => Vec::new(),
        },
        privileges,
        instance: a.create.as_deref().map(aid_arg).transpose()?,
        applet: a.applet.as_deref().map(aid_arg).transpose()?,
        load_only: a.load_only,
        hash: a.hash.clone(),
        dap,
        ..Default::default()
    })
}

fn parse_privs(s: &str) -> Result<Privileges> {
    if s.trim().is_empty() {
        return Ok(Privileges::default());
    }
    Privileges::from_str(s).map_err(|e| anyhow!("--privs {s}: {e}"))
}

/// Refuses, before anything is sent, privileges a card must refuse (GP 2.3.1 §6.6.1):
/// DAP Verification, Delegated Management and Mandated DAP Verification are for security
/// domains only, and one security domain cannot have both Authorized Management and
/// Delegated Management.
fn check_privileges(p: Privileges) -> Result<()> {
    use gp::privileges::Privilege as P;
    if p.contains(P::AuthorizedManagement) && p.contains(P::DelegatedManagement) {
        bail!(
            "--privs: a security domain cannot have both Authorized Management (am) and \
             Delegated Management (dm) (GP 2.3.1 §6.6.1); choose one: am to manage its own \
             content with its keys, dm to manage it with tokens from the card issuer"
        );
    }
    if !p.is_consistent() {
        bail!(
            "--privs {p}: DAP verification (dap), delegated management (dm) and mandated DAP \
             (mdap) are for security domains only (GP 2.3.1 §6.6.1)"
        );
    }
    Ok(())
}

/// A short command APDU carries at most 255 data bytes (ISO/IEC 7816-4 §5.1).
const MAX_SHORT_DATA: usize = 255;

/// The largest STORE DATA block that any secure channel at `level` can carry in one short
/// command: a C-MAC takes 8 bytes (GP 2.3.1 §E.4.4; Amendment D §6.2.4 in S8 mode) and
/// C-DECRYPTION pads the data with `80 00…` to the cipher block (at least one byte). Checked
/// before the card is touched; the exact limit of the card and channel is checked again
/// once the channel is open.
fn max_store_data_block(level: SecurityLevel) -> usize {
    const MAC_LEN: usize = 8;
    const CIPHER_BLOCK: usize = 16; // AES; 3DES blocks of 8 give the same bound here
    if !level.c_mac() {
        MAX_SHORT_DATA
    } else if level.c_decryption() {
        (MAX_SHORT_DATA - MAC_LEN) / CIPHER_BLOCK * CIPHER_BLOCK - 1
    } else {
        MAX_SHORT_DATA - MAC_LEN
    }
}

fn check_store_data_blocks(blocks: &[Vec<u8>], level: SecurityLevel) -> Result<()> {
    let max = max_store_data_block(level);
    if blocks.len() > 256 {
        bail!(
            "{} STORE DATA blocks: at most 256 (the block number is one byte)",
            blocks.len()
        );
    }
    for (i, b) in blocks.iter().enumerate() {
        if b.len() > max {
            bail!(
                "STORE DATA block {i} is {} bytes; at most {max} fit one command at security \
                 level {level} (split it; nothing was sent to the card)",
                b.len()
            );
        }
    }
    Ok(())
}

fn info(c: &Connect) -> Result<()> {
    let mut cl = client(c)?;
    let i = ops::info(&mut cl)?;
    println!("Card:      {}", cl.channel().name());
    println!("ATR:       {}", apdu::hex(&i.atr));
    if let Some(f) = &i.fci {
        println!("ISD:       {}", f.aid);
        if let Some(m) = f.max_command_data_length {
            println!("Max data:  {m} bytes per command");
        }
    }
    match &i.cplc {
        Some(cplc) => println!("CPLC:\n{}", wrap_fields(&cplc.to_string(), 96)),
        None => println!("CPLC:      (not available)"),
    }
    match &i.card_data {
        Some(d) => {
            println!("Card data (66):");
            if let Some(v) = d.gp_version_string() {
                println!("  GlobalPlatform {v}");
            }
            for o in &d.scp {
                println!("  Secure channel: {o}");
            }
        }
        None => println!("Card data: (not available)"),
    }
    match &i.key_info {
        Some(k) => println!("Key information (E0):\n{k}"),
        None => println!("Keys:      (not available)"),
    }
    for (name, v) in [
        ("IIN (42)", &i.iin),
        ("CIN (45)", &i.cin),
        ("KDD (CF)", &i.kdd),
    ] {
        if let Some(v) = v {
            println!("{name}:  {}", apdu::hex(v));
        }
    }
    // The life cycle needs GET STATUS, i.e. an authenticated channel: try with the given
    // (or default) keys; a wrong key stops before EXTERNAL AUTHENTICATE and costs nothing.
    match authenticate(&mut cl, c) {
        Ok(()) => {
            match (cl.secure_channel(), cl.scp11_channel()) {
                (Some(ch), _) => println!(
                    "Secure channel: {} {} (key version {:#04x})",
                    ch.protocol, ch.level, ch.init_update.key_version
                ),
                (None, Some(ch)) => println!(
                    "Secure channel: SCP{} {} (SD key KID {:02X} KVN {:02X}{})",
                    ch.variant,
                    ch.level,
                    ch.key.kid,
                    ch.key.kvn,
                    if ch.verified {
                        ", certificate verified"
                    } else {
                        ", certificate NOT verified"
                    }
                ),
                (None, None) => {}
            }
            let reg = ops::registry(&mut cl)?;
            match reg.card_life_cycle() {
                Some(lc) => println!("Life cycle: {lc}"),
                None => println!("Life cycle: (not reported)"),
            }
        }
        Err(e) => println!("Life cycle: (needs the card's keys: {e})"),
    }
    Ok(())
}

/// `NAME=VALUE` lines (as the CPLC prints them) set side by side, indented, in lines of at
/// most `width` characters: the 18 CPLC fields in a few lines instead of a screenful.
fn wrap_fields(lines: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for field in lines.lines() {
        if !line.is_empty() && line.len() + 2 + field.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        line.push_str("  ");
        line.push_str(field);
    }
    out.push_str(&line);
    out
}

fn list(c: &Connect) -> Result<()> {
    let mut cl = authenticated(c)?;
    let reg = ops::registry(&mut cl)?;
    print!("{}", ops::format_registry(&reg));
    Ok(())
}

fn install(c: &Connect, a: InstallArgs) -> Result<()> {
    // The command line first (privileges, DAP keys), then the CAP file.
    let dap = crate::dm_cmd::dap(a.dap_key.as_deref(), a.dap_sd.as_deref())?;
    let opts = install_options(&a, dap)?;
    let bytes =
        std::fs::read(&a.cap).with_context(|| format!("cannot read {}", a.cap.display()))?;
    let cap = gp::cap::CapFile::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid CAP file", a.cap.display()))?;
    let (mut cl, log) = managed(c, &a.dm)?;
    let bar = crate::progress::bar("LOAD", 0);
    let r = ops::install_cap_with_progress(&mut cl, &cap, &opts, &mut |block, blocks| {
        bar.set_length(blocks as u64);
        bar.set_position(block as u64);
    });
    bar.finish_and_clear();
    crate::dm_cmd::finish(&mut cl, log.as_ref())?;
    let report = r?;
    println!(
        "loaded {} ({} bytes in {} LOAD blocks)",
        report.load_file, report.load_file_size, report.blocks
    );
    for i in &report.instances {
        println!("installed {i}");
    }
    Ok(())
}

/// What `put-key` and `lock` were given, checked before the card is touched: a secure
/// channel opened for a command that then fails spends a step of the card's sequence
/// counter for nothing.
struct NewKeySet {
    master: Zeroizing<Vec<u8>>,
    /// The key type if the command line fixes it (`--new-key-type`, `--scp`).
    kind: Option<scp::KeyKind>,
    kvn: Option<u8>,
}

fn new_key_set(c: &Connect, a: &PutKeyArgs) -> Result<NewKeySet> {
    let master = hex_arg("--new-key", &a.new_key)?;
    let kind = match (a.new_key_type.as_deref(), c.scp.as_deref()) {
        (Some("des"), _) => Some(scp::KeyKind::Des3),
        (Some(_), _) => Some(scp::KeyKind::Aes),
        (None, Some("02")) => Some(scp::KeyKind::Des3),
        (None, Some(_)) => Some(scp::KeyKind::Aes),
        (None, None) => None,
    };
    match kind {
        Some(k) => {
            scp::Key::new(k, &master).context("--new-key")?;
        }
        None => {
            let fits = |k| scp::Key::new(k, &master).is_ok();
            if !fits(scp::KeyKind::Aes) && !fits(scp::KeyKind::Des3) {
                bail!(
                    "--new-key: {} bytes is neither an AES key (16, 24 or 32 bytes) nor a 3DES \
                     key (16 or 24 bytes)",
                    master.len()
                );
            }
        }
    }
    if let Some(v) = a.new_keyver {
        if !(1..=0x7F).contains(&v) {
            bail!("--new-keyver {v:#04x}: a key version number is 0x01 to 0x7F (GP 2.3.1 §11.1.8)");
        }
    }
    Ok(NewKeySet {
        master,
        kind,
        kvn: a.new_keyver,
    })
}

fn put_key(c: &Connect, a: PutKeyArgs, replace: bool) -> Result<()> {
    let new = new_key_set(c, &a)?;
    let mut options = open_options(c)?;
    if new.kind.is_none() && scp::Key::new(scp::KeyKind::Des3, &new.master).is_err() {
        // Only an AES key fits (32 bytes): require SCP03, which is checked before EXTERNAL
        // AUTHENTICATE, rather than find an SCP02 card after the channel is open.
        options.scp = Some(3);
    }
    if crate::scp11_cmd::variant(c).is_some() {
        return put_key_scp11(c, new, replace, &a);
    }
    let mut cl = client(c)?;
    cl.open_secure_channel(&options)?;
    let info = cl
        .secure_channel()
        .cloned()
        .ok_or_else(|| anyhow!("no secure channel"))?;
    let current = info.init_update.key_version;
    let kind = new.kind.unwrap_or(match info.protocol {
        scp::Protocol::Scp02 { .. } => scp::KeyKind::Des3,
        scp::Protocol::Scp03 { .. } => scp::KeyKind::Aes,
    });
    let master = new.master;
    let key = scp::Key::new(kind, &master).context("--new-key")?;
    let mut keys = scp::StaticKeys::same(key);
    if let Some(kdf) = &a.new_kdf {
        keys = kdf_arg(kdf)?.apply(&keys, &info.init_update.kdd)?;
    }
    let new_kvn = match new.kvn {
        Some(v) => v,
        None if replace => current,
        None => (current % 0x7F) + 1,
    };
    let replaces = if replace { Some(current) } else { None };
    ops::put_key_set(&mut cl, &keys, new_kvn, replaces)?;
    match replaces {
        Some(old) => println!("replaced key set {old:#04x} with key set {new_kvn:#04x} ({kind:?})"),
        None => println!("added key set {new_kvn:#04x} ({kind:?})"),
    }
    Ok(())
}

/// `put-key` over an SCP11 channel: there is no symmetric key set in use, so the new key
/// set's version is given, and `lock` (replace the key set in use) does not apply.
fn put_key_scp11(c: &Connect, new: NewKeySet, replace: bool, a: &PutKeyArgs) -> Result<()> {
    if replace {
        bail!("lock replaces the symmetric key set the channel was opened with; over SCP11 add a key set with put-key --new-keyver N (and --new-keyver N with lock over --scp 03 later)");
    }
    if a.new_kdf.is_some() {
        bail!("--new-kdf diversifies with the KDD of INITIALIZE UPDATE, which SCP11 does not send: diversify the keys yourself, or use --scp 03");
    }
    let new_kvn = new.kvn.ok_or_else(|| {
        anyhow!("put-key over SCP11: give the new key set's version with --new-keyver N")
    })?;
    let kind = new.kind.unwrap_or(scp::KeyKind::Aes);
    let key = scp::Key::new(kind, &new.master).context("--new-key")?;
    let keys = scp::StaticKeys::same(key);
    let mut cl = authenticated(c)?;
    ops::put_key_set(&mut cl, &keys, new_kvn, None)?;
    println!("added key set {new_kvn:#04x} ({kind:?})");
    Ok(())
}

fn set_app(c: &Connect, aid: &str, lock: bool) -> Result<()> {
    let aid = aid_arg(aid)?;
    let mut cl = authenticated(c)?;
    ops::set_application_locked(&mut cl, &aid, lock)?;
    println!("{} {aid}", if lock { "locked" } else { "unlocked" });
    Ok(())
}

fn set_card(c: &Connect, state: gp::lifecycle::CardLifeCycle) -> Result<()> {
    use gp::lifecycle::CardLifeCycle as L;
    let mut cl = authenticated(c)?;
    // The card life cycle is sequential (GP 2.3.1 §5.1.1): from OP_READY, SECURED is
    // reached through INITIALIZED, as `gp --secure-card` does.
    if state == L::Secured {
        let now = ops::get_status(&mut cl, gp::commands::StatusSubset::IssuerSecurityDomain)?
            .first()
            .and_then(|e| L::from_byte(e.life_cycle).ok());
        if now == Some(L::OpReady) {
            ops::set_card_life_cycle(&mut cl, L::Initialized)?;
        }
    }
    ops::set_card_life_cycle(&mut cl, state)?;
    println!("card life cycle: {state}");
    Ok(())
}

fn raw_apdus(
    c: &Connect,
    apdus: &[String],
    secure: bool,
    select: Option<String>,
    check: bool,
) -> Result<()> {
    let mut cl = if secure {
        authenticated(c)?
    } else {
        client(c)?
    };
    if let Some(aid) = select {
        cl.select(&aid_arg(&aid)?)?;
    }
    for h in apdus {
        let bytes = apdu::parse_hex(h).with_context(|| format!("APDU '{h}'"))?;
        let cmd = apdu::Command::parse(&bytes).with_context(|| format!("APDU '{h}'"))?;
        let r = cl.send(gpclient::Operation::Apdu, &cmd)?;
        println!("{} {:04X} ({})", apdu::hex(&r.data), r.sw.0, r.sw.meaning());
        if check && !r.sw.is_success() {
            return Err(gpclient::ClientError::refused(gpclient::Operation::Apdu, h, r.sw).into());
        }
    }
    Ok(())
}
