//! `cardwright bench`: the speed figures of the issue, as medians over repeated runs.
//!
//! 1. SCP03 (AES-128) and SCP02 (3DES), every security level: host wrap + card unwrap of 1,000 APDUs of
//!    255 bytes on the wire, and card wrap + host unwrap of their responses.
//! 2. A full `install` of a synthetic CAP (default 10 KB) on the in-memory virtual card:
//!    secure channel, INSTALL [for load], LOAD blocks, INSTALL [for install]; APDU count and
//!    wall time; the same with a state file (the cost of durability per command).
//! 3. With `--reader`, the same install through pcscd + vpcd to `cardwright sim run --vpcd`.

use crate::cli::BenchArgs;
use crate::sim::SimChannel;
use anyhow::{Context, Result};
use apdu::{Command, Response};
use card::{CardConfig, VirtualCard};
use gpclient::{ops, GpClient, KeySpec, OpenOptions};
use scp::{CardAuth, Diversification, HostAuth, Protocol, SecurityLevel, StaticKeys};
use std::str::FromStr;
use std::time::{Duration, Instant};
use transport::{CardChannel, Traced};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

fn default_keys(protocol: Protocol) -> StaticKeys {
    let key = match protocol {
        Protocol::Scp02 { .. } => scp::Key::des3(&gpclient::DEFAULT_TEST_KEY),
        Protocol::Scp03 { .. } => scp::Key::aes(&gpclient::DEFAULT_TEST_KEY),
    };
    StaticKeys::same(key.expect("16-byte key"))
}

/// Opens a host/card session pair in memory for `level`.
fn session_pair(
    protocol: Protocol,
    level: SecurityLevel,
) -> Result<(scp::HostSession, scp::CardSession)> {
    let keys = default_keys(protocol);
    let host_challenge = [0x11u8; 8];
    let (card_auth, iu) = CardAuth::new(
        &keys,
        protocol,
        0x30,
        [0; 10],
        1,
        &host_challenge,
        &[0xA0, 0, 0, 1, 0x51, 0, 0, 0],
    )?;
    let iu = scp::InitUpdateResponse::parse(&iu)?;
    let host = HostAuth::new(&keys, &host_challenge, &iu, level, 0x55)?;
    let ext = host.external_authenticate();
    let card = card_auth.external_authenticate(&ext)?;
    let host = host.finish(&Response::status(apdu::StatusWord::SUCCESS))?;
    Ok((host, card))
}

fn bench_scp(protocol: Protocol, runs: usize) -> Result<()> {
    let (name, block) = match protocol {
        Protocol::Scp02 { .. } => ("SCP02 3DES", 8),
        Protocol::Scp03 { .. } => ("SCP03 AES-128", 16),
    };
    println!("{name}, 1,000 APDUs of 255 bytes on the wire (median of {runs} runs):");
    println!(
        "  {:<20} {:>14} {:>14} {:>16}",
        "level", "host wrap", "per APDU", "+card unwrap, R"
    );
    let levels: &[&str] = match protocol {
        Protocol::Scp02 { .. } => &["mac", "mac+enc", "mac+enc+rmac"],
        Protocol::Scp03 { .. } => &["mac", "mac+enc", "mac+enc+rmac", "mac+enc+rmac+renc"],
    };
    for name in levels {
        let level = SecurityLevel::from_str(name).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Plain data such that the wrapped data field is at most 255 bytes: 8 bytes of
        // C-MAC, and with C-DECRYPTION padding to the block size.
        let plain_len = if level.c_decryption() {
            255 - 8 - block
        } else {
            247
        };
        let cmd = Command::new(0x80, 0xE2, 0x00, 0x00).with_data(vec![0x5A; plain_len]);
        let resp = Response::ok(vec![0xA5; 32]);
        let mut host_only = Vec::new();
        let mut round = Vec::new();
        for _ in 0..runs {
            let (mut host, mut card) = session_pair(protocol, level)?;
            let t = Instant::now();
            for _ in 0..1000 {
                let w = host.wrap(&cmd)?;
                std::hint::black_box(&w);
            }
            host_only.push(t.elapsed());
            let (mut host, mut card2) = session_pair(protocol, level)?;
            let _ = &mut card;
            let t = Instant::now();
            for _ in 0..1000 {
                let w = host.wrap(&cmd)?;
                let plain = card2.unwrap(&w)?;
                std::hint::black_box(&plain);
                let r = card2.wrap(resp.clone());
                let r = host.unwrap(r)?;
                std::hint::black_box(&r);
            }
            round.push(t.elapsed());
        }
        let h = median(host_only);
        let r = median(round);
        println!(
            "  {:<20} {:>14} {:>14} {:>16}",
            name,
            fmt_dur(h),
            fmt_dur(h / 1000),
            fmt_dur(r / 1000)
        );
    }
    println!("  (host wrap: the host-side per-APDU overhead; last column: host wrap + card unwrap + card wrap + host unwrap)");
    Ok(())
}

