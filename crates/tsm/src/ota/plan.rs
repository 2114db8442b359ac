//! What a download sends, decided without I/O: the remote scripts for a catalog entry
//! (create the security domain if the card lacks it, then INSTALL [for load], LOAD,
//! INSTALL [for install and make selectable]) packed into SCP80 command packets of at most
//! a configured number of concatenated SMS each.
//!
//! Packing: the load file structure (`C4 len data`, gp's [`LoadFileStructure`]) is cut
//! into LOAD blocks sized to fill every packet to the byte (a block is at most 255 bytes,
//! the compact format's P3), so that every packet but the last fills its SMS and the
//! number of SMS is within one SMS per packet of the minimum.

use apdu::Command;
use gp::aid::Aid;
use gp::cap::CapFile;
use gp::commands::{Install, InstallParams, Load, LoadFileStructure};
use gp::privileges::Privileges;
use ota::packet::Tar;
use ota::script::{encode_compact_commands, CommandScript};
use ota::tpdu::sms_count;

use super::CatalogEntry;
use crate::error::Error;

/// The load file of security domains on GlobalPlatform cards (`A0000001515350`).
pub const SD_LOAD_FILE: [u8; 7] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50];
/// The security domain module (`A000000151535041`).
pub const SD_MODULE: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41];
/// The ISD's remote application management TAR (ETSI TS 101 220 annex D).
pub const ISD_TAR: Tar = Tar([0x00, 0x00, 0x00]);
/// The platform's TAR: the card's download request is addressed to it.
pub const PLATFORM_TAR: Tar = Tar([0xB2, 0xFF, 0xFF]);
/// The SCP11b key the new SD generates: KID `13`, KVN `01`, P-256.
pub const SD_KEY_KID: u8 = 0x13;
/// See [`SD_KEY_KID`].
pub const SD_KEY_KVN: u8 = 0x01;

/// Bytes a CC-protected packet adds to its secured data: CPL 2, CHL 1, SPI 2, KIc, KID,
/// TAR 3, CNTR 5, PCNTR 1, CC 8.
pub const PACKET_OVERHEAD: usize = 24;

/// How packets are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packing {
    /// The most SMS one packet may take (concatenated, 1–255).
    pub max_parts: u8,
    /// 16-bit concatenation references (IEI `08`) instead of 8-bit (`00`).
    pub ref16: bool,
    /// The cipher block (8 for 3DES, 16 for AES): the secured part is padded to it.
    pub block: usize,
}

impl Default for Packing {
    fn default() -> Self {
        Self {
            max_parts: 8,
            ref16: false,
            block: 16,
        }
    }
}

impl Packing {
    /// The largest packet (CPL to the end) that fits `max_parts` SMS.
    pub fn max_packet(&self) -> usize {
        let n = usize::from(self.max_parts.max(1));
        if n == 1 {
            return 137;
        }
        let ie = if self.ref16 { 6 } else { 5 };
        let first = 140 - 1 - ie - 2;
        let later = 140 - 1 - ie;
        first + later * (n - 1)
    }

    /// The most secured data (the script) a packet of [`Packing::max_packet`] holds:
    /// `10 + round_up(6 + 8 + data, block) ≤ max`.
    pub fn max_data(&self) -> usize {
        let room = self.max_packet() - 10;
        let b = self.block.max(1);
        (room / b * b).saturating_sub(14)
    }

    /// The packet length for `data` bytes of script (with CC and ciphering).
    pub fn packet_len(&self, data: usize) -> usize {
        let b = self.block.max(1);
        10 + (14 + data).div_ceil(b) * b
    }

    /// The SMS a packet with `data` bytes of script takes.
    pub fn sms_for(&self, data: usize) -> usize {
        sms_count(self.packet_len(data), self.ref16)
    }
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Creates the application's security domain and its key pair.
    CreateSd,
    /// Part of INSTALL [for load], LOAD, INSTALL [for install].
    Load,
    /// The SCP80 packet that makes the card open its SCP81 (HTTPS) admin session.
    Trigger,
    /// STORE DATA of CERT.SD, the platform CA's certificate of the new SD's public key
    /// (its command is made when the step is sent: it needs PK.SD from the PoR before).
    CertSd,
}

impl StepKind {
    /// The word logged with the message (`ota_messages.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateSd => "create-sd",
            Self::Load => "script",
            Self::Trigger => "trigger",
            Self::CertSd => "cert-sd",
        }
    }

    /// The word logged when the step goes over HTTPS instead (`https-create-sd`,
    /// `https-script`): not resent by SMS time-outs.
    pub fn https_str(self) -> &'static str {
        match self {
            Self::CreateSd => "https-create-sd",
            Self::Load | Self::Trigger | Self::CertSd => "https-script",
        }
    }
}

