//! The PC/SC stack of the tests: pcscd + vsmartcard's vpcd on its first reader, and a
//! `cardwright sim run --vpcd` card in it.

use super::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The reader vpcd's first card appears in.
pub const READER: &str = "Virtual PCD 00 00";

/// A running virtual card process.
pub struct Sim(Child);
impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cardwright sim run --vpcd` on the first vpcd reader; killed on drop.
pub fn start_sim(state: &str) -> Sim {
    let child = Command::new(bin())
        .args(["sim", "run", "--state", state, "--vpcd", "127.0.0.1:35963"])
        .env("CARDWRIGHT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sim");
    Sim(child)
}

/// Starts the card and waits until the reader holds it. vpcd sometimes does not take up
/// the first connection after a card process was killed mid-exchange (seen after the
/// SCP81 download through the reader: the new card's connection is established but the
/// reader stays empty, while a second connection works at once); so a card not seen
/// within 10 s is started again, three times at most.
pub fn start_sim_in_reader(state: &str) -> Sim {
    for attempt in 1..=3 {
        let sim = start_sim(state);
        if card_within(Duration::from_secs(10)) {
            return sim;
        }
        eprintln!("the card did not appear in {READER} within 10 s (attempt {attempt}); starting it again");
        drop(sim);
    }
    panic!("the card never appeared in {READER} (three starts)");
}

/// Whether the reader holds a card within `limit`.
fn card_within(limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let r = run(&[
            "card",
            "--reader",
            READER,
            "apdu",
            "00A4040008A000000151000000",
        ]);
        if r.ok && r.stdout.contains("9000") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Waits until the reader holds the card (pcscd polls vpcd for presence).
pub fn wait_for_card() {
    let t0 = Instant::now();
    loop {
        let r = run(&[
            "card",
            "--reader",
            READER,
            "apdu",
            "00A4040008A000000151000000",
        ]);
        if r.ok && r.stdout.contains("9000") {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "card never appeared in {READER}: {}",
            r.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the reader reports no card (after a [`Sim`] was dropped), so that the next
/// test's card connects to a vpcd that has seen the last one go.
pub fn wait_for_no_card() {
    let t0 = Instant::now();
    loop {
        let r = run(&[
            "card",
            "--reader",
            READER,
            "apdu",
            "00A4040008A000000151000000",
        ]);
        if !r.ok {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "a card stays in {READER} after its process stopped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the PC/SC tests run (`CARDWRIGHT_PCSC_TESTS=1`); panics if they should but
/// cannot (no `pcsc` feature).
pub fn enabled() -> bool {
    if std::env::var("CARDWRIGHT_PCSC_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set CARDWRIGHT_PCSC_TESTS=1 with pcscd and vsmartcard-vpcd running (scripts/test.sh does)");
        return false;
    }
    if !cfg!(feature = "pcsc") {
        panic!("CARDWRIGHT_PCSC_TESTS=1 needs --features pcsc");
    }
    true
}
