//! `rampart mesh --config mesh.yaml`: this host's mesh proxy (docs/mesh.md). Certificates come
//! from the server through the agent's enrollment (`rampart enroll`); the CRL is fetched from
//! the server every `crl_refresh_secs`; refusals (`policy.net_denied`) and the periodic
//! `mesh.report` of services and edge use are queued in `--queue` and shipped to the server
//! with the agent's enrollment, and also printed as JSON lines on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeSet;

use anyhow::Context;
use clap::Args;
use rampart_container::{ContainerEvent, ContainerEvents, DockerClient};
use rampart_mesh::ContainerFacts;
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
    let shipper =
        rampart_mesh::server_shipper(&server, &args.tls_dir, &args.queue, &host, rt.handle())
            .map_err(|e| BadInput(e.to_string()))?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let docker = cfg.docker.clone();
        let mesh = Mesh::new(cfg, ca, issuer, Some(tx))?;
        if let Some(socket) = docker {
            let client = rampart_container::DockerClient::connect(&socket)
                .await
                .map_err(|e| BadInput(format!("{place}: docker: {e}")))?;
            // Subscribed before the first listing, so no start or stop falls between them.
            let events = client.subscribe();
            sync_containers(&mesh, &client, &mut BTreeSet::new()).await?;
            tokio::spawn(follow_docker(mesh.clone(), client, events));
        }
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

/// The running containers as the mesh sees them: Docker's name, addresses, labels.
async fn containers(client: &DockerClient) -> anyhow::Result<Vec<ContainerFacts>> {
    let list = client
        .list_containers(false)
        .await
        .context("listing containers")?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            // Legacy links add names like `/other/alias`; the container's own has one `/`.
            let name = c
                .names?
                .into_iter()
                .map(|n| n.trim_start_matches('/').to_string())
                .find(|n| !n.contains('/'))?;
            let mut addresses: Vec<std::net::IpAddr> = c
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default()
                .into_values()
                .flat_map(|ep| [ep.ip_address, ep.global_ipv6_address])
                .flatten()
                .filter_map(|a| a.parse().ok())
                .collect();
            addresses.sort();
            addresses.dedup();
            Some(ContainerFacts {
                name,
                addresses,
                labels: c.labels.unwrap_or_default().into_iter().collect(),
            })
        })
        .collect())
}

/// Lists the containers and hands the mesh its workloads and services; logs each refusal
/// once (`reported` remembers them).
async fn sync_containers(
    mesh: &Mesh,
    client: &DockerClient,
    reported: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let list = containers(client).await?;
    let d = rampart_mesh::discover(mesh.fleet(), mesh.host(), &list);
    mesh.set_discovered(&d);
    for r in &d.refused {
        if reported.insert(r.clone()) {
            tracing::warn!("mesh: {r}");
        }
    }
    reported.retain(|r| d.refused.contains(r));
    tracing::info!(
        workloads = d.workloads.len(),
        services = d.services.len(),
        "mesh: containers from Docker"
    );
    Ok(())
}

/// Re-reads the containers on every start, stop, removal or rename (and every 30 s, which
/// also catches network connects), for as long as the proxy runs.
async fn follow_docker(mesh: Arc<Mesh>, client: DockerClient, mut events: ContainerEvents) {
    let mut reported = BTreeSet::new();
    loop {
        let due = tokio::select! {
            e = events.next() => match e {
                Some(ContainerEvent::Message(m)) => matches!(
                    m.action.as_deref(),
                    Some("start" | "die" | "destroy" | "rename" | "restart" | "unpause")
                ),
                Some(ContainerEvent::Missed(_)) => true,
                None => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    true
                }
            },
            () = tokio::time::sleep(Duration::from_secs(30)) => true,
        };
        if due {
            if let Err(e) = sync_containers(&mesh, &client, &mut reported).await {
                tracing::warn!("mesh: docker: {e:#}");
            }
        }
    }
}
