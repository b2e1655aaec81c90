//! `rampart mesh --config mesh.yaml`: this host's mesh proxy (docs/mesh.md). Certificates come
//! from the server through the agent's enrollment (`rampart enroll`); the CRL is fetched from
//! the server every `crl_refresh_secs`; refusals (`policy.net_denied`) and the periodic
//! `mesh.report` of services and edge use are queued in `--queue` and shipped to the server
//! with the agent's enrollment, and also printed as JSON lines on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rampart_mesh::{Mesh, MeshConfig, ServerIssuer};

use crate::cmd::enroll::DEFAULT_TLS_DIR;
use crate::cmd::BadInput;

#[derive(Debug, Args)]
pub struct MeshArgs {
    /// The mesh configuration (docs/mesh.md).
    #[arg(long, default_value = "/etc/rampart/mesh.yaml")]
    config: PathBuf,
    /// The server, `https://host:port` (the one this agent enrolled with).
    #[arg(long, env = "RAMPART_SERVER")]
    server: Option<String>,
    /// The agent's enrollment directory (`ca.crt`, `agent.crt`, `agent.key`).
    #[arg(long, default_value = DEFAULT_TLS_DIR)]
    tls_dir: PathBuf,
    /// The proxy's own durable queue of records for the server (created 0700).
    #[arg(long, default_value = "/var/lib/rampart/mesh-queue")]
    queue: PathBuf,
    /// How often the use of each edge is reported to the server, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    report_secs: u64,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

pub fn run(args: MeshArgs) -> anyhow::Result<ExitCode> {
    let place = args.config.display().to_string();
    let text =
        std::fs::read_to_string(&args.config).map_err(|e| BadInput(format!("{place}: {e}")))?;
    let cfg = MeshConfig::from_yaml(&place, &text).map_err(|e| BadInput(e.to_string()))?;
    if args.check {
        println!(
            "{place}: ok (host {}, {} services, {} outbound, {} rules)",
            cfg.host,
            cfg.services.len(),
            cfg.outbound.len(),
            cfg.policy.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let server = args
        .server
        .ok_or_else(|| BadInput("--server (or RAMPART_SERVER) is required".into()))?;
    let ca = rampart_ship::tls::load_certs(&cfg.ca)
        .map_err(|e| BadInput(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| BadInput(format!("{}: no certificate", cfg.ca.display())))?;
    let issuer = Arc::new(ServerIssuer::new(&server, &args.tls_dir)?);
    if let Some(crl) = cfg.crl.clone() {
        issuer.fetch_crl(&crl).context("fetching the CRL")?;
        let (i, every) = (issuer.clone(), Duration::from_secs(cfg.crl_refresh_secs));
        std::thread::spawn(move || loop {
            std::thread::sleep(every);
            if let Err(e) = i.fetch_crl(&crl) {
                tracing::warn!("mesh: {e}");
            }
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let host = cfg.host.clone();
    let shipper = rampart_mesh::server_shipper(
        &server,
        &args.tls_dir,
        &args.queue,
        &host,
        rt.handle(),
    )
    .map_err(|e| BadInput(e.to_string()))?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let mesh = Mesh::new(cfg, ca, issuer, Some(tx))?;
        tokio::spawn(rampart_mesh::forward(
            mesh.clone(),
            rx,
            shipper,
            Duration::from_secs(args.report_secs),
            true,
            Arc::new(rampart_mesh::ForwardStats::default()),
        ));
        mesh.run().await?;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}
