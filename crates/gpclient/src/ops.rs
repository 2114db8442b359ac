//! Card-management operations: what `cardwright card …` and the platform's workflows do.
//!
//! Each function takes a [`GpClient`] whose secure channel is already open where the
//! GlobalPlatform specification requires one (GET STATUS, INSTALL, LOAD, DELETE, PUT KEY,
//! SET STATUS, STORE DATA), and returns what it learnt or did.

use crate::{ClientError, GpClient, Operation, Result};
use apdu::{Command, Status, StatusWord};
use gp::aid::Aid;
use gp::commands::{
    CardData, Cplc, DataObject, Fci, GetData, GetStatus, Install, KeyInfo, RegistryEntry,
    StatusFormat, StatusSubset,
};
use gp::dm::ReceiptContext;
use gp::lifecycle::CardLifeCycle;
use gp::privileges::Privileges;
use transport::CardChannel;

/// What `card info` shows.
#[derive(Debug, Clone, Default)]
pub struct CardInfo {
    /// The card's answer to reset.
    pub atr: Vec<u8>,
    /// The selected security domain's FCI (SELECT response).
    pub fci: Option<Fci>,
    /// Card Production Life Cycle data (GET DATA `9F7F`).
    pub cplc: Option<Cplc>,
    /// Card recognition data (GET DATA `66`).
    pub card_data: Option<CardData>,
    /// Key information template (GET DATA `E0`).
    pub key_info: Option<KeyInfo>,
    /// Issuer identification number (GET DATA `42`).
    pub iin: Option<Vec<u8>>,
    /// Card image number (GET DATA `45`).
    pub cin: Option<Vec<u8>>,
    /// Key diversification data (GET DATA `CF`).
    pub kdd: Option<Vec<u8>>,
    /// The card life cycle state (from the registry, when it could be read).
    pub life_cycle: Option<CardLifeCycle>,
}

/// Reads one GET DATA object as the card returns it (tag, length, value); `None` when the
/// card does not have it (`6A88`, `6A82`, `6D00`…).
pub fn get_data_raw<C: CardChannel>(
    client: &mut GpClient<C>,
    object: DataObject,
) -> Result<Option<Vec<u8>>> {
    let gd = GetData::new(object);
    let r = client.send(Operation::GetData, &gd.to_command()?)?;
    Ok(r.sw.is_success().then_some(r.data))
}

/// Reads one GET DATA object's value (without its tag and length).
pub fn get_data<C: CardChannel>(
    client: &mut GpClient<C>,
    object: DataObject,
) -> Result<Option<Vec<u8>>> {
    let gd = GetData::new(object);
    Ok(get_data_raw(client, object)?.map(|raw| gd.value_of(&raw).unwrap_or(raw)))
}

/// Selects the ISD and reads the identification data that needs no authentication:
/// FCI, CPLC (9F7F), card data (66), key information (E0), IIN (42), CIN (45), KDD (CF).
pub fn info<C: CardChannel>(client: &mut GpClient<C>) -> Result<CardInfo> {
    let mut out = CardInfo {
        atr: client.channel().atr(),
        ..Default::default()
    };
    let sel = client.select(&gp::aid::ISD_AID)?;
    out.fci = Fci::parse(&sel.data).ok();
    out.cplc = get_data_raw(client, DataObject::Cplc)?.and_then(|v| Cplc::parse(&v).ok());
    out.card_data =
        get_data_raw(client, DataObject::CardData)?.and_then(|v| CardData::parse(&v).ok());
    out.key_info =
        get_data_raw(client, DataObject::KeyInformation)?.and_then(|v| KeyInfo::parse(&v).ok());
    out.iin = get_data(client, DataObject::Iin)?;
    out.cin = get_data(client, DataObject::Cin)?;
    out.kdd = get_data(client, DataObject::KeyDiversificationData)?;
    Ok(out)
}

/// GET STATUS of one subset, all pages (`6310` → next), TLV format with a fall-back to the
/// legacy format for cards that refuse P2 `02` (GP 2.3.1 §11.4.2).
pub fn get_status<C: CardChannel>(
    client: &mut GpClient<C>,
    subset: StatusSubset,
) -> Result<Vec<RegistryEntry>> {
    match get_status_in(client, subset, StatusFormat::Tlv) {
        Err(ClientError::Card {
            op: Operation::GetStatus,
            sw,
            ..
        }) if matches!(
            sw.status(),
            Status::IncorrectP1P2 | Status::WrongData | Status::InsNotSupported
        ) =>
        {
            get_status_in(client, subset, StatusFormat::Legacy)
        }
        other => other,
    }
}

