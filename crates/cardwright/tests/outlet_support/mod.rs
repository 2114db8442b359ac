//! An outlet set up as at a shop, with the real binary: a SoftHSM2 token holding the card
//! category's base key (`keys import-base`), the issuer's platform writing a virtual card
//! with keys derived from it (`issue write`), a provider's PKI made with rcgen, `package
//! build`, `outlet init` on the token, `outlet add`, the card in pcscd's vpcd reader
//! (`sim run --vpcd`) and `outlet serve --reader`; and a client of the outlet's page that
//! clicks like the page does (session cookie, CSRF token, Origin).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration as Span, OffsetDateTime};

use crate::common::softhsm::{self, HSM_PIN, SOFTHSM_MODULE};
use crate::common::{bin, components_of, run_env, Run};

/// The card category's base key (AES-128), in the token.
pub const BASE: &str = "0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFFF";
/// The card's number (its KDD, as the issuer wrote it).
pub const CARD: &str = "1000000042";
/// The outlet's id.
pub const OUTLET: &str = "shop-1";
/// The issuer's operator token (platform `serve`, `outlet sync`).
pub const OPERATOR: &str = "outlet-operator-token-0123456789";

/// A running process, killed on drop.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The shop: a directory, the token, the environment of every `cardwright` it runs.
pub struct Shop {
    pub dir: tempfile::TempDir,
    /// `SOFTHSM2_CONF`, `CARDWRIGHT_KEYSTORE` (the token), `CARDWRIGHT_DB` (the issuer's
    /// platform).
    pub vars: Vec<(String, String)>,
    /// The token's kms configuration.
    pub module: String,
    /// The virtual card's state file.
    pub card_state: PathBuf,
    /// The outlet's directory.
    pub outlet_dir: PathBuf,
    /// The provider's root (PEM file), the outlet's trust anchor.
    pub root_pem: PathBuf,
    signer_pem: PathBuf,
    signer_key: PathBuf,
}

impl Shop {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `cardwright ARGS` in the shop's environment.
    pub fn run(&self, args: &[&str], input: &str) -> Run {
        run_env(args, &self.vars, input)
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args, "");
        assert!(
            r.ok,
            "cardwright {} failed:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// `outlet --dir DIR ARGS…`.
    pub fn outlet(&self, args: &[&str]) -> Run {
        let mut all = vec!["outlet", "--dir", s(&self.outlet_dir)];
        all.extend_from_slice(args);
        self.run(&all, "")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("CARDWRIGHT_LOG", "warn")
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// Starts `cardwright ARGS` with stdout piped; returns it and its first stdout line.
    pub fn spawn_reading(&self, args: &[&str]) -> (Proc, BufReader<ChildStdout>, String) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cardwright");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("first line");
        (Proc(child), out, line)
    }
}

/// The token, the issuer's base key, platform and card, the provider's PKI.
pub fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm::init_token(dir.path(), "outlet");
    let pin = dir.path().join("pin");
    std::fs::write(&pin, HSM_PIN).unwrap();
    let module = format!(
        "pkcs11:{SOFTHSM_MODULE}?token=outlet&pin-file={}",
        pin.display()
    );
    let vars = vec![
        ("SOFTHSM2_CONF".into(), conf.display().to_string()),
        ("CARDWRIGHT_KEYSTORE".into(), module.clone()),
        (
            "CARDWRIGHT_DB".into(),
            format!("sqlite:{}", dir.path().join("platform.db").display()),
        ),
    ];
    let card_state = dir.path().join("card.json");
    let outlet_dir = dir.path().join("outlet");
    let (root_pem, signer_pem, signer_key) = provider_pki(dir.path());
    let shop = Shop {
        dir,
        vars,
        module,
        card_state,
        outlet_dir,
        root_pem,
        signer_pem,
        signer_key,
    };
    // The issuer: its base key in the token (two components), its platform, the card.
    let r = shop.run(
        &["keys", "import-base", "--category", "gold"],
        &components_of(BASE),
    );
    assert!(r.ok, "keys import-base: {}", r.stderr);
    shop.ok(&[
        "tenant", "create", "--id", "issuer", "--name", "Issuer", "--role", "ci",
    ]);
    shop.ok(&["category", "create", "--id", "gold", "--tenant", "issuer"]);
    shop.ok(&["sim", "create", "--state", s(&shop.card_state), "--no-piv"]);
    let w = shop.ok(&[
        "issue",
        "--sim",
        s(&shop.card_state),
        "write",
        "--card-number",
        CARD,
        "--category",
        "gold",
        "--no-apps",
    ]);
    assert!(w.contains("is written"), "{w}");
    shop
}

/// The provider's root CA and package signer (P-256), as PEM files.
fn provider_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.distinguished_name
        .push(DnType::CommonName, "Example Transit Root");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.not_before = now - Span::days(1);
    root.not_after = now + Span::days(3650);
    let root_cert = root.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(root, root_key);
    let key = KeyPair::generate().unwrap();
    let mut signer = CertificateParams::new(Vec::<String>::new()).unwrap();
    signer
        .distinguished_name
        .push(DnType::CommonName, "Example Transit packages");
    signer.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    signer.not_before = now - Span::days(1);
    signer.not_after = now + Span::days(365);
    let cert = signer.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("provider-root.pem"),
        dir.join("signer.pem"),
        dir.join("signer-key.pem"),
    );
    std::fs::write(&paths.0, root_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// One application of a package: its name, title, CAP file and manifest lines after
/// `version` (privileges, registration tables).
pub struct App<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub cap: &'a Path,
    pub extra: &'a str,
}

