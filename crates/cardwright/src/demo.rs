//! `cardwright demo`: the issuing platform on its embedded defaults (SQLite, the software key
//! store, a virtual card in process) walking one card through write → rewrite → clear, and
//! proving each step with an independent secure channel.

use crate::sim::SimChannel;
use anyhow::{anyhow, Result};
use card::{CardConfig, VirtualCard};
use clap::Args;
use gpclient::{GpClient, KeySpec, OpenOptions};
use std::sync::Arc;
use transport::{CardChannel, Traced};

/// `cardwright demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Also run the speed measurements of `cardwright bench` (a few seconds).
    #[arg(long)]
    pub bench: bool,
}

const CARD: &str = "4711000000000001";
const CATEGORY: &str = "demo/gold";

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

/// Opens a channel to the card with these keys, stopping before EXTERNAL AUTHENTICATE if
/// they are wrong; returns whether they opened it.
fn opens(chan: &mut Box<dyn CardChannel>, keys: &scp::StaticKeys) -> Result<bool> {
    let spec = KeySpec::from_static(keys, 0);
    let mut cl = GpClient::new(Traced::new(&mut **chan, None));
    let r = cl.open_secure_channel(&OpenOptions {
        keys: spec,
        level: scp::SecurityLevel::MAC,
        scp: None,
        sd: None,
    });
    match r {
        Ok(_) => Ok(true),
        Err(gpclient::ClientError::WrongKeys { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "opens the card"
    } else {
        "refused (card cryptogram does not verify; nothing sent to spend the counter)"
    }
}

/// `cardwright demo [--bench]`: the issuance walk-through, then the `gp`-style tour, then
/// (with `--bench`) the speed figures.
pub fn run(a: DemoArgs) -> Result<()> {
    println!("=== Card issuance: platform on SQLite + software key store, a virtual card (write, rewrite, clear)");
    issuance()?;
    println!("\n=== Card management like gp, on a virtual card");
    tour()?;
    if a.bench {
        println!("\n=== Speed (cardwright bench --runs 5)");
        crate::bench::run(crate::cli::BenchArgs {
            reader: None,
            cap_kb: 10,
            runs: 5,
        })?;
    }
    Ok(())
}

/// A test CAP file with one package and one applet (see crates/gp/tests/data/SOURCES.md).
const DEMO_CAP: &[u8] = include_bytes!("../../gp/tests/data/Empty_0102030405_8d5ac9e2_2.2.1.cap");
const SSD: &str = "A00000015153534401";
const BANK_KEY: &str = "000102030405060708090A0B0C0D0E0F";

/// Runs `cardwright ARGS` (this very program) in `dir`, printing the command line and then
/// everything it printed, standard error included, so the tour reads as a terminal session.
/// Returns whether it succeeded.
fn shell(dir: &std::path::Path, args: &[&str]) -> Result<bool> {
    println!("\n$ cardwright {}", args.join(" "));
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .current_dir(dir)
        .env("CARDWRIGHT_LOG", "warn")
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(out.status.success())
}

/// Like [`shell`], and the command must succeed.
fn shell_ok(dir: &std::path::Path, args: &[&str]) -> Result<()> {
    if shell(dir, args)? {
        Ok(())
    } else {
        Err(anyhow!("demo step failed: cardwright {}", args.join(" ")))
    }
}

/// The `gp`-style tour of `card` commands on a virtual card in a temporary directory.
fn tour() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(d.join("applet.cap"), DEMO_CAP)?;
    println!("(in a temporary directory with applet.cap, a test CAP file with one applet)");
    println!("\n# A new virtual card (SCP03, GP test keys 40..4F)");
    shell_ok(d, &["sim", "create", "--state", "card.json"])?;
    shell_ok(d, &["card", "--sim", "card.json", "info"])?;
    shell_ok(d, &["card", "--sim", "card.json", "list"])?;
    println!("\n# The issuer creates a supplementary security domain for a bank, with Authorized Management");
    shell_ok(
        d,
        &[
            "card",
            "--sim",
            "card.json",
            "create-domain",
            SSD,
            "--privs",
            "am",
        ],
    )?;
    println!("\n# The SSD's initial keys are replaced by the bank's AES keys (key version 0x31)");
    shell_ok(
        d,
        &[
            "card",
            "--sim",
            "card.json",
            "--sd",
            SSD,
            "lock",
            "--new-key",
            BANK_KEY,
            "--new-keyver",
            "0x31",
        ],
    )?;
    println!(
        "\n# The bank loads and installs its applet into its SSD, with C-MAC and C-DECRYPTION"
    );
    shell_ok(
        d,
        &[
            "card",
            "--sim",
            "card.json",
            "--sd",
            SSD,
            "--key",
            BANK_KEY,
            "--security-level",
            "mac+enc",
            "install",
            "applet.cap",
            "--create",
            "01020304050607080901",
        ],
    )?;
    shell_ok(
        d,
        &[
            "card",
            "--sim",
            "card.json",
            "store-data",
            SSD,
            "DF0103010203",
        ],
    )?;
    shell_ok(d, &["card", "--sim", "card.json", "list"])?;
    println!("\n# Trying the old keys on the SSD: refused before EXTERNAL AUTHENTICATE (no failure counted)");
    if shell(d, &["card", "--sim", "card.json", "--sd", SSD, "list"])? {
        return Err(anyhow!("demo: the SSD's old keys still open it"));
    }
    shell_ok(
        d,
        &[
            "card",
            "--sim",
            "card.json",
            "delete",
            "--related",
            "0102030405",
        ],
    )?;
    shell_ok(d, &["card", "--sim", "card.json", "delete", SSD])?;
    shell_ok(d, &["card", "--sim", "card.json", "list"])?;
    Ok(())
}

/// The issuance part: platform, key store and a virtual card in process.
fn issuance() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite:{}", dir.path().join("platform.db").display());
    println!("Cardwright demo: issuing platform on SQLite ({db}),");
    println!(
        "software key store (encrypted at rest under a fresh master key), virtual card in process."
    );

    step(
        1,
        "Key store: a base key for category demo/gold, generated inside the key store",
    );
    let master = kms::MasterKey::generate()?;
    let keys: Arc<dyn kms::KeyStore> = Arc::new(kms::SoftwareKeyStore::create(
        dir.path().join("keys.json"),
        master,
    )?);
    let v1 = keys.generate_base_key(CATEGORY, kms::KeyKind::Aes, 16, None)?;
    println!("    {v1}");

    step(
        2,
        "Platform: card issuer tenant, card category, base key version 1 registered (KCV only)",
    );
    let store = tsm::Store::open(&db)?;
    let actor = "issuer/demo";
    store.create_tenant(
        actor,
        "issuer",
        "Demo card issuer",
        tsm::model::Role::CardIssuer,
    )?;
    store.create_category(
        actor,
        &tsm::CategorySpec {
            id: CATEGORY.into(),
            tenant: "issuer".into(),
            description: "demo category".into(),
            initial_keys: tsm::model::InitialKeys::GpTestKey,
            initial_kvn: 0x30,
            perso: apdu::parse_hex("5F2001AA")?,
        },
    )?;
    store.register_key_version(actor, CATEGORY, v1.version, CATEGORY, v1.kind, v1.kcv, true)?;

    let issuer = tsm::Issuer::new(store.clone(), keys.clone(), tsm::IssuerConfig::default());
    let who = tsm::Actor::new("issuer", "demo");
    let mut chan: Box<dyn CardChannel> = Box::new(SimChannel::named(
        VirtualCard::new(CardConfig::default()),
        "virtual card".into(),
    ));
    let test_key = scp::StaticKeys::same(scp::Key::aes(&gpclient::DEFAULT_TEST_KEY)?);
    println!(
        "    a blank virtual card: the GP test key {}",
        yes(opens(&mut chan, &test_key)?)
    );

    step(3, &format!("write card {CARD}: derive its keys (KDF3 from base v1 and the card number), PUT KEY, KDD, personalisation"));
    let o = issuer.write(&who, CARD, CATEGORY, &mut chan)?;
    report(&o);
    let k1 = keys.derive_card_keys(CATEGORY, 1, CARD)?;
    println!(
        "    keys derived from base v1: {}",
        yes(opens(&mut chan, &k1)?)
    );
    println!("    the GP test key: {}", yes(opens(&mut chan, &test_key)?));

    step(4, "rotate the base key (v2), then rewrite: prove the current keys with a secure channel, derive and put new ones");
    let v2 = keys.rotate(CATEGORY)?;
    store.register_key_version(actor, CATEGORY, v2.version, CATEGORY, v2.kind, v2.kcv, true)?;
    println!("    {v2}");
    let o = issuer.rewrite(&who, CARD, CATEGORY, &mut chan)?;
    report(&o);
    let k2 = keys.derive_card_keys(CATEGORY, 2, CARD)?;
    println!("    keys from base v1: {}", yes(opens(&mut chan, &k1)?));
    println!("    keys from base v2: {}", yes(opens(&mut chan, &k2)?));

    step(
        5,
        "clear: prove the keys, erase personalisation and applications, put the initial keys back",
    );
    let o = issuer.clear(&who, CARD, CATEGORY, &mut chan)?;
    report(&o);
    println!("    keys from base v2: {}", yes(opens(&mut chan, &k2)?));
    println!("    the GP test key: {}", yes(opens(&mut chan, &test_key)?));

    step(6, "audit log: every action, hash-chained");
    for e in store.audit_for_card(CARD)? {
        println!(
            "    #{:<3} {:<22} {:<10} {}",
            e.id, e.action, e.result, e.actor
        );
    }
    let report = store.audit_verify()?;
    if !report.is_ok() {
        return Err(anyhow!(
            "audit chain does not verify: {:?}",
            report.first_bad
        ));
    }
    println!("    chain verified: {} entries", report.entries);
    drop(dir);
    Ok(())
}

fn report(o: &tsm::Outcome) {
    let t = &o.timing;
    println!(
        "    job {} {}: card {} now {} (base key version {}), {} APDUs in {:.2} ms (card {:.2}, database {:.2}, keys {:.2})",
        o.job.id,
        o.job.state,
        o.card.card_number,
        o.card.state,
        o.card.key_version.map(|v| v.to_string()).unwrap_or_else(|| "initial".into()),
        o.apdus,
        t.total.as_secs_f64() * 1e3,
        t.card.as_secs_f64() * 1e3,
        t.database.as_secs_f64() * 1e3,
        t.keys.as_secs_f64() * 1e3,
    );
}
