//! What a new user hits on the command line (issue 7, items 5–9, 12, 14–16): bad paths and
//! typos are refused at once with one line naming what is wrong, reading commands create
//! nothing, bad input is refused before the card is touched, and the help and the demo say
//! what they do. Each test runs the real binary.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SSD: &str = "A00000015153534401";

/// Runs `cardwright ARGS` in `dir` with extra environment variables.
const MASTER: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";

fn run_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("CARDWRIGHT_LOG", "warn")
        .env_remove("CARDWRIGHT_DB")
        .env_remove("CARDWRIGHT_KEYSTORE")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("spawn cardwright");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The directory is still empty: the refused command created nothing.
fn assert_nothing_created(dir: &Path) {
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        0,
        "nothing created"
    );
}

/// The run failed with exactly one line on standard error, `cardwright: error: …`,
/// containing every needle; returns that line.
fn one_error_line(r: &Run, needles: &[&str]) -> String {
    assert!(!r.ok, "should have failed:\n{}", r.stdout);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error, got:\n{}", r.stderr);
    let line = lines[0];
    assert!(line.starts_with("cardwright: error: "), "{line}");
    for n in needles {
        assert!(line.contains(n), "error should mention {n:?}: {line}");
    }
    assert_each_cause_once(line);
    line.to_string()
}

/// No part of the message (between `: `) appears twice: each cause said once.
fn assert_each_cause_once(line: &str) {
    let parts: Vec<&str> = line.split(": ").filter(|p| p.len() >= 12).collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].iter().any(|q| q == p),
            "{p:?} is said twice in: {line}"
        );
    }
    assert!(line.matches("(os error").count() <= 1, "{line}");
}

/// `tenant create` on `db`: the command that may create a database.
fn tenant_create(dir: &Path, db: &str) -> Run {
    run_in(
        dir,
        &[
            "tenant", "--db", db, "create", "--id", "issuer", "--name", "ACME", "--role", "ci",
        ],
        &[("CARDWRIGHT_MASTER_KEY", MASTER)],
    )
}

fn timed(f: impl FnOnce() -> Run) -> Run {
    let t = Instant::now();
    let r = f();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?} (must fail at once): {}",
        t.elapsed(),
        r.stderr
    );
    r
}

// ---- item 5: an unopenable database fails at once, in one line naming it ----

#[test]
fn a_text_file_as_database_fails_at_once() {
    let dir = tempdir();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "these are notes, not a database\n".repeat(200)).unwrap();
    let db = format!("sqlite:{}", file.display());
    let r = timed(|| tenant_create(dir.path(), &db));
    one_error_line(&r, &[&file.display().to_string(), "not an SQLite database"]);
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with("these are notes"));
}

#[test]
fn a_directory_as_database_fails_at_once() {
    let dir = tempdir();
    let db = format!("sqlite:{}", dir.path().display());
    let r = timed(|| tenant_create(dir.path(), &db));
    one_error_line(&r, &[&dir.path().display().to_string(), "is a directory"]);
}

#[test]
fn a_database_in_a_missing_directory_fails_at_once() {
    let dir = tempdir();
    let missing = dir.path().join("no-such-dir");
    let db = format!("sqlite:{}/platform.db", missing.display());
    let r = timed(|| tenant_create(dir.path(), &db));
    one_error_line(&r, &[&missing.display().to_string(), "does not exist"]);
    assert!(!missing.exists());
}

#[test]
fn a_read_only_database_fails_at_once() {
    let dir = tempdir();
    let file = dir.path().join("platform.db");
    let db = format!("sqlite:{}", file.display());
    assert!(tenant_create(dir.path(), &db).ok);
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&file, perms).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&file).is_ok() {
        eprintln!("skipped: this user (root?) can write a read-only file");
        return;
    }
    let r = timed(|| {
        run_in(
            dir.path(),
            &[
                "category", "--db", &db, "create", "--id", "gold", "--tenant", "issuer",
            ],
            &[],
        )
    });
    one_error_line(&r, &[&file.display().to_string(), "read-only"]);
}

