//! `rampart server`: the central server (ingest over mTLS, query API, built-in CA), and its
//! admin commands, which work on the server's data directory directly (run them on the server
//! host; they work whether the server runs or not).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_server::config::ConfigError;
use rampart_server::{Role, ServerConfig};

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
    EnrollToken {
        /// Jurisdiction tag of the hosts that enroll with it (`eu-de`, `us-ca`, `sg`, ...).
        #[arg(long)]
        region: String,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid (`30m`, `24h`, `7d`).
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
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
    Publish {
        dir: PathBuf,
        /// The version to publish (above every version published before; default: the next).
        #[arg(long, value_name = "N")]
        set_version: Option<u64>,
    },
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
    Add {
        name: String,
        /// `admin`, `analyst` (events and alerts) or `read-only` (alerts, hosts, incidents;
        /// no raw events).
        #[arg(long)]
        role: String,
        /// File holding the password (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List users and roles.
    List,
    /// Remove a user and end their sessions.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is stored only as a hash).
    Create {
        #[arg(long)]
        name: String,
        /// `admin`, `analyst` (events and alerts) or `read-only` (alerts and agents).
        #[arg(long)]
        role: String,
    },
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
    become_data_owner(&cfg.data_dir)?;
    match args.command.unwrap_or(ServerCommand::Run) {
        ServerCommand::Run => serve(cfg),
        ServerCommand::EnrollToken { region, uses, ttl } => {
            let ttl = humantime::parse_duration(&ttl)
                .map_err(|e| BadInput(format!("--ttl {ttl:?}: {e}")))?;
            let (control, ca) = rampart_server::open_control(&cfg)?;
            let secret = control
                .create_enroll_token(&region, uses, ttl, "rampart server enroll-token")
                .map_err(|e| BadInput(e.to_string()))?;
            let token = rampart_ship::protocol::EnrollToken {
                secret,
                ca_sha256: ca.fingerprint(),
            };
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        ServerCommand::Token { command } => token(&cfg, command),
        ServerCommand::Agents { command } => {
            agents(&cfg, command.unwrap_or(AgentsCommand::List { json: false }))
        }
        ServerCommand::Db { command } => server_db(&cfg, command),
        ServerCommand::Config { command } => config(&cfg, command),
        ServerCommand::User { command } => user(&cfg, command),
    }
}

fn config(cfg: &ServerConfig, command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let (control, ca) = rampart_server::open_control(cfg)?;
    match command {
        ConfigCommand::Publish { dir, set_version } => {
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
                return Ok(ExitCode::SUCCESS);
            }
            match &st.published {
                None => {
                    println!("no fleet configuration published (rampart server config publish DIR)")
                }
                Some(m) => println!(
                    "published version {} ({} files) at {}",
                    m.version,
                    m.files.len(),
                    fmt_ns(m.created_ns)
                ),
            }
            println!(
                "{:<26} {:<24} {:<8} {:<20} {:<20} REFUSED",
                "AGENT", "HOST", "VERSION", "APPLIED", "REPORTED"
            );
            for a in &st.agents {
                let r = a.report.clone().unwrap_or_default();
                println!(
                    "{:<26} {:<24} {:<8} {:<20} {:<20} {}",
                    a.agent_id,
                    a.hostname,
                    if a.report.is_some() {
                        r.version.to_string()
                    } else {
                        "-".into()
                    },
                    if r.applied_ns > 0 {
                        fmt_ns(r.applied_ns)
                    } else {
                        "-".into()
                    },
                    if r.reported_ns > 0 {
                        fmt_ns(r.reported_ns)
                    } else {
                        "-".into()
                    },
                    r.refused.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn user(cfg: &ServerConfig, command: UserCommand) -> anyhow::Result<ExitCode> {
    let (control, _ca) = rampart_server::open_control(cfg)?;
    match command {
        UserCommand::Add {
            name,
            role,
            password_file,
        } => {
            let r = Role::parse(&role).ok_or_else(|| {
                BadInput(format!(
                    "--role {role:?}: expected admin, analyst or read-only"
                ))
            })?;
            let text = match &password_file {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line
                }
            };
            let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
            control
                .add_user(&name, r, password)
                .map_err(|e| BadInput(e.to_string()))?;
            println!("added user {name} ({})", r.as_str());
        }
        UserCommand::List => {
            println!("{:<32} {:<10} CREATED", "USER", "ROLE");
            for u in control.users()? {
                println!(
                    "{:<32} {:<10} {}",
                    u.username,
                    u.role.as_str(),
                    fmt_ns(u.created_ns)
                );
            }
        }
        UserCommand::Remove { name } => {
            if !control.remove_user(&name)? {
                anyhow::bail!(BadInput(format!("no user named {name:?}")));
            }
            println!("removed user {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run as root on a data directory that another user owns (the packaged service's `rampart`
/// user), the server and its admin commands take that user's identity first: nothing they
/// create (a database's `-wal`, a new CRL) is then root's and out of the service's reach, and
/// the server never runs as root on such a directory.
fn become_data_owner(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return Ok(());
    };
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        return Ok(());
    }
    // SAFETY: setgroups/setgid/setuid(2) with plain integers; the order (groups, group, user)
    // is the only one in which each call is still permitted.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
    };
    if failed {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "taking the identity of {} (uid {uid}), which owns it",
                data_dir.display()
            )
        });
    }
    tracing::debug!(uid, gid, data_dir = %data_dir.display(), "running as the data directory's owner");
    Ok(())
}

/// Reads the configuration; a missing default file means every default.
pub fn load_config(path: &Path) -> anyhow::Result<ServerConfig> {
    if path == Path::new(DEFAULT_CONFIG) && !path.exists() {
        return Ok(ServerConfig::with_data_dir("/var/lib/rampart/server"));
    }
    ServerConfig::load(path).map_err(|e| match e {
        ConfigError::Read { .. } => anyhow::Error::new(e),
        other => anyhow::Error::new(BadInput(other.to_string())),
    })
}

pub use rampart_fleet::RunningServer;

/// Starts the server with the fleet console and the dashboard; used by `rampart server` and
/// `rampart up`.
pub async fn start_server(cfg: ServerConfig) -> anyhow::Result<RunningServer> {
    let data_dir = cfg.data_dir.clone();
    // The scheduled `db update` (server.yaml `vulndb_update:`), stopped with the server.
    let db_update = super::db::spawn_server_updates(&cfg)?;
    // Several servers on one ClickHouse: every dashboard shows the whole fleet's alerts.
    let fleet_live = cfg.control_store.is_some()
        && matches!(cfg.store, rampart_server::StoreConfig::Clickhouse { .. });
    let mut made = None;
    let mut running = rampart_fleet::serve(cfg, |fleet| {
        let console = rampart_console::Console::new(Some(fleet.clone()));
        made = Some((console.clone(), fleet));
        rampart_server::ServerExtras {
            store_layer: Some(console.store_layer()),
            routes: vec![console.routes()],
        }
    })
    .await
    .map_err(|e| match e {
        e if e.is_bad_input() => anyhow::Error::new(BadInput(e.to_string())),
        e => anyhow::Error::new(e),
    })?;
    if let Some(t) = db_update {
        running.add_task(t);
    }
    if let Some((console, store)) = made.filter(|_| fleet_live) {
        if let Some(store) = store.get() {
            let store: std::sync::Arc<dyn rampart_server::Store> = store.clone();
            running.add_task(tokio::spawn(
                console.fleet_live_loop(store, Duration::from_millis(500)),
            ));
        }
    }
    tracing::info!(
        "server listening on {} (CA {}, admin token in {}); dashboard {}/ui/ (first user admin, password in {})",
        running.server.url(),
        data_dir.join("ca/ca.crt").display(),
        data_dir.join("admin.token").display(),
        running.server.url(),
        data_dir.join("admin.password").display()
    );
    Ok(running)
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

fn token(cfg: &ServerConfig, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let (control, _ca) = rampart_server::open_control(cfg)?;
    match command {
        TokenCommand::Create { name, role } => {
            let r = Role::parse(&role).ok_or_else(|| {
                BadInput(format!(
                    "--role {role:?}: expected admin, analyst or read-only"
                ))
            })?;
            let t = control
                .create_api_token(&name, r)
                .map_err(|e| BadInput(e.to_string()))?;
            println!("{t}");
        }
        TokenCommand::List => {
            println!("{:<24} {:<10} {:<20} REVOKED", "NAME", "ROLE", "CREATED");
            for t in control.api_tokens()? {
                println!(
                    "{:<24} {:<10} {:<20} {}",
                    t.name,
                    t.role.as_str(),
                    fmt_ns(t.created_ns),
                    t.revoked_ns.map(fmt_ns).unwrap_or_else(|| "-".into())
                );
            }
        }
        TokenCommand::Revoke { name } => {
            if !control.revoke_api_token(&name)? {
                anyhow::bail!(BadInput(format!("no active token named {name:?}")));
            }
            println!("revoked token {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn agents(cfg: &ServerConfig, command: AgentsCommand) -> anyhow::Result<ExitCode> {
    let (control, ca) = rampart_server::open_control(cfg)?;
    match command {
        AgentsCommand::List { json } => {
            let agents = control.agents()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&agents)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<26} {:<24} {:<8} {:<20} {:<20} REVOKED",
                "AGENT", "HOST", "REGION", "ENROLLED", "LAST SEEN"
            );
            for a in agents {
                println!(
                    "{:<26} {:<24} {:<8} {:<20} {:<20} {}",
                    a.agent_id,
                    a.hostname,
                    a.region,
                    fmt_ns(a.enrolled_ns),
                    a.last_seen_ns.map(fmt_ns).unwrap_or_else(|| "-".into()),
                    a.revoked_ns.map(fmt_ns).unwrap_or_else(|| "-".into())
                );
            }
        }
        AgentsCommand::Revoke { agent_id } => {
            if !rampart_server::revoke_agent_offline(&control, &ca, &agent_id)? {
                anyhow::bail!(BadInput(format!(
                    "no agent {agent_id:?} that is not already revoked (rampart server agents)"
                )));
            }
            println!("revoked {agent_id}; the CRL is rewritten");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Nanoseconds since the epoch as RFC 3339 (seconds).
pub fn fmt_ns(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn server_db(cfg: &ServerConfig, command: ServerDbCommand) -> anyhow::Result<ExitCode> {
    let data_dir = &cfg.data_dir;
    match command {
        ServerDbCommand::Import { sources } => {
            let (_control, ca) = rampart_server::open_control(cfg)?;
            let path = rampart_server::vulndb::db_path(data_dir);
            // The scheduled `db update` replaces the file: not while this import writes it.
            let _lock = rampart_scan::lock_db(&path).map_err(super::db::db_error)?;
            let mut db =
                rampart_scan::VulnDb::open_or_create(&path).map_err(super::db::db_error)?;
            for src in &sources {
                if !src.exists() {
                    anyhow::bail!(BadInput(format!(
                        "{}: no such file or directory",
                        src.display()
                    )));
                }
                let stats = db.import(src).map_err(super::db::db_error)?;
                for e in stats.errors.iter().take(20) {
                    eprintln!("warning: {e}");
                }
                println!(
                    "{}: {} added, {} updated, {} unchanged, {} removed, {} unreadable",
                    stats.source,
                    stats.added,
                    stats.updated,
                    stats.unchanged,
                    stats.removed,
                    stats.errors.len()
                );
            }
            drop(db);
            let m = rampart_server::vulndb::publish(data_dir, &ca)
                .context("publishing the vulnerability database bundle")?;
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
        ServerDbCommand::Status => match rampart_server::vulndb::current(data_dir)? {
            None => println!("no vulnerability database published (rampart server db import)"),
            Some(signed) => {
                let m: rampart_server::vulndb::Manifest = serde_json::from_str(&signed.manifest)
                    .context("reading the published manifest")?;
                println!(
                    "version {}\nsha256 {}\nbundle {} bytes, database {} bytes\npublished {}",
                    m.version,
                    m.sha256,
                    m.size,
                    m.db_size,
                    fmt_ns(m.created_ns)
                );
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}
