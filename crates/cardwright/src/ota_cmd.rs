//! `cardwright ota …`: over-the-air application download (issue 12, `docs/OTA.md`).
//!
//! * `ota encode` / `ota decode`: SCP80 secured packets, PoRs and OTA SMS, made and
//!   explained offline from keys given on the command line (no database);
//! * `ota catalog|enrol|push|status`: the platform's OTA records, over the database.

use anyhow::{anyhow, bail, Context, Result};
use apdu::{hex, parse_hex, Command};
use clap::{Args, Subcommand, ValueEnum};
use ota::packet::{
    self, Algorithm, CommandHeader, Counter, DesMode, Integrity, Key, KeySet, Kic, Kid,
    OpenedCommand, OpenedResponse, PacketInfo, PorSecurity, Spi, Tar,
};
use ota::script::{self, CommandScript, CommandTlv};
use ota::tpdu::{
    self, Address, ConcatRef, PacketKind, Progress, Reassembler, SmsDeliver, SmsSubmit, Timestamp,
    UserData,
};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct OtaCmd {
    #[command(subcommand)]
    pub op: OtaOp,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum OtaOp {
    /// Secure APDUs into an SCP80 command packet (ETSI TS 102 225 / 3GPP TS 31.115) and
    /// print it in hex (CPL to the padding); with --tpdu the SMS-DELIVER TPDU(s) instead.
    Encode(EncodeArgs),
    /// Check and explain a command packet, a response packet (PoR), the user data of an
    /// OTA SMS or whole SMS-DELIVER/SUBMIT TPDUs (several: the parts of a concatenated
    /// message): every field in words, the CC/RC checked, the script inside.
    Decode(DecodeArgs),
    /// What cards may request over the air: add, list, remove.
    Catalog(crate::ota_admin::CatalogCmd),
    /// Give a card its OTA identity (ICCID, MSISDN, SCP80 key set version).
    Enrol(crate::ota_admin::EnrolArgs),
    /// Start a download to a card from the platform: opens a pending session that
    /// `serve --ota` sends.
    Push(crate::ota_admin::PushArgs),
    /// A card's OTA sessions with their SMS and PoRs.
    Status(crate::ota_admin::StatusArgs),
}

/// The script format of `ota encode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScriptFormat {
    /// TS 102 226 §5.1: the APDUs one after the other (T=0 form, no case 4).
    Compact,
    /// TS 102 226 §5.2: a Command Scripting template `AA { 22 C-APDU … }`.
    Expanded,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Security parameter indicator, 2 bytes hex (e.g. 1629: CC, ciphered, counter higher;
    /// PoR required with CC via SMS-SUBMIT).
    #[arg(long, value_parser = parse_spi)]
    pub spi: Spi,
    /// KIc: key version (high nibble) and ciphering algorithm (low nibble), hex (e.g. 22:
    /// key version 2, AES-CBC; 15: key version 1, 3DES 2-key).
    #[arg(long, value_parser = parse_hex_u8)]
    pub kic: u8,
    /// KID: key version and CC (or RC) algorithm, hex.
    #[arg(long, value_parser = parse_hex_u8)]
    pub kid: u8,
    /// Toolkit application reference, 3 bytes hex (000000 or B20100: the ISD).
    #[arg(long, value_parser = parse_tar)]
    pub tar: Tar,
    /// Counter (CNTR): decimal, or hex with 0x.
    #[arg(long, value_parser = parse_counter)]
    pub counter: Counter,
    /// Ciphering key (KIc), hex.
    #[arg(long, hide_env_values = true)]
    pub key_enc: Option<String>,
    /// Checksum key (KID), hex.
    #[arg(long, hide_env_values = true)]
    pub key_mac: Option<String>,
    /// Script format of the APDUs.
    #[arg(long, value_enum, default_value_t = ScriptFormat::Compact)]
    pub script: ScriptFormat,
    /// Print the SMS-DELIVER TPDU(s) (PID 7F, DCS F6, UDH 70; concatenated when the packet
    /// needs more than one SMS), one per line, instead of the packet.
    #[arg(long)]
    pub tpdu: bool,
    /// The originating address of the SMS-DELIVER (international number, digits).
    #[arg(long, default_value = "4912345", requires = "tpdu")]
    pub originator: String,
    /// Concatenation reference (0-255; default: the counter's low byte).
    #[arg(long, requires = "tpdu")]
    pub concat_ref: Option<u8>,
    /// Secured data in hex instead of APDUs (for scripts made elsewhere).
    #[arg(long, conflicts_with = "apdus")]
    pub data: Option<String>,
    /// The command APDUs (hex), in order.
    #[arg(required_unless_present = "data")]
    pub apdus: Vec<String>,
}

/// What `ota decode` reads its input as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecodeAs {
    /// A command packet, CPL to the end.
    Command,
    /// A response packet (PoR), RPL to the end.
    Response,
    /// The user data of an OTA SMS (`02 70 00 …` or `02 71 00 …`).
    Ud,
    /// SMS-DELIVER or SMS-SUBMIT TPDU(s).
    Tpdu,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Ciphering key (KIc), hex.
    #[arg(long, hide_env_values = true)]
    pub key_enc: Option<String>,
    /// Checksum key (KID), hex.
    #[arg(long, hide_env_values = true)]
    pub key_mac: Option<String>,
    /// Read the input as this (default: detected).
    #[arg(long = "as", value_enum)]
    pub as_: Option<DecodeAs>,
    /// For a PoR: the SPI of the command it answers (its second byte says how the PoR is
    /// secured); without it the PoR's security is found by trying what the keys allow.
    #[arg(long, value_parser = parse_spi)]
    pub spi: Option<Spi>,
    /// For a PoR: the KIc of the command it answers (hex).
    #[arg(long, value_parser = parse_hex_u8)]
    pub kic: Option<u8>,
    /// For a PoR: the KID of the command it answers (hex).
    #[arg(long, value_parser = parse_hex_u8)]
    pub kid: Option<u8>,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
    /// The bytes, in hex; several TPDUs are the parts of one concatenated message.
    #[arg(required = true)]
    pub hex: Vec<String>,
}

