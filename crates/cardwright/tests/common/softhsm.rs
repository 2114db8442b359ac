//! SoftHSM2 tokens of the tests' own (a token directory and config under a temporary
//! directory), for the tests that keep keys in a PKCS#11 token.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's SoftHSM2 PKCS#11 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of every test token (the SO PIN is `5678`).
pub const HSM_PIN: &str = "1234";

/// Whether `prog` is an executable file on `PATH`.
pub fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// Whether the SoftHSM2 tests can run; panics if `CARDWRIGHT_HSM_TESTS=1` says they must
/// but SoftHSM2 is missing.
pub fn available() -> bool {
    let required = std::env::var("CARDWRIGHT_HSM_TESTS").is_ok_and(|v| v == "1");
    if !on_path("softhsm2-util") || !Path::new(SOFTHSM_MODULE).exists() {
        assert!(!required, "CARDWRIGHT_HSM_TESTS=1 but SoftHSM2 is missing");
        eprintln!("SoftHSM2 not installed: skipped");
        return false;
    }
    true
}

/// Initialises a token labelled `label` (PIN [`HSM_PIN`]) in `dir/tokens` and returns the
/// `SOFTHSM2_CONF` file that points at it.
pub fn init_token(dir: &Path, label: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", HSM_PIN, "--so-pin", "5678"])
        .output()
        .unwrap();
    assert!(out.status.success(), "softhsm2-util: {out:?}");
    conf
}