fn get_status_in<C: CardChannel>(
    client: &mut GpClient<C>,
    subset: StatusSubset,
    format: StatusFormat,
) -> Result<Vec<RegistryEntry>> {
    let mut req = GetStatus::new(subset).with_format(format);
    let mut all = Vec::new();
    for _page in 0..1000 {
        let r = client.send(Operation::GetStatus, &req.to_command()?)?;
        match r.sw {
            StatusWord::SUCCESS | StatusWord::MORE_DATA_AVAILABLE => {
                all.extend(RegistryEntry::parse_all(subset, format, &r.data)?);
                if r.sw == StatusWord::SUCCESS {
                    return Ok(all);
                }
                req = req.next_page();
            }
            // No entry of this kind.
            StatusWord::FILE_NOT_FOUND | StatusWord::REFERENCED_DATA_NOT_FOUND => return Ok(all),
            sw => return Err(ClientError::refused(Operation::GetStatus, "", sw)),
        }
    }
    Err(ClientError::Invalid(
        "GET STATUS: the card keeps answering 6310 (more data)".into(),
    ))
}

/// The whole registry: the ISD, applications and SSDs, load files with their modules.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// The issuer security domain (GET STATUS P1 `80`).
    pub isd: Vec<RegistryEntry>,
    /// Applications and supplementary security domains (P1 `40`).
    pub applications: Vec<RegistryEntry>,
    /// Executable load files with their modules (P1 `10`; P1 `20`, files only, on cards
    /// that refuse `10`).
    pub load_files: Vec<RegistryEntry>,
}

impl Registry {
    /// The card life cycle state, from the ISD entry.
    pub fn card_life_cycle(&self) -> Option<CardLifeCycle> {
        self.isd
            .first()
            .and_then(|e| CardLifeCycle::from_byte(e.life_cycle).ok())
    }
    /// The entry of `aid` (ISD, application, SSD or load file), if registered.
    pub fn find(&self, aid: &Aid) -> Option<&RegistryEntry> {
        self.isd
            .iter()
            .chain(&self.applications)
            .chain(&self.load_files)
            .find(|e| &e.aid == aid)
    }
}

/// Reads the registry (needs a secure channel to the ISD, or to an SSD for its own view).
pub fn registry<C: CardChannel>(client: &mut GpClient<C>) -> Result<Registry> {
    let isd = get_status(client, StatusSubset::IssuerSecurityDomain)?;
    let applications = get_status(client, StatusSubset::Applications)?;
    let load_files = match get_status(client, StatusSubset::LoadFilesAndModules) {
        Ok(v) => v,
        Err(ClientError::Card {
            op: Operation::GetStatus,
            ..
        }) => get_status(client, StatusSubset::LoadFiles)?,
        Err(e) => return Err(e),
    };
    Ok(Registry {
        isd,
        applications,
        load_files,
    })
}

/// INSTALL [for install and make selectable] (P1 `0C`), or [for install] only.
pub fn install_instance<C: CardChannel>(
    client: &mut GpClient<C>,
    load_file: Aid,
    module: Aid,
    instance: Aid,
    privileges: Privileges,
    params: Vec<u8>,
    make_selectable: bool,
) -> Result<()> {
    let cmd = Install::ForInstall {
        load_file,
        module,
        application: instance,
        privileges,
        params,
        token: Vec::new(),
        make_selectable,
    };
    client.send_managed(
        Operation::InstallForInstall,
        cmd,
        Install::to_command,
        Some(ReceiptContext::Install {
            load_file,
            application: instance,
        }),
        &format!("of {instance}"),
    )?;
    Ok(())
}

/// The security domain the secure channel is open to (the current SD), needed only to check
/// a receipt: without receipt checks any answer does.
fn current_sd<C: CardChannel>(client: &GpClient<C>, op: Operation) -> Result<Aid> {
    if let Some(i) = client.secure_channel() {
        return Ok(i.sd);
    }
    let checking = client
        .delegation()
        .is_some_and(|d| d.tokens.is_some() && d.receipts.is_some());
    if checking {
        Err(ClientError::Receipt {
            op,
            detail:
                "the security domain of this channel is unknown, so its receipt cannot be checked"
                    .into(),
        })
    } else {
        Ok(gp::ISD_AID)
    }
}