#[test]
fn postgresql_down_fails_at_once() {
    // Nothing listens on port 1.
    let dir = tempdir();
    let r = timed(|| tenant_create(dir.path(), "postgres://postgres:secret@127.0.0.1:1/test"));
    let line = one_error_line(
        &r,
        &["postgres://postgres:***@127.0.0.1:1/test", "cannot connect"],
    );
    assert!(!line.contains("secret"), "{line}");
}

// ---- item 6: reading commands never create ----

#[test]
fn audit_verify_in_the_wrong_directory_creates_nothing() {
    let dir = tempdir();
    let r = run_in(dir.path(), &["audit", "verify"], &[]);
    one_error_line(&r, &["cardwright.db", "no database file"]);
    assert!(!dir.path().join("cardwright.db").exists());
    let r = run_in(
        dir.path(),
        &["issue", "status", "--card-number", "4711"],
        &[],
    );
    one_error_line(&r, &["no database file"]);
    assert_nothing_created(dir.path());
    // The first `tenant create` makes the database, and says so.
    let r = tenant_create(dir.path(), "sqlite:cardwright.db");
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("created the platform database sqlite:cardwright.db"),
        "{}",
        r.stderr
    );
    let r = run_in(dir.path(), &["audit", "verify"], &[]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("verified: 1 entries"), "{}", r.stdout);
}

#[test]
fn an_unknown_key_store_scheme_is_refused() {
    let dir = tempdir();
    let r = run_in(
        dir.path(),
        &["keys", "list"],
        &[("CARDWRIGHT_KEYSTORE", "foo:bar")],
    );
    one_error_line(&r, &["unknown key store scheme 'foo:'"]);
    assert_nothing_created(dir.path());
}

#[test]
fn a_key_store_is_created_only_by_commands_that_add_keys_and_said_so() {
    let dir = tempdir();
    let master = (
        "CARDWRIGHT_MASTER_KEY",
        "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
    );
    for args in [
        &["keys", "list"][..],
        &["keys", "rotate-base", "--category", "gold"],
        &["keys", "retire", "--category", "gold", "--version", "1"],
    ] {
        let r = run_in(dir.path(), args, &[master]);
        one_error_line(
            &r,
            &["no key store file cardwright-keys.json", "generate-base"],
        );
    }
    assert_nothing_created(dir.path());
    let r = run_in(
        dir.path(),
        &["keys", "generate-base", "--category", "gold"],
        &[master],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("created key store cardwright-keys.json"),
        "{}",
        r.stderr
    );
    let r = run_in(dir.path(), &["keys", "list"], &[master]);
    assert!(
        r.ok && r.stdout.contains("gold"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stderr.contains("created"), "{}", r.stderr);
}

#[test]
fn a_mistyped_virtual_card_is_refused_with_a_hint() {
    let dir = tempdir();
    let r = run_in(dir.path(), &["card", "--sim", "typo.json", "info"], &[]);
    one_error_line(
        &r,
        &["no virtual card typo.json", "sim create --state typo.json"],
    );
    let r = run_in(
        dir.path(),
        &[
            "pay",
            "sign",
            "--server",
            "http://127.0.0.1:1",
            "--sim",
            "typo.json",
            "--amount",
            "1",
            "--currency",
            "EUR",
            "--payee",
            "SHOP",
            "--order",
            "O-1",
        ],
        &[("CARDWRIGHT_PIN", "123456")],
    );
    one_error_line(&r, &["no virtual card typo.json", "sim create"]);
    assert_nothing_created(dir.path());
}

#[test]
fn sim_run_says_when_it_creates_a_card() {
    let dir = tempdir();
    let state = dir.path().join("new.json").to_string_lossy().into_owned();
    let r = run_env(&["sim", "run", "--state", &state], &[], "80CA006600\n");
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("created virtual card {state}")),
        "{}",
        r.stderr
    );
    let r = run_env(&["sim", "run", "--state", &state], &[], "80CA006600\n");
    assert!(r.ok && !r.stderr.contains("created"), "{}", r.stderr);
}

