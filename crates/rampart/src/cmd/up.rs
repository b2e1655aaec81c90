//! `rampart up`: the single-VPS default. The agent and the central server in one process: the
//! agent's events and alerts go through the durable queue into the embedded server's SQLite
//! store (same parsing, region stamping and anonymisation as remote ingest), where
//! `rampart query` and the fleet console (incidents, deadlines) see them. Other agents can still
//! enroll and ship to the same server over mTLS.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rampart_server::ServerConfig;

use crate::cmd::agent::{self, AgentArgs, Embedded};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Server configuration (server.yaml). Default: state in `--state-dir`/server, the HTTPS
    /// API (query, enrollment of other agents) on 127.0.0.1:8443 only.
    #[arg(long, value_name = "FILE")]
    server_config: Option<PathBuf>,
    /// Where the server's state and the agent's queue live.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/rampart")]
    state_dir: PathBuf,
    /// Every event and alert as JSON lines on stdout, as `rampart agent` writes them (default:
    /// one readable line per alert and a one-line summary every stats interval).
    #[arg(long)]
    json: bool,
}

/// The embedded store's page cache per connection, MiB, when there is no server config.
const UP_SQLITE_CACHE_MIB: u32 = 8;

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    // Before the server's threads start: they would make their own malloc arenas.
    rampart_agent::tune_allocator();
    let cfg = match &args.server_config {
        Some(p) => crate::cmd::server::load_config(p)?,
        None => {
            let mut c = ServerConfig::with_data_dir(args.state_dir.join("server"));
            c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 8443));
            c
        }
    };
    let mut cfg = cfg;
    // One VPS: an 8 MiB SQLite page cache per connection unless server.yaml sets
    // `store.cache_mib`, not the server's 64 (issue 20: the page cache was most of
    // `rampart up`'s peak under storms).
    if let rampart_server::StoreConfig::Sqlite {
        cache_mib: cache @ None,
        ..
    } = &mut cfg.store
    {
        *cache = Some(UP_SQLITE_CACHE_MIB);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rampart-server")
        .enable_all()
        .build()
        .context("starting the server runtime")?;
    let vulndb = rampart_server::vulndb::db_path(&cfg.data_dir);
    let password_file = cfg.data_dir.join("admin.password");
    let running = rt.block_on(crate::cmd::server::start_server(cfg))?;
    // For scripts and tests, as `rampart server` prints it.
    println!("listening {}", running.server.url());
    println!(
        "dashboard {}/ui/ (user admin, password in {} until you replace it: rampart server user add)",
        running.server.url(),
        password_file.display()
    );
    let embedded = Embedded {
        server: &running.server,
        queue_dir: args.state_dir.join("queue"),
        vulndb,
        console: !args.json,
    };
    let result = agent::run_embedded(args.agent, Some(embedded));
    rt.block_on(running.stop());
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}