/// The registration recipe of the browser test: a P-256 key pair generated on the card
/// (slot 1, certified by the module) and an AES-128 key generated in the module (slot 2).
pub const REGISTRATION_RECIPE: &str = r#"
[[application.registration]]
id = "sign"
kind = "ec-p256"
generate = "card"
slot = 1
subject = "Transit ID {card}"

[[application.registration]]
id = "mac"
kind = "aes128"
generate = "module"
slot = 2
"#;

impl Shop {
    /// `package build` of `apps`, signed by the provider; returns the package file.
    pub fn build_package(&self, file: &str, apps: &[App<'_>]) -> PathBuf {
        let at = |d: i64| {
            (OffsetDateTime::now_utc() + Span::days(d))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let mut manifest = format!(
            "format = \"cardwright-package/1\"\nprovider = \"Example Transit Ltd\"\n\
             not_before = \"{}\"\nnot_after = \"{}\"\n",
            at(-1),
            at(30)
        );
        let mut specs = Vec::new();
        for a in apps {
            manifest.push_str(&format!(
                "\n[[application]]\nname = \"{}\"\ntitle = \"{}\"\nversion = \"1.0.0\"\n{}",
                a.name, a.title, a.extra
            ));
            specs.push(format!("{}:{}", a.name, s(a.cap)));
        }
        let template = self.path(&format!("{file}.toml"));
        std::fs::write(&template, manifest).unwrap();
        let out = self.path(file);
        let sign_key = format!("file:{}", s(&self.signer_key));
        let mut args = vec!["package", "build"];
        for spec in &specs {
            args.extend(["--app", spec.as_str()]);
        }
        args.extend([
            "--manifest",
            s(&template),
            "--sign-key",
            &sign_key,
            "--sign-cert",
            s(&self.signer_pem),
            "--out",
            s(&out),
        ]);
        self.ok(&args);
        out
    }

    /// `outlet init` on the token, trusting the provider's root.
    pub fn outlet_init(&self) -> String {
        let r = self.outlet(&[
            "init",
            "--module",
            &self.module,
            "--trust",
            s(&self.root_pem),
            "--category",
            "gold",
            "--id",
            OUTLET,
        ]);
        assert!(r.ok, "outlet init: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    /// `outlet add PACKAGE`.
    pub fn outlet_add(&self, package: &Path) {
        let r = self.outlet(&["add", s(package)]);
        assert!(r.ok, "outlet add: {}{}", r.stdout, r.stderr);
    }

    /// `outlet serve --listen 127.0.0.1:0 --reader READER`; returns it and the page's URL.
    pub fn serve_outlet(&self, reader: &str) -> (Proc, String) {
        let (p, out, line) = self.spawn_reading(&[
            "outlet",
            "--dir",
            s(&self.outlet_dir),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--reader",
            reader,
        ]);
        // Nothing more comes on stdout; the pipe may go.
        drop(out);
        let url = line
            .trim()
            .strip_prefix("cardwright outlet: the catalog at ")
            .unwrap_or_else(|| panic!("outlet serve said: {line}"))
            .trim_end_matches('/')
            .to_string();
        (p, url)
    }
}

/// A client of the outlet's page that sends what the page sends.
pub struct PageClient {
    base: String,
    agent: ureq::Agent,
    cookie: String,
    csrf: String,
}

impl PageClient {
    /// Opens the page (`GET /`): its session cookie and the CSRF token in its `<meta>`.
    pub fn open(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent.get(&format!("{base}/")).call().expect("GET /");
        assert_eq!(r.status().as_u16(), 200);
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_string();
        let html = r.body_mut().read_to_string().unwrap();
        let marker = "<meta name=\"csrf-token\" content=\"";
        let start = html.find(marker).expect("csrf meta") + marker.len();
        let csrf = html[start..start + 64].to_string();
        Self {
            base: base.to_string(),
            agent,
            cookie,
            csrf,
        }
    }

    /// `GET /api/state`.
    pub fn state(&self) -> serde_json::Value {
        let mut r = self
            .agent
            .get(&format!("{}/api/state", self.base))
            .call()
            .expect("GET /api/state");
        assert_eq!(r.status().as_u16(), 200);
        r.body_mut().read_json().unwrap()
    }

    /// Waits until the page shows the card as `status`.
    pub fn wait_card(&self, status: &str) {
        let t0 = Instant::now();
        loop {
            let s = self.state();
            if s["card"]["status"] == status {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the card never became {status}: {s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The click: `POST /api/install`; returns the job's id.
    pub fn install(&self, application: &str) -> u64 {
        let mut r = self
            .agent
            .post(&format!("{}/api/install", self.base))
            .header("Origin", &self.base)
            .header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .send_json(serde_json::json!({ "application": application }))
            .expect("POST /api/install");
        let status = r.status().as_u16();
        let body: serde_json::Value = r.body_mut().read_json().unwrap();
        assert_eq!(status, 202, "{body}");
        body["id"].as_u64().expect("job id")
    }

    /// Polls `GET /api/state` every `every` until job `id` ends; returns the job.
    pub fn finished(&self, id: u64, every: Duration) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let s = self.state();
            let job = &s["job"];
            if job["id"] == id && job["state"] != "running" {
                return job.clone();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "job {id} never ended: {s}"
            );
            std::thread::sleep(every);
        }
    }
}

/// A free TCP port on the loopback address (nothing listens on it once returned).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TLS CA and a server certificate for `localhost` and 127.0.0.1 (the platform's HTTPS):
/// (CA PEM file, certificate PEM file, key PEM file).
pub fn platform_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "Platform TLS CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca.not_before = now - Span::days(1);
    ca.not_after = now + Span::days(30);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.not_before = now - Span::days(1);
    leaf.not_after = now + Span::days(30);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("platform-ca.pem"),
        dir.join("platform.pem"),
        dir.join("platform-key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}
