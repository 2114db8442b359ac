//! Issue #10's speed: SSD creations + hand-overs + AP rotations per second, end to end,
//! against in-process virtual cards, both platforms in this process, and where the time
//! goes: the card, the two key stores, the two databases, the CI's and the AP's logic, and
//! the in-process relay between them.
//!
//! One hand-over is flow 1 on a card the CI issued before the clock started: the AP asks
//! (`ApPlatform::request`, which calls `CiPlatform::request`), relays the CI's job (ISD
//! session, INSTALL of the SSD, self-extradition, PUT KEY of initial keys generated in the
//! CI key store), imports the initial keys wrapped for its transport key, opens the SSD
//! with them and replaces them with its own (SCP03 PUT KEY, or inside SCP11a), confirms
//! (the CI deletes its initial keys and records the hand-over).
//!
//! Configurations: software key stores and SoftHSM2 tokens (when `softhsm2-util` and the
//! module are installed), SQLite files and PostgreSQL schemas `bench_…` (when
//! `CARDWRIGHT_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`, answers; the
//! schemas are dropped after), the SCP03 rotation and, on software + SQLite, the SCP11a
//! rotation. Each platform has its own store and key store.
//!
//! How the time is split (totals over the measured rounds, per hand-over):
//! * card: inside the virtual card's `transmit` (a wrapper on the AP terminal's channel);
//! * key stores: inside `KeySetStore` calls (a timing decorator on each platform's); the
//!   CI's ISD key derivation (`kms::KeyStore`, sealed, software base key) is in "CI logic",
//!   its cost measured apart is printed;
//! * databases: inside the store's statements, transaction control and pool check-outs
//!   (`tsm::thread_database_time`, read on each platform's threads);
//! * CI logic: the CI's relay thread minus its waits for the AP, plus the AP's direct calls
//!   into the CI (request, initial keys, confirmation), minus the CI's key store and
//!   database time;
//! * relay: the AP's time inside the link's calls that the CI did not spend working
//!   (channels between threads, a thread per job run; in production HTTPS takes its place);
//! * AP logic: the rest of the AP thread's time (secure channels, relaying, journal).
//!
//! `cargo bench -p tsm --bench ssd_handover`; `SSD_BENCH_ROUNDS` (default 5) and
//! `SSD_BENCH_PER_ROUND` (default: as many as take about half a second, 5 to 40) set the
//! rounds of each configuration.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ssd::{
    labels, remove_softhsm_tokens, scp11_rotation, softhsm_key_sets, software_key_sets,
    SsdPlatforms,
};
use common::{SimCard, SimCards as _, TestStore, CATEGORY};
use scp::{KeyKind as ScpKind, StaticKeys};
use transport::{CardChannel, TransportError};
use tsm::ssd::{
    CardRange, KeySetInfo, KeySetStore, SsdModel, SsdRequest, SsdState, TransportPublicKey,
    WrappedKeySet,
};
use tsm::{thread_database_use, DatabaseUse};

const SSD: &str = "A000000151BA0001";

// ---- timing decorators ------------------------------------------------------------------

/// Calls of one kind to a key store: how many, how long in all.
type OpTimes = BTreeMap<&'static str, (u64, Duration)>;

/// A key store that keeps the number and the time of its calls, by operation.
#[derive(Debug)]
struct TimedKeys {
    inner: Arc<dyn KeySetStore>,
    ops: Mutex<OpTimes>,
}

impl TimedKeys {
    fn new(inner: Arc<dyn KeySetStore>) -> Arc<TimedKeys> {
        Arc::new(TimedKeys {
            inner,
            ops: Mutex::new(BTreeMap::new()),
        })
    }
    fn time<T>(&self, op: &'static str, f: impl FnOnce(&dyn KeySetStore) -> T) -> T {
        let start = Instant::now();
        let v = f(self.inner.as_ref());
        let spent = start.elapsed();
        let mut ops = self.ops.lock().expect("ops");
        let e = ops.entry(op).or_default();
        e.0 += 1;
        e.1 += spent;
        v
    }
    fn ops(&self) -> OpTimes {
        self.ops.lock().expect("ops").clone()
    }
}

/// The calls between two readings.
fn ops_since(now: &OpTimes, before: &OpTimes) -> OpTimes {
    now.iter()
        .map(|(k, (n, d))| {
            let (n0, d0) = before.get(k).copied().unwrap_or_default();
            (*k, (n - n0, d.saturating_sub(d0)))
        })
        .filter(|(_, (n, _))| *n > 0)
        .collect()
}