/// INSTALL \[for extradition\] (GP 2.3.1 §11.5.2.3.5): associates `object` (an application,
/// security domain or load file) with the security domain `to`. `from` is the domain it is
/// associated with now (for the receipt; default: the current SD).
pub fn extradite<C: CardChannel>(
    client: &mut GpClient<C>,
    object: Aid,
    to: Aid,
    from: Option<Aid>,
) -> Result<()> {
    let op = Operation::InstallForExtradition;
    let from = match from {
        Some(f) => f,
        None => current_sd(client, op)?,
    };
    let cmd = Install::ForExtradition {
        security_domain: to,
        application: object,
        params: Vec::new(),
        token: Vec::new(),
    };
    client.send_managed(
        op,
        cmd,
        Install::to_command,
        Some(ReceiptContext::Extradition { from, object, to }),
        &format!("of {object} to {to}"),
    )?;
    Ok(())
}

/// Sends a list of raw commands through the client (secure channel if open).
pub fn send_all<C: CardChannel>(
    client: &mut GpClient<C>,
    cmds: &[Command],
) -> Result<Vec<apdu::Response>> {
    cmds.iter()
        .map(|c| client.send(Operation::Apdu, c))
        .collect()
}

/// DELETE of an application, security domain or load file (GP 2.3.1 §11.2).
pub fn delete<C: CardChannel>(client: &mut GpClient<C>, aid: &Aid, related: bool) -> Result<()> {
    let cmd = gp::commands::Delete::object(*aid, related);
    client.send_managed(
        Operation::Delete,
        cmd,
        gp::commands::Delete::to_command,
        Some(ReceiptContext::Delete { aid: *aid }),
        &aid.to_string(),
    )?;
    Ok(())
}

/// The load file and module of the security-domain class on GlobalPlatform cards, which
/// SSD creation instantiates (GP 2.3.1 §7.3.2; the AIDs GlobalPlatformPro and most cards use).
pub const SD_LOAD_FILE: [u8; 7] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50];
/// The security-domain module (class) in [`SD_LOAD_FILE`].
pub const SD_MODULE: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41];

/// Creates a supplementary security domain: INSTALL [for install and make selectable] of
/// the SD module with the Security Domain privilege (GP 2.3.1 §11.5.2.3.2). With `parent`,
/// the new SSD is then extradited to that SD (INSTALL [for extradition], §11.5.2.3.5).
pub fn create_domain<C: CardChannel>(
    client: &mut GpClient<C>,
    aid: Aid,
    privileges: Privileges,
    params: &[u8],
    parent: Option<Aid>,
) -> Result<()> {
    let privileges = privileges.with(gp::privileges::Privilege::SecurityDomain);
    let load_file = Aid::new(&SD_LOAD_FILE)?;
    let module = Aid::new(&SD_MODULE)?;
    let mut install_params = vec![0xC9, params.len() as u8];
    if params.len() > 0x7F {
        return Err(ClientError::Invalid(
            "SD install parameters over 127 bytes".into(),
        ));
    }
    install_params.extend_from_slice(params);
    install_instance(
        client,
        load_file,
        module,
        aid,
        privileges,
        install_params,
        true,
    )?;
    if let Some(sd) = parent {
        extradite(client, aid, sd, None)?;
    }
    Ok(())
}

/// PUT KEY of a whole key set (ENC, MAC, DEK as key ids 1-3; GP 2.3.1 §11.8): a new key set
/// when `replaces` is `None`, else a replacement of key set `replaces`. The keys travel
/// encrypted under the DEK; the key check values the card returns are verified.
pub fn put_key_set<C: CardChannel>(
    client: &mut GpClient<C>,
    keys: &scp::StaticKeys,
    new_kvn: u8,
    replaces: Option<u8>,
) -> Result<()> {
    if !(1..=0x7F).contains(&new_kvn) {
        return Err(ClientError::Invalid(format!(
            "key version {new_kvn:#04x} is outside 0x01-0x7F (GP 2.3.1 §11.1.8)"
        )));
    }
    let session = client
        .session()
        .ok_or(ClientError::NoSecureChannel(Operation::PutKey))?;
    let data = scp::put_key::key_set_data(new_kvn, keys, session)?;
    let cmd = gp::commands::PutKey {
        old_version: replaces.unwrap_or(0),
        key_id: 1,
        multiple: true,
        more: false,
        data,
    }
    .to_command()?;
    let r = client.send_ok(
        Operation::PutKey,
        &cmd,
        &format!("of key set {new_kvn:#04x}"),
    )?;
    scp::put_key::check_response(&r.data, new_kvn, keys).map_err(ClientError::KeysNotConfirmed)?;
    Ok(())
}

