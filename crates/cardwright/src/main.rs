//! `cardwright`: the command line. See README.md for every command with an example.
#![forbid(unsafe_code)]

mod agent;
mod audit_cmd;
mod bench;
mod card_cmd;
mod cli;
mod demo;
mod issue_cmd;
mod keys_cmd;
mod pay;
mod serve;
mod sim;
mod terminal;

use clap::Parser;
use cli::{Cli, Command, SimCommand};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CARDWRIGHT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,cryptoki=off")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Card(c) => card_cmd::run(c),
        Command::Keys(k) => keys_cmd::run(k),
        Command::Audit(a) => audit_cmd::run(a),
        Command::Demo => demo::run(),
        Command::Issue(i) => issue_cmd::run_issue(i),
        Command::Tenant(t) => issue_cmd::run_tenant(t),
        Command::Category(c) => issue_cmd::run_category(c),
        Command::Package(p) => issue_cmd::run_package(p),
        Command::Sim {
            command: SimCommand::Run(a),
        } => sim::run(a),
        Command::Sim {
            command: SimCommand::Create(a),
        } => sim::create(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Pay { command } => pay::run(command),
    };
    if let Err(e) = result {
        // One line: what failed and why (the chain of causes, joined).
        let msg = e
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        eprintln!("cardwright: error: {msg}");
        std::process::exit(1);
    }
}