pub fn run(cmd: OtaCmd) -> Result<()> {
    match cmd.op {
        OtaOp::Encode(a) => {
            for line in encode(&a)? {
                println!("{line}");
            }
            Ok(())
        }
        OtaOp::Decode(a) => {
            let d = decode(&a)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&d.json)?);
            } else {
                print!("{}", d.text);
            }
            match d.failure {
                Some(f) => Err(anyhow!(f)),
                None => Ok(()),
            }
        }
        OtaOp::Catalog(c) => crate::ota_admin::run_catalog(c),
        OtaOp::Enrol(a) => crate::ota_admin::run_enrol(a),
        OtaOp::Push(a) => crate::ota_admin::run_push(a),
        OtaOp::Status(a) => crate::ota_admin::run_status(a),
    }
}

// ---------------------------------------------------------------------------------------
// Argument parsers
// ---------------------------------------------------------------------------------------

fn hex_exact<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    let b = parse_hex(s).map_err(|e| format!("{what} '{s}': {e}"))?;
    <[u8; N]>::try_from(b.as_slice())
        .map_err(|_| format!("{what} '{s}': {} bytes, {N} expected", b.len()))
}

fn parse_spi(s: &str) -> Result<Spi, String> {
    Ok(Spi::from_bytes(hex_exact::<2>(s, "SPI")?))
}

fn parse_hex_u8(s: &str) -> Result<u8, String> {
    let t = s.trim_start_matches("0x").trim_start_matches("0X");
    Ok(hex_exact::<1>(t, "byte")?[0])
}

fn parse_tar(s: &str) -> Result<Tar, String> {
    Ok(Tar(hex_exact::<3>(s, "TAR")?))
}

/// A counter: decimal, or hex after `0x`; at most 2^40 − 1.
pub fn parse_counter(s: &str) -> Result<Counter, String> {
    let t = s.trim();
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    }
    .map_err(|_| format!("counter '{s}': a decimal number, or hex after 0x"))?;
    Counter::from_u64(v).ok_or_else(|| format!("counter '{s}': above 2^40 - 1"))
}

fn key_of(hex_key: Option<&str>, what: &str) -> Result<Option<Key>> {
    hex_key
        .map(|h| {
            let b = parse_hex(h).with_context(|| format!("{what}: not hex"))?;
            if !matches!(b.len(), 8 | 16 | 24 | 32) {
                bail!("{what}: {} bytes; 8, 16, 24 or 32 expected", b.len());
            }
            Ok(Key::new(b))
        })
        .transpose()
}

