//! `cardwright serve --issuance` takes its tokens from a file or the environment (so they do
//! not show in `ps`), and the issuance API behind them answers through the real binary.

mod pay_support;

use pay_support::*;

#[test]
fn operator_tokens_from_a_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("operators");
    std::fs::write(
        &file,
        "# operators\nalice=file-token-0123456789\n\nissuer/bob:viewer=file-viewer-0123456789\n",
    )
    .unwrap();
    let db = format!("sqlite:{}", dir.path().join("p.db").display());
    let keys = format!("file:{}", dir.path().join("keys.json").display());
    let serve = start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--issuance",
            "--db",
            &db,
            "--keystore",
            &keys,
            "--operator-tokens-file",
            file.to_str().unwrap(),
        ],
        &[
            ("CARDWRIGHT_OPERATOR_TOKENS", "carol=env-token-0123456789"),
            ("CARDWRIGHT_MASTER_KEY", &"11".repeat(32)),
        ],
    );
    let terminals = format!("{}/api/v1/terminals", serve.url);
    for token in [
        "file-token-0123456789",
        "file-viewer-0123456789",
        "env-token-0123456789",
    ] {
        let auth = format!("bearer {token}");
        let r = get(&terminals, &[("authorization", &auth)]);
        assert_eq!(r.status, 200, "{token}: {}", r.json);
    }
    let r = get(
        &terminals,
        &[("authorization", "Bearer nope-nope-nope-nope")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"], "unauthorized");
    // The help says to prefer the environment or a file.
    let help = std::process::Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--operator-tokens-file"), "{help}");
    assert!(help.contains("shows in `ps`"), "{help}");
}