// ---- item 7: invalid dates ----

#[test]
fn an_invalid_expiry_date_is_refused() {
    let dir = tempdir();
    let master = (
        "CARDWRIGHT_MASTER_KEY",
        "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
    );
    for bad in ["2031-02-31", "2031-02-29", "2031-13-01", "31-01-2031"] {
        let r = run_in(
            dir.path(),
            &[
                "keys",
                "generate-base",
                "--category",
                "gold",
                "--expires",
                bad,
            ],
            &[master],
        );
        one_error_line(&r, &[&format!("--expires {bad}"), "YYYY-MM-DD"]);
        // import-base refuses it before asking for any component.
        let r = run_in(
            dir.path(),
            &[
                "keys",
                "import-base",
                "--category",
                "gold",
                "--expires",
                bad,
            ],
            &[master],
        );
        let line = one_error_line(&r, &[&format!("--expires {bad}")]);
        assert!(!line.contains("Component"), "{line}");
    }
    assert_nothing_created(dir.path());
    let r = run_in(
        dir.path(),
        &[
            "keys",
            "generate-base",
            "--category",
            "gold",
            "--expires",
            "2032-02-29",
        ],
        &[master],
    );
    assert!(r.ok, "{}", r.stderr);
    let r = run_in(dir.path(), &["keys", "list"], &[master]);
    assert!(r.stdout.contains("2032-02-29"), "{}", r.stdout);
}

// ---- items 8 and 12: refused before the card is touched ----

/// A new virtual card in `dir`.
fn new_card(dir: &Path) -> String {
    let state = dir.join("card.json").to_string_lossy().into_owned();
    ok(&["sim", "create", "--state", &state]);
    state
}

/// `card --sim STATE --trace ARGS` fails mentioning `needle`, and no APDU was exchanged.
fn refused_before_the_card(state: &str, args: &[&str], needle: &str) {
    let mut v = vec!["card", "--sim", state, "--trace"];
    v.extend_from_slice(args);
    let r = run(&v);
    one_error_line(&r, &[needle]);
    assert!(!r.stderr.contains(">>"), "an APDU was sent:\n{}", r.stderr);
}

#[test]
fn bad_put_key_and_store_data_input_never_reaches_the_card() {
    let dir = tempdir();
    let state = new_card(dir.path());
    // The trace shows APDUs when there are some.
    let r = run(&["card", "--sim", &state, "--trace", "list"]);
    assert!(r.ok && r.stderr.contains(">>"), "{}", r.stderr);
    let before = std::fs::read(&state).unwrap();

    refused_before_the_card(
        &state,
        &["put-key", "--new-key", "00112233445566778899AABBCCDDEE"],
        "15 bytes",
    );
    refused_before_the_card(
        &state,
        &["put-key", "--new-key", "00112233", "--new-key-type", "aes"],
        "--new-key",
    );
    refused_before_the_card(&state, &["lock", "--new-key", "xyz"], "--new-key");
    refused_before_the_card(
        &state,
        &[
            "put-key",
            "--new-key",
            "00112233445566778899AABBCCDDEEFF",
            "--new-keyver",
            "0x80",
        ],
        "0x01 to 0x7F",
    );
    let block = "AB".repeat(300);
    refused_before_the_card(&state, &["store-data", SSD, &block], "300 bytes");
    let block = "AB".repeat(250);
    refused_before_the_card(
        &state,
        &["store-data", SSD, "DF0101", &block],
        "block 1 is 250 bytes",
    );
    refused_before_the_card(
        &state,
        &["create-domain", SSD, "--privs", "am,dm"],
        "§6.6.1",
    );
    refused_before_the_card(&state, &["install", "x.cap", "--privs", "am,dm"], "§6.6.1");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "the card is unchanged"
    );

    // What fits is accepted.
    ok(&[
        "card",
        "--sim",
        &state,
        "create-domain",
        SSD,
        "--privs",
        "am",
    ]);
    ok(&[
        "card",
        "--sim",
        &state,
        "store-data",
        SSD,
        // One TLV of 247 bytes (DF01, length 81 F3), the most a C-MAC channel carries.
        &format!("DF0181F3{}", "AB".repeat(243)),
    ]);
    ok(&[
        "card",
        "--sim",
        &state,
        "put-key",
        "--new-key",
        "00112233445566778899AABBCCDDEEFF",
        "--new-keyver",
        "0x7F",
    ]);
}

