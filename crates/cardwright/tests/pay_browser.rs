//! The check-out page in a real browser: headless Chromium driven by Playwright
//! (`tests/browser/checkout.mjs`) enrols the virtual card through the page and the agent,
//! pays, and the server records a verified authorisation; a page of another origin cannot
//! reach the card. The screenshot is kept in `test-artifacts/checkout.png`.
//!
//! Runs when `CARDWRIGHT_BROWSER_TESTS=1` (scripts/test.sh sets it after scripts/setup.sh
//! installed Chromium and the Node packages); otherwise it says why it skipped.

mod pay_support;

use pay_support::*;
use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn checkout_page_in_headless_chromium() {
    if std::env::var("CARDWRIGHT_BROWSER_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set CARDWRIGHT_BROWSER_TESTS=1 to drive the check-out page in headless \
             Chromium (scripts/setup.sh installs chromium and the Node packages; scripts/test.sh sets it)"
        );
        return;
    }
    let root = repo_root();
    let script = root.join("tests/browser/checkout.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is not installed: run scripts/setup.sh (npm ci in tests/browser)"
    );
    assert!(
        PathBuf::from("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run scripts/setup.sh (apt install chromium)"
    );

    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let card = card_file();
    let agent = agent(&card.path, &origin);
    let listen = format!("127.0.0.1:{port}");
    let server = server(&["--listen", &listen, "--agent-url", &agent.url]);
    let screenshot = root.join("test-artifacts/checkout.png");
    let _ = std::fs::remove_file(&screenshot);

    let out = Command::new("node")
        .arg(&script)
        .current_dir(&root)
        .env("CHECKOUT_URL", &server.url)
        .env("FOREIGN_URL", format!("http://localhost:{port}"))
        .env("SCREENSHOT", &screenshot)
        .env("CARD_PIN", "123456")
        .output()
        .expect("run node (install Node.js 20+)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "checkout.mjs failed:\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["state"], "authorised", "{report}");
    assert_eq!(
        report["foreign"], "error",
        "the foreign origin reached the card: {report}"
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );

    // The server recorded a verified authorisation for the page's challenge.
    let id = report["challenge"].as_str().expect("challenge id");
    let r = get(&format!("{}/api/v1/payments/{id}", server.url), &[]);
    assert_eq!(r.json["state"], "authorised", "{:?}", r.json);
    let a = &r.json["authorisation"];
    assert_eq!(a["request"]["amount_minor"], 1234);
    assert_eq!(a["request"]["order_id"], "ORDER-BROWSER-1");
    assert_eq!(a["subject"], "CN=Eve Browser");
}
