//! `rampart authz`: the Docker Engine authorization plugin (run it before a dockerd started
//! with `--authorization-plugin=rampart`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rampart_scan::DEFAULT_CACHE_DIR;
use rampart_trust::authz::{serve, AdmissionPolicy, Engine, EngineConfig};

use super::db::DbPath;
use super::BadInput;

#[derive(Debug, Args)]
pub struct AuthzArgs {
    /// The admission policy (YAML; see docs/trust.md).
    #[arg(long)]
    policy: PathBuf,
    /// The plugin socket; dockerd finds `NAME.sock` under /run/docker/plugins.
    #[arg(long, default_value = "/run/docker/plugins/rampart.sock")]
    socket: PathBuf,
    /// The dockerd whose requests are judged (image metadata, scans on demand).
    #[arg(long, default_value = "/var/run/docker.sock")]
    docker_socket: PathBuf,
    #[command(flatten)]
    db: DbPath,
    /// Scan results cached by image id (the cache `rampart image scan` fills).
    #[arg(long, env = "RAMPART_SCAN_CACHE", default_value = DEFAULT_CACHE_DIR)]
    cache_dir: PathBuf,
    /// Append every decision as a JSON line to this file (default: standard output).
    #[arg(long)]
    events: Option<PathBuf>,
    /// How long a signature verdict for one image digest is reused.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    verdict_ttl: Duration,
}

pub fn run(a: AuthzArgs) -> anyhow::Result<ExitCode> {
    let policy = AdmissionPolicy::load(&a.policy).map_err(|e| BadInput(e.to_string()))?;
    // Scans on demand read the image from the same daemon (rampart-scan honours DOCKER_HOST);
    // set before any thread exists.
    std::env::set_var(
        "DOCKER_HOST",
        format!("unix://{}", a.docker_socket.display()),
    );
    let events: Box<dyn std::io::Write + Send> = match &a.events {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let engine = Engine::new(
        EngineConfig {
            policy,
            docker_socket: a.docker_socket.clone(),
            db_path: a.db.path.clone(),
            cache_dir: a.cache_dir.clone(),
            verdict_ttl: a.verdict_ttl,
        },
        events,
    )
    .map_err(|e| {
        if e.is_bad_input() {
            anyhow::Error::new(BadInput(e.to_string()))
        } else {
            e.into()
        }
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        tracing::info!(socket = %a.socket.display(), "rampart authz: serving the authorization plugin");
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        serve(Arc::new(engine), &a.socket, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}