/// One remote script: one command packet, acknowledged by one PoR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it does.
    pub kind: StepKind,
    /// Where it goes.
    pub tar: Tar,
    /// Its commands.
    pub commands: Vec<Command>,
    /// Expanded format (`AA`) rather than compact.
    pub expanded: bool,
}

impl Step {
    /// The secured data: the script bytes.
    pub fn script(&self) -> Result<Vec<u8>, Error> {
        let r = if self.expanded {
            CommandScript::from_commands(self.commands.clone()).to_bytes()
        } else {
            encode_compact_commands(&self.commands)
        };
        r.map_err(|e| Error::Invalid(format!("remote script: {e}")))
    }
}

fn gp_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("OTA plan: {e}"))
}

/// The same command without Le: the compact format carries case 3 commands (TS 102 226
/// §5.1.1; the card answers the data of a case 4 command with `61xx`).
fn without_le(mut c: Command) -> Command {
    c.le = None;
    c
}

/// The TAR a security domain answers: the last three bytes of its AID (ETSI TS 101 220
/// annex D; the card's `sd_for_tar`).
pub fn sd_tar(sd: &Aid) -> Tar {
    let b = sd.as_bytes();
    Tar([b[b.len() - 3], b[b.len() - 2], b[b.len() - 1]])
}

/// The create-SD steps (docs/OTA.md "Create-SD"), both expanded so that the PoR carries
/// every R-APDU:
/// 1. to the ISD (TAR `000000`): INSTALL [for install and make selectable] of the SD (load
///    file [`SD_LOAD_FILE`], module [`SD_MODULE`], privileges `80`, parameters `C9 00`);
///    the card gives the new SD a copy of the SCP80 key set that verified the packet;
/// 2. to the new SD (its TAR, [`sd_tar`]): GENERATE EC KEY `80 F1 00 13` `01 F0 01 00` (a
///    new P-256 SCP11b key pair, KVN 01) — the ISD cannot generate another SD's key. The
///    PoR's R-APDU is `B0 <PK.SD>`.
pub fn create_sd_steps(sd: &Aid) -> Result<Vec<Step>, Error> {
    let install = Install::ForInstall {
        load_file: Aid::new(&SD_LOAD_FILE).map_err(gp_err)?,
        module: Aid::new(&SD_MODULE).map_err(gp_err)?,
        application: *sd,
        privileges: Privileges::from_bytes(&[0x80]).map_err(gp_err)?,
        params: InstallParams::default().to_bytes(),
        token: Vec::new(),
        make_selectable: true,
    }
    .to_command()
    .map_err(gp_err)?;
    let generate = Command::new(0x80, 0xF1, 0x00, SD_KEY_KID)
        .with_data(vec![SD_KEY_KVN, 0xF0, 0x01, 0x00])
        .with_le(256);
    Ok(vec![
        Step {
            kind: StepKind::CreateSd,
            tar: ISD_TAR,
            commands: vec![install],
            expanded: true,
        },
        Step {
            kind: StepKind::CreateSd,
            tar: sd_tar(sd),
            commands: vec![generate],
            expanded: true,
        },
    ])
}

/// The INSTALL commands for a catalog entry: `gpclient::ops::install_plan` with the SD as
/// the associated security domain and the entry's module, instance, privileges and
/// parameters.
pub fn install_commands(
    entry: &CatalogEntry,
    cap: &CapFile,
) -> Result<(Command, Vec<Command>), Error> {
    if cap.package_aid() != entry.package {
        return Err(Error::Invalid(format!(
            "the CAP's package is {}, the catalog entry's {}",
            cap.package_aid(),
            entry.package
        )));
    }
    let opts = gpclient::ops::InstallOptions {
        to: Some(entry.sd),
        params: entry.params.clone(),
        privileges: Privileges::from_bytes(&entry.privileges).map_err(gp_err)?,
        instance: Some(entry.instance),
        applet: Some(entry.module),
        ..Default::default()
    };
    let (for_load, installs) =
        gpclient::ops::install_plan(cap, &opts, Vec::new()).map_err(gp_err)?;
    let install = installs
        .into_iter()
        .next()
        .ok_or_else(|| Error::Invalid("no applet to install".into()))?;
    // The ISD installs the instance, so it is associated with the ISD; INSTALL [for
    // extradition] hands it to the application's SD, the "storage area" of the source
    // document (GP 2.3.1 §11.5.2.3).
    let extradite = Install::ForExtradition {
        security_domain: entry.sd,
        application: entry.instance,
        params: Vec::new(),
        token: Vec::new(),
    }
    .to_command()
    .map_err(gp_err)?;
    Ok((
        without_le(for_load.to_command().map_err(gp_err)?),
        vec![
            without_le(install.to_command().map_err(gp_err)?),
            without_le(extradite),
        ],
    ))
}

