//! `cardwright outlet …` through the real binary, over a SoftHSM2 token holding the card
//! category's base key: init, add (a good package, a refused one), list, an install cut
//! mid-way then `outlet resume --virtual`, records and their check, sync with the platform
//! down then up (`cardwright serve --issuance` over HTTPS): records arrive once.

#[path = "../../server/tests/common/certs.rs"]
mod certs;
mod common;
mod pay_support;
#[path = "../../package/tests/common/mod.rs"]
mod pkg;

use std::path::Path;

use common::softhsm::{available, init_token, SOFTHSM_MODULE};
use common::{components_of, run_env, Run};

const CARD: &str = "4111111111111111";
const BASE: &str = "00112233445566778899AABBCCDDEEFF";
const TOKEN: &str = "desk-operator-token-0123456789";

struct Desk {
    dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
    module: String,
}

impl Desk {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
    fn run(&self, args: &[&str], input: &str) -> Run {
        run_env(args, &self.envs, input)
    }
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args, "");
        assert!(
            r.ok,
            "cardwright {}:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }
    fn fails(&self, args: &[&str], needle: &str) -> String {
        let r = self.run(args, "");
        assert!(
            !r.ok,
            "cardwright {} should fail:\n{}",
            args.join(" "),
            r.stdout
        );
        assert!(
            r.stderr.contains(needle),
            "{} → {}",
            args.join(" "),
            r.stderr
        );
        r.stderr
    }
}

