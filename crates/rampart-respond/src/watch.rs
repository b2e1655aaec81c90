//! Following Docker: containers that start (or are created) while a policy is applied get it,
//! containers that go away are cleaned up, and the kernel's reports become events.
//!
//! A container matched by the policy gets its programs when Docker reports it *created*: the
//! cgroup v2 directory runc will use (`<unified>/docker/<id>` with the cgroupfs driver) is made
//! ahead of runc, which reuses it, so the policy is usually in force before the container's
//! first process. `docker run` sends the start right after the create, so this is a race we
//! usually win, not a guarantee; the `start` event re-checks everything.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_container::{ContainerEvent, DockerClient};
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
        let mut tick = tokio::time::interval(POLL);
        // The client's one container-events subscription (shared with the agent's Docker
        // watcher): one connection to dockerd, one reconnect loop.
        let mut events = self.docker.subscribe();
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() { break; }
                }
                _ = tick.tick() => {
                    let mut evs = Vec::new();
                    if let Err(e) = lock(&self.enforcer).poll(&mut evs) {
                        tracing::warn!("reading enforcement reports: {e}");
                    }
                    for e in evs {
                        if !out(e) { return Ok(()); }
                    }
                }
                ev = events.next() => {
                    match ev {
                        None => break,
                        Some(ContainerEvent::Missed(n)) => {
                            // Containers may have come or gone unseen: apply to what runs now.
                            tracing::warn!("docker events: {n} missed; re-reading the running containers");
                            if let Err(e) = self.refresh().await {
                                tracing::warn!("policy refresh: {e}");
                            }
                        }
                        Some(ContainerEvent::Message(msg)) => {
                            let action = msg.action.clone().unwrap_or_default();
                            let id = msg.actor.as_ref().and_then(|a| a.id.clone()).unwrap_or_default();
                            if !matches!(action.as_str(), "create" | "start" | "die" | "destroy") {
                                continue;
                            }
                            if let Err(e) = self.on_event(&action, &id).await {
                                tracing::warn!("policy for container {id}: {e}");
                            }
                        }
                    }
                }
            }
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
