//! Issue 13: three real `cardwright serve --issuance --campaign-workers` nodes share one
//! PostgreSQL database (a schema of their own) and write one campaign of 2,000 in-process
//! virtual cards (kept as state files in a shared directory, as a card stays in its
//! reader). The campaign is created, started and followed through the HTTP API; one node is
//! killed (SIGKILL) while it holds cards. At the end every card is written exactly once (one
//! write job, done; the card written; its item done), a sample of the cards (and every card
//! the dead node had in hand) opens an independent SCP03 channel with the keys derived from
//! the key store, the audit chain verifies, `/metrics` shows the campaign, and the other
//! nodes stop cleanly on SIGTERM. Runs with `CARDWRIGHT_PG_TESTS=1` (scripts/test.sh).

mod common;
mod pay_support;

use common::*;
use pay_support::{get, post};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MASTER: &str = "5555555555555555555555555555555555555555555555555555555555555555";
const BASE: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";
const OPERATOR: &str = "campaign-operator-token-0001";
const VIEWER: &str = "campaign-viewer-token-00001";
const OTHER_TENANT: &str = "campaign-bank-operator-0001";
const CARDS: u64 = 2_000;
const FIRST: u64 = 4_711_000_000_000_000;

/// A running `cardwright serve` node.
struct Node {
    child: Child,
    url: String,
    /// Its lease owner name (`campaign workers: … as NAME`).
    name: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Platform {
    dir: tempfile::TempDir,
    db: String,
    keystore: String,
}

impl Platform {
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CARDWRIGHT_DB".into(), self.db.clone()),
            ("CARDWRIGHT_KEYSTORE".into(), self.keystore.clone()),
            ("CARDWRIGHT_MASTER_KEY".into(), MASTER.into()),
        ]
    }

    fn ok(&self, args: &[&str], input: &str) -> String {
        let r = run_env(args, &self.env(), input);
        assert!(
            r.ok,
            "cardwright {} failed:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// `serve --issuance` with two campaign workers on virtual cards kept in `cards`.
    fn node(&self, cards: &Path) -> Node {
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--issuance",
                "--listen",
                "127.0.0.1:0",
                "--campaign-workers",
                "2",
                "--campaign-cards",
                "virtual",
                "--campaign-card-dir",
                cards.to_str().expect("utf-8 path"),
                "--campaign-lease",
                "3",
            ])
            .envs(self.env())
            .env(
                "CARDWRIGHT_OPERATOR_TOKENS",
                format!(
                    "issuer/ops={OPERATOR},issuer/watcher:viewer={VIEWER},bank/mallory={OTHER_TENANT}"
                ),
            )
            .env("CARDWRIGHT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cardwright serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut url, mut name) = (None, None);
        while url.is_none() || name.is_none() {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("serve exited before listening: {:?}", child.wait()),
            };
            if let Some(u) = line.strip_prefix("cardwright serve: listening on ") {
                url = Some(u.trim().to_string());
            }
            if let Some((_, n)) = line.split_once(" cards, as ") {
                name = Some(n.trim().to_string());
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Node {
            child,
            url: url.unwrap_or_default(),
            name: name.unwrap_or_default(),
        }
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn status(node: &Node, id: i64) -> Value {
    let r = get(
        &format!("{}/api/v1/campaigns/{id}", node.url),
        &[("authorization", &bearer(OPERATOR))],
    );
    assert_eq!(r.status, 200, "{}", r.json);
    r.json
}

/// Items of campaign `id` that `owner` holds now, through the database.
fn held_by(db: &mut postgres::Client, schema: &str, id: i64, owner: &str) -> i64 {
    db.query_one(
        &format!(
            "SELECT COUNT(*) FROM {schema}.campaign_items
             WHERE campaign_id = $1 AND state = 'claimed' AND lease_owner LIKE $2"
        ),
        &[&id, &format!("{owner} worker %")],
    )
    .expect("count")
    .get(0)
}

/// Opens an independent SCP03 channel on the card kept in `file` with the keys the key
/// store derives for `number`, and checks the KDD the write stored.
fn verify_card(keys: &dyn kms::KeyStore, file: &Path, number: &str) {
    let card = card::VirtualCard::open(file, card::CardConfig::default())
        .unwrap_or_else(|e| panic!("card {number}: {e}"));
    let chan = card::VirtualChannel::new(card);
    let mut client = gpclient::GpClient::new(transport::Traced::new(chan, None));
    let info = gpclient::ops::info(&mut client).expect("card info");
    let kdd = kms::kdd_for_card_number(number).expect("kdd");
    assert_eq!(info.kdd.as_deref(), Some(&kdd[..]), "card {number}: KDD");
    let derived = keys
        .derive_card_keys("gold", 1, number)
        .unwrap_or_else(|e| panic!("card {number}: {e}"));
    client
        .open_secure_channel_with(None, 0, scp::SecurityLevel::MAC, |_| {
            Ok::<_, gpclient::ClientError>(derived)
        })
        .unwrap_or_else(|e| panic!("card {number}: the derived keys do not open it: {e}"));
}

#[test]
fn three_serve_nodes_write_a_campaign_and_survive_a_killed_one() {
    if std::env::var("CARDWRIGHT_PG_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set CARDWRIGHT_PG_TESTS=1 (scripts/test.sh does)");
        return;
    }
    let t0 = Instant::now();
    let base = std::env::var("CARDWRIGHT_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("campaign_nodes_{}", std::process::id());
    let sep = if base.contains('?') { '&' } else { '?' };
    let dir = tempdir();
    let p = Platform {
        db: format!("{base}{sep}schema={schema}"),
        keystore: format!("file:{}", dir.path().join("keys.json").display()),
        dir,
    };
    // The virtual cards: on a RAM file system when there is one (each card saves its state
    // at every command that changes it, with fsync).
    let shm = Path::new("/dev/shm");
    let cards_dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("temp dir")
    } else {
        tempdir()
    };
    let cards: PathBuf = cards_dir.path().to_path_buf();
    run_campaign(&p, &schema, &cards, &base, t0);
    let _ = Command::new("psql")
        .args([
            base.as_str(),
            "-qc",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        ])
        .output();
}

fn run_campaign(p: &Platform, schema: &str, cards: &Path, base: &str, t0: Instant) {
    p.ok(
        &["keys", "import-base", "--category", "gold"],
        &components_of(BASE),
    );
    p.ok(
        &[
            "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
        ],
        "",
    );
    p.ok(
        &["category", "create", "--id", "gold", "--tenant", "issuer"],
        "",
    );
    let mut nodes: Vec<Node> = (0..3).map(|_| p.node(cards)).collect();
    let url = nodes[0].url.clone();
    let op = bearer(OPERATOR);

    // Created through the API, by range.
    let last = FIRST + CARDS - 1;
    let r = post(
        &format!("{url}/api/v1/campaigns"),
        &json!({"category": "gold", "first": FIRST.to_string(), "last": last.to_string()}),
        &[("authorization", &op)],
    );
    assert_eq!(r.status, 201, "{}", r.json);
    let id = r.json["campaign"].as_i64().expect("campaign id");
    assert_eq!(r.json["cards"], CARDS);
    assert_eq!(
        r.header("location"),
        Some(&*format!("/api/v1/campaigns/{id}"))
    );
    // Neither both ways nor none.
    let r = post(
        &format!("{url}/api/v1/campaigns"),
        &json!({"category": "gold", "cards": ["1"], "first": "1", "last": "2"}),
        &[("authorization", &op)],
    );
    assert_eq!(r.status, 400, "{}", r.json);
    // A viewer reads but may not steer; another tenant may do neither (refused, audited).
    let viewer = bearer(VIEWER);
    let r = get(
        &format!("{url}/api/v1/campaigns/{id}"),
        &[("authorization", &viewer)],
    );
    assert_eq!((r.status, r.json["state"].as_str()), (200, Some("created")));
    assert_eq!(r.json["pending"], CARDS);
    let r = post(
        &format!("{url}/api/v1/campaigns/{id}/start"),
        &json!({}),
        &[("authorization", &viewer)],
    );
    assert_eq!(r.status, 403, "{}", r.json);
    let bank = bearer(OTHER_TENANT);
    for (method, path) in [("GET", ""), ("POST", "/start"), ("GET", "/failures")] {
        let u = format!("{url}/api/v1/campaigns/{id}{path}");
        let r = match method {
            "GET" => get(&u, &[("authorization", &bank)]),
            _ => post(&u, &json!({}), &[("authorization", &bank)]),
        };
        assert_eq!((r.status, r.error()), (403, "forbidden"), "{method} {u}");
    }
    let r = get(
        &format!("{url}/api/v1/campaigns"),
        &[("authorization", &bank)],
    );
    assert_eq!(r.json["campaigns"], json!([]), "another tenant's list");
    assert_eq!(
        get(
            &format!("{url}/api/v1/campaigns/999999"),
            &[("authorization", &op)]
        )
        .status,
        404
    );

    // Started on one node; the three nodes' workers write it.
    let r = post(
        &format!("{url}/api/v1/campaigns/{id}/start"),
        &json!({}),
        &[("authorization", &op)],
    );
    assert_eq!((r.status, r.json["state"].as_str()), (200, Some("running")));
    let r = post(
        &format!("{url}/api/v1/campaigns/{id}/start"),
        &json!({}),
        &[("authorization", &op)],
    );
    assert_eq!((r.status, r.error()), (409, "conflict"), "{}", r.json);

    // Kill the third node while it holds cards, once the campaign is well under way.
    let mut pg = postgres::Client::connect(base, postgres::NoTls).expect("PostgreSQL");
    let victim = nodes.pop().expect("three nodes");
    let victim_pid = victim.child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let held = loop {
        assert!(Instant::now() < deadline, "the campaign did not get going");
        let done = status(&nodes[0], id)["done"].as_u64().unwrap_or(0);
        let held = held_by(&mut pg, schema, id, &victim.name);
        if done >= CARDS / 5 && held >= 4 {
            break held;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut victim = victim;
    victim.child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    let _ = victim.child.wait();
    let killed_at = status(&nodes[0], id);
    let orphans = held_by(&mut pg, schema, id, &victim.name);
    eprintln!(
        "killed node (pid {victim_pid}) holding {held} cards ({orphans} after the kill) at {} done",
        killed_at["done"]
    );
    assert!(orphans > 0, "the killed node held no card");

    // The others finish, the dead node's cards included (their lease is 3 s).
    let deadline = Instant::now() + Duration::from_secs(180);
    let end = loop {
        let s = status(&nodes[t0.elapsed().as_millis() as usize % 2], id);
        if s["pending"] == 0 && s["claimed"] == 0 {
            break s;
        }
        assert!(Instant::now() < deadline, "campaign stalled: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(end["done"], CARDS, "{end}");
    assert_eq!(end["failed"], 0, "{end}");
    assert_eq!(end["total"], CARDS);
    let r = get(
        &format!("{url}/api/v1/campaigns/{id}/failures"),
        &[("authorization", &viewer)],
    );
    assert_eq!(r.json["failures"], json!([]), "{}", r.json);
    let r = get(
        &format!("{url}/api/v1/campaigns"),
        &[("authorization", &op)],
    );
    assert_eq!(r.json["campaigns"][0]["campaign"], id, "{}", r.json);

    // The metrics of a node: the campaign's items, this node's writes.
    let m = get(&format!("{}/metrics", nodes[1].url), &[]);
    let text = m.json.as_str().expect("metrics text");
    let line = format!("cardwright_campaign_items{{campaign=\"{id}\",state=\"done\"}} {CARDS}");
    assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    let written: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cardwright_campaign_items_written_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("campaign_items_written_total");
    assert!(written > 0.0, "{text}");

    // Every card written exactly once: one write job, done; the card written; its item
    // done. The items the dead node held came back and were taken up by the others.
    let store = tsm::Store::open(&p.db).expect("store");
    let mut resumed = Vec::new();
    let mut taken_again = Vec::new();
    for n in 0..CARDS {
        let number = (FIRST + n).to_string();
        let jobs = store.jobs_of_card(&number).expect("jobs");
        assert_eq!(jobs.len(), 1, "card {number}: {jobs:?}");
        assert_eq!(
            (jobs[0].kind.to_string(), jobs[0].state.to_string()),
            ("write".into(), "done".into()),
            "card {number}"
        );
        if jobs[0].attempts > 1 {
            resumed.push(number.clone());
        }
        let card = store.card(&number).expect("card").expect("recorded");
        assert_eq!(card.state.to_string(), "written", "card {number}");
    }
    for row in pg
        .query(
            &format!(
                "SELECT card_number, state, attempts FROM {schema}.campaign_items
                 WHERE campaign_id = $1"
            ),
            &[&id],
        )
        .expect("items")
    {
        let (number, state, attempts): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(state, "done", "item {number}");
        if attempts > 1 {
            taken_again.push(number);
        }
    }
    assert!(
        taken_again.len() as i64 >= orphans,
        "{} items taken again, {orphans} held by the dead node",
        taken_again.len()
    );
    eprintln!(
        "{} items taken up again after the kill, {} jobs resumed",
        taken_again.len(),
        resumed.len()
    );

    // An independent SCP03 channel with the keys derived from the key store, on a sample
    // and on every card taken up again.
    let keys = kms::open(&format!(
        "{}?master-key-file={}",
        p.keystore,
        write_master(p.dir.path()).display()
    ))
    .expect("key store");
    let mut sample: Vec<String> = (0..CARDS)
        .step_by(97)
        .map(|n| (FIRST + n).to_string())
        .collect();
    sample.extend(taken_again);
    sample.extend(resumed);
    sample.sort();
    sample.dedup();
    for number in &sample {
        verify_card(keys.as_ref(), &cards.join(format!("{number}.json")), number);
    }

    // The audit chain verifies (its head anchored with the key store's audit key).
    let out = p.ok(&["audit", "verify"], "");
    assert!(out.contains("verified"), "{out}");

    // The other nodes stop cleanly on SIGTERM.
    for mut node in nodes.drain(..) {
        let pid = node.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(st.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(s) = node.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "node {pid} did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exit.success(), "node {pid}: {exit:?}");
    }
    eprintln!(
        "{CARDS} cards on three nodes, {} verified, in {:.1} s",
        sample.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// The master key as a file, for opening the key store in this process.
fn write_master(dir: &Path) -> PathBuf {
    let f = dir.join("master.key");
    std::fs::write(&f, MASTER).expect("master key file");
    f
}