/// SET STATUS lock/unlock of an application or SSD (GP 2.3.1 §11.10).
pub fn set_application_locked<C: CardChannel>(
    client: &mut GpClient<C>,
    aid: &Aid,
    lock: bool,
) -> Result<()> {
    let s = if lock {
        gp::commands::SetStatus::lock(*aid)
    } else {
        gp::commands::SetStatus::unlock(*aid)
    };
    client.send_ok(
        Operation::SetStatus,
        &s.to_command()?,
        &format!("({} {aid})", if lock { "lock" } else { "unlock" }),
    )?;
    Ok(())
}

/// SET STATUS of an application's life cycle (P1 `40`, GP 2.3.1 §11.10) to `state`, an
/// application-specific state (`0xxxx111` above SELECTABLE, §11.1.1 Table 11-5) such as
/// `0F` when the application's registration is complete; locking and unlocking go with
/// [`set_application_locked`]. The card decides which transitions it allows.
pub fn set_application_state<C: CardChannel>(
    client: &mut GpClient<C>,
    aid: &Aid,
    state: u8,
) -> Result<()> {
    let cmd = gp::commands::SetStatus::application(*aid, state).to_command()?;
    client.send_ok(
        Operation::SetStatus,
        &cmd,
        &format!("({aid} to {state:02X})"),
    )?;
    Ok(())
}

/// SET STATUS of the card life cycle (GP 2.3.1 §5.1.1, §11.10).
pub fn set_card_life_cycle<C: CardChannel>(
    client: &mut GpClient<C>,
    state: CardLifeCycle,
) -> Result<()> {
    let cmd = gp::commands::SetStatus::card(state).to_command()?;
    client.send_ok(Operation::SetStatus, &cmd, &format!("(card to {state})"))?;
    Ok(())
}

/// INSTALL [for personalization] of `aid`, then one STORE DATA per block (GP 2.3.1 §11.11).
pub fn personalize<C: CardChannel>(
    client: &mut GpClient<C>,
    aid: &Aid,
    blocks: &[Vec<u8>],
) -> Result<()> {
    let cmd = Install::ForPersonalization { application: *aid }.to_command()?;
    client.send_ok(
        Operation::InstallForPersonalization,
        &cmd,
        &format!("of {aid}"),
    )?;
    store_data(client, blocks)
}

/// STORE DATA blocks to the SD itself or to the application named by a previous
/// INSTALL [for personalization]. Blocks over one APDU are refused rather than split,
/// since a block boundary can carry meaning (DGIs).
pub fn store_data<C: CardChannel>(client: &mut GpClient<C>, blocks: &[Vec<u8>]) -> Result<()> {
    if blocks.len() > 256 {
        return Err(ClientError::Invalid(
            "more than 256 STORE DATA blocks".into(),
        ));
    }
    let max = client.max_plain_data();
    for (i, b) in blocks.iter().enumerate() {
        if b.len() > max {
            return Err(ClientError::Invalid(format!(
                "STORE DATA block {i} is {} bytes; at most {max} fit one command on this channel",
                b.len()
            )));
        }
        let cmd = gp::commands::StoreData {
            last: i + 1 == blocks.len(),
            block: i as u8,
            data: b.clone(),
            ..Default::default()
        }
        .to_command()?;
        client.send_ok(Operation::StoreData, &cmd, &format!("block {i}"))?;
    }
    Ok(())
}

/// INSTALL [for personalization] of `aid`, then the STORE DATA commands that carry `dgis`
/// in the DGI format ([`gp::commands::dgi::dgi_store_data`]): DGIs `8000`–`8FFF` hold data
/// the caller already encrypted under the secure channel's DEK (a key store's
/// `wrap_for_card`, or [`scp::encrypt_sensitive_data`] with
/// [`scp::HostSession::data_encryption_key`]) and go whole in commands flagged encrypted
/// (P1 b7-b6 = `11`), which the security domain decrypts for the application; the others
/// go plain, split across commands where one does not fit.
pub fn personalize_dgis<C: CardChannel>(
    client: &mut GpClient<C>,
    aid: &Aid,
    dgis: &[gp::commands::Dgi],
) -> Result<()> {
    if client.session().is_none() {
        return Err(ClientError::NoSecureChannel(Operation::StoreData));
    }
    let cmds = gp::commands::dgi_store_data(dgis, client.max_plain_data())?;
    let cmd = Install::ForPersonalization { application: *aid }.to_command()?;
    client.send_ok(
        Operation::InstallForPersonalization,
        &cmd,
        &format!("of {aid}"),
    )?;
    let n = cmds.len();
    for c in &cmds {
        client.send_ok(
            Operation::StoreData,
            &c.to_command()?,
            &format!("block {} of {n}", usize::from(c.block) + 1),
        )?;
    }
    Ok(())
}

