//! Helpers for `piv_tools.rs`: a virtual card in vsmartcard's second reader, the Debian
//! tools run as child processes, and the few DER steps needed to put a card signature
//! into a certificate.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The vpcd port of the second virtual reader (`pcsc_stack.rs` uses 35963 / "… 00 00").
pub const VPCD: &str = "127.0.0.1:35964";
/// The pcscd reader vsmartcard puts port 35964 in.
pub const READER: &str = "Virtual PCD 00 01";
/// OpenSC's PKCS#11 module (Debian `opensc-pkcs11`).
pub const OPENSC_PKCS11: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
/// The PIV defaults of a new virtual card (`piv::PivConfig::default`).
pub const PIN: &str = "123456";
pub const PUK: &str = "12345678";

/// Whether the PC/SC tool tests should run (`CARDWRIGHT_PCSC_TESTS=1`).
pub fn enabled() -> bool {
    if std::env::var("CARDWRIGHT_PCSC_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set CARDWRIGHT_PCSC_TESTS=1 with pcscd, vsmartcard-vpcd, yubico-piv-tool, \
             opensc and openssl installed (scripts/test.sh does)"
        );
        return false;
    }
    true
}

/// The tests of this binary share one reader: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a child process did.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout and stderr together (the tools split their messages between them).
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `program ARGS` with extra environment variables.
pub fn run_env<S: AsRef<OsStr>>(program: &str, args: &[S], env: &[(&str, &Path)]) -> Out {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn show<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    format!("{program} {}", args.join(" "))
}

/// Runs and requires success.
pub fn ok_env<S: AsRef<OsStr>>(program: &str, args: &[S], env: &[(&str, &Path)]) -> Out {
    let o = run_env(program, args, env);
    assert!(
        o.ok,
        "{} failed:\n{}\n{}",
        show(program, args),
        o.stdout,
        o.stderr
    );
    o
}

/// Runs and requires failure.
pub fn fails<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Out {
    let o = run_env(program, args, &[]);
    assert!(
        !o.ok,
        "{} should have failed:\n{}\n{}",
        show(program, args),
        o.stdout,
        o.stderr
    );
    o
}

/// `yubico-piv-tool -r READER ARGS`.
pub fn yk(args: &[&str]) -> Out {
    run_env("yubico-piv-tool", &[&["-r", READER], args].concat(), &[])
}

/// `yubico-piv-tool -r READER ARGS`, which must succeed.
pub fn yk_ok(args: &[&str]) -> Out {
    ok_env("yubico-piv-tool", &[&["-r", READER], args].concat(), &[])
}

/// `pkcs11-tool --module OPENSC --slot-description READER ARGS`, which must succeed.
pub fn p11_ok(args: &[&str], env: &[(&str, &Path)]) -> Out {
    ok_env(
        "pkcs11-tool",
        &[
            &["--module", OPENSC_PKCS11, "--slot-description", READER],
            args,
        ]
        .concat(),
        env,
    )
}

/// `openssl ARGS`, which must succeed.
pub fn openssl<S: AsRef<OsStr>>(args: &[S]) -> Out {
    ok_env("openssl", args, &[])
}

