//! The Docker Engine operations the rest of Rampart uses: this crate is the one boundary to
//! dockerd (the only crate depending on bollard). Other crates call these methods and read the
//! Engine API's data types from [`models`]; none holds a raw client.
//!
//! Container events are fanned out: one task per client follows `GET /events`
//! (`type=container`), reconnecting after errors and resuming from the last event's time, and
//! every [`DockerClient::subscribe`]r gets each event. A subscriber too slow for the channel
//! learns how many events it missed ([`ContainerEvent::Missed`]) instead of losing them silently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::{
    EventsOptions, KillContainerOptions, ListContainersOptions, RemoveContainerOptions,
    RestartContainerOptions, StopContainerOptions,
};
use futures_util::{Stream, StreamExt};

/// The Engine API's data types (inspect answers, `info`, events, create bodies).
pub use bollard::models;

use crate::docker::DockerClient;
use crate::error::ContainerError;

/// Events buffered per subscriber before it counts as missing some.
const EVENT_BUFFER: usize = 4096;

/// The running events task of a client and its channel.
#[derive(Debug, Default)]
pub(crate) struct EventHub {
    running: Mutex<Option<EventPump>>,
}

#[derive(Debug)]
struct EventPump {
    tx: tokio::sync::broadcast::Sender<Arc<models::EventMessage>>,
    task: tokio::task::JoinHandle<()>,
}

/// One event of [`ContainerEvents`].
#[derive(Debug, Clone)]
pub enum ContainerEvent {
    /// A container event from dockerd (`create`, `start`, `die`, `destroy`, `exec_start: ..`).
    Message(Arc<models::EventMessage>),
    /// This many events passed while the subscriber was too slow; resynchronise (list the
    /// containers again) where a missed event matters.
    Missed(u64),
}

/// A subscription to the client's container events.
#[derive(Debug)]
pub struct ContainerEvents {
    rx: tokio::sync::broadcast::Receiver<Arc<models::EventMessage>>,
}

