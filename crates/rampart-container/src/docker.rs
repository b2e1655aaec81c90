//! The Docker Engine API: container metadata (name, image, digest, labels, pid, overlay upper
//! dir) and the events stream that becomes `container.*` lifecycle events.
//!
//! bollard speaks the API; the client negotiates the API version with the daemon, so old
//! daemons (Docker 20.10, API 1.41) work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use bollard::query_parameters::ListContainersOptions;
use rampart_event::{
    Container, ContainerRuntime, Device, Event, EventId, EventKind, LifecycleInfo, Origin,
    SensorEvent,
};

use crate::directory::{ContainerDirectory, ContainerRecord};
use crate::error::ContainerError;

/// Default Docker socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A connection to dockerd.
#[derive(Debug, Clone)]
pub struct DockerClient {
    pub(crate) docker: bollard::Docker,
    pub(crate) socket: PathBuf,
    /// The one events task of this client and its clones.
    pub(crate) hub: Arc<crate::engine::EventHub>,
}

/// Whether a container, as dockerd describes it, is a step of a `docker build` run by the
/// legacy builder (Debian's docker.io 20.10 without `DOCKER_BUILDKIT`): for each `RUN` the
/// builder creates a container from the previous step's image *by id* (`Config.Image` is
/// `sha256:` and 64 hex digits, where `docker run` and compose record the name the user gave)
/// with logging turned off (`HostConfig.LogConfig.Type` is `none`, the builder's
/// `defaultLogConfig` in moby's `builder/dockerfile/internals.go`); both seen on the real
/// daemon with `docker inspect` during a `RUN`.
///
/// Who can fake it: not the container's own processes, nor an image or a `docker run` that
/// names or labels itself like a build step (names, labels, environment and commands are not
/// read); both facts are dockerd's record of how the container was created, fixed at creation.
/// Anyone who can call the Docker API can create such a container (`docker run --log-driver
/// none sha256:<id> ...`), but that caller already controls the host (docs/rules.md).
pub fn is_build_step(config_image: &str, log_driver: Option<&str>) -> bool {
    let by_id = config_image.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    by_id && log_driver == Some("none")
}

impl DockerClient {
    /// Connects to the daemon at `socket`, negotiates the API version and pings it.
    pub async fn connect(socket: &Path) -> Result<DockerClient, ContainerError> {
        let path = socket.to_string_lossy();
        let docker = bollard::Docker::connect_with_unix(&path, 30, bollard::API_DEFAULT_VERSION)
            .map_err(|e| ContainerError::docker("connect", socket, e))?
            .negotiate_version()
            .await
            .map_err(|e| ContainerError::docker("negotiate API version", socket, e))?;
        docker
            .ping()
            .await
            .map_err(|e| ContainerError::docker("ping", socket, e))?;
        Ok(DockerClient {
            docker,
            socket: socket.to_path_buf(),
            hub: Arc::default(),
        })
    }