/// What `install_cap` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Security domain to load into and associate with (default: the one authenticated to).
    pub to: Option<Aid>,
    /// Application-specific install parameters (the C9 content).
    pub params: Vec<u8>,
    /// Privileges of the new instances.
    pub privileges: Privileges,
    /// Instance AID (default: the applet AID).
    pub instance: Option<Aid>,
    /// Which applet of the CAP to instantiate (default: all of them, or the first with `instance`).
    pub applet: Option<Aid>,
    /// Load the file only, install no instance.
    pub load_only: bool,
    /// "sha1" or "sha256": send the load file data block hash in INSTALL [for load].
    pub hash: Option<String>,
    /// DAP blocks to compute (GP 2.3.1 §9.2.1): for each, the security domain that verifies
    /// it and its key. A hash (SHA-256 unless `hash` says otherwise) is then always sent.
    pub dap: Vec<(Aid, std::sync::Arc<dyn gp::dm::Signer + Send + Sync>)>,
    /// DAP blocks computed in advance (an application provider's package): for each, the
    /// security domain that verifies it and the signature bytes, sent as they are after
    /// the blocks of `dap`. A hash is then always sent too, as with `dap`.
    pub dap_signatures: Vec<(Aid, Vec<u8>)>,
    /// A Delegated Management token computed in advance for the INSTALL [for load] that
    /// [`install_plan`] gives (GP 2.3.1 Appendix C.4), sent as it is instead of one from
    /// the client's [`crate::dm::Delegation`] (whose receipts are still checked).
    pub load_token: Option<Vec<u8>>,
    /// Tokens computed in advance for the INSTALL [for install and make selectable] of each
    /// instance (by instance AID), likewise.
    pub install_tokens: Vec<(Aid, Vec<u8>)>,
}

/// What `install_cap` did.
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// The load file (package) AID.
    pub load_file: Aid,
    /// Size of the load file data block in bytes.
    pub load_file_size: usize,
    /// Number of LOAD commands.
    pub blocks: usize,
    /// Instances installed.
    pub instances: Vec<Aid>,
    /// C-APDUs sent on the wire.
    pub apdus: u64,
}

/// The INSTALL commands `install_cap` sends, without tokens: INSTALL \[for load\] (with
/// `hash`, empty for none) and one INSTALL \[for install and make selectable\] per instance
/// (none with `load_only`). `cardwright token sign install` signs exactly these.
pub fn install_plan(
    cap: &gp::cap::CapFile,
    opts: &InstallOptions,
    hash: Vec<u8>,
) -> Result<(Install, Vec<Install>)> {
    let load_file = cap.package_aid();
    let block = cap.load_file_data_block();
    let mut params = Vec::new();
    // Load parameters: EF { C6 non-volatile code space } (GP 2.3.1 §11.5.2.3.7).
    let size = u32::try_from(block.len()).unwrap_or(u32::MAX);
    params.extend_from_slice(&[0xEF, 0x06, 0xC6, 0x04]);
    params.extend_from_slice(&size.to_be_bytes());
    let for_load = Install::ForLoad {
        load_file,
        security_domain: opts.to,
        hash,
        params,
        token: Vec::new(),
    };
    let mut installs = Vec::new();
    if !opts.load_only {
        let applets: Vec<Aid> = match &opts.applet {
            Some(a) => {
                if !cap.applet_aids().contains(a) {
                    return Err(ClientError::Invalid(format!("the CAP has no applet {a}")));
                }
                vec![*a]
            }
            None if opts.instance.is_some() => cap.applet_aids().into_iter().take(1).collect(),
            None => cap.applet_aids(),
        };
        if opts.params.len() > 0x7F {
            return Err(ClientError::Invalid(
                "install parameters over 127 bytes".into(),
            ));
        }
        let mut c9 = vec![0xC9, opts.params.len() as u8];
        c9.extend_from_slice(&opts.params);
        for module in applets {
            installs.push(Install::ForInstall {
                load_file,
                module,
                application: opts.instance.unwrap_or(module),
                privileges: opts.privileges,
                params: c9.clone(),
                token: Vec::new(),
                make_selectable: true,
            });
        }
    }
    Ok((for_load, installs))
}