impl ContainerEvents {
    /// The next event; `None` when the events task ended (its runtime stopped).
    pub async fn next(&mut self) -> Option<ContainerEvent> {
        use tokio::sync::broadcast::error::RecvError;
        match self.rx.recv().await {
            Ok(m) => Some(ContainerEvent::Message(m)),
            Err(RecvError::Lagged(n)) => Some(ContainerEvent::Missed(n)),
            Err(RecvError::Closed) => None,
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Follows dockerd's container events for as long as the runtime runs: one connection,
/// reconnected a second after any error, resumed from the last event's time.
async fn pump(
    docker: bollard::Docker,
    tx: tokio::sync::broadcast::Sender<Arc<models::EventMessage>>,
) {
    let mut since = now_secs();
    loop {
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        let mut stream = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(m) => {
                    if let Some(t) = m.time {
                        since = since.max(t);
                    }
                    // No subscriber right now is not an error: the next one subscribes to
                    // this same channel.
                    let _ = tx.send(Arc::new(m));
                }
                Err(e) => {
                    tracing::warn!("docker events stream: {e}; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl DockerClient {
    fn api_err(
        &self,
        op: &'static str,
        target: &str,
    ) -> impl FnOnce(bollard::errors::Error) -> ContainerError {
        let socket = self.socket.clone();
        let target = target.to_string();
        move |source| ContainerError::Api {
            op,
            target,
            socket,
            source: Box::new(source),
        }
    }

    /// Subscribes to the container events of this client (and of its clones): the first
    /// subscriber on a runtime starts the one events task; later ones share it. Must be called
    /// within a tokio runtime.
    pub fn subscribe(&self) -> ContainerEvents {
        let mut running = self
            .hub
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = running.as_ref().filter(|p| !p.task.is_finished()) {
            return ContainerEvents {
                rx: p.tx.subscribe(),
            };
        }
        let (tx, rx) = tokio::sync::broadcast::channel(EVENT_BUFFER);
        let task = tokio::spawn(pump(self.docker.clone(), tx.clone()));
        *running = Some(EventPump { tx, task });
        ContainerEvents { rx }
    }

    /// `docker info`.
    pub async fn info(&self) -> Result<models::SystemInfo, ContainerError> {
        self.docker.info().await.map_err(self.api_err("info", ""))
    }

    /// `docker version`.
    pub async fn version(&self) -> Result<models::SystemVersion, ContainerError> {
        self.docker
            .version()
            .await
            .map_err(self.api_err("version", ""))
    }

    /// The daemon's full inspect answer for container `id` (id, name or prefix).
    pub async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<models::ContainerInspectResponse, ContainerError> {
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(self.api_err("inspect container", id))
    }

    /// The daemon's record of one `docker exec` session (`GET /exec/{id}/json`): its command,
    /// user, privileged flag and whether it still runs.
    pub async fn inspect_exec(
        &self,
        exec_id: &str,
    ) -> Result<models::ExecInspectResponse, ContainerError> {
        self.docker
            .inspect_exec(exec_id)
            .await
            .map_err(self.api_err("inspect exec", exec_id))
    }

    /// The daemon's inspect answer for image `name` (id, tag or digest reference).
    pub async fn inspect_image(&self, name: &str) -> Result<models::ImageInspect, ContainerError> {
        self.docker
            .inspect_image(name)
            .await
            .map_err(self.api_err("inspect image", name))
    }

    /// The layers' history of image `name` (`docker history`), newest first.
    pub async fn image_history(
        &self,
        name: &str,
    ) -> Result<Vec<models::ImageHistoryResponseItem>, ContainerError> {
        self.docker
            .image_history(name)
            .await
            .map_err(self.api_err("image history", name))
    }

    /// What changed in container `id`'s file system since it was created (`docker diff`).
    pub async fn container_changes(
        &self,
        id: &str,
    ) -> Result<Option<Vec<models::FilesystemChange>>, ContainerError> {
        self.docker
            .container_changes(id)
            .await
            .map_err(self.api_err("diff container", id))
    }

    /// The daemon's inspect answer for network `name`.
    pub async fn inspect_network(
        &self,
        name: &str,
    ) -> Result<models::NetworkInspect, ContainerError> {
        self.docker
            .inspect_network(name, None)
            .await
            .map_err(self.api_err("inspect network", name))
    }

    /// The daemon's inspect answer for volume `name`.
    pub async fn inspect_volume(&self, name: &str) -> Result<models::Volume, ContainerError> {
        self.docker
            .inspect_volume(name)
            .await
            .map_err(self.api_err("inspect volume", name))
    }

    /// The running containers (`all`: the stopped ones too).
    pub async fn list_containers(
        &self,
        all: bool,
    ) -> Result<Vec<models::ContainerSummary>, ContainerError> {
        self.docker
            .list_containers(Some(ListContainersOptions {
                all,
                ..ListContainersOptions::default()
            }))
            .await
            .map_err(self.api_err("list containers", ""))
    }

    /// Creates a container (not started); returns its id.
    pub async fn create_container(
        &self,
        body: models::ContainerCreateBody,
    ) -> Result<String, ContainerError> {
        let image = body.image.clone().unwrap_or_default();
        self.docker
            .create_container(None, body)
            .await
            .map(|r| r.id)
            .map_err(self.api_err("create container", &image))
    }

    /// Removes container `id` (`force`: even when running) with its anonymous volumes.
    pub async fn remove_container(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        self.docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force,
                    v: true,
                    ..RemoveContainerOptions::default()
                }),
            )
            .await
            .map_err(self.api_err("remove container", id))
    }

    /// Restarts container `id`, stopping it with up to `grace` before SIGKILL.
    pub async fn restart(&self, id: &str, grace: Duration) -> Result<(), ContainerError> {
        self.docker
            .restart_container(
                id,
                Some(RestartContainerOptions {
                    t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
                    ..RestartContainerOptions::default()
                }),
            )
            .await
            .map_err(self.api_err("restart container", id))
    }

    /// Stops container `id`: SIGTERM (or its stop signal), SIGKILL after `grace`.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), ContainerError> {
        self.docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
                    signal: None,
                }),
            )
            .await
            .map_err(self.api_err("stop container", id))
    }

    /// Freezes every process of container `id` (the cgroup freezer).
    pub async fn pause(&self, id: &str) -> Result<(), ContainerError> {
        self.docker
            .pause_container(id)
            .await
            .map_err(self.api_err("pause container", id))
    }

    /// Thaws container `id`.
    pub async fn unpause(&self, id: &str) -> Result<(), ContainerError> {
        self.docker
            .unpause_container(id)
            .await
            .map_err(self.api_err("unpause container", id))
    }

    /// Sends `signal` (`KILL`, `SIGTERM`, `9`) to container `id`'s main process.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), ContainerError> {
        self.docker
            .kill_container(
                id,
                Some(KillContainerOptions {
                    signal: signal.to_string(),
                }),
            )
            .await
            .map_err(self.api_err("kill container", id))
    }

    /// Container `id`'s file system as one tar stream (`docker export`), read as it arrives.
    pub fn export_container<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Stream<Item = Result<bytes::Bytes, ContainerError>> + Send + 'a {
        self.docker
            .export_container(id)
            .map(move |r| r.map_err(self.api_err("export container", id)))
    }

    /// Image `name` as the tarball `docker save` writes, read as it arrives.
    pub fn export_image<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Stream<Item = Result<bytes::Bytes, ContainerError>> + Send + 'a {
        self.docker
            .export_image(name)
            .map(move |r| r.map_err(self.api_err("export image", name)))
    }
}