fn add_ops(sum: &mut OpTimes, o: &OpTimes) {
    for (k, (n, d)) in o {
        let e = sum.entry(k).or_default();
        e.0 += n;
        e.1 += *d;
    }
}

impl KeySetStore for TimedKeys {
    fn generate_key_set(&self, l: &str, k: ScpKind, n: usize) -> Result<KeySetInfo, kms::Error> {
        self.time("generate", |s| s.generate_key_set(l, k, n))
    }
    fn key_set(&self, l: &str) -> Result<StaticKeys, kms::Error> {
        self.time("read (key_set)", |s| s.key_set(l))
    }
    fn key_set_info(&self, l: &str) -> Result<Option<KeySetInfo>, kms::Error> {
        self.time("info", |s| s.key_set_info(l))
    }
    fn list_key_sets(&self) -> Result<Vec<KeySetInfo>, kms::Error> {
        self.time("list", |s| s.list_key_sets())
    }
    fn delete_key_set(&self, l: &str) -> Result<bool, kms::Error> {
        self.time("delete", |s| s.delete_key_set(l))
    }
    fn wrap_key_set_for(
        &self,
        l: &str,
        to: &TransportPublicKey,
    ) -> Result<WrappedKeySet, kms::Error> {
        self.time("wrap", |s| s.wrap_key_set_for(l, to))
    }
    fn import_wrapped_key_set(
        &self,
        l: &str,
        w: &WrappedKeySet,
        t: &str,
    ) -> Result<KeySetInfo, kms::Error> {
        self.time("unwrap (import)", |s| s.import_wrapped_key_set(l, w, t))
    }
    fn create_transport_key(&self, l: &str) -> Result<TransportPublicKey, kms::Error> {
        self.time("create transport key", |s| s.create_transport_key(l))
    }
    fn transport_public_key(&self, l: &str) -> Result<TransportPublicKey, kms::Error> {
        self.time("transport public key", |s| s.transport_public_key(l))
    }
}

/// The AP terminal's channel to the virtual card, timing the card and counting APDUs.
struct TimedCard {
    inner: SimCard,
    spent: Duration,
    apdus: u64,
}