    /// Connects to the daemon `DOCKER_HOST` names (the default socket without it), as the
    /// docker CLI does, and negotiates the API version; no ping.
    pub async fn connect_default() -> Result<DockerClient, ContainerError> {
        let socket = std::env::var_os("DOCKER_HOST")
            .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from);
        let docker = bollard::Docker::connect_with_local_defaults()
            .map_err(|e| ContainerError::docker("connect", &socket, e))?
            .negotiate_version()
            .await
            .map_err(|e| ContainerError::docker("negotiate API version", &socket, e))?;
        Ok(DockerClient {
            docker,
            socket,
            hub: Arc::default(),
        })
    }

    /// The daemon's socket (or `DOCKER_HOST`) this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Everything Rampart keeps about container `id` (full id, name or prefix).
    pub async fn inspect(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let r = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| ContainerError::docker("inspect container", &self.socket, e))?;
        let config = r.config.unwrap_or_default();
        let image_id = r.image.unwrap_or_default();
        let image_digest = match self.docker.inspect_image(&image_id).await {
            Ok(img) => img
                .repo_digests
                .unwrap_or_default()
                .first()
                .and_then(|d| d.split_once('@').map(|(_, dg)| dg.to_string())),
            Err(_) => None,
        };
        let state = r.state.unwrap_or_default();
        let upper_dir = r
            .graph_driver
            .and_then(|g| g.data.get("UpperDir").map(PathBuf::from));
        let container = Container {
            id: r.id.unwrap_or_else(|| id.to_string()),
            name: r
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            runtime: ContainerRuntime::Docker,
            image: config.image.clone().unwrap_or_default(),
            image_id,
            image_digest,
            labels: config
                .labels
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            privileged: r
                .host_config
                .as_ref()
                .and_then(|h| h.privileged)
                .unwrap_or(false),
            build_step: is_build_step(
                config.image.as_deref().unwrap_or_default(),
                r.host_config
                    .as_ref()
                    .and_then(|h| h.log_config.as_ref())
                    .and_then(|l| l.typ.as_deref()),
            ),
        };
        Ok(ContainerRecord {
            container: Arc::new(container),
            pid: state.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
            upper_dir,
            started_at_ns: state
                .started_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64),
        })
    }

    /// Inspects every running container into `dir`. Returns how many.
    pub async fn load_running(&self, dir: &ContainerDirectory) -> Result<usize, ContainerError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions::default()))
            .await
            .map_err(|e| ContainerError::docker("list containers", &self.socket, e))?;
        let mut n = 0;
        for c in list {
            let Some(id) = c.id else { continue };
            match self.inspect(&id).await {
                Ok(rec) => {
                    dir.insert(rec);
                    n += 1;
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(n)
    }
}

/// Turns Docker's container events into `container.*` events (sent to `tx` with an empty
/// origin) and keeps `dir` current. Runs until `tx` is closed; reconnects after errors.
#[derive(Debug)]
pub struct DockerWatcher {
    client: DockerClient,
    dir: Arc<ContainerDirectory>,
    device: Arc<Device>,
    instance: u64,
    seq: u64,
    /// Lifecycle events the consumer had no room for.
    pub drops: Arc<AtomicU64>,
    /// Follow the logs of every container that starts (login attempts).
    auth_logs: Option<Arc<crate::logs::AuthLogs>>,
}

impl DockerWatcher {
    pub fn new(
        client: DockerClient,
        dir: Arc<ContainerDirectory>,
        device: Arc<Device>,
        instance: u64,
    ) -> Self {
        DockerWatcher {
            client,
            dir,
            device,
            instance,
            seq: 0,
            drops: Arc::new(AtomicU64::new(0)),
            auth_logs: None,
        }
    }

    /// Also follows the stdout/stderr of every container that starts, for login attempts.
    pub fn follow_logs(mut self, auth: Arc<crate::logs::AuthLogs>) -> Self {
        self.auth_logs = Some(auth);
        self
    }

    pub async fn run(mut self, tx: SyncSender<Box<SensorEvent>>) {
        let mut events = self.client.subscribe();
        while let Some(ev) = events.next().await {
            let msg = match ev {
                crate::ContainerEvent::Message(m) => m,
                crate::ContainerEvent::Missed(n) => {
                    // Lifecycle events dockerd sent while this watcher was behind.
                    self.drops.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!("docker events: {n} container events missed (counted as drops)");
                    continue;
                }
            };
            if let Some(ev) = self.handle(Arc::unwrap_or_clone(msg)).await {
                match tx.try_send(Box::new(SensorEvent {
                    origin: Origin::default(),
                    event: ev,
                })) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        self.drops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
    }

    async fn handle(&mut self, msg: bollard::models::EventMessage) -> Option<Event> {
        let action = msg.action.unwrap_or_default();
        let actor = msg.actor.unwrap_or_default();
        let id = actor.id.unwrap_or_default();
        let attrs = actor.attributes.unwrap_or_default();
        let (verb, detail) = match action.split_once(": ") {
            Some((v, d)) => (v.to_string(), Some(d.to_string())),
            None => (action.clone(), None),
        };
        let kind = match verb.as_str() {
            "create" => EventKind::ContainerCreate,
            "start" => EventKind::ContainerStart,
            "exec_start" => EventKind::ContainerExec,
            "die" => EventKind::ContainerDie,
            "oom" => EventKind::ContainerOom,
            "stop" => EventKind::ContainerStop,
            "destroy" => EventKind::ContainerDestroy,
            _ => return None,
        };
        let record = match kind {
            EventKind::ContainerCreate | EventKind::ContainerStart => {
                match self.client.inspect(&id).await {
                    Ok(rec) => {
                        self.dir.insert(rec.clone());
                        if kind == EventKind::ContainerStart {
                            if let Some(auth) = &self.auth_logs {
                                tokio::spawn(
                                    auth.clone()
                                        .follow_container(self.client.clone(), rec.clone()),
                                );
                            }
                        }
                        Some(rec)
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        self.dir.get(&id)
                    }
                }
            }
            EventKind::ContainerDestroy => self.dir.remove(&id),
            _ => self.dir.get(&id),
        };
        let container = record.map(|r| r.container).unwrap_or_else(|| {
            let mut c = Container::unnamed(id.clone(), ContainerRuntime::Docker);
            c.name = attrs.get("name").cloned().unwrap_or_default();
            c.image = attrs.get("image").cloned().unwrap_or_default();
            Arc::new(c)
        });
        let mut info = LifecycleInfo {
            action,
            ..LifecycleInfo::default()
        };
        match kind {
            EventKind::ContainerDie => {
                info.exit_code = attrs.get("exitCode").and_then(|c| c.parse().ok());
            }
            EventKind::ContainerExec => {
                info.exec_command = detail;
                if let Some(exec_id) = attrs.get("execID") {
                    if let Ok(x) = self.client.docker.inspect_exec(exec_id).await {
                        info.exec_tty = x.process_config.as_ref().and_then(|p| p.tty);
                        info.exec_user = x
                            .process_config
                            .and_then(|p| p.user)
                            .filter(|u| !u.is_empty());
                    }
                }
            }
            _ => {}
        }
        self.seq += 1;
        let time_ns = msg
            .time_nano
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or_else(|| now_secs().max(0) as u64 * 1_000_000_000);
        let mut e = Event::new(
            EventId::new(self.instance, self.seq),
            time_ns,
            kind,
            self.device.clone(),
        );
        e.container = Some(container);
        e.lifecycle = Some(info);
        Some(e)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::is_build_step;

    #[test]
    fn build_steps_are_containers_of_an_image_id_without_logging() {
        let id = format!("sha256:{}", "ab12".repeat(16));
        assert!(is_build_step(&id, Some("none")));
        // What `docker run` and compose record, whatever the container calls itself.
        assert!(!is_build_step("debian:12", Some("none")));
        assert!(!is_build_step("rampart-test/busybox:1", Some("none")));
        // A container of an image id with the daemon's logging.
        assert!(!is_build_step(&id, Some("json-file")));
        assert!(!is_build_step(&id, None));
        // Not an image id: short, upper case, another algorithm, a repository digest.
        assert!(!is_build_step("sha256:abc", Some("none")));
        assert!(!is_build_step(
            &id.to_uppercase().replace("SHA256", "sha256"),
            Some("none")
        ));
        assert!(!is_build_step(
            &id.replace("sha256", "sha512"),
            Some("none")
        ));
        assert!(!is_build_step(&format!("debian@{id}"), Some("none")));
    }
}