fn keys_of(enc: Option<&str>, mac: Option<&str>) -> Result<KeySet> {
    Ok(KeySet {
        kic: key_of(enc, "--key-enc")?,
        kid: key_of(mac, "--key-mac")?,
    })
}

// ---------------------------------------------------------------------------------------
// encode
// ---------------------------------------------------------------------------------------

/// The secured data of `ota encode`: the APDUs as a script in the chosen format.
pub fn script_bytes(apdus: &[Command], format: ScriptFormat) -> Result<Vec<u8>> {
    Ok(match format {
        ScriptFormat::Compact => {
            // The compact format has no room for Le with data (TS 102 226 §5.1.1): the
            // card answers such a command with 61xx; drop Le and say so.
            let mut v = apdus.to_vec();
            for (i, c) in v.iter_mut().enumerate() {
                if c.case() == 4 && !c.is_extended() {
                    eprintln!(
                        "note: APDU {} sent without its Le in the compact format",
                        i + 1
                    );
                    c.le = None;
                }
            }
            script::encode_compact_commands(&v)?
        }
        ScriptFormat::Expanded => CommandScript::from_commands(apdus.to_vec()).to_bytes()?,
    })
}

fn encode(a: &EncodeArgs) -> Result<Vec<String>> {
    let data = match &a.data {
        Some(d) => parse_hex(d).context("--data")?,
        None => {
            let apdus = a
                .apdus
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let b = parse_hex(h).with_context(|| format!("APDU {}: not hex", i + 1))?;
                    Command::parse(&b).with_context(|| format!("APDU {} ({h})", i + 1))
                })
                .collect::<Result<Vec<_>>>()?;
            script_bytes(&apdus, a.script)?
        }
    };
    let header = CommandHeader {
        spi: a.spi,
        kic: Kic::from_byte(a.kic),
        kid: Kid::from_byte(a.kid),
        tar: a.tar,
        counter: a.counter,
    };
    let keys = keys_of(a.key_enc.as_deref(), a.key_mac.as_deref())?;
    let packet = packet::secure_command(&header, &keys, &data).context("securing the packet")?;
    if !a.tpdu {
        return Ok(vec![hex(&packet)]);
    }
    let reference = ConcatRef::Eight(a.concat_ref.unwrap_or(a.counter.0[4]));
    let parts = tpdu::split_packet(PacketKind::Command, &packet, reference)
        .context("splitting the packet into SMS")?;
    let originator = Address::international(
        a.originator
            .strip_prefix('+')
            .unwrap_or(a.originator.as_str()),
    );
    let scts = Timestamp::utc(time::OffsetDateTime::now_utc());
    parts
        .into_iter()
        .map(|ud| {
            Ok(hex(&SmsDeliver::ota(originator.clone(), scts, ud)
                .encode()
                .context("SMS-DELIVER")?))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------------------

/// What `ota decode` found: the explanation in words, the same as JSON, and the failure
/// (the exit status) if a check failed.
pub struct Decoded {
    /// Lines for a person.
    pub text: String,
    /// The same for machines.
    pub json: Value,
    /// Why the input does not check out (CC, counter, format), if it does not.
    pub failure: Option<String>,
}

/// Which packet a byte string is, by its length fields: a command packet has CPL =
/// length − 2 and CHL 13 + RC/CC length (13, 15, 17, 21); a response packet RPL =
/// length − 2 and RHL 10 + that length (10, 12, 14, 18). The two sets do not overlap.
fn sniff_packet(b: &[u8]) -> Option<PacketKind> {
    if b.len() < 13 || u16::from_be_bytes([b[0], b[1]]) as usize != b.len() - 2 {
        return None;
    }
    match b[2] {
        13 | 15 | 17 | 21 => Some(PacketKind::Command),
        10 | 12 | 14 | 18 => Some(PacketKind::Response),
        _ => None,
    }
}

/// Whether the bytes look like OTA SMS user data: a header holding IEI 70 or 71.
fn sniff_ud(b: &[u8]) -> bool {
    tpdu::UserDataHeader::decode_prefix(b)
        .map(|(h, _)| h.packet_kind().is_some() || h.concat().is_some())
        .unwrap_or(false)
}

fn decode(a: &DecodeArgs) -> Result<Decoded> {
    let inputs = a
        .hex
        .iter()
        .map(|h| parse_hex(h).with_context(|| format!("'{h}' is not hex")))
        .collect::<Result<Vec<_>>>()?;
    let keys = keys_of(a.key_enc.as_deref(), a.key_mac.as_deref())?;
    let first = &inputs[0];
    let kind = match a.as_ {
        Some(k) => k,
        None if inputs.len() > 1 => DecodeAs::Tpdu,
        None => match sniff_packet(first) {
            Some(PacketKind::Command) => DecodeAs::Command,
            Some(PacketKind::Response) => DecodeAs::Response,
            None if sniff_ud(first) => DecodeAs::Ud,
            None if SmsDeliver::decode(first).is_ok() || SmsSubmit::decode(first).is_ok() => {
                DecodeAs::Tpdu
            }
            None => bail!(
                "not a command packet, response packet, OTA SMS user data or SMS TPDU \
                 (force one with --as)"
            ),
        },
    };
    let mut lines = Vec::new();
    let mut j = json!({});
    let (packet_kind, packet) = match kind {
        DecodeAs::Command | DecodeAs::Response => {
            if inputs.len() > 1 {
                bail!("one packet at a time (several inputs are TPDU parts)");
            }
            let k = if kind == DecodeAs::Command {
                PacketKind::Command
            } else {
                PacketKind::Response
            };
            (k, first.clone())
        }
        DecodeAs::Ud => {
            if inputs.len() > 1 {
                bail!("one user data at a time (several inputs are TPDU parts)");
            }
            let ud = UserData::decode(true, tpdu::Dcs::CLASS2_8BIT, first.len() as u8, first)
                .context("user data")?;
            lines.push(format!("SMS user data: {}", describe_udh(&ud)));
            match ud.header.as_ref().and_then(|h| h.packet_kind()) {
                Some(k) if ud.header.as_ref().and_then(|h| h.concat()).is_none() => {
                    (k, ud.payload.clone())
                }
                _ => bail!("a concatenated part: give every TPDU of the message"),
            }
        }
        DecodeAs::Tpdu => {
            let (k, p, tp_lines, tp_json) = reassemble_tpdus(&inputs)?;
            lines.extend(tp_lines);
            j["sms"] = tp_json;
            (k, p)
        }
    };
    let mut failure = None;
    match packet_kind {
        PacketKind::Command => {
            j["kind"] = json!("command");
            explain_command(&packet, &keys, &mut lines, &mut j, &mut failure);
        }
        PacketKind::Response => {
            j["kind"] = json!("response");
            let forced = por_security_forced(a)?;
            explain_response(&packet, &keys, forced, &mut lines, &mut j, &mut failure);
        }
    }
    if let Some(f) = &failure {
        j["error"] = json!(f);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(Decoded {
        text,
        json: j,
        failure,
    })
}

fn describe_udh(ud: &UserData) -> String {
    let Some(h) = &ud.header else {
        return "no user data header".into();
    };
    let mut parts = Vec::new();
    if let Some(k) = h.packet_kind() {
        parts.push(match k {
            PacketKind::Command => "IEI 70 (command packet)".to_string(),
            PacketKind::Response => "IEI 71 (response packet)".to_string(),
        });
    }
    if let Some((r, total, seq)) = h.concat() {
        let r = match r {
            ConcatRef::Eight(r) => format!("8-bit reference {r}"),
            ConcatRef::Sixteen(r) => format!("16-bit reference {r}"),
        };
        parts.push(format!("concatenated part {seq} of {total}, {r}"));
    }
    format!(
        "header {} bytes: {}; {} payload bytes",
        h.encoded_len(),
        parts.join(", "),
        ud.payload.len()
    )
}

type Reassembled = (PacketKind, Vec<u8>, Vec<String>, Value);

/// Decodes TPDUs (SMS-DELIVER or SMS-SUBMIT) and joins the packet they carry.
fn reassemble_tpdus(inputs: &[Vec<u8>]) -> Result<Reassembled> {
    let mut lines = Vec::new();
    let mut parts = Vec::new();
    let mut r = Reassembler::new();
    let mut done = None;
    for (i, b) in inputs.iter().enumerate() {
        let (what, addr, pid, dcs, ud) = if let Ok(d) = SmsDeliver::decode(b) {
            ("SMS-DELIVER", d.originator, d.pid, d.dcs, d.user_data)
        } else {
            let s = SmsSubmit::decode(b)
                .with_context(|| format!("TPDU {}: neither SMS-DELIVER nor SMS-SUBMIT", i + 1))?;
            ("SMS-SUBMIT", s.destination, s.pid, s.dcs, s.user_data)
        };
        let who = addr.digits().unwrap_or("(alphanumeric)").to_string();
        let party = if what == "SMS-DELIVER" { "from" } else { "to" };
        lines.push(format!(
            "{what} {party} +{who}: PID {:02X}{}, DCS {:02X}{}; {}",
            pid.0,
            if pid == tpdu::Pid::SIM_DATA_DOWNLOAD {
                " (SIM data download)"
            } else {
                ""
            },
            dcs.0,
            if dcs == tpdu::Dcs::CLASS2_8BIT {
                " (class 2, 8-bit)"
            } else {
                ""
            },
            describe_udh(&ud)
        ));
        parts.push(json!({"type": what, "address": who, "pid": pid.0, "dcs": dcs.0}));
        match r
            .push(&addr, &ud)
            .with_context(|| format!("TPDU {}", i + 1))?
        {
            Progress::Complete { kind, packet } => done = Some((kind, packet)),
            Progress::Incomplete { .. } | Progress::Duplicate { .. } => {}
        }
    }
    let pending: Vec<_> = r.pending().cloned().collect();
    let Some((kind, packet)) = done else {
        let missing = pending
            .first()
            .and_then(|k| r.missing(k))
            .unwrap_or_default();
        bail!(
            "the concatenated message is incomplete: part(s) {:?} missing",
            missing
        );
    };
    Ok((kind, packet, lines, Value::Array(parts)))
}

fn explain_command(
    packet: &[u8],
    keys: &KeySet,
    lines: &mut Vec<String>,
    j: &mut Value,
    failure: &mut Option<String>,
) {
    let info = match PacketInfo::parse(packet) {
        Ok(i) => i,
        Err(e) => {
            *failure = Some(format!("command packet: {e}"));
            return;
        }
    };
    lines.push(format!(
        "command packet, {} bytes: CPL {} CHL {}",
        packet.len(),
        info.cpl,
        info.chl
    ));
    lines.push(format!("  {}", info.spi));
    lines.push(format!("  {}", info.kic));
    lines.push(format!("  {}", info.kid.describe(info.spi.integrity)));
    lines.push(format!("  TAR {}{}", info.tar, tar_meaning(info.tar)));
    j["spi"] = json!(hex(&info.spi.to_bytes()));
    j["kic"] = json!(format!("{:02X}", info.kic.to_byte()));
    j["kid"] = json!(format!("{:02X}", info.kid.to_byte()));
    j["tar"] = json!(info.tar.to_string());
    j["spi_text"] = json!(info.spi.to_string());
    let opened = match open_any_counter(packet, keys) {
        Ok(o) => o,
        Err(e) => {
            let why = match e {
                packet::Error::ChecksumMismatch => match info.spi.integrity {
                    Integrity::Cc => "CC does not verify: wrong KID key or tampered".to_string(),
                    _ => "RC does not verify: the packet was altered".to_string(),
                },
                packet::Error::MissingKey(k) => format!(
                    "no {k} key: give --key-{}",
                    if k.contains("ciph") || k.contains("KIc") {
                        "enc"
                    } else {
                        "mac"
                    }
                ),
                other => other.to_string(),
            };
            lines.push(format!("  not opened: {why}"));
            *failure = Some(why);
            return;
        }
    };
    let h = &opened.header;
    lines.push(format!(
        "  CNTR {} ({}): {}",
        h.counter,
        h.counter.value(),
        h.spi.counter
    ));
    lines.push(format!("  PCNTR {} padding byte(s)", opened.pcntr));
    if !opened.checksum.is_empty() {
        lines.push(format!(
            "  {} {} verified",
            match h.spi.integrity {
                Integrity::Cc => "CC",
                _ => "RC",
            },
            hex(&opened.checksum)
        ));
    }
    if h.spi.ciphering {
        lines.push("  deciphered with the KIc key".into());
    }
    j["counter"] = json!(h.counter.value());
    j["pcntr"] = json!(opened.pcntr);
    j["checksum"] = json!(hex(&opened.checksum));
    j["verified"] = json!(true);
    j["data"] = json!(hex(&opened.data));
    explain_script(&opened, lines, j);
}

/// Opens a command packet whatever its counter: the stored counter the counter mode
/// needs to accept it is taken from the packet (the CC is checked before the counter,
/// so a counter error means the checksum verified).
fn open_any_counter(packet: &[u8], keys: &KeySet) -> Result<OpenedCommand, packet::Error> {
    match packet::open_command(packet, keys, Counter::ZERO) {
        Err(packet::Error::CounterHigh { received, .. })
        | Err(packet::Error::CounterLow { received, .. })
            if received.value() > 0 =>
        {
            let stored = Counter::from_u64(received.value() - 1).unwrap_or(Counter::ZERO);
            packet::open_command(packet, keys, stored)
        }
        other => other,
    }
}

fn tar_meaning(tar: Tar) -> &'static str {
    match tar.0 {
        [0, 0, 0] => " (issuer security domain, remote application management)",
        [0xB2, 0x01, 0x00] => " (issuer security domain)",
        [0xB0, 0x00, 0x00..=0xFF] => " (remote file management)",
        [0xB2, 0xFF, 0xFF] => " (Cardwright platform: download request)",
        _ => "",
    }
}

fn explain_script(opened: &OpenedCommand, lines: &mut Vec<String>, j: &mut Value) {
    let data = &opened.data;
    if data.is_empty() {
        lines.push("  no secured data".into());
        return;
    }
    if opened.header.tar == Tar([0xB2, 0xFF, 0xFF]) {
        lines.push(format!(
            "  data ({} bytes) {}: download request {}",
            data.len(),
            hex(data),
            describe_request(data)
        ));
        return;
    }
    let (format, commands) = match data[0] {
        script::TAG_COMMAND_SCRIPT | script::TAG_COMMAND_SCRIPT_INDEFINITE => {
            match CommandScript::parse(data) {
                Ok(s) => {
                    for item in &s.items {
                        if let CommandTlv::ScriptChaining(v)
                        | CommandTlv::ImmediateAction(v)
                        | CommandTlv::ErrorAction(v) = item
                        {
                            lines.push(format!("  script TLV {}", hex(v)));
                        }
                    }
                    ("expanded", s.commands().cloned().collect::<Vec<_>>())
                }
                Err(e) => {
                    lines.push(format!("  data {} (not a script: {e})", hex(data)));
                    return;
                }
            }
        }
        _ => match script::decode_compact_commands(data) {
            Ok(c) => ("compact", c),
            Err(e) => {
                lines.push(format!(
                    "  data ({} bytes) {} (not a compact script: {e})",
                    data.len(),
                    hex(data)
                ));
                return;
            }
        },
    };
    lines.push(format!(
        "  {format} script (TS 102 226), {} APDU(s):",
        commands.len()
    ));
    let mut apdus = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        let b = c.to_bytes().unwrap_or_default();
        let what = describe_apdu(c);
        lines.push(format!("    {}. {}  {what}", i + 1, hex(&b)));
        apdus.push(json!({"apdu": hex(&b), "meaning": what}));
    }
    j["script"] = json!({"format": format, "apdus": apdus});
}

fn describe_request(data: &[u8]) -> String {
    match apdu::tlv::TlvRef::parse(data) {
        Ok(t) if t.tag().value() == 0xE1 => {
            let mut out = Vec::new();
            if let Ok(children) = apdu::tlv::parse_all_ref(t.value()) {
                for c in children {
                    match c.tag().value() {
                        0x80 => out.push(format!(
                            "application '{}'",
                            String::from_utf8_lossy(c.value())
                        )),
                        0x4F => out.push(format!("application id {}", hex(c.value()))),
                        other => out.push(format!("tag {other:02X} {}", hex(c.value()))),
                    }
                }
            }
            out.join(", ")
        }
        _ => "(not an E1 template)".into(),
    }
}

/// A GlobalPlatform / ISO command in words.
pub fn describe_apdu(c: &Command) -> String {
    use gp::commands::Install;
    match ((), c.ins) {
        (_, 0xE6) => match Install::parse(c) {
            Ok(Install::ForLoad {
                load_file,
                security_domain,
                hash,
                ..
            }) => format!(
                "INSTALL [for load] of load file {load_file}{}{}",
                security_domain
                    .map(|s| format!(", associated with SD {s}"))
                    .unwrap_or_default(),
                if hash.is_empty() {
                    String::new()
                } else {
                    format!(", hash {}", hex(&hash))
                }
            ),
            Ok(Install::ForInstall {
                load_file,
                module,
                application,
                privileges,
                params,
                make_selectable,
                ..
            }) => format!(
                "INSTALL [for install{}] of {application} from module {module} of {load_file}, \
                 privileges {privileges}, parameters {}",
                if make_selectable {
                    " and make selectable"
                } else {
                    ""
                },
                hex(&params)
            ),
            Ok(Install::ForPersonalization { application }) => {
                format!("INSTALL [for personalization] of {application}: what follows goes to it")
            }
            Ok(other) => format!("INSTALL P1 {:02X}: {other:?}", other.p1()),
            Err(e) => format!("INSTALL (unreadable: {e})"),
        },
        (_, 0xE8) => format!(
            "LOAD block {}{}, {} bytes",
            c.p2,
            if c.p1 & 0x80 != 0 { " (last)" } else { "" },
            c.data.len()
        ),
        (_, 0xF1) => {
            let curve = match c.data.as_slice() {
                [_, 0xF0, 0x01, 0x00] | [_] => "P-256",
                [_, 0xF0, 0x01, 0x03] => "brainpoolP256r1",
                _ => "curve as coded",
            };
            format!(
                "GENERATE EC KEY: a new {curve} key pair KID {:02X} KVN {:02X}{} on the card",
                c.p2,
                c.data.first().copied().unwrap_or(0),
                if c.p1 == 0 {
                    String::new()
                } else {
                    format!(", replacing KVN {:02X}", c.p1)
                }
            )
        }
        (_, 0xE4) => format!("DELETE {}", hex(&c.data)),
        (_, 0xD8) => format!("PUT KEY, key version {:02X}", c.p1),
        (_, 0xE2) => format!("STORE DATA block {}, {} bytes", c.p2, c.data.len()),
        (_, 0xF2) => format!("GET STATUS P1 {:02X}", c.p1),
        (_, 0xF0) => format!("SET STATUS P1 {:02X} P2 {:02X}", c.p1, c.p2),
        (_, 0xCA) | (_, 0xCB) => format!("GET DATA {:02X}{:02X}", c.p1, c.p2),
        (_, 0xA4) => format!("SELECT {}", hex(&c.data)),
        (_, 0xB0) => "READ BINARY".into(),
        (_, 0xD6) => "UPDATE BINARY".into(),
        (_, 0xC0) => "GET RESPONSE".into(),
        _ => format!("INS {:02X}", c.ins),
    }
}

fn por_security_forced(a: &DecodeArgs) -> Result<Option<PorSecurity>> {
    let Some(spi) = a.spi else {
        if a.kic.is_some() || a.kid.is_some() {
            bail!("--kic/--kid for a PoR need --spi too");
        }
        return Ok(None);
    };
    let (Some(kic), Some(kid)) = (a.kic, a.kid) else {
        bail!("--spi for a PoR needs --kic and --kid too");
    };
    Ok(Some(
        CommandHeader {
            spi,
            kic: Kic::from_byte(kic),
            kid: Kid::from_byte(kid),
            tar: Tar::default(),
            counter: Counter::ZERO,
        }
        .por_security(),
    ))
}

/// The securities a PoR may carry, given the keys: ciphered or not, CC or none, with the
/// algorithms the key sizes allow. The unsecured PoR of a security error comes out of any.
fn candidate_securities(keys: &KeySet) -> Vec<(PorSecurity, String)> {
    fn algorithms(k: Option<&Key>) -> Vec<Algorithm> {
        match k.map(Key::len) {
            Some(8) => vec![Algorithm::Des(DesMode::Cbc)],
            Some(16) => vec![Algorithm::Aes, Algorithm::Des(DesMode::Tdes2Key)],
            Some(24) => vec![Algorithm::Des(DesMode::Tdes3Key), Algorithm::Aes],
            Some(32) => vec![Algorithm::Aes],
            _ => vec![],
        }
    }
    let mut out = Vec::new();
    let cc_algs = algorithms(keys.kid.as_ref());
    let c_algs = algorithms(keys.kic.as_ref());
    for cc in cc_algs.iter().map(Some).chain([None]) {
        for ci in c_algs.iter().map(Some).chain([None]) {
            let kid = cc.map_or(Kid::from_byte(0), |a| Kid::for_cc(0, *a));
            let kic = ci.map_or(Kic::from_byte(0), |a| Kic::new(0, *a));
            let describe = format!(
                "{}{}",
                cc.map_or("no CC".to_string(), |a| format!(
                    "CC {}",
                    Kid::for_cc(0, *a)
                        .describe(Integrity::Cc)
                        .split(", ")
                        .nth(1)
                        .unwrap_or("")
                )),
                ci.map_or(", not ciphered".to_string(), |a| format!(
                    ", ciphered {}",
                    Kic::new(0, *a).to_string().split(", ").nth(1).unwrap_or("")
                )),
            );
            out.push((
                PorSecurity {
                    integrity: if cc.is_some() {
                        Integrity::Cc
                    } else {
                        Integrity::None
                    },
                    ciphered: ci.is_some(),
                    kic,
                    kid,
                },
                describe,
            ));
        }
    }
    out
}

fn explain_response(
    packet: &[u8],
    keys: &KeySet,
    forced: Option<PorSecurity>,
    lines: &mut Vec<String>,
    j: &mut Value,
    failure: &mut Option<String>,
) {
    lines.push(format!(
        "response packet (PoR), {} bytes: RPL {} RHL {}",
        packet.len(),
        u16::from_be_bytes([packet[0], packet[1]]),
        packet[2]
    ));
    let tar = Tar([packet[3], packet[4], packet[5]]);
    lines.push(format!("  TAR {tar}{}", tar_meaning(tar)));
    j["tar"] = json!(tar.to_string());
    let result: Result<(OpenedResponse, String), packet::Error> = match forced {
        Some(s) => packet::open_response(packet, &s, keys).map(|o| (o, "as --spi says".into())),
        None => {
            let mut last = packet::Error::ChecksumMismatch;
            let mut found = None;
            for (s, what) in candidate_securities(keys) {
                match packet::open_response(packet, &s, keys) {
                    Ok(o) => {
                        found = Some((o, format!("found: {what}")));
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            found.ok_or(last)
        }
    };
    let (opened, how) = match result {
        Ok(x) => x,
        Err(e) => {
            let why = match e {
                packet::Error::ChecksumMismatch => {
                    "CC does not verify: wrong KID key or tampered".to_string()
                }
                other => format!("PoR not opened: {other}"),
            };
            lines.push(format!("  not opened: {why}"));
            *failure = Some(why);
            return;
        }
    };
    let h = &opened.header;
    lines.push(format!(
        "  security {how}{}",
        if opened.secured {
            ""
        } else {
            " (unsecured PoR of a security error)"
        }
    ));
    lines.push(format!(
        "  CNTR {} ({}): the counter of the command it answers",
        h.counter,
        h.counter.value()
    ));
    lines.push(format!("  PCNTR {} padding byte(s)", opened.pcntr));
    lines.push(format!("  status {}", h.status));
    if !opened.checksum.is_empty() {
        lines.push(format!("  CC {} verified", hex(&opened.checksum)));
    }
    j["counter"] = json!(h.counter.value());
    j["status"] = json!(format!("{:02X}", h.status.to_byte()));
    j["status_text"] = json!(h.status.meaning());
    j["secured"] = json!(opened.secured);
    j["verified"] = json!(true);
    j["data"] = json!(hex(&opened.data));
    if !opened.data.is_empty() {
        match script::parse_response_data(&opened.data) {
            Ok(r) => {
                lines.push(format!("  data {}: {r}", hex(&opened.data)));
                j["response"] = json!(r.to_string());
            }
            Err(e) => lines.push(format!("  data {} ({e})", hex(&opened.data))),
        }
    }
}
