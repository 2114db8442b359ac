//! `cardwright agent`: the card holder's local agent (the service is `server::agent`), or,
//! with `--server`, an issuing terminal lending its readers to the platform
//! (`crate::terminal`).

use crate::pay::PivCardArgs;
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Loopback address to listen on (port 0: any free port; printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7373")]
    pub listen: String,
    /// Origin (`scheme://host[:port]`) of a page allowed to use the card; repeatable.
    #[arg(long = "allow-origin", required_unless_present = "server")]
    pub allow_origin: Vec<String>,
    #[command(flatten)]
    pub card: PivCardArgs,
    /// Issuing-terminal mode: connect out to the platform at this URL (http://HOST:PORT on
    /// the same machine, or https://HOST:PORT) and lend it this terminal's readers (with
    /// --reader, those whose name contains it).
    #[arg(long)]
    pub server: Option<String>,
    /// CA certificate(s) (PEM) that an https:// platform's server certificate must chain to
    /// (issuing-terminal mode; the WebSocket then runs over TLS, `wss://`). Without it, the
    /// Mozilla root program's CAs (a publicly trusted platform certificate).
    #[arg(long, requires = "server")]
    pub server_ca: Option<PathBuf>,
    /// The terminal's bearer token (issuing-terminal mode). Prefer the environment
    /// (CARDWRIGHT_TERMINAL_TOKEN) or --token-file: a value given here shows in `ps`.
    /// Not needed with --client-cert.
    #[arg(long, env = "CARDWRIGHT_TERMINAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the terminal's bearer token (first line), instead of --token.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Issuing-terminal mode over https://: authenticate with this client certificate
    /// chain (PEM, leaf first) instead of a token (mutual TLS). The platform accepts it when
    /// it chains to one of its `serve --terminal-ca` roots; the terminal is the
    /// certificate's subject commonName.
    #[arg(long, requires_all = ["client_key", "server"])]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Issuing-terminal mode: allow an http:// platform that is not on this machine (the
    /// token then crosses the network in clear; without it, that is refused).
    #[arg(long, requires = "server")]
    pub insecure_http: bool,
    /// The terminal's name, as the platform knows it (issuing-terminal mode). Default: the
    /// commonName of --client-cert, else `terminal`.
    #[arg(long)]
    pub terminal: Option<String>,
}

/// An `http://` platform must be on this machine (a loopback address), unless
/// `--insecure-http`: the token would cross the network in clear.
fn plain_to_loopback_only(server: &str, insecure_http: bool) -> Result<()> {
    use std::net::ToSocketAddrs;
    let rest = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("ws://"))
        .unwrap_or(server);
    let authority = rest.split('/').next().unwrap_or_default();
    let with_port = if authority.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit())
    }) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    // Unresolvable: left to the connection attempt to report.
    let Ok(addrs) = with_port.to_socket_addrs() else {
        return Ok(());
    };
    let addrs: Vec<_> = addrs.collect();
    if addrs.iter().all(|x| x.ip().is_loopback()) || insecure_http {
        return Ok(());
    }
    bail!("--server {server}: plain http:// only to a platform on this machine; use https:// (with --server-ca), or --insecure-http if the network is trusted")
}

/// The subject commonName of the first certificate of a PEM file (the terminal a client
/// certificate names on the platform).
fn common_name(path: &std::path::Path) -> Result<String> {
    let certs = server::tls::load_certificates(path)?;
    let first = certs.first().map(|c| c.as_ref()).unwrap_or_default();
    let cert = pki::Certificate::from_der(first)
        .map_err(|e| anyhow::anyhow!("{}: not an X.509 certificate: {e}", path.display()))?;
    cert.x509()
        .tbs_certificate()
        .subject()
        .common_name()
        .ok()
        .flatten()
        .map(|cn| cn.value().trim().to_string())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: the certificate has no subject commonName (the terminal's name)",
                path.display()
            )
        })
}

