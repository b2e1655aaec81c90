//! Following Docker: containers that start (or are created) while a policy is applied get it,
//! containers that go away are cleaned up, and the kernel's reports become events.
//!
//! A container matched by the policy gets its programs when Docker reports it *created*: the
//! cgroup v2 directory runc will use (`<unified>/docker/<id>` with the cgroupfs driver) is made
//! ahead of runc, which reuses it, so the policy is usually in force before the container's
//! first process. `docker run` sends the start right after the create, so this is a race we
//! usually win, not a guarantee; the `start` event re-checks everything.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use rampart_container::DockerClient;
use rampart_event::Event;

use crate::enforcer::PolicyEnforcer;
use crate::error::RespondError;
use crate::facts::{self, ContainerFacts};

/// Runs [`PolicyEnforcer`] against Docker's events until stopped.
#[derive(Debug)]
pub struct PolicyWatcher {
    enforcer: Arc<Mutex<PolicyEnforcer>>,
    docker: DockerClient,
    /// Containers created but not started, with the cgroup directory made for them.
    pending: BTreeMap<String, ContainerFacts>,
}

/// How often the kernel's reports are collected.
const POLL: Duration = Duration::from_millis(100);

impl PolicyWatcher {
    /// `enforcer` is shared so that the agent can also feed it DNS answers
    /// ([`PolicyEnforcer::observe`]) and run isolations.
    pub fn new(enforcer: Arc<Mutex<PolicyEnforcer>>, docker: DockerClient) -> PolicyWatcher {
        PolicyWatcher {
            enforcer,
            docker,
            pending: BTreeMap::new(),
        }
    }

    /// Re-applies to the running containers now.
    pub async fn refresh(&mut self) -> Result<crate::ApplyReport, RespondError> {
        let mut running = facts::running(&self.docker).await?;
        running.extend(self.pending.values().cloned());
        let mut e = lock(&self.enforcer);
        e.refresh(&running)
    }

    /// Follows Docker and the kernel until `stop` turns true; every `policy.*` event goes to
    /// `out` (and `out` returning false stops the watcher too).
    pub async fn run(
        mut self,
        mut out: impl FnMut(Event) -> bool + Send,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), RespondError> {
        if let Err(e) = self.refresh().await {
            tracing::warn!("policy refresh: {e}");
        }
        let mut since = now_secs();
        let mut tick = tokio::time::interval(POLL);
        'outer: loop {
            let mut filters = HashMap::new();
            filters.insert("type".to_string(), vec!["container".to_string()]);
            filters.insert(
                "event".to_string(),
                ["create", "start", "die", "destroy"]
                    .map(String::from)
                    .to_vec(),
            );
            let mut stream = self.docker.api().events(Some(EventsOptions {
                since: Some(since.to_string()),
                until: None,
                filters: Some(filters),
            }));
            loop {
                tokio::select! {
                    _ = stop.changed() => {
                        if *stop.borrow() { break 'outer; }
                    }
                    _ = tick.tick() => {
                        let mut evs = Vec::new();
                        if let Err(e) = lock(&self.enforcer).poll(&mut evs) {
                            tracing::warn!("reading enforcement reports: {e}");
                        }
                        for e in evs {
                            if !out(e) { break 'outer; }
                        }
                    }
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        let msg = match msg {
                            Ok(m) => m,
                            Err(e) => {
                                tracing::warn!("docker events: {e}; reconnecting");
                                break;
                            }
                        };
                        if let Some(t) = msg.time { since = since.max(t); }
                        let action = msg.action.unwrap_or_default();
                        let id = msg.actor.and_then(|a| a.id).unwrap_or_default();
                        if let Err(e) = self.on_event(&action, &id).await {
                            tracing::warn!("policy for container {id}: {e}");
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    async fn on_event(&mut self, action: &str, id: &str) -> Result<(), RespondError> {
        match action {
            "create" => {
                let Some(unified) = rampart_kernel::cgroup_layout().unified else {
                    return Ok(());
                };
                let mut c = facts::inspect(&self.docker, id).await?;
                let selected = {
                    let e = lock(&self.enforcer);
                    e.applied_policy_selects(&c)?
                };
                if !selected {
                    return Ok(());
                }
                let dir = facts::expected_docker_cgroup(&unified, &c.id);
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    return Err(RespondError::io(&dir, e));
                }
                c.cgroup = Some(dir);
                self.pending.insert(c.id.clone(), c);
                self.refresh().await?;
            }
            "start" => {
                self.pending.remove(id);
                self.refresh().await?;
            }
            "die" | "destroy" => {
                if let Some(c) = self.pending.remove(id) {
                    // Never started: runc did not take the directory over.
                    if let Some(dir) = c.cgroup {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                self.refresh().await?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn lock(m: &Mutex<PolicyEnforcer>) -> std::sync::MutexGuard<'_, PolicyEnforcer> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl PolicyEnforcer {
    /// Whether the applied policy has a selector matching `c`.
    pub fn applied_policy_selects(&self, c: &ContainerFacts) -> Result<bool, RespondError> {
        let st = self.status()?;
        let Some(ap) = st.policy else {
            return Ok(false);
        };
        let p = crate::policy::Policy::parse(&ap.source, &ap.text)?;
        Ok(!p.selectors_of(c).is_empty())
    }
}
