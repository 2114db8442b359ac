//! `cardwright handset`: a phone for tests and labs. It holds a UICC (a PC/SC reader or a
//! virtual card state file), runs the SMSC-facing SMPP endpoint the SMSC delivers to, and a
//! control socket through which `cardwright handset menu` shows the card's menu and selects
//! an item in it. docs/OTA.md "The handset" tells how SMS map to ENVELOPEs and back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::handset_phone::{CardSource, Menu, Phone, Request};

/// `cardwright handset …`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HandsetArgs {
    #[command(subcommand)]
    pub command: Option<HandsetCommand>,
    #[command(flatten)]
    pub run: HandsetRunArgs,
}

/// What a running handset is asked through its control socket.
#[derive(Debug, Subcommand)]
pub enum HandsetCommand {
    /// Print the card's menu (SET UP MENU), or select an item in it (ENVELOPE MENU
    /// SELECTION) and print what the card did (the MO SMS sent).
    Menu(MenuArgs),
}

/// `cardwright handset menu`.
#[derive(Debug, Args)]
pub struct MenuArgs {
    /// The item to select: its text (case-insensitive), its number, or a part of its text
    /// that names one item.
    #[arg(long)]
    pub select: Option<String>,
    /// The running handset's control socket (default: $XDG_RUNTIME_DIR/cardwright-handset.sock,
    /// or /tmp/cardwright-handset-UID.sock).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

/// `cardwright handset` (run the phone).
#[derive(Debug, Args)]
pub struct HandsetRunArgs {
    /// The PC/SC reader holding the UICC (its name or part of it), e.g. 'Virtual PCD 00 00'.
    #[arg(long, conflicts_with = "virtual_card")]
    pub reader: Option<String>,
    /// A virtual card state file, driven in process instead of a reader.
    #[arg(long = "virtual", value_name = "FILE")]
    pub virtual_card: Option<PathBuf>,
    /// Where the SMSC-facing SMPP endpoint listens and the account the SMSC binds with:
    /// smpp://USER:PASS@HOST:PORT (e.g. smpp://jasmin:jaspass@127.0.0.1:2776).
    #[arg(long, value_name = "URL")]
    pub smpp: Option<String>,
    /// The handset's own number (MSISDN, international, with or without '+'): the source of
    /// its MO SMS.
    #[arg(long)]
    pub msisdn: Option<String>,
    /// The control socket to listen on (default: $XDG_RUNTIME_DIR/cardwright-handset.sock, or
    /// /tmp/cardwright-handset-UID.sock).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// How often (ms) the card is polled with STATUS for pending proactive commands.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// Lab fault: lose these MT SMS over the air (1-based, in order of arrival, e.g.
    /// `3,7`): not given to the card, no delivery receipt.
    #[arg(long, value_name = "N,…", value_delimiter = ',')]
    pub lose_mt: Vec<u64>,
}

/// Runs `cardwright handset [menu]`.
pub fn run(a: HandsetArgs) -> Result<()> {
    match a.command {
        Some(HandsetCommand::Menu(m)) => menu_client(m),
        None => run_handset(a.run),
    }
}

/// The default control socket: in $XDG_RUNTIME_DIR, else /tmp with the user's id.
pub fn default_control_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("cardwright-handset.sock"),
        None => {
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata("/proc/self")
                .map(|m| m.uid())
                .unwrap_or(0);
            PathBuf::from(format!("/tmp/cardwright-handset-{uid}.sock"))
        }
    }
}

fn msisdn_arg(v: &str) -> Result<String> {
    let digits = v.trim().trim_start_matches('+');
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--msisdn {v}: expected an international number, digits only (e.g. 4917012345)");
    }
    Ok(digits.to_owned())
}