// ---- item 9: each cause once ----

#[test]
fn each_cause_is_said_once() {
    let dir = tempdir();
    let master = (
        "CARDWRIGHT_MASTER_KEY",
        "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
    );
    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let ks = format!("file:{}", sub.display());
    let r = run_in(dir.path(), &["keys", "--keystore", &ks, "list"], &[master]);
    let line = one_error_line(&r, &["a-directory"]);
    assert_eq!(
        line.to_lowercase().matches("is a directory").count(),
        1,
        "{line}"
    );

    let r = run_in(
        dir.path(),
        &["keys", "generate-base", "--category", "gold", "--len", "15"],
        &[master],
    );
    let line = one_error_line(&r, &["15"]);
    assert!(line.matches("bad key length").count() <= 1, "{line}");
    // The key store file this command would have created is not left behind.
    assert!(!dir.path().join("cardwright-keys.json").exists());

    let r = run_in(
        dir.path(),
        &[
            "keys",
            "--keystore",
            "pkcs11:/nonexistent/libmodule.so",
            "list",
        ],
        &[("CARDWRIGHT_PKCS11_PIN", "1234")],
    );
    let line = one_error_line(&r, &["/nonexistent/libmodule.so"]);
    assert!(!line.contains("1234"), "{line}");
    // The loader's reason (libloading) once.
    assert_eq!(
        line.matches("cannot open shared object file").count(),
        1,
        "{line}"
    );

    let r = run_in(
        dir.path(),
        &[
            "sim",
            "create",
            "--state",
            "c.json",
            "--key",
            "00112233445566778899AABBCCDDEE",
        ],
        &[],
    );
    one_error_line(&r, &["--key", "15"]);
}

// ---- item 14: a second card on a vpcd port is detected ----

/// Starts `sim run --vpcd ADDR` and returns its standard error lines as they come, plus the
/// child (killed by the caller).
fn sim_run_vpcd(
    dir: &Path,
    addr: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let state = new_card(dir);
    let mut child = Command::new(bin())
        .args(["sim", "run", "--state", &state, "--vpcd", addr])
        .env("CARDWRIGHT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sim run");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Lines until one contains `needle` (or 15 s pass).
fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let found = l.contains(needle);
                seen.push(l);
                if found {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} in:\n{}", seen.join("\n"));
}

#[test]
fn a_second_card_on_a_busy_vpcd_port_says_so() {
    // A vpcd that has a card already: it listens but never accepts nor talks to this one
    // (vsmartcard's vpcd serves one card per port; the kernel still queues the connection).
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempdir();
    let (mut child, rx) = sim_run_vpcd(dir.path(), &busy.local_addr().unwrap().to_string());
    let lines = wait_for(&rx, "another card is most likely in this reader");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("the card is in the reader")),
        "{lines:#?}"
    );
    // Logs into a pipe (or a file) carry no colour codes.
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "{lines:#?}");
}

