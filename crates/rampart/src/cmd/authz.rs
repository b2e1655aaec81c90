//! `rampart authz`: the Docker Engine authorization plugin (run it before a dockerd started
//! with `--authorization-plugin=rampart`).
//!
//! With `--ship FILE` every decision also goes, as an `admission.decision` event, through a
//! durable queue of its own to the outputs the file names (the agent's `ship:` keys: the
//! Rampart server over mutual TLS, syslog, HTTP, a file), so decisions reach the dashboard and
//! `rampart query` like the agent's events.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
pub use rampart_trust::authz::AuthzArgs;
use rampart_trust::authz::{serve, AdmissionPolicy, Engine};

use super::BadInput;

pub fn run(a: AuthzArgs) -> anyhow::Result<ExitCode> {
    let policy = AdmissionPolicy::load(&a.policy).map_err(|e| BadInput(e.to_string()))?;
    // Scans on demand read the image from the same daemon (rampart-scan honours DOCKER_HOST);
    // set before any thread exists.
    std::env::set_var("DOCKER_HOST", a.docker_host());
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let shipper = match &a.ship {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| BadInput(format!("{}: {e}", p.display())))?;
            let cfg: rampart_ship::ShipConfig = serde_yaml::from_str(&text)
                .map_err(|e| BadInput(format!("{}: {e}", p.display())))?;
            let device = Arc::new(rampart_event::Device {
                hostname: a.hostname(),
                region: None,
            });
            let shipper = rampart_ship::start(&cfg, device.clone(), Vec::new(), rt.handle())
                .map_err(|e| BadInput(format!("{}: ship: {e}", p.display())))?;
            Some((Arc::new(shipper), device))
        }
        None => None,
    };
    let policy_path = policy.path.display().to_string();
    let engine = Engine::new(a.engine_config(policy), events).map_err(|e| {
        if e.is_bad_input() {
            anyhow::Error::new(BadInput(e.to_string()))
        } else {
            e.into()
        }
    })?;
    let engine = engine.with_scanner(rampart_trust::authz::child_scanner(
        std::env::current_exe,
        a.cache_dir.clone(),
    ));
    let engine = match &shipper {
        Some((shipper, device)) => {
            let (shipper, device) = (shipper.clone(), device.clone());
            let instance = rampart_event::instance_id();
            let seq = AtomicU64::new(0);
            let dropped = AtomicU64::new(0);
            engine.with_sink(Box::new(move |d| {
                let id = rampart_event::EventId::new(instance, seq.fetch_add(1, Ordering::Relaxed));
                let ev = d.to_event(&policy_path, id, device.clone());
                // Durable when it returns; a full queue or a failed write is counted and logged.
                shipper.send_counted(&ev, &dropped, "admission decisions");
            }))
        }
        None => engine,
    };
    rt.block_on(async {
        tracing::info!(socket = %a.socket.display(), "rampart authz: serving the authorization plugin");
        serve(Arc::new(engine), &a.socket, super::shutdown_signal()).await
    })?;
    if let Some((shipper, _)) = shipper {
        if let Err(e) = shipper.sync() {
            tracing::error!("ship: syncing the queue: {e}");
        }
        if let Ok(shipper) = Arc::try_unwrap(shipper) {
            rt.block_on(shipper.shutdown(Duration::from_secs(5)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