fn run_handset(a: HandsetRunArgs) -> Result<()> {
    let source = match (a.reader, a.virtual_card) {
        (Some(r), None) => CardSource::Reader(r),
        (None, Some(p)) => CardSource::Virtual(p),
        _ => {
            bail!("which card? --reader NAME (PC/SC) or --virtual FILE (a virtual card state file)")
        }
    };
    let url = a
        .smpp
        .ok_or_else(|| anyhow!("--smpp smpp://USER:PASS@HOST:PORT is needed: where the SMSC connects, and with which account"))?;
    let config = smpp::EsmeConfig::from_url(&url).map_err(|e| anyhow!("--smpp: {e}"))?;
    let msisdn = msisdn_arg(
        a.msisdn
            .as_deref()
            .ok_or_else(|| anyhow!("--msisdn is needed: the handset's own number"))?,
    )?;
    if a.poll_ms == 0 {
        bail!("--poll-ms must be at least 1");
    }
    let control = a.control.unwrap_or_else(default_control_path);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let poll = Duration::from_millis(a.poll_ms);
    rt.block_on(serve(source, config, msisdn, control, poll, a.lose_mt))
}

/// Binds the control socket; a socket file nobody answers on is left over from a handset
/// that was killed, and is replaced.
fn bind_control(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "another handset is running on the control socket {} (--control PATH for a second one)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale control socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("control socket {}", path.display()))?;
    Ok(listener)
}