/// Compact-format size of a command: header, P3, data.
fn compact_len(c: &Command) -> usize {
    5 + c.data.len()
}

/// The load steps: INSTALL [for load], the LOAD blocks, INSTALL [for install and make
/// selectable], packed in order into scripts of at most [`Packing::max_data`] bytes
/// (compact format, to the ISD TAR).
pub fn load_steps(
    entry: &CatalogEntry,
    cap: &CapFile,
    packing: &Packing,
) -> Result<Vec<Step>, Error> {
    let (for_load, installs) = install_commands(entry, cap)?;
    let install_len: usize = installs.iter().map(compact_len).sum();
    let max = packing.max_data();
    if max < compact_len(&for_load) + 6 || max < install_len {
        return Err(Error::Invalid(format!(
            "{} SMS per packet hold {max} script bytes: too few for an INSTALL",
            packing.max_parts
        )));
    }
    let structure = LoadFileStructure::new(cap.load_file_data_block()).to_bytes();
    let mut steps = Vec::new();
    let mut current: Vec<Command> = vec![for_load];
    let mut room = max - compact_len(&current[0]);
    let mut rest = structure.as_slice();
    let mut block: u16 = 0;
    let close = |current: &mut Vec<Command>, steps: &mut Vec<Step>| {
        steps.push(Step {
            kind: StepKind::Load,
            tar: ISD_TAR,
            commands: std::mem::take(current),
            expanded: false,
        });
    };
    while !rest.is_empty() {
        if room < 6 {
            close(&mut current, &mut steps);
            room = max;
        }
        let n = rest.len().min(255).min(room - 5);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let p2 = u8::try_from(block)
            .map_err(|_| Error::Invalid("the load file needs more than 256 LOAD blocks".into()))?;
        let load = Load {
            last: rest.is_empty(),
            block: p2,
            data: chunk.to_vec(),
        }
        .to_command()
        .map_err(gp_err)?;
        room -= compact_len(&load);
        current.push(without_le(load));
        block += 1;
    }
    if room < install_len {
        close(&mut current, &mut steps);
    }
    current.extend(installs);
    close(&mut current, &mut steps);
    Ok(steps)
}

/// Every step of a download: the create-SD step when the card lacks the SD, then the load
/// steps.
pub fn plan(
    entry: &CatalogEntry,
    cap: &CapFile,
    sd_missing: bool,
    packing: &Packing,
) -> Result<Vec<Step>, Error> {
    let mut steps = Vec::new();
    if sd_missing {
        steps.extend(create_sd_steps(&entry.sd)?);
    }
    steps.extend(load_steps(entry, cap, packing)?);
    Ok(steps)
}

/// Adds the CERT.SD step after the create-SD steps (none: nothing added): to the new SD
/// (its TAR), one STORE DATA `80 E2 90 00` of `A6{83 13 01} BF21{7F21 …}` made by
/// [`cert_sd_command`] when it is sent.
pub fn with_cert_step(mut steps: Vec<Step>, sd: &Aid) -> Vec<Step> {
    let Some(at) = steps.iter().rposition(|s| s.kind == StepKind::CreateSd) else {
        return steps;
    };
    let expanded = steps[at].expanded;
    steps.insert(
        at + 1,
        Step {
            kind: StepKind::CertSd,
            tar: sd_tar(sd),
            commands: vec![Command::new(0x80, 0xE2, 0x90, 0x00)],
            expanded,
        },
    );
    steps
}

/// The STORE DATA of CERT.SD for the new SD's key ([`SD_KEY_KID`], [`SD_KEY_KVN`]): one
/// command (the compact format's P3 takes up to 255 bytes; a P-256 `7F21` certificate
/// with its `A6`/`BF21` wrapping is about 230).
pub fn cert_sd_command(cert: &[u8]) -> Result<Command, Error> {
    let data = gp::scp11::Scp11StoreData::CertificateBundle {
        key: gp::scp11::KeyRef::new(SD_KEY_KID, SD_KEY_KVN),
        certificates: vec![cert.to_vec()],
    }
    .to_bytes();
    if data.len() > 255 {
        return Err(Error::Invalid(format!(
            "CERT.SD: {} bytes of STORE DATA, more than one command holds",
            data.len()
        )));
    }
    Ok(Command::new(0x80, 0xE2, 0x90, 0x00).with_data(data))
}

