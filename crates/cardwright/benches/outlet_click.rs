//! Click-to-installed time of the outlet page for a 10 KB CAP through pcscd + vpcd (issue
//! #11's speed figure): the outlet of `tests/outlet_support` (SoftHSM2 token, a virtual card
//! the issuer's platform wrote, `outlet serve --reader 'Virtual PCD 00 00'`); each run sends
//! the page's click (`POST /api/install`, with its session and CSRF token) and polls `GET
//! /api/state` every 2 ms until the job says "installed", as the page would; between runs
//! `cardwright card --key BASE --kdf kdf3 delete --related` (not timed) takes the load file
//! off the card again. Prints the median, the spread, the C-APDUs and LOAD blocks of an
//! install (the card and its link are the limit on real hardware: the APDU count says how
//! much).
//!
//! Not run by `cargo test`; run it with the PC/SC stack up and the lock held:
//!
//! ```text
//! CARDWRIGHT_PCSC_TESTS=1 flock /tmp/cardwright-pcsc.lock \
//!     cargo bench -p cardwright --features pcsc --bench outlet_click
//! ```
//!
//! `OUTLET_BENCH_RUNS` (default 15) and `OUTLET_BENCH_CAP_KB` (default 10) change the runs
//! and the CAP size.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/outlet_support/mod.rs"]
mod outlet_support;

use std::time::{Duration, Instant};

use common::pcsc::{self, READER};
use common::softhsm;
use outlet_support::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only say so.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("outlet_click: a benchmark; run it with `cargo bench` (see its documentation)");
        return;
    }
    if !pcsc::enabled() || !softhsm::available() {
        return;
    }
    let runs = env_usize("OUTLET_BENCH_RUNS", 15).max(3);
    let cap_kb = env_usize("OUTLET_BENCH_CAP_KB", 10);

    let shop = shop();
    let cap_bytes = gp::cap::testing::synthetic_cap(cap_kb * 1024);
    let cap = gp::cap::CapFile::from_bytes(&cap_bytes).expect("synthetic CAP");
    let cap_file = shop.path("pass.cap");
    std::fs::write(&cap_file, &cap_bytes).unwrap();
    let package = shop.build_package(
        "bench.cwpkg",
        &[App {
            name: "pass",
            title: "Transit pass",
            cap: &cap_file,
            extra: "",
        }],
    );
    shop.outlet_init();
    shop.outlet_add(&package);
    let _sim = pcsc::start_sim(shop.card_state.to_str().unwrap());
    pcsc::wait_for_card();
    let (_serve, url) = shop.serve_outlet(READER);
    let page = PageClient::open(&url);
    let package_aid = cap.package_aid().to_hex();

    let mut times = Vec::with_capacity(runs);
    let mut apdus = 0;
    let mut blocks = 0;
    for _ in 0..runs {
        page.wait_card("ready");
        let t0 = Instant::now();
        let id = page.install("pass");
        let job = page.finished(id, Duration::from_millis(2));
        let took = t0.elapsed();
        assert_eq!(job["state"], "installed", "{job}");
        times.push(took);
        apdus = job["outcome"]["apdus"].as_u64().unwrap_or(0);
        blocks = job["outcome"]["blocks"].as_u64().unwrap_or(0);
        shop.ok(&[
            "card",
            "--reader",
            READER,
            "--key",
            BASE,
            "--kdf",
            "kdf3",
            "delete",
            "--related",
            &package_aid,
        ]);
    }
    let in_order: Vec<String> = times
        .iter()
        .map(|t| format!("{:.0}", t.as_secs_f64() * 1e3))
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "Outlet page, click to installed, {cap_kb} KB CAP (load file data block {} bytes) \
         through pcscd + vpcd ({READER}), SoftHSM2 module, median of {runs}:",
        cap.load_file_data_block().len()
    );
    println!(
        "  {:>10}  (min {}, max {}); {apdus} C-APDUs per install ({blocks} LOAD blocks), {} per APDU",
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1]),
        ms(median / apdus.max(1) as u32),
    );
    println!("  runs in order (ms): {}", in_order.join(" "));
}