/// The load file data block hash `install_cap` sends for `opts` (empty: none).
pub fn install_hash(cap: &gp::cap::CapFile, opts: &InstallOptions) -> Result<Vec<u8>> {
    Ok(match opts.hash.as_deref() {
        None if !opts.dap.is_empty() || !opts.dap_signatures.is_empty() => {
            cap.load_file_hash(gp::cap::HashAlgorithm::Sha256)
        }
        None => Vec::new(),
        Some("sha1") => cap.load_file_hash(gp::cap::HashAlgorithm::Sha1),
        Some("sha256") => cap.load_file_hash(gp::cap::HashAlgorithm::Sha256),
        Some(other) => {
            return Err(ClientError::Invalid(format!(
                "unknown hash '{other}' (sha1, sha256)"
            )))
        }
    })
}

/// Loads a CAP file (INSTALL [for load] + LOAD blocks sized to the card and the secure
/// channel overhead) and installs its applets (INSTALL [for install and make selectable]).
pub fn install_cap<C: CardChannel>(
    client: &mut GpClient<C>,
    cap: &gp::cap::CapFile,
    opts: &InstallOptions,
) -> Result<InstallReport> {
    install_cap_with_progress(client, cap, opts, &mut |_, _| {})
}

/// [`install_cap`], calling `progress(block, blocks)` after each LOAD command the card
/// accepted (`block` from 1 to `blocks`), e.g. for a progress bar.
pub fn install_cap_with_progress<C: CardChannel>(
    client: &mut GpClient<C>,
    cap: &gp::cap::CapFile,
    opts: &InstallOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<InstallReport> {
    let start_apdus = client.apdus_sent();
    let load_file = cap.package_aid();
    let block = cap.load_file_data_block();
    let hash = install_hash(cap, opts)?;
    let (for_load, installs) = install_plan(cap, opts, hash.clone())?;
    for (instance, _) in &opts.install_tokens {
        if !installs.iter().any(
            |i| matches!(i, Install::ForInstall { application, .. } if application == instance),
        ) {
            return Err(ClientError::Invalid(format!(
                "a token is given for instance {instance}, which this install does not create"
            )));
        }
    }
    let mut dap_blocks = Vec::with_capacity(opts.dap.len() + opts.dap_signatures.len());
    for (sd, signer) in &opts.dap {
        let signature = signer
            .sign(gp::dm::dap_input(&hash))
            .map_err(|e| ClientError::Invalid(format!("DAP signature for {sd}: {e}")))?;
        dap_blocks.push(gp::commands::DapBlock {
            security_domain: *sd,
            signature,
        });
    }
    for (sd, signature) in &opts.dap_signatures {
        dap_blocks.push(gp::commands::DapBlock {
            security_domain: *sd,
            signature: signature.clone(),
        });
    }
    send_with_token(
        client,
        Operation::InstallForLoad,
        for_load,
        opts.load_token.as_deref(),
        None,
        &format!("of {load_file}"),
    )?;
    let loads = gp::commands::load_blocks_with_dap(&block, &dap_blocks, client.max_plain_data())?;
    let n = loads.len();
    let mut last = Vec::new();
    for (i, cmd) in loads.iter().enumerate() {
        last = client
            .send_ok(Operation::Load, cmd, &format!("block {} of {n}", i + 1))?
            .data;
        progress(i + 1, n);
    }
    // A delegated load is confirmed by the answer to the last LOAD (load receipt).
    let target = match opts.to {
        Some(t) => t,
        None => current_sd(client, Operation::Load)?,
    };
    let ctx = ReceiptContext::Load {
        load_file,
        security_domain: target,
    };
    match (&opts.load_token, client.delegation.as_mut()) {
        // A token given in advance: the load was delegated whatever the token source.
        (Some(_), Some(d)) => d.check(Operation::Load, ctx, &last)?,
        (Some(_), None) => {}
        (None, _) => client.check_receipt(Operation::Load, ctx, &last)?,
    }
    let mut instances = Vec::new();
    for i in installs {
        let Install::ForInstall {
            load_file,
            application,
            ..
        } = i
        else {
            continue;
        };
        let token = opts
            .install_tokens
            .iter()
            .find(|(a, _)| *a == application)
            .map(|(_, t)| t.as_slice());
        send_with_token(
            client,
            Operation::InstallForInstall,
            i,
            token,
            Some(ReceiptContext::Install {
                load_file,
                application,
            }),
            &format!("of {application}"),
        )?;
        instances.push(application);
    }
    Ok(InstallReport {
        load_file,
        load_file_size: block.len(),
        blocks: n,
        instances,
        apdus: client.apdus_sent() - start_apdus,
    })
}

/// An INSTALL with the token given (sent as it is, its receipt checked if the client has
/// a [`crate::dm::Delegation`] with a receipt key), or with a token from the client's
/// delegation when none is given.
fn send_with_token<C: CardChannel>(
    client: &mut GpClient<C>,
    op: Operation,
    cmd: Install,
    token: Option<&[u8]>,
    ctx: Option<ReceiptContext>,
    object: &str,
) -> Result<()> {
    use gp::dm::TokenInput;
    match token {
        None => client.send_managed(op, cmd, Install::to_command, ctx, object)?,
        Some(t) => client.send_tokenized(
            op,
            cmd.with_token(t.to_vec())?,
            Install::to_command,
            ctx,
            object,
        )?,
    };
    Ok(())
}

/// The registry as text, one block per entry, like `gp -l`.
pub fn format_registry(reg: &Registry) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let lc_name = |e: &RegistryEntry| -> String {
        use gp::commands::RegistryKind as K;
        match e.kind {
            K::IssuerSecurityDomain => CardLifeCycle::from_byte(e.life_cycle)
                .map(|l| l.to_string())
                .unwrap_or_else(|_| format!("{:02X}", e.life_cycle)),
            K::SecurityDomain => gp::lifecycle::SdLifeCycle(e.life_cycle).name(),
            K::Application => gp::lifecycle::AppLifeCycle(e.life_cycle).name(),
            K::LoadFile => gp::lifecycle::LoadFileLifeCycle(e.life_cycle).name(),
        }
    };
    for (label, list) in [
        ("ISD", &reg.isd),
        ("APP", &reg.applications),
        ("PKG", &reg.load_files),
    ] {
        for e in list {
            let label = match e.kind {
                gp::commands::RegistryKind::SecurityDomain => "SSD",
                _ => label,
            };
            let _ = writeln!(s, "{label}: {} ({})", e.aid, lc_name(e));
            if let Some(p) = e.privileges {
                if !p.is_empty() {
                    let _ = writeln!(s, "     Privileges: {p}");
                }
            }
            if let Some(sd) = &e.associated_sd {
                let _ = writeln!(s, "     Parent:     {sd}");
            }
            if let Some(lf) = &e.load_file {
                let _ = writeln!(s, "     From:       {lf}");
            }
            if let Some(v) = &e.version {
                let _ = writeln!(
                    s,
                    "     Version:    {}",
                    v.iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(".")
                );
            }
            for m in &e.modules {
                let _ = writeln!(s, "     Applet:     {m}");
            }
        }
    }
    s
}