/// Every script of a download over SCP81 (Amendment B): the create-SD steps when the
/// card lacks the SD, then one script with INSTALL [for load], every LOAD block (240
/// bytes) and the INSTALLs — all in the expanded format, each answered by its response
/// script. A step whose TAR is [`ISD_TAR`] runs under the ISD (whose PSK secures the
/// session); the others target the application's SD (`X-Admin-Targeted-Application`).
pub fn https_plan(
    entry: &CatalogEntry,
    cap: &CapFile,
    sd_missing: bool,
) -> Result<Vec<Step>, Error> {
    let mut steps = Vec::new();
    if sd_missing {
        steps.extend(create_sd_steps(&entry.sd)?);
    }
    let (for_load, installs) = install_commands(entry, cap)?;
    let mut commands = vec![for_load];
    commands.extend(
        gp::commands::load_blocks(&cap.load_file_data_block(), 240)
            .map_err(gp_err)?
            .into_iter()
            .map(without_le),
    );
    commands.extend(installs);
    steps.push(Step {
        kind: StepKind::Load,
        tar: ISD_TAR,
        commands,
        expanded: true,
    });
    Ok(steps)
}

/// The SMS the steps take, as packed.
pub fn sms_total(steps: &[Step], packing: &Packing) -> Result<usize, Error> {
    steps
        .iter()
        .map(|s| Ok(packing.sms_for(s.script()?.len())))
        .sum()
}

/// The fewest SMS that could carry the same scripts: all of them in one packet
/// (ignoring the 255-part limit and PoR round trips), with one INSTALL [for load] and
/// LOAD blocks of 255 bytes.
pub fn sms_minimum(entry: &CatalogEntry, cap: &CapFile, packing: &Packing) -> Result<usize, Error> {
    let (for_load, installs) = install_commands(entry, cap)?;
    let structure = LoadFileStructure::new(cap.load_file_data_block()).to_bytes();
    let loads = structure.len() + 5 * structure.len().div_ceil(255);
    let data = compact_len(&for_load) + loads + installs.iter().map(compact_len).sum::<usize>();
    Ok(sms_count(packing.packet_len(data), packing.ref16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cap: &CapFile) -> CatalogEntry {
        let module = cap.applet_aids()[0];
        CatalogEntry {
            tenant: "acme".into(),
            app: "wallet".into(),
            title: "Wallet".into(),
            package: cap.package_aid(),
            module,
            instance: module,
            sd: Aid::new(&[0xA0, 0x00, 0x00, 0x05, 0x59, 0x10, 0x10, 0x01]).unwrap(),
            privileges: vec![0x00],
            params: vec![],
            created_ms: 0,
        }
    }

    #[test]
    fn packing_figures() {
        let p = Packing::default();
        assert_eq!(p.max_packet(), 132 + 134 * 7);
        assert!(p.packet_len(p.max_data()) <= p.max_packet());
        assert!(p.packet_len(p.max_data() + 1) > p.max_packet());
        let one = Packing { max_parts: 1, ..p };
        assert_eq!(one.sms_for(one.max_data()), 1);
    }

    #[test]
    fn ten_kb_cap_packs_near_the_minimum() {
        let cap = CapFile::from_bytes(&gp::cap::testing::synthetic_cap(10 * 1024)).unwrap();
        let e = entry(&cap);
        let p = Packing::default();
        let steps = plan(&e, &cap, true, &p).unwrap();
        assert_eq!(steps[0].kind, StepKind::CreateSd);
        assert_eq!(steps[1].kind, StepKind::CreateSd);
        assert_eq!(steps[1].tar, sd_tar(&e.sd));
        // Every load step fits its packet; the LOAD blocks are numbered 0.. with the last
        // flagged, and carry the load file structure exactly.
        let mut joined = Vec::new();
        let mut next = 0u8;
        for s in &steps[2..] {
            assert!(p.packet_len(s.script().unwrap().len()) <= p.max_packet());
            for c in &s.commands {
                if c.ins == 0xE8 {
                    assert_eq!(c.p2, next);
                    next += 1;
                    joined.extend_from_slice(&c.data);
                }
            }
        }
        let last_load = steps
            .iter()
            .flat_map(|s| s.commands.iter())
            .rfind(|c| c.ins == 0xE8)
            .unwrap();
        assert_eq!(last_load.p1, 0x80);
        assert_eq!(
            joined,
            LoadFileStructure::new(cap.load_file_data_block()).to_bytes()
        );
        let sent = sms_total(&steps[1..], &p).unwrap();
        let min = sms_minimum(&e, &cap, &p).unwrap();
        eprintln!(
            "10 KB CAP: {} load packets, {sent} SMS (minimum {min}), + {} for the SD",
            steps.len() - 1,
            sms_total(&steps[..1], &p).unwrap()
        );
        assert!(sent < min + steps.len(), "{sent} vs {min}");
    }
}
