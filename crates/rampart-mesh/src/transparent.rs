//! Transparent redirection: a protected container keeps connecting to a remote service's real
//! address; the kernel rewrites the `connect()` to the local proxy's listener for that service.
//!
//! The rewrite is done by the agent's own `cgroup/connect4` and `cgroup/connect6` programs
//! (`rampart-kernel`'s `bpf/enforce.bpf.c`), which also enforce network segmentation: one program
//! per hook and cgroup, so the two cannot be attached in an order that lets one undo the other.
//! The program first decides the connect with the container's policy on the *original*
//! destination; only an allowed connect is then looked up in `RE_MESH_REDIRECT` (cgroup id,
//! original address and port -> listener) and rewritten. A denied destination is refused and
//! reported as before, never redirected around the policy.
//!
//! The proxy learns the route from the listener that accepted the connection (one listener per
//! remote service, `outbound:` in `mesh.yaml`) and the source identity from the source address
//! (`workloads:`), exactly as for a connection made to the listener by name: no per-connection
//! state is shared between kernel and proxy, so nothing can go stale or be raced.
//!
//! # Ownership of the attachment
//! The programs are attached under the container's full id, the key rampart-respond uses too:
//! attaching is idempotent, so a container under a network policy and in the mesh has one set
//! of programs. [`Transparent::release`] removes this proxy's redirections and detaches the
//! programs only when no policy entry (`RE_TARGETS`) uses them. When the mesh stops, every
//! redirection it installed is removed first (dropping [`Transparent`] does it too): no
//! container `connect()` is left pointing at a listener that is gone.
//!
//! # The proxy is never redirected
//! Redirection applies to tasks of the protected cgroups only. [`Transparent::protect`] refuses
//! a cgroup that contains the proxy's own process (the same cgroup or an ancestor of it), so the
//! proxy's connections to remote proxies always go where they are addressed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rampart_kernel::enforce::{cgroup_id, EnforceError, Enforcer};

use crate::config::MeshConfig;
use crate::MeshError;

/// One protected container: its cgroup and what was installed for it.
#[derive(Debug, Clone)]
struct Protected {
    cgroup: PathBuf,
    cgroup_id: u64,
    attached_here: bool,
    routes: Vec<(SocketAddr, SocketAddr)>,
}

/// The redirections of one mesh proxy, installed in the pinned enforcement state.
pub struct Transparent {
    enf: Enforcer,
    routes: Vec<(SocketAddr, SocketAddr)>,
    protected: BTreeMap<String, Protected>,
}