/// PUT KEY of a Delegated Management or DAP verification key (GP 2.3.1 §11.8.2.3, Table
/// 11-16): an RSA public key (`A1` modulus, `A0` exponent) or an ECC P-256 public key (`B0`,
/// `F0` = `00`) under `new_kvn` (`70` token, `73` DAP), key identifier `kid`;
/// `replace_kvn` 0 adds it. An AES key goes with [`put_key_set`]. The card's answer must
/// confirm the key version.
pub fn put_public_key<C: CardChannel>(
    client: &mut GpClient<C>,
    new_kvn: u8,
    kid: u8,
    replace_kvn: u8,
    public: &gp::dm::DmVerifyingKey,
) -> Result<()> {
    use gp::dm::DmVerifyingKey;
    use rsa::traits::PublicKeyParts;
    let data = match public {
        DmVerifyingKey::Rsa(k) => scp::put_key::KeyData::rsa_public(
            &k.n().to_be_bytes_trimmed_vartime(),
            &k.e().to_be_bytes_trimmed_vartime(),
        )?,
        DmVerifyingKey::P256(k) => scp::put_key::KeyData::ecc_public(
            scp::put_key::Curve::P256,
            &k.to_sec1_point(false).to_bytes(),
        )?,
        DmVerifyingKey::Aes(_) => {
            return Err(ClientError::Invalid(
                "an AES key is a secret key: use PUT KEY of a key set".into(),
            ))
        }
    };
    let keys = [data];
    let cmds = scp::put_key::commands(replace_kvn, kid, new_kvn, &keys, client.max_plain_data())?;
    let what = format!("(KID {kid:02X} KVN {new_kvn:02X})");
    let n = cmds.len();
    for (i, cmd) in cmds.iter().enumerate() {
        let r = client.send_ok(Operation::PutKey, cmd, &what)?;
        if i + 1 == n {
            scp::put_key::check_key_data_response(&r.data, new_kvn, &keys)
                .map_err(ClientError::KeysNotConfirmed)?;
        }
    }
    Ok(())
}

