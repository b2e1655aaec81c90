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
use rampart_mesh::{Mesh, MeshConfig, ServerIssuer, Transparent};

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
    /// Transparent redirection for this container (name or id; repeatable): its connects to
    /// the `intercept:` addresses of `outbound:` go to the proxy (docs/mesh.md). Containers
    /// that stop are released and ones that (re)start are protected again, every 2 s.
    #[arg(long = "transparent", value_name = "CONTAINER")]
    transparent: Vec<String>,
    /// Docker's API socket (for --transparent).
    #[arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")]
    docker_socket: PathBuf,
    /// Where the enforcement programs and maps are pinned (shared with `rampart policy`).
    #[arg(long, hide = true, default_value = rampart_kernel::enforce::DEFAULT_PIN_DIR, env = "RAMPART_PIN_DIR")]
    pin_dir: PathBuf,
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
    let transparent = if args.transparent.is_empty() {
        None
    } else {
        let t = Transparent::open(&args.pin_dir, &cfg).map_err(|e| BadInput(e.to_string()))?;
        let docker = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    rampart_container::DockerClient::connect(&args.docker_socket),
                )
                .await
            })
            .map_err(|_| {
                anyhow::anyhow!(
                    "no answer from Docker at {} in 5 s",
                    args.docker_socket.display()
                )
            })?
            .with_context(|| format!("connecting to Docker at {}", args.docker_socket.display()))?;
        Some((t, docker, args.transparent))
    };
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
        if let Some((mut t, docker, names)) = transparent {
            // Listeners first, redirections second: a connect is never sent to a listener
            // that is not there yet.
            let serve = tokio::spawn(mesh.clone().run());
            tokio::time::sleep(Duration::from_millis(200)).await;
            let watch = async {
                loop {
                    follow_containers(&mut t, &docker, &names).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            };
            let r = tokio::select! {
                r = serve => r.context("mesh proxy task")?.map_err(anyhow::Error::from),
                () = watch => Ok(()),
                () = super::shutdown_signal() => Ok(()),
            };
            // Every redirection goes before the listeners do.
            t.release_all()?;
            r?;
            return Ok::<_, anyhow::Error>(ExitCode::SUCCESS);
        }
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

/// Protects the running containers among `names` and releases those that stopped or went.
async fn follow_containers(
    t: &mut Transparent,
    docker: &rampart_container::DockerClient,
    names: &[String],
) {
    let mut live = Vec::new();
    for n in names {
        match rampart_respond::facts::inspect(docker, n).await {
            Ok(f) if f.running => match f.cgroup {
                Some(cg) => {
                    if let Err(e) = t.protect(&f.id, &cg) {
                        tracing::error!("mesh: {n}: {e}");
                    }
                    live.push(f.id);
                }
                None => tracing::warn!("mesh: {n}: no cgroup v2 directory; not redirected"),
            },
            Ok(_) => {}
            Err(e) => tracing::debug!("mesh: {n}: {e}"),
        }
    }
    for k in t.protected() {
        if !live.contains(&k) {
            if let Err(e) = t.release(&k) {
                tracing::error!("mesh: {e}");
            }
        }
    }
}