async fn serve(
    source: CardSource,
    config: smpp::EsmeConfig,
    msisdn: String,
    control: PathBuf,
    poll: Duration,
    lose_mt: Vec<u64>,
) -> Result<()> {
    let (endpoint, mut mt_rx) = smpp::HandsetEndpoint::listen(
        (config.host.as_str(), config.port),
        config.credentials.clone(),
    )
    .await
    .with_context(|| format!("SMPP endpoint on {}:{}", config.host, config.port))?;
    let listener = bind_control(&control)?;
    let _cleanup = RemoveOnDrop(control.clone());
    tracing::info!(
        "handset +{msisdn}: SMSC endpoint {} (the SMSC binds as {}), control socket {}",
        endpoint.local_addr(),
        config.credentials.system_id,
        control.display()
    );
    println!(
        "handset +{msisdn} ready: SMSC endpoint {}, control socket {}",
        endpoint.local_addr(),
        control.display()
    );
    let menu: Arc<Mutex<Option<Menu>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = std::sync::mpsc::channel::<Request>();
    let phone = Phone::new(
        source,
        menu.clone(),
        endpoint.clone(),
        tokio::runtime::Handle::current(),
        &msisdn,
        poll,
        tx.clone(),
    )
    .with_lost_mt(lose_mt);
    let card_thread = std::thread::Builder::new()
        .name("handset-card".into())
        .spawn(move || phone.run(rx))
        .context("card thread")?;
    let mt_tx = tx.clone();
    let endpoint_for_control = endpoint.clone();
    tokio::spawn(async move {
        while let Some(mt) = mt_rx.recv().await {
            if mt_tx.send(Request::Mt(Box::new(mt))).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(control_session(
                        stream,
                        menu.clone(),
                        tx.clone(),
                        endpoint_for_control.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("handset: stopping");
    endpoint.close();
    drop(card_thread);
    Ok(())
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A control request: `{"cmd":"menu"}` / `menu`, or `{"cmd":"select","item":"wallet"}` /
/// `select wallet`.
fn parse_request(line: &str) -> Result<(String, Option<String>), String> {
    let line = line.trim();
    if line.starts_with('{') {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
        let cmd = v["cmd"]
            .as_str()
            .ok_or("a JSON request needs \"cmd\"")?
            .to_owned();
        let item = match &v["item"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        return Ok((cmd, item));
    }
    let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    Ok((
        cmd.to_lowercase(),
        (!rest.is_empty()).then(|| rest.to_owned()),
    ))
}

fn menu_json(menu: &Option<Menu>, smsc_sessions: usize) -> Value {
    match menu {
        Some(m) => json!({
            "ok": true,
            "title": m.title,
            "items": m.items.iter().map(|(id, text)| json!({"id": id, "text": text})).collect::<Vec<_>>(),
            "smsc_sessions": smsc_sessions,
        }),
        None => json!({"ok": true, "title": null, "items": [], "smsc_sessions": smsc_sessions}),
    }
}

async fn answer(
    line: &str,
    menu: &Arc<Mutex<Option<Menu>>>,
    tx: &std::sync::mpsc::Sender<Request>,
    endpoint: &smpp::EndpointHandle,
) -> Value {
    let fail = |e: String| json!({"ok": false, "error": e});
    let (cmd, item) = match parse_request(line) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match cmd.as_str() {
        "menu" => menu_json(
            &menu.lock().unwrap_or_else(|e| e.into_inner()),
            endpoint.bound_sessions(),
        ),
        "select" => {
            let Some(item) = item else {
                return fail("select what? (select ITEM)".into());
            };
            let (reply, rx) = tokio::sync::oneshot::channel();
            if tx.send(Request::Select { item, reply }).is_err() {
                return fail("the handset is stopping".into());
            }
            match rx.await {
                Ok(Ok(s)) => json!({
                    "ok": true,
                    "item": {"id": s.id, "text": s.text},
                    "sw": format!("{:04X}", s.sw),
                    "mo": s.mo.iter().map(|m| json!({"to": m.to, "octets": m.octets, "accepted": m.accepted})).collect::<Vec<_>>(),
                }),
                Ok(Err(e)) => fail(e),
                Err(_) => fail("the handset is stopping".into()),
            }
        }
        other => fail(format!("unknown request '{other}' (menu, select ITEM)")),
    }
}

async fn control_session(
    stream: tokio::net::UnixStream,
    menu: Arc<Mutex<Option<Menu>>>,
    tx: std::sync::mpsc::Sender<Request>,
    endpoint: smpp::EndpointHandle,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let mut out = answer(&line, &menu, &tx, &endpoint).await.to_string();
        out.push('\n');
        if write.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// `cardwright handset menu [--select ITEM]`: asks the running handset.
fn menu_client(a: MenuArgs) -> Result<()> {
    let path = a.control.unwrap_or_else(default_control_path);
    let mut stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "no handset answers on {} (is `cardwright handset` running? --control PATH)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let request = match &a.select {
        Some(item) => json!({"cmd": "select", "item": item}),
        None => json!({"cmd": "menu"}),
    };
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("reading the handset's answer")?;
    let v: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("the handset's answer is not JSON: {line}"))?;
    if v["ok"] != Value::Bool(true) {
        bail!("{}", v["error"].as_str().unwrap_or("the handset refused"));
    }
    if a.select.is_none() {
        match v["title"].as_str() {
            None => println!("(no menu: the card has not sent SET UP MENU)"),
            Some(title) => {
                println!("{title}");
                for i in v["items"].as_array().into_iter().flatten() {
                    println!("  {:>2}  {}", i["id"], i["text"].as_str().unwrap_or(""));
                }
            }
        }
        println!("SMSC sessions bound: {}", v["smsc_sessions"]);
        return Ok(());
    }
    println!(
        "selected {} {}: ENVELOPE (MENU SELECTION) → {}",
        v["item"]["id"],
        v["item"]["text"].as_str().unwrap_or(""),
        v["sw"].as_str().unwrap_or("")
    );
    let mos = v["mo"].as_array().cloned().unwrap_or_default();
    if mos.is_empty() {
        println!("no MO SMS sent");
    }
    for m in mos {
        let to = m["to"].as_str().unwrap_or("");
        if m["accepted"] == Value::Bool(true) {
            println!("MO SMS sent to {to} ({} octets)", m["octets"]);
        } else {
            println!(
                "MO SMS to {to} ({} octets) NOT taken by the SMSC",
                m["octets"]
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_json_or_text() {
        assert_eq!(parse_request("menu").unwrap(), ("menu".into(), None));
        assert_eq!(
            parse_request("select  Transit pass ").unwrap(),
            ("select".into(), Some("Transit pass".into()))
        );
        assert_eq!(
            parse_request(r#"{"cmd":"select","item":"wallet"}"#).unwrap(),
            ("select".into(), Some("wallet".into()))
        );
        assert_eq!(
            parse_request(r#"{"cmd":"select","item":2}"#).unwrap(),
            ("select".into(), Some("2".into()))
        );
        assert!(parse_request("{nope").is_err());
        assert!(parse_request(r#"{"item":1}"#).is_err());
    }

    #[test]
    fn msisdn_is_digits() {
        assert_eq!(msisdn_arg("+4917012345").unwrap(), "4917012345");
        assert!(msisdn_arg("49-170").is_err());
        assert!(msisdn_arg("").is_err());
    }
}