/// The card of `--reader`/`--sim` as the agent's card source.
struct Card(PivCardArgs);

impl server::agent::CardSource for Card {
    fn open(&self) -> Result<server::agent::PivCard, String> {
        self.0.open().map_err(|e| {
            e.chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ")
        })
    }
    fn describe(&self) -> String {
        self.0
            .sim
            .as_ref()
            .map(|p| format!("virtual card ({})", p.display()))
            .or_else(|| self.0.reader.clone())
            .unwrap_or_else(|| "first reader with a card".into())
    }
}

/// The first line of a token file, trimmed.
pub fn read_token_file(path: &std::path::Path, option: &str) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("{option} {}", path.display()))?,
    );
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        bail!("{option} {}: the file holds no token", path.display());
    }
    Ok(Zeroizing::new(token.to_string()))
}

pub fn run(a: AgentArgs) -> Result<()> {
    if let Some(server) = &a.server {
        let client = a.client_cert.as_deref().zip(a.client_key.as_deref());
        let token = match (&a.token, &a.token_file) {
            (Some(t), _) => Some(Zeroizing::new(t.clone())),
            (None, Some(f)) => Some(read_token_file(f, "--token-file")?),
            (None, None) if client.is_some() => None,
            (None, None) => bail!(
                "--server needs the terminal's credentials: CARDWRIGHT_TERMINAL_TOKEN, --token-file or --token, or a client certificate (--client-cert and --client-key, over https://)"
            ),
        };
        let https = server.starts_with("https://") || server.starts_with("wss://");
        if client.is_some() && !https {
            bail!("--server {server}: a client certificate (--client-cert) needs an https:// platform");
        }
        if !https {
            plain_to_loopback_only(server, a.insecure_http)?;
        }
        let tls = if https {
            Some(
                server::tls::terminal_client_config(a.server_ca.as_deref(), client)
                    .context("--server-ca/--client-cert/--client-key")?,
            )
        } else {
            None
        };
        let terminal = match (&a.terminal, &a.client_cert) {
            (Some(t), _) => t.clone(),
            (None, Some(cert)) => common_name(cert).context("--client-cert")?,
            (None, None) => "terminal".to_string(),
        };
        return crate::terminal::run(
            server,
            tls,
            token.as_ref().map(|t| t.as_str()),
            &terminal,
            a.card.reader.clone(),
            a.card.sim.clone(),
        );
    }
    let allowed_origins = a
        .allow_origin
        .iter()
        .map(|o| {
            server::agent::normalise_origin(o).map_err(|e| anyhow::anyhow!("--allow-origin {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let config = server::agent::AgentConfig {
        allowed_origins,
        slot: a.card.slot,
        mgmt: a.card.mgmt()?,
    };
    let listen = a.listen.clone();
    server::block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("--listen {listen}"))?;
        let addr: SocketAddr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            bail!("--listen {listen}: the agent gives access to the card, so it listens on a loopback address only (127.0.0.1 or [::1])");
        }
        tracing::info!(origins = %config.allowed_origins.join(", "), "card agent ready");
        let app = server::agent::router(config, Arc::new(Card(a.card)), addr);
        println!("cardwright agent: listening on http://{addr}");
        use std::io::Write;
        std::io::stdout().flush()?;
        server::serve(listener, app).await?;
        Ok(())
    })
    .context("starting the async runtime")?
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_only_to_this_machine() {
        use super::plain_to_loopback_only as check;
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "ws://[::1]:8080/",
            "http://127.0.0.1",
        ] {
            assert!(check(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://192.0.2.1:8080",
            "ws://192.0.2.1",
            "http://[2001:db8::1]:80",
        ] {
            let e = check(refused, false).unwrap_err().to_string();
            assert!(e.contains("https://"), "{refused}: {e}");
            assert!(
                check(refused, true).is_ok(),
                "{refused} with --insecure-http"
            );
        }
    }
}