/// GENERATE EC KEY (`80 F1 P1=replaced KVN P2=KID`, data `KVN F0 01 <curve>`; the answer
/// `B0 <point>`), the command yubikit's `SecurityDomainSession.generate_ec_key` sends: an
/// SCP11 SD key pair made on the card. Returns PK.SD (checked to be on the curve).
pub fn generate_ec_key<C: CardChannel>(
    client: &mut GpClient<C>,
    key: gp::scp11::KeyRef,
    replace_kvn: u8,
    curve: scp::scp11::Curve,
) -> Result<scp::scp11::PublicKey> {
    let data = [
        vec![key.kvn],
        apdu::tlv::encode(apdu::tlv::Tag::new(0xF0), &[curve.param_ref()]),
    ]
    .concat();
    let cmd = apdu::Command::new(0x80, 0xF1, replace_kvn, key.kid)
        .with_data(data)
        .with_le(256);
    let what = format!("(KID {:02X} KVN {:02X})", key.kid, key.kvn);
    let r = client.send_ok(Operation::GenerateKey, &cmd, &what)?;
    let tlv = apdu::tlv::TlvRef::parse(&r.data).map_err(|e| ClientError::Exchange {
        op: Operation::GenerateKey,
        detail: format!("answer is not B0 <point>: {e}"),
    })?;
    if tlv.tag() != apdu::tlv::Tag::new(0xB0) {
        return Err(ClientError::Exchange {
            op: Operation::GenerateKey,
            detail: format!("answer tag {} is not B0", tlv.tag()),
        });
    }
    Ok(scp::scp11::PublicKey::from_sec1(curve, tlv.value())?)
}

/// PUT KEY of an ECC public key (`B0` point, `F0` curve; GP 2.3.1 §11.8.2.3 Table 11-16,
/// Amendment F): an SCP11 OCE trust anchor (PK.CA-KLOC.ECDSA, KID `10`). `replace_kvn` 0
/// adds a key. The card's answer must confirm the key version.
pub fn put_ec_public_key<C: CardChannel>(
    client: &mut GpClient<C>,
    key: gp::scp11::KeyRef,
    replace_kvn: u8,
    public: &scp::scp11::PublicKey,
) -> Result<()> {
    let curve = match public.curve() {
        scp::scp11::Curve::P256 => scp::put_key::Curve::P256,
        scp::scp11::Curve::P384 => scp::put_key::Curve::P384,
    };
    let data = scp::put_key::KeyData::ecc_public(curve, public.to_sec1())?;
    let keys = [data];
    let cmds = scp::put_key::commands(
        replace_kvn,
        key.kid,
        key.kvn,
        &keys,
        client.max_plain_data(),
    )?;
    let what = format!("(KID {:02X} KVN {:02X})", key.kid, key.kvn);
    let n = cmds.len();
    for (i, cmd) in cmds.iter().enumerate() {
        let r = client.send_ok(Operation::PutKey, cmd, &what)?;
        if i + 1 == n {
            scp::put_key::check_key_data_response(&r.data, key.kvn, &keys)
                .map_err(ClientError::KeysNotConfirmed)?;
        }
    }
    Ok(())
}

/// An SCP11 STORE DATA (`80 E2 90 00`, BER-TLV; certificate bundle `BF21`, allowlist `70`,
/// CA issuer `42`; YubiKey's formats) to the selected SD. Data longer than one command is
/// sent with ISO/IEC 7816-4 command chaining (CLA b5 on all but the last piece, each piece
/// wrapped by the secure channel on its own), as yubikit sends it.
pub fn store_scp11_data<C: CardChannel>(
    client: &mut GpClient<C>,
    data: &gp::scp11::Scp11StoreData,
) -> Result<()> {
    let bytes = data.to_bytes();
    let max = client.max_plain_data().max(1);
    let pieces: Vec<&[u8]> = bytes.chunks(max).collect();
    let n = pieces.len();
    for (i, b) in pieces.into_iter().enumerate() {
        let last = i + 1 == n;
        let cla = if last { 0x80 } else { 0x90 };
        let cmd = apdu::Command::new(cla, gp::commands::ins::STORE_DATA, 0x90, 0x00)
            .with_data(b.to_vec());
        client.send_ok(Operation::StoreData, &cmd, &format!("piece {i} of {n}"))?;
    }
    Ok(())
}