impl CardChannel for TimedCard {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let start = Instant::now();
        let r = self.inner.transmit_raw(capdu);
        self.spent += start.elapsed();
        self.apdus += 1;
        r
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        let start = Instant::now();
        let r = self.inner.reset();
        self.spent += start.elapsed();
        r
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

// ---- one configuration ------------------------------------------------------------------

/// Where the time of some hand-overs went (sums).
#[derive(Debug, Default, Clone, Copy)]
struct Split {
    total: Duration,
    card: Duration,
    ci_keys: Duration,
    ap_keys: Duration,
    ci_db: DatabaseUse,
    ap_db: DatabaseUse,
    ci_logic: Duration,
    ap_logic: Duration,
    relay: Duration,
}

impl Split {
    fn add(&mut self, o: &Split) {
        self.total += o.total;
        self.card += o.card;
        self.ci_keys += o.ci_keys;
        self.ap_keys += o.ap_keys;
        self.ci_db = self.ci_db + o.ci_db;
        self.ap_db = self.ap_db + o.ap_db;
        self.ci_logic += o.ci_logic;
        self.ap_logic += o.ap_logic;
        self.relay += o.relay;
    }
}

struct Config {
    name: String,
    ci_store: TestStore,
    ap_store: TestStore,
    ci_keys: Arc<dyn KeySetStore>,
    ap_keys: Arc<dyn KeySetStore>,
    scp11: bool,
}

struct Settings {
    rounds: usize,
    /// Hand-overs per round; `None`: as many as take about half a second (5 to 40).
    per_round: Option<usize>,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Issues `n` fresh cards (copies of one manufactured card) on the CI; their numbers.
fn issue_cards(
    p: &SsdPlatforms,
    blank: &SimCard,
    next: &mut u64,
    n: usize,
) -> Vec<(String, SimCard)> {
    (0..n)
        .map(|_| {
            let number = next.to_string();
            *next += 1;
            let card = SimCard::new(blank.card().copy_in_memory());
            p.issue(&number, &card);
            (number, card)
        })
        .collect()
}

/// One flow-1 hand-over; the APDUs through the AP's terminal.
fn hand_over(p: &SsdPlatforms, number: &str, chan: &mut TimedCard) {
    let job =
        p.ap.request(&SsdRequest {
            card_number: number.into(),
            aid: SSD.into(),
            model: SsdModel::Authorized,
        })
        .expect("request");
    let rec = p.ap.run(job, chan).expect("hand-over");
    assert_eq!(rec.state, SsdState::HandedOver, "card {number}");
}

fn run(c: Config, s: &Settings) {
    let ci_keys = TimedKeys::new(c.ci_keys);
    let ap_keys = TimedKeys::new(c.ap_keys);
    let p = SsdPlatforms::new(
        c.ci_store,
        c.ap_store,
        ci_keys.clone(),
        ap_keys.clone(),
        c.scp11.then(scp11_rotation),
        CardRange::new("1000000000", "1999999999").expect("range"),
    );
    let blank = SimCard::scp03();
    let mut next = 1_000_000_000u64;
    let load_before = load();

    // Warm-up (connections, caches, the KCV check of the base key).
    let warm_up = Instant::now();
    for (number, card) in issue_cards(&p, &blank, &mut next, 2) {
        let mut chan = TimedCard {
            inner: card,
            spent: Duration::ZERO,
            apdus: 0,
        };
        hand_over(&p, &number, &mut chan);
    }

    let per_round = s.per_round.unwrap_or_else(|| {
        let each = warm_up.elapsed().as_secs_f64() / 2.0;
        ((0.5 / each).round() as usize).clamp(5, 40)
    });
    let mut rates = Vec::new();
    let mut sum = Split::default();
    let mut apdus = 0u64;
    let (mut ci_ops, mut ap_ops) = (OpTimes::new(), OpTimes::new());
    for _ in 0..s.rounds {
        let cards = issue_cards(&p, &blank, &mut next, per_round);
        let link0 = p.link.timing.read();
        let (ci_ops0, ap_ops0) = (ci_keys.ops(), ap_keys.ops());
        let db0 = thread_database_use();
        let mut card_time = Duration::ZERO;
        let start = Instant::now();
        for (number, card) in cards {
            let mut chan = TimedCard {
                inner: card,
                spent: Duration::ZERO,
                apdus: 0,
            };
            hand_over(&p, &number, &mut chan);
            card_time += chan.spent;
            apdus += chan.apdus;
        }
        let total = start.elapsed();
        let link = p.link.timing.read();
        let (ci_o, ap_o) = (
            ops_since(&ci_keys.ops(), &ci_ops0),
            ops_since(&ap_keys.ops(), &ap_ops0),
        );
        add_ops(&mut ci_ops, &ci_o);
        add_ops(&mut ap_ops, &ap_o);
        let ci_k: Duration = ci_o.values().map(|v| v.1).sum();
        let ap_k: Duration = ap_o.values().map(|v| v.1).sum();
        let link_t = link.link - link0.link;
        let ci_t = link.ci - link0.ci;
        let ci_db = link.ci_db - link0.ci_db;
        // The AP thread's database time includes the CI's in the direct calls.
        let ap_db = (thread_database_use() - db0) - (link.ci_db_on_caller - link0.ci_db_on_caller);
        let round = Split {
            total,
            card: card_time,
            ci_keys: ci_k,
            ap_keys: ap_k,
            ci_db,
            ap_db,
            ci_logic: ci_t.saturating_sub(ci_k).saturating_sub(ci_db.time),
            relay: link_t.saturating_sub(ci_t),
            ap_logic: total
                .saturating_sub(link_t)
                .saturating_sub(card_time)
                .saturating_sub(ap_k)
                .saturating_sub(ap_db.time),
        };
        sum.add(&round);
        rates.push(per_round as f64 / total.as_secs_f64());
        // Keep the AP's key store at its size (one key set per card is what a real AP
        // keeps; here the store would grow by a round each time): not timed.
        for label in labels(ap_keys.inner.as_ref()) {
            ap_keys.inner.delete_key_set(&label).expect("delete");
        }
    }
    let n = (s.rounds * per_round) as f64;
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(0.0, f64::max);
    let med = median(&mut rates);
    let per = |d: Duration| d.as_secs_f64() * 1e3 / n;
    let total = per(sum.total);
    eprintln!(
        "\n{}: {:.1} hand-overs/s (median of {} rounds of {}; {:.1}-{:.1}), {:.2} ms each, {} APDUs through the AP terminal; load {} -> {}",
        c.name,
        med,
        s.rounds,
        per_round,
        lo,
        hi,
        total,
        apdus as f64 / n,
        load_before,
        load()
    );
    for (part, d) in [
        ("card", sum.card),
        ("CI key store", sum.ci_keys),
        ("AP key store", sum.ap_keys),
        ("CI database", sum.ci_db.time),
        ("AP database", sum.ap_db.time),
        ("CI logic", sum.ci_logic),
        ("AP logic", sum.ap_logic),
        ("relay (in process)", sum.relay),
    ] {
        eprintln!(
            "  {part:<20}{:8.3} ms {:5.1} %",
            per(d),
            100.0 * per(d) / total
        );
    }
    let ci = sum.ci_logic + sum.ci_keys + sum.ci_db.time;
    let ap = sum.ap_logic + sum.ap_keys + sum.ap_db.time;
    eprintln!(
        "  platforms: CI {:.3} ms ({:.1} %), AP {:.3} ms ({:.1} %) (logic + key store + database)",
        per(ci),
        100.0 * per(ci) / total,
        per(ap),
        100.0 * per(ap) / total
    );
    for (side, db) in [("CI", sum.ci_db), ("AP", sum.ap_db)] {
        eprintln!(
            "  {side} database: {:.1} statements, {:.1} commits per hand-over",
            db.statements as f64 / n,
            db.commits as f64 / n
        );
    }
    for (side, ops) in [("CI", &ci_ops), ("AP", &ap_ops)] {
        let list: Vec<String> = ops
            .iter()
            .map(|(op, (k, d))| format!("{op} {:.1}x {:.3} ms", *k as f64 / n, per(*d)))
            .collect();
        eprintln!("  {side} key store: {}", list.join(", "));
    }
}

/// The CI's ISD key derivation on its own (software base key, AES), which the split counts
/// in "CI logic": once per hand-over.
fn isd_derivation() {
    let f = common::Fixture::new(common::sqlite(), kms::KeyKind::Aes, 0x30, false);
    let n = 2000u32;
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(
            kms::KeyStore::derive_card_keys(f.keys.as_ref(), CATEGORY, 1, &format!("1{i:09}"))
                .expect("derive"),
        );
    }
    eprintln!(
        "\nISD key derivation (software, AES; in \"CI logic\", once per hand-over): {:.1} µs",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}

fn main() {
    let s = Settings {
        rounds: env_usize("SSD_BENCH_ROUNDS", 5),
        per_round: std::env::var("SSD_BENCH_PER_ROUND")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0),
    };
    eprintln!(
        "flow 1 (request, CI creates the SSD through the AP's relay, initial keys wrapped and imported, AP rotates, confirm) on fresh issued virtual cards; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let software = || {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = (software_key_sets(&dir, "ci"), software_key_sets(&dir, "ap"));
        (keys, dir)
    };
    let pg = common::postgres_schema("bench").is_some();
    let mut configs: Vec<(&str, bool, bool, bool)> = vec![
        // (key stores, SoftHSM2, PostgreSQL, SCP11 rotation)
        ("software", false, false, false),
        ("software", false, false, true),
    ];
    if pg {
        configs.push(("software", false, true, false));
    }
    let hsm = softhsm_key_sets().is_some();
    if hsm {
        configs.push(("SoftHSM2", true, false, false));
        if pg {
            configs.push(("SoftHSM2", true, true, false));
        }
    }
    for (keys_name, softhsm, postgres, scp11) in configs {
        let store = || {
            if postgres {
                common::postgres_schema("bench").expect("PostgreSQL")
            } else {
                common::sqlite()
            }
        };
        let ((ci_keys, ap_keys), _dir) = if softhsm {
            (
                softhsm_key_sets().expect("SoftHSM2"),
                tempfile::tempdir().expect("tempdir"),
            )
        } else {
            software()
        };
        let name = format!(
            "{keys_name} key stores, {} x2, {} rotation",
            if postgres { "PostgreSQL" } else { "SQLite" },
            if scp11 { "SCP11a" } else { "SCP03" }
        );
        run(
            Config {
                name,
                ci_store: store(),
                ap_store: store(),
                ci_keys,
                ap_keys,
                scp11,
            },
            &s,
        );
    }
    isd_derivation();
    remove_softhsm_tokens();
}