impl std::fmt::Debug for Transparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transparent")
            .field("routes", &self.routes)
            .field("protected", &self.protected.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn kernel_err(place: &str, e: &EnforceError) -> MeshError {
    MeshError::Redirect {
        place: place.to_string(),
        message: e.to_string(),
    }
}

/// (original destination, proxy listener) for every `intercept:` of `cfg`.
pub fn routes(cfg: &MeshConfig) -> Vec<(SocketAddr, SocketAddr)> {
    cfg.outbound
        .iter()
        .flat_map(|o| o.intercept.iter().map(move |a| (*a, o.listen)))
        .collect()
}

/// The cgroup v2 directory of the calling process, from `/proc/self/cgroup` and the unified
/// hierarchy's mount point.
fn own_cgroup() -> Option<PathBuf> {
    let unified = rampart_kernel::cgroup_layout().unified?;
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(unified.join(rel.trim_start_matches('/')))
}

impl Transparent {
    /// Opens the pinned enforcement state under `pin_dir` (loading it when absent) with the
    /// redirections of `cfg` (every `outbound:` entry's `intercept:` addresses).
    pub fn open(pin_dir: &Path, cfg: &MeshConfig) -> Result<Transparent, MeshError> {
        let routes = routes(cfg);
        if routes.is_empty() {
            return Err(MeshError::Redirect {
                place: "mesh: outbound".into(),
                message: "no outbound entry has intercept: addresses; nothing to redirect".into(),
            });
        }
        let place = pin_dir.display().to_string();
        let mut enf = Enforcer::open(pin_dir).map_err(|e| kernel_err(&place, &e))?;
        // A previous run of this proxy that did not stop cleanly (killed) left its entries:
        // they point at this proxy's listeners, so they are this proxy's to remove. The
        // containers are protected again by `protect`.
        for (id, from, to) in enf.mesh_redirects() {
            if routes.iter().any(|(_, l)| *l == to) {
                enf.remove_mesh_redirect(id, from)
                    .map_err(|e| kernel_err(&place, &e))?;
                tracing::info!(cgroup_id = id, %from, %to, "mesh: stale redirection removed");
            }
        }
        Ok(Transparent {
            enf,
            routes,
            protected: BTreeMap::new(),
        })
    }

    /// The (original destination, listener) pairs this proxy redirects.
    pub fn routes(&self) -> &[(SocketAddr, SocketAddr)] {
        &self.routes
    }

    /// Redirects the connects of the container `key` (its full id: the attachment's name)
    /// whose cgroup v2 directory is `cgroup`. Calling it again for the same container re-attaches
    /// the programs if something detached them and rewrites its entries (idempotent).
    pub fn protect(&mut self, key: &str, cgroup: &Path) -> Result<(), MeshError> {
        let place = format!("mesh: container {key} ({})", cgroup.display());
        if let Some(own) = own_cgroup() {
            if own.starts_with(cgroup) {
                return Err(MeshError::Redirect {
                    place,
                    message: format!(
                        "the mesh proxy itself runs in {} (inside this cgroup): its own \
                         connections would be redirected; run it outside the container's cgroup",
                        own.display()
                    ),
                });
            }
        }
        let id = cgroup_id(cgroup).map_err(|e| kernel_err(&place, &e))?;
        if self.protected.get(key).is_some_and(|p| p.cgroup_id != id) {
            // The container restarted into a new cgroup: the old links and entries are dead.
            self.release(key)?;
        }
        let attached_now = self
            .enf
            .attach_cgroup(key, cgroup)
            .map_err(|e| kernel_err(&place, &e))?;
        let attached_here = attached_now
            || self
                .protected
                .get(key)
                .is_some_and(|p| p.attached_here && p.cgroup_id == id);
        for (from, to) in &self.routes {
            if let Err(e) = self.enf.set_mesh_redirect(id, *from, *to) {
                let err = kernel_err(&place, &e);
                let _ = self.remove_entries(id);
                if attached_now {
                    let _ = self.enf.detach_cgroup(key);
                }
                return Err(err);
            }
        }
        self.protected.insert(
            key.to_string(),
            Protected {
                cgroup: cgroup.to_path_buf(),
                cgroup_id: id,
                attached_here,
                routes: self.routes.clone(),
            },
        );
        tracing::info!(container = key, cgroup = %cgroup.display(), routes = self.routes.len(),
            "mesh: connects redirected to the proxy");
        Ok(())
    }

    fn remove_entries(&mut self, id: u64) -> Result<(), EnforceError> {
        for (from, _) in &self.routes {
            self.enf.remove_mesh_redirect(id, *from)?;
        }
        Ok(())
    }

    /// Stops redirecting container `key`: removes its entries, and detaches the programs when
    /// this proxy attached them and no network policy uses them. Returns whether it was
    /// protected.
    pub fn release(&mut self, key: &str) -> Result<bool, MeshError> {
        let Some(p) = self.protected.remove(key) else {
            return Ok(false);
        };
        let place = format!("mesh: container {key} ({})", p.cgroup.display());
        for (from, _) in &p.routes {
            self.enf
                .remove_mesh_redirect(p.cgroup_id, *from)
                .map_err(|e| kernel_err(&place, &e))?;
        }
        let policy_uses_it = self.enf.target(p.cgroup_id).is_some();
        let other_mesh_entries = self
            .enf
            .mesh_redirects()
            .iter()
            .any(|(id, _, _)| *id == p.cgroup_id);
        if p.attached_here && !policy_uses_it && !other_mesh_entries {
            self.enf
                .detach_cgroup(key)
                .map_err(|e| kernel_err(&place, &e))?;
        }
        tracing::info!(container = key, "mesh: redirection removed");
        Ok(true)
    }

    /// Releases every protected container (what dropping it does, with the errors).
    pub fn release_all(&mut self) -> Result<(), MeshError> {
        let keys: Vec<String> = self.protected.keys().cloned().collect();
        let mut first = None;
        for k in keys {
            if let Err(e) = self.release(&k) {
                tracing::error!("{e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The containers (keys) protected now.
    pub fn protected(&self) -> Vec<String> {
        self.protected.keys().cloned().collect()
    }

    /// TCP connects the kernel has rewritten to a mesh listener since the maps were created
    /// (every proxy on the host).
    pub fn redirected_total(&self) -> u64 {
        self.enf.stats().mesh_redirected
    }
}

impl Drop for Transparent {
    fn drop(&mut self) {
        let _ = self.release_all();
    }
}