fn open_opts() -> OpenOptions {
    OpenOptions {
        keys: KeySpec::same(&gpclient::DEFAULT_TEST_KEY, Diversification::None, 0),
        level: SecurityLevel::from_str("mac").expect("level"),
        scp: None,
        sd: None,
    }
}

/// One install: returns (wall time, APDUs).
fn install_once(chan: Box<dyn CardChannel>, cap: &gp::cap::CapFile) -> Result<(Duration, u64)> {
    let mut cl = GpClient::new(Traced::new(chan, None));
    let t = Instant::now();
    cl.open_secure_channel(&open_opts())?;
    ops::install_cap(&mut cl, cap, &ops::InstallOptions::default())?;
    let d = t.elapsed();
    // Clean up so the next run can load the same package.
    ops::delete(&mut cl, &cap.package_aid(), true)?;
    Ok((d, cl.apdus_sent()))
}

fn report(label: &str, runs: Vec<(Duration, u64)>) {
    let apdus = runs.first().map(|r| r.1).unwrap_or(0);
    let m = median(runs.iter().map(|r| r.0).collect());
    // The install's APDUs, without the 2 of the DELETE clean-up that apdus_sent also counts.
    let n = apdus.saturating_sub(1).max(1);
    println!(
        "  {label:<34} {:>10}  ({n} APDUs, {} per APDU)",
        fmt_dur(m),
        fmt_dur(m / n as u32)
    );
}

pub fn run(a: BenchArgs) -> Result<()> {
    let runs = a.runs.max(3);
    bench_scp(Protocol::Scp03 { i: 0x70 }, runs)?;
    bench_scp(Protocol::Scp02 { i: 0x55 }, runs)?;
    let cap_bytes = gp::cap::testing::synthetic_cap(a.cap_kb * 1024);
    let cap = gp::cap::CapFile::from_bytes(&cap_bytes).context("synthetic CAP")?;
    println!(
        "\nInstall of a {} KB CAP (load file data block {} bytes), SCP03 C-MAC, median of {runs}:",
        a.cap_kb,
        cap.load_file_data_block().len()
    );
    let mut mem = Vec::new();
    for _ in 0..runs {
        let card = VirtualCard::new(CardConfig::default());
        mem.push(install_once(
            Box::new(SimChannel::named(card, "memory".into())),
            &cap,
        )?);
    }
    report("virtual card in memory", mem);

    let dir = tempfile::tempdir()?;
    let mut file = Vec::new();
    for i in 0..runs {
        let path = dir.path().join(format!("card{i}.json"));
        let card = VirtualCard::open(&path, CardConfig::default())?;
        file.push(install_once(
            Box::new(SimChannel::named(card, "file".into())),
            &cap,
        )?);
    }
    report("virtual card with a state file", file);

    if let Some(reader) = &a.reader {
        bench_pcsc(reader, &cap, runs)?;
    }
    Ok(())
}

#[cfg(feature = "pcsc")]
fn bench_pcsc(reader: &str, cap: &gp::cap::CapFile, runs: usize) -> Result<()> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let chan = transport::pcsc::PcscChannel::connect(Some(reader))?;
        v.push(install_once(Box::new(chan), cap)?);
    }
    report(&format!("through pcscd+vpcd ({reader})"), v);
    Ok(())
}

#[cfg(not(feature = "pcsc"))]
fn bench_pcsc(_reader: &str, _cap: &gp::cap::CapFile, _runs: usize) -> Result<()> {
    anyhow::bail!("--reader needs a cardwright built with `--features pcsc`")
}
