//! SoftHSM2 tokens for the tests of one process. Shared by the `kms` and `tsm` tests (tsm
//! includes this file with `#[path]`: test set-up needs no crate of its own).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SoftHSM2 PKCS#11 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// Whether SoftHSM2 is installed (`softhsm2-util` on `PATH` and [`MODULE`]). When it is
/// not, says that `skipped` is skipped, or with `CARDWRIGHT_HSM_TESTS=1` fails instead.
pub fn softhsm_installed(skipped: &str) -> bool {
    if on_path("softhsm2-util") && Path::new(MODULE).exists() {
        return true;
    }
    let required = std::env::var("CARDWRIGHT_HSM_TESTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "CARDWRIGHT_HSM_TESTS=1 but SoftHSM2 is missing (softhsm2-util on PATH, {MODULE})"
    );
    eprintln!("SoftHSM2 not installed: {skipped} skipped");
    false
}

/// A fresh directory (name starting with `prefix`, kept for the whole process; removed by
/// the OS's tmp cleaning or by the caller) with a SoftHSM2 configuration, one token per
/// label, all with user PIN `pin` (also in the file `pin` of the directory), and
/// `SOFTHSM2_CONF` set for this process. SoftHSM2 reads `SOFTHSM2_CONF` once, at
/// `C_Initialize`: call this before any PKCS#11 call.
pub fn make_tokens(prefix: &str, labels: &[&str], pin: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap()
        .keep();
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
    for label in labels {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", pin, "--so-pin", "5678"])
            .output()
            .unwrap();
        assert!(out.status.success(), "softhsm2-util: {out:?}");
    }
    std::fs::write(dir.join("pin"), format!("{pin}\n")).unwrap();
    // Before the first C_Initialize of this process (edition 2021: safe to call).
    std::env::set_var("SOFTHSM2_CONF", &conf);
    dir
}
