//! `cardwright`: the command line. See README.md for every command with an example.
#![forbid(unsafe_code)]

mod agent;
mod api_answer;
mod audit_cmd;
mod bench;
mod campaign_cmd;
mod card_cmd;
mod cli;
mod demo;
mod dm_cmd;
mod handset;
mod handset_bip;
mod handset_phone;
mod issue_cmd;
mod keys_cmd;
mod ota_admin;
mod ota_cmd;
mod outlet_cmd;
mod outlet_serve;
mod package_cmd;
mod pay;
mod progress;
mod scp11_cmd;
mod serve;
mod sim;
mod ssd_cmd;
mod ssd_contact;
mod ssd_serve;
mod terminal;

use clap::Parser;
use cli::{Cli, Command, LogFormat, SimCommand};
use std::io::IsTerminal;

/// mimalloc rather than glibc's allocator: with 8 concurrent writes on PostgreSQL, `malloc` and
/// `free` took about a fifth of the process's CPU (session 14's profile); the benches run on
/// the same allocator (figures in docs/DESIGN.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The error as one line: what failed and why, each cause once.
///
/// Many error types include their source in their own message (`"{path}: {source}"`), and
/// contexts often repeat the text of what they wrap; printing the whole chain would then
/// say the same cause twice. Of two neighbours in the chain where one's text contains the
/// other's, only the longer is kept.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        match parts.last_mut() {
            Some(prev) if prev.contains(&text) => {}
            Some(prev) if text.contains(prev.as_str()) => *prev = text,
            _ => parts.push(text),
        }
    }
    parts.join(": ")
}

/// The log filter: `CARDWRIGHT_LOG` (default `info`), quieting the `cryptoki` crate unless
/// the user names it: it logs an ERROR for every vendor mechanism of a PKCS#11 token it
/// does not know (SoftHSM2 has dozens), which is noise, not an error of ours.
fn log_filter(user: Option<&str>) -> String {
    let spec = user
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    if spec.contains("cryptoki") {
        spec.to_string()
    } else {
        format!("{spec},cryptoki=off")
    }
}

/// The log on stderr, filtered by [`log_filter`]: text lines (no time stamp, colour only
/// for a terminal), or with `--log-format json` one JSON object per event with its time,
/// level, message, fields and the current span's (a request's `request_id`, `method`,
/// `route`: see `server::observe`). Neither format records request headers or bodies.
fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(log_filter(
        std::env::var("CARDWRIGHT_LOG").ok().as_deref(),
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            // Colour codes only for a terminal, not in a log file or a pipe.
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() {
    // A closed pipe (`cardwright … | head`) ends the process quietly, as for other Unix
    // tools, instead of `println!` panicking on EPIPE.
    sigpipe::reset();
    let cli = Cli::parse();
    init_log(cli.log_format);
    let result = match cli.command {
        Command::Card(c) => card_cmd::run(c),
        Command::Token { command } => dm_cmd::run(command),
        Command::Keys(k) => keys_cmd::run(k),
        Command::Audit(a) => audit_cmd::run(a),
        Command::Outlet(o) => outlet_cmd::run(o),
        Command::Demo(a) => demo::run(a),
        Command::Issue(i) => issue_cmd::run_issue(i),
        Command::Campaign(c) => campaign_cmd::run(c),
        Command::Tenant(t) => issue_cmd::run_tenant(t),
        Command::Category(c) => issue_cmd::run_category(c),
        Command::Partner(p) => ssd_cmd::run_partner(p),
        Command::Ssd(s) => ssd_cmd::run_ssd(s),
        Command::Package(p) => issue_cmd::run_package(p),
        Command::Sim {
            command: SimCommand::Run(a),
        } => sim::run(a),
        Command::Sim {
            command: SimCommand::Create(a),
        } => sim::create(a),
        Command::Sim {
            command: SimCommand::CaCert(a),
        } => sim::ca_cert(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Pay { command } => pay::run(command),
        Command::Ota(o) => ota_cmd::run(o),
        Command::Handset(a) => handset::run(a),
    };
    if let Err(e) = result {
        eprintln!("cardwright: error: {}", one_line(&e));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::{log_filter, one_line};

    #[test]
    fn cryptoki_noise_is_off_unless_asked_for() {
        assert_eq!(log_filter(None), "info,cryptoki=off");
        assert_eq!(log_filter(Some("")), "info,cryptoki=off");
        assert_eq!(log_filter(Some("warn")), "warn,cryptoki=off");
        assert_eq!(
            log_filter(Some("debug,cryptoki=debug")),
            "debug,cryptoki=debug"
        );
    }

    /// An error whose message includes its source, as many error types do.
    #[derive(Debug)]
    struct WithSource(std::io::Error);
    impl std::fmt::Display for WithSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "/tmp: {}", self.0)
        }
    }
    impl std::error::Error for WithSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::other("Is a directory (os error 21)");
        let e = anyhow::Error::new(WithSource(io)).context("key store file:/tmp");
        assert_eq!(
            one_line(&e),
            "key store file:/tmp: /tmp: Is a directory (os error 21)"
        );
        // A context that the cause repeats is said once.
        let e = anyhow::anyhow!("database sqlite:x: no such file").context("database sqlite:x");
        assert_eq!(one_line(&e), "database sqlite:x: no such file");
        // Distinct causes are all kept.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(one_line(&e), "outer: middle: inner");
    }
}