/// Makes sure pcscd runs (it is started once per machine; `pcsc_stack.rs` restarts it).
pub fn ensure_pcscd() {
    let running = Command::new("pgrep")
        .args(["-x", "pcscd"])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !running {
        Command::new("sh")
            .args(["-c", "pcscd --foreground >/tmp/cardwright-pcscd.log 2>&1 &"])
            .status()
            .expect("start pcscd");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A fresh virtual card (`cardwright sim run --vpcd`) in [`READER`]; killed on drop.
pub struct Sim {
    child: Child,
    dir: tempfile::TempDir,
}

impl Sim {
    /// Starts the card with a new state file and waits until the tools see it.
    pub fn start() -> Sim {
        ensure_pcscd();
        assert!(
            wait_for_empty_reader(Duration::from_secs(10)),
            "{READER} already holds a card: is another virtual card connected to {VPCD}?"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("card.json");
        let child = Command::new(env!("CARGO_BIN_EXE_cardwright"))
            .args(["sim", "run", "--vpcd", VPCD, "--state"])
            .arg(&state)
            .env(
                "CARDWRIGHT_LOG",
                std::env::var("CARDWRIGHT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cardwright sim run");
        let sim = Sim { child, dir };
        sim.wait_for_card();
        sim
    }

    /// A path in the test's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A path in the temporary directory, as a string for tool arguments.
    pub fn file(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// pcscd polls vpcd for the card; wait until yubico-piv-tool can select PIV.
    fn wait_for_card(&self) {
        let t0 = Instant::now();
        loop {
            let o = yk(&["-a", "status"]);
            if o.ok && o.stdout.contains("Version:") {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the card never appeared in {READER}:\n{}{}",
                o.stdout,
                o.stderr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The next card must not connect before pcscd has seen this one go: if vpcd
        // accepts a new card within one presence poll of the old one's exit, pcscd never
        // notices the swap, powers the new card off as its idle old one, and then refuses
        // to connect to it ("Error powering up card: SCARD_W_REMOVED_CARD") for as long
        // as it stays in the reader.
        wait_for_empty_reader(Duration::from_secs(5));
    }
}

/// Whether pcscd reports a card in [`READER`] (`opensc-tool -l`: `Nr. Card Features Name`).
pub fn reader_has_card() -> bool {
    let o = run_env("opensc-tool", &["-l"], &[]);
    o.stdout
        .lines()
        .filter(|l| l.trim_end().ends_with(READER))
        .any(|l| l.split_whitespace().nth(1) == Some("Yes"))
}

/// Waits until pcscd reports [`READER`] empty; false on timeout.
pub fn wait_for_empty_reader(timeout: Duration) -> bool {
    let t0 = Instant::now();
    while reader_has_card() {
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

// ----- DER (ITU-T X.690 §8.1): just enough to split and rebuild a Certificate -----

/// Reads the TLV at the start of `der`: (tag, header length, value length).
fn der_header(der: &[u8]) -> (u8, usize, usize) {
    assert!(der.len() >= 2, "DER truncated");
    let tag = der[0];
    assert!(tag & 0x1F != 0x1F, "multi-byte tags are not expected here");
    match der[1] {
        n @ 0..=0x7F => (tag, 2, usize::from(n)),
        0x81..=0x84 => {
            let k = usize::from(der[1] & 0x7F);
            assert!(der.len() >= 2 + k, "DER length truncated");
            let len = der[2..2 + k]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            (tag, 2 + k, len)
        }
        b => panic!("unsupported DER length byte {b:#04x}"),
    }
}

/// Splits `der` into its first TLV (whole) and the rest.
fn der_take(der: &[u8]) -> (&[u8], &[u8]) {
    let (_, h, l) = der_header(der);
    assert!(der.len() >= h + l, "DER value truncated");
    der.split_at(h + l)
}

/// Encodes one TLV with a definite length.
pub fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

/// RFC 5280 §4.1: `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
/// signatureValue BIT STRING }`. Returns the tbsCertificate and signatureAlgorithm TLVs.
pub fn split_certificate(cert: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (tag, h, l) = der_header(cert);
    assert_eq!(tag, 0x30, "a certificate is a SEQUENCE");
    assert_eq!(cert.len(), h + l, "trailing bytes after the certificate");
    let body = &cert[h..];
    let (tbs, rest) = der_take(body);
    let (alg, rest) = der_take(rest);
    let (sig, rest) = der_take(rest);
    assert_eq!(sig[0], 0x03, "signatureValue is a BIT STRING");
    assert!(rest.is_empty(), "three fields in a certificate");
    (tbs.to_vec(), alg.to_vec())
}

/// Rebuilds a certificate with a new signature (no unused bits).
pub fn join_certificate(tbs: &[u8], alg: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(signature);
    let mut body = tbs.to_vec();
    body.extend_from_slice(alg);
    body.extend(der_tlv(0x03, &bits));
    der_tlv(0x30, &body)
}

/// A key in the card, as the tools name it.
#[derive(Debug, Clone, Copy)]
pub struct SlotKey {
    /// yubico-piv-tool slot, e.g. "9c".
    pub slot: &'static str,
    /// OpenSC's PKCS#11 CKA_ID for the slot (card-piv.c / pkcs15-piv.c: 9A=01, 9C=02,
    /// 9D=03, 9E=04).
    pub id: &'static str,
    /// OpenSC's environment variable naming a public key file for a slot without a
    /// certificate (pkcs15-piv.c).
    pub env: &'static str,
    /// yubico-piv-tool algorithm.
    pub algorithm: &'static str,
}

impl SlotKey {
    /// The PKCS#11 mechanism that signs SHA-256 of the data.
    pub fn mechanism(&self) -> &'static str {
        if self.algorithm.starts_with("RSA") {
            "SHA256-RSA-PKCS"
        } else {
            "ECDSA-SHA256"
        }
    }
    /// `openssl genpkey` arguments for a throwaway key of the same family (it only
    /// fixes the signatureAlgorithm of the template certificate).
    fn template_key_args(&self) -> &'static [&'static str] {
        if self.algorithm.starts_with("RSA") {
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        } else {
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        }
    }
}

/// A self-signed certificate for the card key in `key.slot`, signed by the card through
/// OpenSC: OpenSSL makes a template with subject = issuer = `/CN=test` and the card's
/// public key (`-force_pubkey`), the card signs its tbsCertificate (`pkcs11-tool --sign`,
/// with `PIV_xx_KEY` naming the public key since no certificate is on the card yet),
/// and the signature replaces the template's. Returns the PEM path.
pub fn card_self_signed(sim: &Sim, key: SlotKey, public_pem: &str) -> String {
    let tmp_key = sim.file(&format!("template-{}.key", key.slot));
    let csr = sim.file(&format!("template-{}.csr", key.slot));
    let template = sim.file(&format!("template-{}.der", key.slot));
    let tbs = sim.path(&format!("tbs-{}.der", key.slot));
    let sig = sim.path(&format!("tbs-{}.sig", key.slot));
    let cert_der = sim.path(&format!("cert-{}.der", key.slot));
    let cert_pem = sim.file(&format!("cert-{}.pem", key.slot));
    let spki = sim.path(&format!("pub-{}.der", key.slot));

    openssl(&[&["genpkey", "-out", &tmp_key][..], key.template_key_args()].concat());
    openssl(&[
        "req",
        "-new",
        "-key",
        &tmp_key,
        "-subj",
        "/CN=test/",
        "-out",
        &csr,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-signkey",
        &tmp_key,
        "-force_pubkey",
        public_pem,
        "-days",
        "30",
        "-outform",
        "DER",
        "-out",
        &template,
    ]);
    let (tbs_der, alg) = split_certificate(&std::fs::read(&template).expect("template"));
    std::fs::write(&tbs, &tbs_der).expect("write tbs");

    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        public_pem,
        "-outform",
        "DER",
        "-out",
        &spki.to_string_lossy(),
    ]);
    let mut args = vec![
        "--login",
        "--pin",
        PIN,
        "--sign",
        "--id",
        key.id,
        "-m",
        key.mechanism(),
    ];
    if !key.algorithm.starts_with("RSA") {
        // X9.62 Ecdsa-Sig-Value, as a certificate carries it.
        args.extend(["--signature-format", "openssl"]);
    }
    let tbs_s = tbs.to_string_lossy().into_owned();
    let sig_s = sig.to_string_lossy().into_owned();
    args.extend(["-i", &tbs_s, "-o", &sig_s]);
    p11_ok(&args, &[(key.env, &spki)]);

    let signature = std::fs::read(&sig).expect("card signature");
    std::fs::write(&cert_der, join_certificate(&tbs_der, &alg, &signature)).expect("cert");
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &cert_der.to_string_lossy(),
        "-out",
        &cert_pem,
    ]);
    cert_pem
}

/// Checks a self-signed certificate: its signature verifies under its own public key,
/// which is `public_pem`, and subject = issuer = CN=test.
pub fn assert_self_signed(cert_pem: &str, public_pem: &str) {
    let v = openssl(&["verify", "-check_ss_sig", "-CAfile", cert_pem, cert_pem]);
    assert!(v.stdout.contains(": OK"), "openssl verify: {}", v.text());
    let o = openssl(&[
        "x509", "-in", cert_pem, "-noout", "-subject", "-issuer", "-pubkey",
    ]);
    assert!(o.stdout.contains("subject=CN = test"), "{}", o.stdout);
    assert!(o.stdout.contains("issuer=CN = test"), "{}", o.stdout);
    let expected = std::fs::read_to_string(public_pem).expect("public key PEM");
    assert!(
        o.stdout.contains(expected.trim()),
        "certificate key is the card's:\n{}\n{expected}",
        o.stdout
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_split_and_join_round_trip() {
        let tbs = der_tlv(0x30, &[0x02, 0x01, 0x05]);
        let alg = der_tlv(0x30, &[0x06, 0x03, 0x2A, 0x86, 0x48]);
        let cert = join_certificate(&tbs, &alg, &[0xAB; 300]);
        assert_eq!(&cert[..4], &[0x30, 0x82, 0x01, 0x3D]);
        assert_eq!(split_certificate(&cert), (tbs, alg));
    }
}
