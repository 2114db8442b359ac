//! The state file: round trip, atomic replacement, crash safety, write failures.

mod common;

use std::path::Path;
use std::time::Duration;

use apdu::{Command, StatusWord};
use card::{CardConfig, VirtualCard};
use common::*;
use gp::commands::{Install, StatusFormat, StatusSubset};
use scp::SecurityLevel;

const SSD: &str = "A000000151000001";
const APP: &str = "F0435744530101";

fn setup(path: &Path) {
    let mut host = Host::new(VirtualCard::open(path, CardConfig::default()).unwrap());
    host.open(&default_keys(true), 0, SecurityLevel::MAC_ENC)
        .unwrap();
    assert!(host
        .install_app(SD_PKG, SD_MODULE, SSD, [0x80, 0x40, 0])
        .is_success());
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    assert!(host.load(STORAGE_PKG, None, &lf, Vec::new()).is_success());
    assert!(host
        .install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0, 0, 0])
        .is_success());
    assert!(host
        .install(Install::ForPersonalization {
            application: aid(APP)
        })
        .is_success());
    let store = Command::new(0x80, 0xE2, 0x90, 0x00).with_data(h("5F2003414243"));
    assert!(host.send(&store).is_success());
    assert!(host.put_keys(0, 0x31, &aes_keys()).is_success());
    assert_eq!(host.set_status(0x80, 0x07, &[]).sw, StatusWord::SUCCESS);
}

#[test]
fn state_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    setup(&path);
    // Reopen: the file wins over the configuration given for a new card.
    let mut host = Host::new(VirtualCard::open(&path, CardConfig::scp02()).unwrap());
    assert_eq!(host.card.life_cycle(), 0x07);
    // Sessions are not persisted.
    assert_eq!(
        host.raw(&cmd("80F24002024F0000")).sw,
        StatusWord::SECURITY_NOT_SATISFIED
    );
    host.open(&aes_keys(), 0x31, SecurityLevel::MAC).unwrap();
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].aid, aid(SSD));
    assert_eq!(apps[1].aid, aid(APP));
    assert!(host.select(APP).is_success());
    assert_eq!(host.raw(&cmd("80CA5F2000")).data, h("5F2003414243"));
    // Reading the card back and saving it again gives the same file.
    let before = std::fs::read(&path).unwrap();
    drop(host);
    drop(VirtualCard::open(&path, CardConfig::default()).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn state_file_is_json_private_and_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    setup(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], 1);
    assert_eq!(v["apps"][0]["aid"], ISD);
    // Keys are stored (this is the card's memory) as hex strings.
    assert!(text.contains("404142434445464748494A4B4C4D4E4F"));
    // No temporary files are left behind: only the state and its lock file.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            std::ffi::OsString::from("card.json"),
            std::ffi::OsString::from("card.json.lock")
        ]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "state file readable by others: {mode:o}");
    }
    // Debug output of the card names no key.
    let card = VirtualCard::open(&path, CardConfig::default()).unwrap();
    let dbg = format!("{card:?} {:?}", CardConfig::default());
    assert!(
        !dbg.contains("404142434445464748494A4B4C4D4E4F") && !dbg.contains("4041"),
        "{dbg}"
    );
}

#[test]
fn corrupt_state_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    std::fs::write(&path, b"{\"format\": 1").unwrap();
    let e = VirtualCard::open(&path, CardConfig::default()).unwrap_err();
    assert!(matches!(e, card::CardError::BadState { .. }), "{e}");
    std::fs::write(&path, b"{}").unwrap();
    assert!(VirtualCard::open(&path, CardConfig::default()).is_err());
    // A missing directory cannot hold a card.
    let e =
        VirtualCard::open(&dir.path().join("nope/card.json"), CardConfig::default()).unwrap_err();
    assert!(matches!(e, card::CardError::Io { .. }), "{e}");
}

#[test]
fn failed_write_answers_6581_and_keeps_the_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let mut host = Host::new(VirtualCard::open(&path, CardConfig::default()).unwrap());
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    // Make the rename impossible: the state file's name is now a directory.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let wrapped = host
        .session
        .as_mut()
        .unwrap()
        .wrap(&cmd("80F0800700"))
        .unwrap();
    let r = host.raw(&wrapped);
    assert_eq!(r.sw, StatusWord::MEMORY_FAILURE);
    assert_eq!(host.card.life_cycle(), 0x01, "rolled back");
    // Reads still work; the session was dropped with the failed write.
    host.session = None;
    assert_eq!(host.raw(&cmd("80CA9F7F00")).sw, StatusWord::SUCCESS);
    std::fs::remove_dir(&path).unwrap();
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(host.set_status(0x80, 0x07, &[]).sw, StatusWord::SUCCESS);
    drop(host); // one process, one card: release it before opening it again
    let reopened = VirtualCard::open(&path, CardConfig::default()).unwrap();
    assert_eq!(reopened.life_cycle(), 0x07);
}

