//! `rampart mesh --config mesh.yaml`: this host's mesh proxy (docs/mesh.md). Certificates come
//! from the server through the agent's enrollment (`rampart enroll`); the CRL is fetched from
//! the server every `crl_refresh_secs`; refusals are printed as JSON lines on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
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
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        let mesh = Mesh::new(cfg, ca, issuer, Some(tx))?;
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
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                match serde_json::to_string(&e) {
                    Ok(line) => println!("{line}"),
                    Err(err) => tracing::error!("mesh: event not printed: {err}"),
                }
            }
        });
        mesh.run().await?;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
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
