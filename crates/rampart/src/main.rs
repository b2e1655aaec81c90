//! The `rampart` command line: argument parsing, configuration loading, and wiring the library
//! crates together. No logic of its own lives here; each subcommand group is a module of `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Container runtime security for Docker hosts.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log format on stderr: `text` (journald-friendly, one line per message) or `json`.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

// Each variant delegates to a module of `cmd/`; add a subcommand group by adding a variant and
// its arm in `run`, nothing else here.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and build facts.
    Version,
    /// Watch this host: every exec, file, network, privilege and container event as JSON lines.
    Agent(cmd::agent::AgentArgs),
    /// Check rule files, replay recorded events through rules, list rule fields.
    Rules(cmd::rules::RulesArgs),
    /// Hardening audit of this host, its containers or an image (CIS Docker Benchmark), with
    /// scores and the exact fixes.
    Audit(cmd::audit::AuditArgs),
    /// Learn seccomp profiles from what containers really do; merge them.
    Profile(cmd::profile::ProfileArgs),
    /// Propose a hardened docker run line and compose service for a container, from what it
    /// does.
    Harden(cmd::harden::HardenArgs),
    /// Image security: scan for vulnerable packages (offline), SBOMs; sign and verify (cosign format).
    Image(cmd::image::ImageArgs),
    /// The offline vulnerability database: import OSV data, show status.
    Db(cmd::db::DbArgs),
    /// Dockerfile lint with line numbers.
    Dockerfile(cmd::dockerfile::DockerfileArgs),
    /// Respond now: kill, freeze, thaw, isolate, release or stop a container; capture a
    /// signed forensic bundle.
    Respond(cmd::respond::RespondArgs),
    /// Exec and network policies enforced in the kernel: check, apply (and follow Docker),
    /// show, test, reset.
    Policy(cmd::policy::PolicyArgs),
    /// Verify forensic bundles.
    Forensics(cmd::forensics::ForensicsArgs),
    /// Fleet incidents: list, show (deadlines with countdowns, timeline), draft notifications.
    Incident(cmd::incident::IncidentArgs),
    /// The central server: ingest from agents (mTLS), query API, built-in CA; tokens, agents.
    Server(cmd::server::ServerArgs),
    /// Get this agent a client certificate from the server, with an enrollment token.
    Enroll(cmd::enroll::EnrollArgs),
    /// This host's mesh proxy: mTLS with workload identities between containers on different
    /// hosts.
    Mesh(cmd::mesh::MeshArgs),
    /// Events and alerts from the server: by time, host, container, rule, type; table or JSON.
    Query(cmd::query::QueryArgs),
    /// The single-VPS default: the agent and the central server (SQLite) in one process.
    Up(cmd::up::UpArgs),
    /// Signing keys (cosign's ECDSA P-256 formats).
    Key(cmd::key::KeyArgs),
    /// Docker authorization plugin: admit containers by signature, scan and configuration.
    Authz(cmd::authz::AuthzArgs),
    /// Validate configuration files (agent, server, policy, rules) with file:line errors.
    Config(cmd::config::ConfigArgs),
    /// Explain what on this host keeps Rampart features from working, and how to fix it.
    Doctor(cmd::doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(cmd::completions::CompletionsArgs),
    /// Write the man pages into a directory (used by packaging).
    #[command(hide = true)]
    Manpages(cmd::completions::ManpagesArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => cmd::version::run(),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Rules(args) => cmd::rules::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Profile(args) => cmd::profile::run(args),
        Command::Harden(args) => cmd::harden::run(args),
        Command::Image(args) => cmd::image::run(args),
        Command::Db(args) => cmd::db::run(args),
        Command::Dockerfile(args) => cmd::dockerfile::run(args),
        Command::Respond(args) => cmd::respond::run(args),
        Command::Policy(args) => cmd::policy::run(args),
        Command::Forensics(args) => cmd::forensics::run(args),
        Command::Incident(args) => cmd::incident::run(args),
        Command::Server(args) => cmd::server::run(args),
        Command::Enroll(args) => cmd::enroll::run(args),
        Command::Mesh(args) => cmd::mesh::run(args),
        Command::Query(args) => cmd::query::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Key(args) => cmd::key::run(args),
        Command::Authz(args) => cmd::authz::run(args),
        Command::Config(args) => cmd::config::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::Manpages(args) => cmd::completions::manpages(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::logging::init(&cli.log_format, cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cmd::error_text(&err));
            ExitCode::from(cmd::exit_code(&err))
        }
    }
}