/// A token with the base key of `gold`, the issuer's platform on it, a written virtual card.
fn desk() -> Desk {
    let dir = tempfile::tempdir().unwrap();
    let conf = init_token(dir.path(), "outlet");
    let module = format!("pkcs11:{SOFTHSM_MODULE}?token=outlet");
    let envs = vec![
        ("SOFTHSM2_CONF".to_string(), conf.display().to_string()),
        (
            "CARDWRIGHT_PKCS11_PIN".to_string(),
            common::softhsm::HSM_PIN.to_string(),
        ),
        ("CARDWRIGHT_KEYSTORE".to_string(), module.clone()),
        (
            "CARDWRIGHT_DB".to_string(),
            format!("sqlite:{}", dir.path().join("platform.db").display()),
        ),
        (
            "CARDWRIGHT_OUTLET_DIR".to_string(),
            dir.path().join("outlet").display().to_string(),
        ),
    ];
    let d = Desk { dir, envs, module };
    let r = d.run(
        &["keys", "import-base", "--category", "gold"],
        &components_of(BASE),
    );
    assert!(r.ok, "{}", r.stderr);
    d.ok(&[
        "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
    ]);
    d.ok(&["category", "create", "--id", "gold", "--tenant", "issuer"]);
    let card = d.path("card.json");
    d.ok(&["sim", "create", "--state", &card, "--no-piv"]);
    d.ok(&[
        "issue",
        "--sim",
        &card,
        "write",
        "--card-number",
        CARD,
        "--category",
        "gold",
    ]);
    d
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// The registration applet as `wallet` with a card key pair and a module AES key.
fn wallet(pki: &pkg::Pki) -> Vec<u8> {
    let mut app = pkg::application("wallet");
    app.instance = "F043574B410101".into();
    app.registration = vec![
        package::RegistrationKey {
            id: "sign".into(),
            kind: package::KeyKind::EcP256,
            generate: package::Generate::Card,
            slot: 1,
            subject: None,
        },
        package::RegistrationKey {
            id: "mac".into(),
            kind: package::KeyKind::Aes128,
            generate: package::Generate::Module,
            slot: 2,
            subject: None,
        },
    ];
    let mut m = pkg::template(&[]);
    m.applications = vec![app];
    let cap = include_bytes!("../../gp/tests/data/cardwright_registration.cap").to_vec();
    pkg::build_signed(
        m,
        vec![("wallet".into(), cap)],
        pki.chain(),
        Vec::new(),
        &pki.signer.key,
    )
}

/// A channel that loses the card after `n` APDUs.
struct Pulled<C> {
    inner: C,
    left: usize,
}

impl<C: transport::CardChannel> transport::CardChannel for Pulled<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, transport::TransportError> {
        if self.left == 0 {
            return Err(transport::TransportError::CardRemoved);
        }
        self.left -= 1;
        self.inner.transmit_raw(capdu)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), transport::TransportError> {
        self.inner.reset()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

#[test]
fn outlet_commands() {
    if !available() {
        return;
    }
    let d = desk();
    let pki = pkg::Pki::new(pkg::KeyType::P256);
    let root = write(d.dir.path(), "root.pem", pki.root.pem.as_bytes());
    let good = write(d.dir.path(), "apps.cwpkg", &wallet(&pki));

    // init: the token must hold the category's base key; the directory is made.
    d.fails(
        &[
            "outlet",
            "init",
            "--module",
            &d.module,
            "--trust",
            &root,
            "--category",
            "silver",
            "--id",
            "desk-1",
        ],
        "no usable base key of category",
    );
    let out = d.ok(&[
        "outlet",
        "init",
        "--module",
        &d.module,
        "--trust",
        &root,
        "--category",
        "gold",
        "--id",
        "desk-1",
    ]);
    assert!(
        out.contains("outlet desk-1 created") && out.contains("BEGIN CERTIFICATE"),
        "{out}"
    );
    d.fails(
        &[
            "outlet",
            "init",
            "--module",
            &d.module,
            "--trust",
            &root,
            "--category",
            "gold",
            "--id",
            "desk-1",
        ],
        "holds an outlet already",
    );
    assert!(
        !std::fs::read_to_string(d.dir.path().join("outlet/outlet.toml"))
            .unwrap()
            .contains("1234")
    );

    // add: a package whose signer is not trusted is refused with its reason; the good one
    // is stored.
    let stranger = pkg::Pki::new(pkg::KeyType::P256);
    let bad = write(d.dir.path(), "bad.cwpkg", &wallet(&stranger));
    let e = d.fails(&["outlet", "add", &bad], "package refused");
    assert!(e.contains("not trusted"), "{e}");
    let out = d.ok(&["outlet", "add", &good]);
    assert!(out.contains("added wallet 1.2.0"), "{out}");
    let list: serde_json::Value =
        serde_json::from_str(&d.ok(&["outlet", "list", "--json"])).unwrap();
    assert_eq!(list["applications"].as_array().unwrap().len(), 1);
    assert_eq!(list["applications"][0]["name"], "wallet");

    // An install interrupted after 10 APDUs (by this process, as the page would run it),
    // then finished by `outlet resume --virtual`.
    {
        std::env::set_var("SOFTHSM2_CONF", &d.envs[0].1);
        std::env::set_var("CARDWRIGHT_PKCS11_PIN", common::softhsm::HSM_PIN);
        let m = outlet::Module::open(&d.dir.path().join("outlet")).unwrap();
        let card =
            card::VirtualCard::open(Path::new(&d.path("card.json")), card::CardConfig::default())
                .unwrap();
        let mut pulled = Pulled {
            inner: card::VirtualChannel::new(card),
            left: 10,
        };
        let e = m.install(&mut pulled, "wallet", &mut |_| {}).unwrap_err();
        assert_eq!(e.code(), "card_removed");
    }
    let out = d.ok(&["outlet", "list"]);
    assert!(
        out.contains("interrupted: wallet on card 4111111111111111"),
        "{out}"
    );
    let out = d.ok(&["outlet", "resume", "--virtual", &d.path("card.json")]);
    assert!(
        out.contains("finished: wallet installed on card 4111111111111111"),
        "{out}"
    );
    let out = d.ok(&["outlet", "resume", "--virtual", &d.path("card.json")]);
    assert!(out.contains("nothing to resume"), "{out}");
    let state = std::fs::read_to_string(d.path("card.json")).unwrap();
    assert!(
        state.contains("F043574B410101"),
        "the instance is on the card"
    );

    // Records: interrupted, then ok; the chain verifies.
    let out = d.ok(&["outlet", "records"]);
    assert!(
        out.contains("interrupted") && out.contains(" ok ") && out.contains("queued"),
        "{out}"
    );
    let records: serde_json::Value =
        serde_json::from_str(&d.ok(&["outlet", "records", "--json"])).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 2);
    let out = d.ok(&["outlet", "records", "--verify"]);
    assert!(out.contains("2 records") && out.contains(": ok"), "{out}");

    // Sync: the platform down, then up.
    let mut envs = d.envs.clone();
    envs.push(("CARDWRIGHT_TOKEN".into(), TOKEN.into()));
    let down = run_env(
        &["outlet", "sync", "--server", "https://127.0.0.1:1"],
        &envs,
        "",
    );
    assert!(
        !down.ok && down.stderr.contains("unreachable"),
        "{}",
        down.stderr
    );
    let mut ca = certs::Ca::new("Platform CA");
    let leaf = ca.server();
    let tls_cert = write(d.dir.path(), "tls.pem", leaf.chain_pem.as_bytes());
    let tls_key = write(d.dir.path(), "tls-key.pem", leaf.key_pem.as_bytes());
    let ca_pem = write(d.dir.path(), "platform-ca.pem", ca.pem.as_bytes());
    let operator = format!("issuer/desk={TOKEN}");
    let db = d.envs[3].1.clone();
    let env_refs: Vec<(&str, &str)> = d
        .envs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let platform = pay_support::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--issuance",
            "--db",
            &db,
            "--keystore",
            &d.module,
            "--tls-cert",
            &tls_cert,
            "--tls-key",
            &tls_key,
            "--operator-token",
            &operator,
        ],
        &env_refs,
    );
    let url = platform.url.replace("127.0.0.1", "localhost");
    let sync = |envs: &[(String, String)]| {
        run_env(
            &["outlet", "sync", "--server", &url, "--server-ca", &ca_pem],
            envs,
            "",
        )
    };
    let r = sync(&envs);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("sent 2 records: 2 stored, 0 already there"),
        "{}",
        r.stdout
    );
    let r = sync(&envs);
    assert!(
        r.ok && r.stdout.contains("nothing to send"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let db_path = db.trim_start_matches("sqlite:");
    let n: i64 = rusqlite::Connection::open(db_path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM outlet_records WHERE outlet = 'desk-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2);
    // Without a token: refused before anything is sent.
    let r = sync(&d.envs);
    assert!(
        !r.ok && r.stderr.contains("no bearer token"),
        "{}",
        r.stderr
    );
    let out = d.ok(&["outlet", "records"]);
    assert!(out.matches("synced").count() == 2, "{out}");
    d.ok(&["outlet", "remove", "wallet"]);
    d.fails(&["outlet", "remove", "wallet"], "no application wallet");
}
