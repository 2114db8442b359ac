//! Helpers for the black-box tests: run the real `cardwright` binary.
#![allow(dead_code)]

pub mod pcsc;
pub mod softhsm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cardwright")
}

/// A test CAP file shipped in the repository (see crates/gp/tests/data/SOURCES.md).
pub fn cap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gp/tests/data")
        .join(name)
}

#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            ok: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `cardwright ARGS`; returns whatever happened.
pub fn run(args: &[&str]) -> Run {
    Run::from(
        Command::new(bin())
            .args(args)
            .env("CARDWRIGHT_LOG", "warn")
            .output()
            .expect("spawn cardwright"),
    )
}

/// Runs and requires success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let r = run(args);
    assert!(
        r.ok,
        "cardwright {} failed ({:?}):\n{}\n{}",
        args.join(" "),
        r.code,
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// Runs and requires failure with a one-line error mentioning `needle`; returns stderr.
pub fn fails(args: &[&str], needle: &str) -> String {
    let r = run(args);
    assert!(
        !r.ok,
        "cardwright {} should have failed:\n{}",
        args.join(" "),
        r.stdout
    );
    assert_eq!(
        r.code,
        Some(1),
        "exit code of cardwright {}",
        args.join(" ")
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("cardwright: error:"))
        .unwrap_or_else(|| {
            panic!(
                "no 'cardwright: error:' line for {}:\n{}",
                args.join(" "),
                r.stderr
            )
        });
    assert!(
        line.to_lowercase().contains(&needle.to_lowercase()),
        "error for {} should mention '{needle}': {line}",
        args.join(" ")
    );
    r.stderr
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Runs `cardwright ARGS` with extra environment variables and `input` on standard input.
pub fn run_env(args: &[&str], envs: &[(String, String)], input: &str) -> Run {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .env("CARDWRIGHT_LOG", "warn")
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cardwright");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    Run::from(child.wait_with_output().expect("wait for cardwright"))
}

/// What `keys import-base` reads for an AES base key `base` (hex) typed as two components
/// with their KCVs: `C1\nKCV1\nC2\nKCV2\n`, with C1 fixed and C2 = base XOR C1.
pub fn components_of(base: &str) -> String {
    let c1 = "00112233445566778899AABBCCDDEEFF";
    let b = apdu::parse_hex(base).expect("hex base key");
    let c1b = apdu::parse_hex(c1).expect("hex");
    let c2: Vec<u8> = c1b.iter().zip(&b).map(|(x, y)| x ^ y).collect();
    let kcv = |k: &[u8]| apdu::hex(&scp::Key::aes(k).expect("AES key").kcv());
    format!("{c1}\n{}\n{}\n{}\n", kcv(&c1b), apdu::hex(&c2), kcv(&c2))
}
