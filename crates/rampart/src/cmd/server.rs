//! `rampart server`: the central server (ingest over mTLS, query API, built-in CA), and its
//! admin commands, which work on the server's data directory directly (run them on the server
//! host; they work whether the server runs or not).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_fleet::admin;
use rampart_fleet::args::{ConfigPublishArgs, EnrollTokenArgs, TokenCreateArgs, UserAddArgs};
use rampart_server::ServerConfig;

use crate::cmd::BadInput;

/// Default location of the server configuration.
pub const DEFAULT_CONFIG: &str = "/etc/rampart/server.yaml";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct ServerArgs {
    /// The server configuration (see config/server.yaml). A missing default file means all
    /// defaults.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<ServerCommand>,
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Run the server (the default without a subcommand).
    Run,
    /// Create an enrollment token for agents of a region (`rampart enroll --token`).
    EnrollToken(EnrollTokenArgs),
    /// API tokens of the query API (roles: admin, analyst, read-only).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrolled agents: list them, revoke one.
    Agents {
        #[command(subcommand)]
        command: Option<AgentsCommand>,
    },
    /// The fleet's vulnerability database: import OSV data into the server's database and
    /// publish it to the agents as a bundle signed with the server's CA key. A running server
    /// re-matches every stored SBOM within seconds and raises "now vulnerable" alerts.
    Db {
        #[command(subcommand)]
        command: ServerDbCommand,
    },
    /// The fleet configuration agents apply without a restart: rules, threat lists, a
    /// policy, playbooks and a GeoIP database published as a versioned bundle signed with the
    /// server's CA key (docs/server.md).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Dashboard users (log in at https://HOST:PORT/ui/; roles: admin, analyst, read-only).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ServerDbCommand {
    /// Import OSV sources (directories, zips, files; as `rampart db import`) into
    /// `<data_dir>/vulndb/vuln.db`, then publish the signed bundle agents fetch.
    Import {
        /// OSV sources to import, in order.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
    /// Show the published bundle (version, digest, sizes).
    Status,
    /// Ask every agent to send the package lists of its images again (from its next bundle
    /// check on), e.g. after restoring the server's data directory.
    Resend,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check DIR (rules/, lists/, policy/, playbooks/, geoip/) as an agent would build it,
    /// then publish it as the next version.
    Publish(ConfigPublishArgs),
    /// The published version and the version every agent runs.
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user. The password (at least 12 characters) is read from --password-file or,
    /// without it, from the first line of standard input; only its Argon2id hash is stored.
    Add(UserAddArgs),
    /// List users and roles.
    List,
    /// Remove a user and end their sessions.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is stored only as a hash).
    Create(TokenCreateArgs),
    /// List tokens (names and roles; the tokens themselves are not stored).
    List,
    /// Revoke the token named NAME.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// List enrolled agents (the default).
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent's certificate: the CRL is rewritten and a running server refuses the
    /// agent from its next request on.
    Revoke { agent_id: String },
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(&args.config)?;
    admin::become_data_owner(&cfg.data_dir)?;
    match args.command.unwrap_or(ServerCommand::Run) {
        ServerCommand::Run => return serve(cfg),
        ServerCommand::EnrollToken(a) => println!("{}", a.create(&cfg)?),
        ServerCommand::Token { command } => token(&cfg, command)?,
        ServerCommand::Agents { command } => {
            agents(&cfg, command.unwrap_or(AgentsCommand::List { json: false }))?
        }
        ServerCommand::Db { command } => server_db(&cfg, command)?,
        ServerCommand::Config { command } => config(&cfg, command)?,
        ServerCommand::User { command } => user(&cfg, command)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn config(cfg: &ServerConfig, command: ConfigCommand) -> anyhow::Result<()> {
    let (control, ca) = rampart_server::open_control(cfg)?;
    match command {
        ConfigCommand::Publish(ConfigPublishArgs { dir, set_version }) => {
            let files = rampart_server::fleetconfig::read_source(&dir)
                .map_err(|e| BadInput(e.to_string()))?;
            let rules = rampart_agent::fleetconfig::check_source(&dir)
                .map_err(|e| BadInput(format!("{}: {e}", dir.display())))?;
            let m = rampart_server::fleetconfig::publish(
                &cfg.data_dir,
                &ca,
                &control,
                &files,
                set_version,
            )
            .map_err(|e| BadInput(e.to_string()))?;
            println!(
                "published fleet configuration version {} ({} files, {rules} rules with the defaults, sha256 {}), signed by the server CA",
                m.version,
                m.files.len(),
                m.sha256
            );
        }
        ConfigCommand::Status { json } => {
            let st = rampart_server::fleetconfig::status(&cfg.data_dir, &control)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", admin::config_status_text(&st));
            }
        }
    }
    Ok(())
}

fn user(cfg: &ServerConfig, command: UserCommand) -> anyhow::Result<()> {
    let (control, _ca) = rampart_server::open_control(cfg)?;
    match command {
        UserCommand::Add(a) => {
            let role = a.add(&control, std::io::stdin().lock())?;
            println!("added user {} ({})", a.name, role.as_str());
        }
        UserCommand::List => print!("{}", admin::users_table(&control.users()?)),
        UserCommand::Remove { name } => {
            admin::remove_user(&control, &name)?;
            println!("removed user {name}");
        }
    }
    Ok(())
}

/// Reads the configuration; a missing default file means every default.
pub fn load_config(path: &Path) -> anyhow::Result<ServerConfig> {
    Ok(admin::load_config(path, Path::new(DEFAULT_CONFIG))?)
}

pub use rampart_fleet::RunningServer;

/// Starts the server with the fleet console and the dashboard; used by `rampart server` and
/// `rampart up`.
pub async fn start_server(cfg: ServerConfig) -> anyhow::Result<RunningServer> {
    rampart_console::start_server(cfg)
        .await
        .map_err(|e| match e {
            e if e.is_bad_input() => BadInput(e.to_string()).into(),
            e => e.into(),
        })
}

fn serve(cfg: ServerConfig) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("rampart-server")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let running = start_server(cfg).await?;
        // One line on stdout for scripts and tests: the address is known only now when the
        // configuration asked for port 0.
        println!("listening {}", running.server.url());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("watching SIGTERM")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        running.stop().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn token(cfg: &ServerConfig, command: TokenCommand) -> anyhow::Result<()> {
    let (control, _ca) = rampart_server::open_control(cfg)?;
    match command {
        TokenCommand::Create(TokenCreateArgs { name, role }) => {
            println!("{}", admin::create_token(&control, &name, &role)?)
        }
        TokenCommand::List => print!("{}", admin::tokens_table(&control.api_tokens()?)),
        TokenCommand::Revoke { name } => {
            admin::revoke_token(&control, &name)?;
            println!("revoked token {name}");
        }
    }
    Ok(())
}

fn agents(cfg: &ServerConfig, command: AgentsCommand) -> anyhow::Result<()> {
    let (control, ca) = rampart_server::open_control(cfg)?;
    match command {
        AgentsCommand::List { json: true } => {
            println!("{}", serde_json::to_string_pretty(&control.agents()?)?)
        }
        AgentsCommand::List { json: false } => {
            print!("{}", admin::agents_table(&control.agents()?))
        }
        AgentsCommand::Revoke { agent_id } => {
            admin::revoke_agent(&control, &ca, &agent_id)?;
            println!("revoked {agent_id}; the CRL is rewritten");
        }
    }
    Ok(())
}

fn server_db(cfg: &ServerConfig, command: ServerDbCommand) -> anyhow::Result<()> {
    let data_dir = &cfg.data_dir;
    match command {
        ServerDbCommand::Import { sources } => {
            let (_control, ca) = rampart_server::open_control(cfg)?;
            let m = admin::import_and_publish(data_dir, &ca, &sources, |stats| {
                for e in stats.errors.iter().take(admin::IMPORT_WARNINGS) {
                    eprintln!("warning: {e}");
                }
                println!("{}", admin::import_line(stats));
            })?;
            println!(
                "published vulnerability database {} ({} bytes, sha256 {}), signed by the server CA",
                m.version, m.size, m.sha256
            );
        }
        ServerDbCommand::Resend => {
            let token = rampart_server::vulndb::request_resend(data_dir)?;
            println!(
                "agents send their image inventories again from their next check (token {token})"
            );
        }
        ServerDbCommand::Status => println!("{}", admin::db_status_text(data_dir)?),
    }
    Ok(())
}