const FULL_DISK_ENV: &str = "CARDWRIGHT_FULL_DISK_CHILD_STATE";

/// Run by `a_full_disk_is_reported_and_leaves_no_temporary_file` in a process whose files
/// cannot grow beyond 512 bytes: one INITIALIZE UPDATE (it advances the SCP03 sequence
/// counter, so the card must save), then what the card answered and why.
#[test]
#[ignore = "child process of a_full_disk_is_reported_and_leaves_no_temporary_file"]
fn full_disk_child() {
    let path = std::env::var_os(FULL_DISK_ENV).unwrap_or_else(|| {
        panic!("run by a_full_disk_is_reported_and_leaves_no_temporary_file only ({FULL_DISK_ENV} unset)")
    });
    let mut card = VirtualCard::open(Path::new(&path), CardConfig::default()).unwrap();
    let r = card.transmit(&h("80500000080102030405060708"));
    println!("SW={}", apdu::hex(&r[r.len() - 2..]));
    println!(
        "ERROR={}",
        card.save_error()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
}

#[cfg(unix)]
#[test]
fn a_full_disk_is_reported_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    drop(VirtualCard::open(&path, CardConfig::default()).unwrap());
    let before = std::fs::read(&path).unwrap();
    assert!(
        before.len() > 1024,
        "the state ({} bytes) must not fit in the child's file size limit",
        before.len()
    );
    // `ulimit -f 1`: no file of the child may grow past 512 bytes (writes then fail with
    // EFBIG, as they fail with ENOSPC on a full disk); SIGXFSZ ignored so the write returns
    // the error instead of killing the process.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 1 && exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "full_disk_child", "--ignored", "--nocapture"])
        .args(["--test-threads=1"])
        .env(FULL_DISK_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The card answers 6581 (memory failure) ...
    assert!(stdout.contains("SW=6581"), "{stdout}");
    // ... and the host learns which file could not be written and why.
    let error = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ERROR="))
        .unwrap_or_default();
    assert!(
        error.contains("could not be saved") && error.contains(&path.display().to_string()),
        "{error}"
    );
    assert!(error.contains("File too large"), "{error}");
    // The old state is intact and no temporary file is left behind.
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["card.json", "card.json.lock"]);
}

const CHILD_ENV: &str = "CARDWRIGHT_CRASH_CHILD_STATE";

/// Run by `killed_processes_never_corrupt_the_card` as a child process: changes the card
/// as fast as it can until it is killed.
#[test]
#[ignore = "child process of killed_processes_never_corrupt_the_card"]
fn crash_child() {
    let path = std::env::var_os(CHILD_ENV).unwrap_or_else(|| {
        panic!("run by killed_processes_never_corrupt_the_card only ({CHILD_ENV} unset)")
    });
    let start = stored_counter(Path::new(&path)).map_or(1, |n| n + 1);
    let mut host = Host::new(VirtualCard::open(Path::new(&path), CardConfig::default()).unwrap());
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    for i in start.. {
        let mut data = h("C104");
        data.extend_from_slice(&i.to_be_bytes());
        let r = host.send(&Command::new(0x80, 0xE2, 0x80, 0x00).with_data(data));
        assert!(r.is_success());
    }
}

/// The counter the child stores in the ISD's personalisation data (tag `C1`).
fn stored_counter(path: &Path) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["apps"][0]["data"]["C1"]
        .as_str()
        .map(|s| u32::from_str_radix(s, 16).unwrap())
}

#[test]
fn killed_processes_never_corrupt_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    drop(VirtualCard::open(&path, CardConfig::default()).unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut last = 0u32;
    for round in 0..6u64 {
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "crash_child", "--ignored", "--nocapture"])
            .arg("--test-threads=1")
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever instant it died at, the card opens and is consistent.
        let mut host = Host::new(VirtualCard::open(&path, CardConfig::default()).unwrap());
        if let Some(n) = stored_counter(&path) {
            assert!(n >= last, "went back from {last} to {n}");
            last = n;
        }
        host.open(&default_keys(true), 0, SecurityLevel::MAC)
            .unwrap();
    }
    assert!(last > 0, "the child never got to write");
}

#[test]
fn a_card_is_open_in_one_place_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let first = card::VirtualCard::open(&path, card::CardConfig::default()).unwrap();
    let second = card::VirtualCard::open(&path, card::CardConfig::default());
    assert!(
        matches!(second, Err(card::CardError::InUse { .. })),
        "a second open must be refused while the first holds the card: {:?}",
        second.as_ref().map(|_| ())
    );
    drop(first);
    // Other tests of this binary spawn child processes: between fork and exec a child holds
    // a copy of every descriptor, the lock file's too, for a moment. So wait a little.
    let mut again = card::VirtualCard::open(&path, card::CardConfig::default());
    for _ in 0..100 {
        if !matches!(again, Err(card::CardError::InUse { .. })) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        again = card::VirtualCard::open(&path, card::CardConfig::default());
    }
    again.expect("free again once closed");
}