#[test]
fn a_card_that_vpcd_talks_to_is_in_the_reader() {
    let vpcd = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempdir();
    let (mut child, rx) = sim_run_vpcd(dir.path(), &vpcd.local_addr().unwrap().to_string());
    let (mut conn, _) = vpcd.accept().unwrap();
    // vpcd's presence check: GET ATR (control code 04), answered with the ATR.
    conn.write_all(&[0, 1, 4]).unwrap();
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).unwrap();
    let mut atr = vec![0u8; u16::from_be_bytes(len) as usize];
    conn.read_exact(&mut atr).unwrap();
    assert_eq!(atr.first(), Some(&0x3B), "{atr:02X?}");
    let lines = wait_for(&rx, "the card is in the reader");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !lines.iter().any(|l| l.contains("another card")),
        "{lines:#?}"
    );
}

// ---- item 15: sim create prints what its help promises ----

#[test]
fn sim_create_prints_identity_and_keys_but_no_secret_key() {
    let dir = tempdir();
    let help = ok(&["sim", "create", "--help"]);
    assert!(help.contains("identity") && help.contains("KCV"), "{help}");

    let state = dir.path().join("a.json").to_string_lossy().into_owned();
    let out = ok(&["sim", "create", "--state", &state]);
    for want in [
        "ATR:",
        "IC serial:",
        "KDD:",
        "SCP03, AES-128 key version 0x30",
        "KCV",
        "GlobalPlatform test key 404142434445464748494A4B4C4D4E4F",
        "PIV:",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let state = dir.path().join("b.json").to_string_lossy().into_owned();
    let key = "F0E1D2C3B4A5968778695A4B3C2D1E0F";
    let out = ok(&[
        "sim", "create", "--state", &state, "--scp", "02", "--key", key, "--keyver", "0x21",
        "--no-piv",
    ]);
    let kcv = apdu::hex(
        &scp::Key::des3(&apdu::parse_hex(key).unwrap())
            .unwrap()
            .kcv(),
    );
    assert!(out.contains(&format!("KCV {kcv}")), "{out}");
    assert!(out.contains("SCP02, 3DES-128 key version 0x21"), "{out}");
    assert!(!out.contains(key) && !out.contains("test key"), "{out}");
    assert!(out.contains("not installed"), "{out}");
}

// ---- item 16: the demo ----

#[test]
fn the_demo_shows_each_command_and_its_error_and_runs_bench_only_when_asked() {
    let out = ok(&["demo"]);
    let step = format!("$ cardwright card --sim card.json --sd {SSD} list");
    let at = out
        .find(&step)
        .unwrap_or_else(|| panic!("{step:?} missing:\n{out}"));
    let after: Vec<&str> = out[at..].lines().skip(1).take(2).collect();
    assert!(
        after
            .iter()
            .any(|l| l.contains("cardwright: error:") && l.contains("cryptogram")),
        "the refusal is shown on stdout after the command: {after:#?}"
    );
    // The CPLC fits in a few lines.
    let cplc = out.find("CPLC:").expect("card info in the demo");
    let cplc_lines = out[cplc..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .count();
    assert!(
        (1..=8).contains(&cplc_lines),
        "CPLC in {cplc_lines} lines:\n{out}"
    );
    assert!(out[cplc..].contains("ICSerialNumber="), "{out}");
    assert!(!out.contains("Speed"), "bench ran without --bench:\n{out}");
}

#[test]
fn tenant_create_without_a_key_store_leaves_nothing() {
    // The audit log's head is signed with the key store's audit key: a key store that
    // cannot be opened fails before the database is made.
    let dir = tempdir();
    let r = run_in(
        dir.path(),
        &[
            "tenant", "create", "--id", "issuer", "--name", "ACME", "--role", "ci",
        ],
        &[],
    );
    one_error_line(&r, &["CARDWRIGHT_MASTER_KEY is not set"]);
    assert_nothing_created(dir.path());
    let r = tenant_create(dir.path(), "sqlite:cardwright.db");
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("created key store cardwright-keys.json"),
        "{}",
        r.stderr
    );
}
