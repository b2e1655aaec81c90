//! Applying policies and isolation to containers, and turning the kernel's reports into events.
//!
//! # State
//! What is applied lives in two places that outlive any process: the pinned BPF maps and links
//! (`rampart_kernel::enforce`, under `/sys/fs/bpf/rampart/`), and a state file
//! (`<state_dir>/state.json`, default `/run/rampart/respond/`) with the policy text, which
//! policy id serves which selectors, and per container its cgroup, group and isolation. Both
//! live until reboot (bpffs and /run are memory), so they never disagree after one.
//! Every change takes `<state_dir>/lock` (flock) for its whole duration: `rampart policy
//! apply`, `rampart respond isolate` and the agent can run at the same time.
//!
//! # Applying
//! [`PolicyEnforcer::apply`] plans the policy for the running containers ([`Policy::plan`]);
//! a plan that cannot be held by the kernel fails here, before any change. Then each group of
//! containers gets a policy id: a group whose rules are unchanged keeps its id (no map writes),
//! a changed one gets a fresh id whose rules are written completely before any container is
//! switched to it; then containers are switched (one map update each), and ids no container
//! uses are removed. A container is never without its previous policy while the new one is
//! being written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_event::{
    Container, ContainerRuntime, Device, Endpoint as NetEndpoint, Event, EventId, EventKind,
    FileInfo, NetDirection, NetInfo, PolicyInfo, Process,
};
use rampart_kernel::enforce::{
    cgroup_id, Direction, EnforceEvent, EnforceEventKind, EnforceEvents, EnforceMaps, EnforceStats,
    Enforcer, ExecHook, NetPrefix, Reason, Target, Verdict, DEFAULT_PIN_DIR,
};
use serde::{Deserialize, Serialize};

use crate::error::RespondError;
use crate::facts::ContainerFacts;
use crate::hashing::{hash_file, scan_executables, HashCache, ScanLimits};
use crate::policy::{
    dns_matches, parse_prefix, DnsView, Endpoint, ExecMatch, GroupPlan, Mode, Policy,
};

/// Where the state file and lock live by default.
pub const DEFAULT_STATE_DIR: &str = "/run/rampart/respond";

/// How addresses learnt from DNS answers are kept at least (a shorter TTL is raised to this).
const DNS_MIN_TTL_SECS: u64 = 300;

/// Where enforcement keeps its state.
#[derive(Debug, Clone)]
pub struct EnforceConfig {
    /// bpffs directory of the pinned programs and maps.
    pub pin_dir: PathBuf,
    /// State file and lock.
    pub state_dir: PathBuf,
    /// Put in every event.
    pub device: Arc<Device>,
    /// Bounds of hashing a container's executables for sha256 rules.
    pub scan: ScanLimits,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        EnforceConfig {
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            device: Arc::new(Device::default()),
            scan: ScanLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    policy: Option<AppliedPolicy>,
    next_id: u32,
    groups: BTreeMap<u32, GroupRecord>,
    containers: BTreeMap<String, ContainerRecord>,
    /// Name -> address -> expiry (seconds since the epoch).
    dns: BTreeMap<String, BTreeMap<IpAddr, u64>>,
}

/// The applied policy, as `rampart policy show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPolicy {
    pub name: String,
    pub source: PathBuf,
    pub sha256: String,
    pub text: String,
    /// When it was applied, nanoseconds since the epoch.
    pub applied_ns: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupRecord {
    selectors: Vec<String>,
    fingerprint: String,
    /// Hash rules of the group: hex sha256 -> (verdict, rule id).
    hashes: BTreeMap<String, (String, u32)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ContainerRecord {
    name: String,
    image: String,
    labels: BTreeMap<String, String>,
    ips: Vec<IpAddr>,
    pid: u32,
    cgroup: PathBuf,
    cgroup_id: u64,
    policy_id: Option<u32>,
    selectors: Vec<String>,
    attached: bool,
    isolated: bool,
    isolate_allow: Vec<String>,
    /// The policy id whose hash rules were resolved against this container's files.
    hashed_for: Option<u32>,
}

impl ContainerRecord {
    fn facts(&self, id: &str) -> ContainerFacts {
        ContainerFacts {
            id: id.to_string(),
            name: self.name.clone(),
            image: self.image.clone(),
            labels: self.labels.clone(),
            pid: self.pid,
            cgroup: Some(self.cgroup.clone()),
            ips: self.ips.clone(),
            running: self.pid > 0,
            ..ContainerFacts::default()
        }
    }
}

impl DnsView for State {
    fn addresses(&self, pattern: &str) -> Vec<IpAddr> {
        let now = now_secs();
        self.dns
            .iter()
            .filter(|(name, _)| dns_matches(pattern, name))
            .flat_map(|(_, ips)| ips.iter().filter(|(_, exp)| **exp > now).map(|(ip, _)| *ip))
            .collect()
    }
}

/// What [`PolicyEnforcer::apply`] did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub policy: String,
    /// Per selected container: `name (id12)` and the selectors that matched it.
    pub selected: Vec<(String, Vec<String>)>,
    /// Containers that no selector matches (left untouched).
    pub unselected: Vec<String>,
    /// The exec hook in use, when some group has exec rules.
    pub exec_hook: Option<ExecHook>,
    /// Executables hashed for sha256 rules.
    pub hashed_files: usize,
    /// Files that matched a sha256 rule: `container: path (rule)`.
    pub hash_matches: Vec<String>,
    /// Groups whose rules were written (the rest kept their kernel state).
    pub groups_written: usize,
    /// Containers that could not be set up (they keep what they had); a non-empty list means
    /// the policy is only partly in force.
    pub errors: Vec<String>,
}

/// What `rampart policy show` prints.
#[derive(Debug, Clone)]
pub struct Status {
    pub policy: Option<AppliedPolicy>,
    pub exec_hook: Option<ExecHook>,
    pub stats: EnforceStats,
    /// id, name, selectors, policy id, isolated, programs attached.
    pub containers: Vec<ContainerStatus>,
}

/// One container in [`Status`].
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub selectors: Vec<String>,
    pub policy_id: Option<u32>,
    pub isolated: bool,
    pub isolate_allow: Vec<String>,
    pub attached: bool,
}

/// Policy and isolation enforcement (see the module docs). `K` is the kernel side: the pinned
/// BPF maps ([`Enforcer`], the default) or [`rampart_kernel::enforce::MemoryMaps`] for tests
/// of the reconcile logic without root.
pub struct PolicyEnforcer<K: EnforceMaps = Enforcer> {
    cfg: EnforceConfig,
    kernel: K,
    cache: HashCache,
    parsed: Option<(String, Arc<Policy>)>,
    events: Option<EnforceEvents>,
    instance: u64,
    seq: u64,
}

impl<K: EnforceMaps> std::fmt::Debug for PolicyEnforcer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEnforcer")
            .field("pin_dir", &self.cfg.pin_dir)
            .field("state_dir", &self.cfg.state_dir)
            .finish_non_exhaustive()
    }
}

/// An exclusive flock on the state directory's lock file, held until dropped.
struct Lock {
    _file: File,
}

impl Lock {
    fn take(dir: &Path) -> Result<Lock, RespondError> {
        let path = dir.join("lock");
        let f = File::create(&path).map_err(|e| RespondError::io(&path, e))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(RespondError::io(&path, std::io::Error::last_os_error()));
        }
        Ok(Lock { _file: f })
    }
}

use rampart_event::now_ns;

fn now_secs() -> u64 {
    now_ns() / 1_000_000_000
}

impl PolicyEnforcer<Enforcer> {
    /// Opens (and on first use installs) the pinned programs and the state.
    pub fn open(cfg: EnforceConfig) -> Result<PolicyEnforcer, RespondError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| RespondError::io(&cfg.state_dir, e))?;
        let kernel = Enforcer::open(&cfg.pin_dir)?;
        PolicyEnforcer::with_maps(cfg, kernel)
    }
}

impl<K: EnforceMaps> PolicyEnforcer<K> {
    /// An enforcer over `kernel` (another implementation of the maps than the pinned ones).
    pub fn with_maps(cfg: EnforceConfig, kernel: K) -> Result<PolicyEnforcer<K>, RespondError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| RespondError::io(&cfg.state_dir, e))?;
        Ok(PolicyEnforcer {
            cfg,
            kernel,
            cache: HashCache::default(),
            parsed: None,
            events: None,
            instance: random_u64(),
            seq: 0,
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &EnforceConfig {
        &self.cfg
    }

    fn state_path(&self) -> PathBuf {
        self.cfg.state_dir.join("state.json")
    }

    fn load(&self) -> Result<State, RespondError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| RespondError::State {
                path,
                message: format!("unreadable state ({e}); `rampart policy reset` starts over"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                version: 1,
                next_id: 1,
                ..State::default()
            }),
            Err(e) => Err(RespondError::io(&path, e)),
        }
    }

    fn save(&self, st: &State) -> Result<(), RespondError> {
        let path = self.state_path();
        let tmp = path.with_extension("tmp");
        let data = serde_json::to_vec_pretty(st).map_err(|e| RespondError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, data).map_err(|e| RespondError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| RespondError::io(&path, e))
    }

    fn policy_of(&mut self, st: &State) -> Result<Option<Arc<Policy>>, RespondError> {
        let Some(ap) = &st.policy else {
            return Ok(None);
        };
        if let Some((sha, p)) = &self.parsed {
            if *sha == ap.sha256 {
                return Ok(Some(p.clone()));
            }
        }
        let p = Arc::new(Policy::parse(&ap.source, &ap.text)?);
        self.parsed = Some((ap.sha256.clone(), p.clone()));
        Ok(Some(p))
    }

    /// Applies `policy` to `containers` (the running ones; see [`crate::facts::running`]),
    /// replacing the policy applied before. Isolations stay.
    pub fn apply(
        &mut self,
        policy: &Policy,
        containers: &[ContainerFacts],
    ) -> Result<ApplyReport, RespondError> {
        let _lock = Lock::take(&self.cfg.state_dir)?;
        let mut st = self.load()?;
        let applied = AppliedPolicy {
            name: policy.name.clone(),
            source: policy.source.clone(),
            sha256: policy.sha256.clone(),
            text: policy.text.clone(),
            applied_ns: now_ns(),
        };
        let report = self.reconcile(&mut st, Some(policy), containers)?;
        st.policy = Some(applied);
        self.parsed = Some((policy.sha256.clone(), Arc::new(policy.clone())));
        self.save(&st)?;
        Ok(report)
    }

    /// Re-applies the applied policy to `containers` (after containers started or stopped, or
    /// their addresses changed). Without an applied policy only isolations are kept current.
    pub fn refresh(&mut self, containers: &[ContainerFacts]) -> Result<ApplyReport, RespondError> {
        let _lock = Lock::take(&self.cfg.state_dir)?;
        let mut st = self.load()?;
        let policy = self.policy_of(&st)?;
        let report = self.reconcile(&mut st, policy.as_deref(), containers)?;
        self.save(&st)?;
        Ok(report)
    }

    /// Removes everything enforcement pinned (policy, isolations, programs, maps) and its state
    /// file. Nothing stays attached; the next [`PolicyEnforcer::open`] installs afresh.
    pub fn remove_everything(self) -> Result<(), RespondError> {
        let _lock = Lock::take(&self.cfg.state_dir)?;
        let (pin_dir, state) = (self.cfg.pin_dir.clone(), self.state_path());
        drop(self.events);
        drop(self.kernel);
        Enforcer::remove_all(&pin_dir)?;
        match std::fs::remove_file(&state) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RespondError::io(&state, e)),
            _ => Ok(()),
        }
    }

    /// Removes the applied policy from every container; isolations stay.
    pub fn reset(&mut self) -> Result<(), RespondError> {
        let _lock = Lock::take(&self.cfg.state_dir)?;
        let mut st = self.load()?;
        let running: Vec<ContainerFacts> =
            st.containers.iter().map(|(id, r)| r.facts(id)).collect();
        self.reconcile(&mut st, None, &running)?;
        st.policy = None;
        self.save(&st)
    }

    /// The plan of `policy` against `containers` plus what is known of DNS: for `rampart
    /// policy test`, without touching anything.
    pub fn dry_plan(
        &self,
        policy: &Policy,
        containers: &[ContainerFacts],
    ) -> Result<crate::policy::Plan, RespondError> {
        let st = self.load()?;
        Ok(policy.plan(containers, &st)?)
    }

    fn reconcile(
        &mut self,
        st: &mut State,
        policy: Option<&Policy>,
        containers: &[ContainerFacts],
    ) -> Result<ApplyReport, RespondError> {
        let now = now_secs();
        for ips in st.dns.values_mut() {
            ips.retain(|_, exp| *exp > now);
        }
        st.dns.retain(|_, ips| !ips.is_empty());
        let plan = match policy {
            Some(p) => p.plan(containers, st)?,
            None => crate::policy::Plan { groups: Vec::new() },
        };
        let mut report = ApplyReport {
            policy: policy.map(|p| p.name.clone()).unwrap_or_default(),
            ..ApplyReport::default()
        };
        let by_id: HashMap<&str, &ContainerFacts> =
            containers.iter().map(|c| (c.id.as_str(), c)).collect();

        // 1. A policy id per group: reuse an unchanged group's, write a changed one's in full.
        let mut group_ids: Vec<u32> = Vec::new();
        let mut written: Vec<u32> = Vec::new();
        if let Some(p) = policy {
            for g in &plan.groups {
                let fp = fingerprint(p, g);
                let existing = st
                    .groups
                    .iter()
                    .find(|(_, r)| r.fingerprint == fp)
                    .map(|(id, _)| *id);
                let id = match existing {
                    Some(id) => id,
                    None => {
                        let id = st.next_id.max(1);
                        st.next_id = id + 1;
                        if let Err(e) = self.write_group(p, g, id) {
                            for w in written.iter().chain([&id]) {
                                let _ = self.kernel.remove_policy(*w);
                            }
                            return Err(e);
                        }
                        written.push(id);
                        st.groups.insert(
                            id,
                            GroupRecord {
                                selectors: g
                                    .selectors
                                    .iter()
                                    .map(|&i| p.selectors[i].name.clone())
                                    .collect(),
                                fingerprint: fp,
                                hashes: g
                                    .hashes(p)
                                    .into_iter()
                                    .map(|(h, (v, r))| {
                                        (hex::encode(h), (v.as_str().to_string(), r))
                                    })
                                    .collect(),
                            },
                        );
                        id
                    }
                };
                group_ids.push(id);
            }
            report.groups_written = written.len();
            if plan.groups.iter().any(|g| g.exec) {
                report.exec_hook = Some(self.kernel.ensure_exec_hook()?);
            }
        }

        // 2. Containers: switch each to its group's id.
        let mut in_plan: BTreeSet<String> = BTreeSet::new();
        if let Some(p) = policy {
            for (g, &gid) in plan.groups.iter().zip(&group_ids) {
                let names: Vec<String> = g
                    .selectors
                    .iter()
                    .map(|&i| p.selectors[i].name.clone())
                    .collect();
                for cid in &g.containers {
                    in_plan.insert(cid.clone());
                    let Some(c) = by_id.get(cid.as_str()) else {
                        continue;
                    };
                    report.selected.push((c.label(), names.clone()));
                    if let Err(e) = self.set_container(st, p, g, gid, c, &names, &mut report) {
                        report.errors.push(format!("{}: {e}", c.label()));
                    }
                }
            }
        }
        for c in containers {
            if !in_plan.contains(&c.id) {
                report.unselected.push(c.label());
            }
        }

        // 3. Containers that left the plan, or stopped running.
        let stale: Vec<String> = st
            .containers
            .keys()
            .filter(|id| !in_plan.contains(*id))
            .cloned()
            .collect();
        for id in stale {
            let running = by_id.get(id.as_str()).copied();
            let rec_isolated = st.containers.get(&id).is_some_and(|r| r.isolated);
            let keep = running.is_some() && rec_isolated;
            if keep {
                if let Some(rec) = st.containers.get_mut(&id) {
                    rec.policy_id = None;
                    rec.selectors.clear();
                    rec.hashed_for = None;
                    let t = Target {
                        isolated: true,
                        ..Target::none()
                    };
                    if let Err(e) = self.kernel.set_target(rec.cgroup_id, &t) {
                        report.errors.push(format!("{}: {e}", rec.name));
                    }
                }
                continue;
            }
            if let Some(rec) = st.containers.remove(&id) {
                let _ = self.kernel.remove_target(rec.cgroup_id);
                let _ = self.kernel.clear_isolate_allow(rec.cgroup_id);
                let _ = self.kernel.detach_cgroup(&id);
            }
        }

        // 4. Ids no container uses any more.
        let used: BTreeSet<u32> = st.containers.values().filter_map(|r| r.policy_id).collect();
        let unused: Vec<u32> = st
            .groups
            .keys()
            .filter(|id| !used.contains(id))
            .copied()
            .collect();
        for id in unused {
            self.kernel.remove_policy(id)?;
            st.groups.remove(&id);
        }
        Ok(report)
    }

    fn write_group(&mut self, p: &Policy, g: &GroupPlan, id: u32) -> Result<(), RespondError> {
        // Names and paths: an entry carries the strictest verdict of every rule whose pattern
        // covers it, since the kernel only sees the longest match.
        let mut names: Vec<(String, bool, Verdict, u32)> = Vec::new();
        let mut paths: Vec<(String, bool, Verdict, u32)> = Vec::new();
        for &i in &g.exec_rules {
            let r = &p.exec[i];
            match &r.matcher {
                ExecMatch::Name { name, prefix } => {
                    names.push((name.clone(), *prefix, r.verdict, r.id))
                }
                ExecMatch::Path { path, prefix } => {
                    paths.push((path.clone(), *prefix, r.verdict, r.id))
                }
                ExecMatch::Sha256(_) => {}
            }
        }
        for (list, is_name) in [(&names, true), (&paths, false)] {
            for (text, prefix, verdict, rule) in strictest_cover(list) {
                if is_name {
                    self.kernel
                        .put_exec_name(id, &text, prefix, verdict, rule)?;
                } else {
                    self.kernel
                        .put_exec_path(id, &text, prefix, verdict, rule)?;
                }
            }
        }
        for ((dir, prefix), rules) in &g.net {
            self.kernel.put_net(id, *dir, *prefix, rules)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments, reason = "one private step of reconcile")]
    fn set_container(
        &mut self,
        st: &mut State,
        p: &Policy,
        g: &GroupPlan,
        gid: u32,
        c: &ContainerFacts,
        selector_names: &[String],
        report: &mut ApplyReport,
    ) -> Result<(), RespondError> {
        let cgroup = c.cgroup.clone().ok_or_else(|| RespondError::NoCgroup {
            container: c.label(),
            what: "policies",
        })?;
        let cgid = cgroup_id(&cgroup)?;
        let prev = st.containers.get(&c.id).cloned().unwrap_or_default();
        // A container that restarted has a new cgroup: what was attached to the old one is gone.
        let same_cgroup = prev.cgroup_id == cgid;
        let isolated = prev.isolated && same_cgroup;
        let hashes = g.hashes(p);
        let mut hashed_for = if same_cgroup { prev.hashed_for } else { None };
        if !hashes.is_empty() && hashed_for != Some(gid) && c.pid > 0 {
            let root = PathBuf::from(format!("/proc/{}/root", c.pid));
            let scan = scan_executables(&root, &mut self.cache, &self.cfg.scan)
                .map_err(|e| RespondError::io(&root, e))?;
            report.hashed_files += scan.files.len();
            for f in &scan.files {
                match hashes.get(&f.sha256) {
                    Some((v, rule)) => {
                        self.kernel.put_exec_file(gid, f.id, Some(*v), *rule)?;
                        report.hash_matches.push(format!(
                            "{}: {} (exec rule {rule})",
                            c.label(),
                            f.path
                        ));
                    }
                    None => self.kernel.mark_exec_seen(gid, f.id)?,
                }
            }
            if scan.truncated {
                report.errors.push(format!(
                    "{}: more than {} executables; the rest are hashed when first run",
                    c.label(),
                    self.cfg.scan.max_files
                ));
            }
            hashed_for = Some(gid);
        }
        let net = g.egress || g.ingress || isolated;
        if net {
            self.kernel.attach_cgroup(&c.id, &cgroup)?;
        }
        let target = Target {
            policy: gid,
            exec: g.exec,
            exec_names: g.has_names(p),
            // Paths are also walked for hash policies, so that a new file can be found again.
            exec_paths: g.has_paths(p) || !hashes.is_empty(),
            exec_files: !hashes.is_empty(),
            exec_default: g.exec_default,
            egress: g.egress,
            egress_default: g.egress_default,
            ingress: g.ingress,
            ingress_default: g.ingress_default,
            isolated,
            audit_only: p.mode == Mode::Audit,
        };
        self.kernel.set_target(cgid, &target)?;
        if !net && prev.attached {
            self.kernel.detach_cgroup(&c.id)?;
        }
        if !same_cgroup && prev.cgroup_id != 0 {
            let _ = self.kernel.remove_target(prev.cgroup_id);
        }
        st.containers.insert(
            c.id.clone(),
            ContainerRecord {
                name: c.name.clone(),
                image: c.image.clone(),
                labels: c.labels.clone(),
                ips: c.ips.clone(),
                pid: c.pid,
                cgroup,
                cgroup_id: cgid,
                policy_id: Some(gid),
                selectors: selector_names.to_vec(),
                attached: net,
                isolated,
                isolate_allow: if isolated {
                    prev.isolate_allow
                } else {
                    Vec::new()
                },
                hashed_for,
            },
        );
        Ok(())
    }

    /// Cuts `c` off the network: every connection in or out, established ones included, except
    /// loopback and `allow`. Its policy (if any) stays, and comes back in force on release.
    pub fn isolate(&mut self, c: &ContainerFacts, allow: &[NetPrefix]) -> Result<(), RespondError> {
        let _lock = Lock::take(&self.cfg.state_dir)?;
        let mut st = self.load()?;
        if !c.running {
            return Err(RespondError::NotRunning(c.label()));
        }
        let cgroup = c.cgroup.clone().ok_or_else(|| RespondError::NoCgroup {
            container: c.label(),
            what: "isolation",
        })?;
        let cgid = cgroup_id(&cgroup)?;
        // The allow-list first: there is no moment without it once the flag is set.
        self.kernel.set_isolate_allow(cgid, allow)?;
        self.kernel.attach_cgroup(&c.id, &cgroup)?;
        let mut target = self.kernel.target(cgid).unwrap_or_else(Target::none);
        target.isolated = true;
        self.kernel.set_target(cgid, &target)?;
        let rec = st.containers.entry(c.id.clone()).or_default();
        if rec.cgroup_id != cgid {
            *rec = ContainerRecord::default();
        }
        rec.name = c.name.clone();
        rec.image = c.image.clone();
        rec.labels = c.labels.clone();
        rec.ips = c.ips.clone();
        rec.pid = c.pid;
        rec.cgroup = cgroup;
        rec.cgroup_id = cgid;
        rec.attached = true;
        rec.isolated = true;
        rec.isolate_allow = allow.iter().map(|p| p.to_string()).collect();
        self.save(&st)
    }

    /// Lifts the isolation of container `id` (full id). With `drop_policy`, its policy goes too
    /// (until the next apply or container start under `--watch`). Returns whether anything
    /// was in force.
    pub fn release(&mut self, id: &str, drop_policy: bool) -> Result<bool, RespondError> {
        let _lock = Lock::take(&self.cfg.state_dir)?;
        let mut st = self.load()?;
        let Some(rec) = st.containers.get(id).cloned() else {
            return Ok(false);
        };
        let had = rec.isolated || (drop_policy && rec.policy_id.is_some());
        self.kernel.clear_isolate_allow(rec.cgroup_id)?;
        let keep_policy = rec.policy_id.is_some() && !drop_policy;
        if keep_policy {
            if let Some(mut t) = self.kernel.target(rec.cgroup_id) {
                t.isolated = false;
                self.kernel.set_target(rec.cgroup_id, &t)?;
                if !(t.egress || t.ingress) {
                    self.kernel.detach_cgroup(id)?;
                }
            }
            if let Some(r) = st.containers.get_mut(id) {
                r.isolated = false;
                r.isolate_allow.clear();
                r.attached = self.kernel.attached_cgroups().iter().any(|k| k == id);
            }
        } else {
            self.kernel.remove_target(rec.cgroup_id)?;
            self.kernel.detach_cgroup(id)?;
            st.containers.remove(id);
            let used: BTreeSet<u32> = st.containers.values().filter_map(|r| r.policy_id).collect();
            let unused: Vec<u32> = st
                .groups
                .keys()
                .filter(|g| !used.contains(g))
                .copied()
                .collect();
            for g in unused {
                self.kernel.remove_policy(g)?;
                st.groups.remove(&g);
            }
        }
        self.save(&st)?;
        Ok(had)
    }

    /// What is in force.
    pub fn status(&self) -> Result<Status, RespondError> {
        let st = self.load()?;
        let attached: BTreeSet<String> = self.kernel.attached_cgroups().into_iter().collect();
        Ok(Status {
            policy: st.policy.clone(),
            exec_hook: self.kernel.exec_hook(),
            stats: self.kernel.stats(),
            containers: st
                .containers
                .iter()
                .map(|(id, r)| ContainerStatus {
                    id: id.clone(),
                    name: r.name.clone(),
                    selectors: r.selectors.clone(),
                    policy_id: r.policy_id,
                    isolated: r.isolated,
                    isolate_allow: r.isolate_allow.clone(),
                    attached: attached.contains(id),
                })
                .collect(),
        })
    }

    /// The applied policy's DNS rules learn addresses from the sensor's `dns.answer` events:
    /// feed every event (others are ignored cheaply). Returns whether rules changed.
    pub fn observe(&mut self, ev: &Event) -> Result<bool, RespondError> {
        if ev.kind != EventKind::DnsAnswer {
            return Ok(false);
        }
        let Some(dns) = &ev.dns else { return Ok(false) };
        let patterns: Vec<String> = match &self.parsed {
            Some((_, p)) => dns_patterns(p),
            None => {
                let st = self.load()?;
                match self.policy_of(&st)? {
                    Some(p) => dns_patterns(&p),
                    None => return Ok(false),
                }
            }
        };
        if !patterns.iter().any(|pat| dns_matches(pat, &dns.query)) {
            return Ok(false);
        }
        let answers: Vec<(IpAddr, u32)> = dns
            .answers
            .iter()
            .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
            .filter_map(|a| Some((a.data.parse().ok()?, a.ttl)))
            .collect();
        if answers.is_empty() {
            return Ok(false);
        }
        let _lock = Lock::take(&self.cfg.state_dir)?;
        let mut st = self.load()?;
        let name = dns.query.trim_end_matches('.').to_ascii_lowercase();
        let now = now_secs();
        let entry = st.dns.entry(name).or_default();
        let mut new = false;
        for (ip, ttl) in answers {
            let exp = now + u64::from(ttl).max(DNS_MIN_TTL_SECS);
            new |= entry.insert(ip, exp).is_none();
        }
        if !new {
            self.save(&st)?;
            return Ok(false);
        }
        let policy = self.policy_of(&st)?;
        let running: Vec<ContainerFacts> =
            st.containers.iter().map(|(id, r)| r.facts(id)).collect();
        self.reconcile(&mut st, policy.as_deref(), &running)?;
        self.save(&st)?;
        Ok(true)
    }

    /// Turns what the kernel reported since the last call into `policy.*` events, appended to
    /// `out`. Exec of files not hashed yet (policies with sha256 rules) are hashed here: a
    /// denied hash is recorded for the kernel (next exec is killed there) and the running
    /// process killed. Only one process should poll (the ring buffer has one reader).
    pub fn poll(&mut self, out: &mut Vec<Event>) -> Result<usize, RespondError> {
        if self.events.is_none() {
            self.events = Some(EnforceEvents::open(&self.cfg.pin_dir)?);
        }
        let mut raw = Vec::new();
        if let Some(evs) = &mut self.events {
            evs.drain(&mut raw);
        }
        if raw.is_empty() {
            return Ok(0);
        }
        let st = self.load()?;
        let policy = self.policy_of(&st)?;
        let before = out.len();
        for r in raw {
            if r.kind == EnforceEventKind::ExecUnknown {
                if let Some(e) = self.unknown_exec(&st, policy.as_deref(), &r) {
                    out.push(e);
                }
                continue;
            }
            out.push(self.report_event(&st, policy.as_deref(), &r, None));
        }
        Ok(out.len() - before)
    }

    /// Waits up to `timeout` for kernel reports.
    pub fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, RespondError> {
        if self.events.is_none() {
            self.events = Some(EnforceEvents::open(&self.cfg.pin_dir)?);
        }
        Ok(self.events.as_ref().is_some_and(|e| e.wait(timeout)))
    }

    fn unknown_exec(
        &mut self,
        st: &State,
        policy: Option<&Policy>,
        r: &EnforceEvent,
    ) -> Option<Event> {
        let (cid, rec) = st
            .containers
            .iter()
            .find(|(_, c)| c.cgroup_id == r.cgroup_id)?;
        let group = st.groups.get(&r.policy)?;
        let root = PathBuf::from(format!("/proc/{}/root", rec.pid));
        let (id, sha) = hash_file(
            Some(r.pid),
            Some(&root),
            r.path.as_deref(),
            &mut self.cache,
            &self.cfg.scan,
        )?;
        // The process may have exec'd something else since; only trust a matching identity.
        let same_file = r.file.is_some_and(|f| f.dev == id.dev && f.ino == id.ino);
        let file = if same_file { id } else { r.file? };
        let hex_sha = hex::encode(sha);
        match group.hashes.get(&hex_sha) {
            Some((verdict, rule)) => {
                let v = match verdict.as_str() {
                    "deny" => Verdict::Deny,
                    "audit" => Verdict::Audit,
                    _ => Verdict::Allow,
                };
                let _ = self.kernel.put_exec_file(r.policy, file, Some(v), *rule);
                if v == Verdict::Allow {
                    return None;
                }
                let audit_only = policy.is_some_and(|p| p.mode == Mode::Audit);
                let mut killed = false;
                if v == Verdict::Deny && !audit_only && same_file {
                    killed = crate::actions::kill_process(
                        crate::actions::ProcessRef {
                            pid: r.pid,
                            start_time_ns: None,
                        },
                        Some(&rec.cgroup),
                    )
                    .is_ok();
                }
                tracing::info!(
                    "{}: {} matched exec rule {rule} by hash",
                    rec.name,
                    r.path.as_deref().unwrap_or(&r.file_name)
                );
                let mut copy = r.clone();
                copy.rule_id = *rule;
                copy.reason = Reason::Rule;
                copy.verdict = if killed || v == Verdict::Deny && !audit_only {
                    Verdict::Deny
                } else {
                    Verdict::Audit
                };
                let _ = cid;
                Some(self.report_event(st, policy, &copy, Some((hex_sha, killed))))
            }
            None => {
                let _ = self.kernel.put_exec_file(r.policy, file, None, 0);
                None
            }
        }
    }

    fn report_event(
        &mut self,
        st: &State,
        policy: Option<&Policy>,
        r: &EnforceEvent,
        by_hash: Option<(String, bool)>,
    ) -> Event {
        self.seq += 1;
        let kind = if r.kind == EnforceEventKind::Net {
            EventKind::PolicyNetDenied
        } else {
            EventKind::PolicyExecDenied
        };
        let mut e = Event::new(
            EventId::new(self.instance, self.seq),
            r.time_ns,
            kind,
            self.cfg.device.clone(),
        );
        let rec = st
            .containers
            .iter()
            .find(|(_, c)| c.cgroup_id == r.cgroup_id);
        if let Some((id, c)) = rec {
            let mut ct = Container::unnamed(id.clone(), ContainerRuntime::Docker);
            ct.name = c.name.clone();
            ct.image = c.image.clone();
            ct.labels = c.labels.clone();
            e.container = Some(Arc::new(ct));
        }
        if r.pid != 0 {
            e.process = Some(Arc::new(Process {
                pid: r.pid,
                tid: r.tid,
                ppid: r.ppid,
                name: r.comm.clone(),
                exe: r.path.clone().unwrap_or_else(|| r.file_name.clone()),
                uid: r.uid,
                euid: r.uid,
                ..Process::default()
            }));
        }
        let isolated = r.reason == Reason::Isolated;
        let selectors = st
            .groups
            .get(&r.policy)
            .map(|g| g.selectors.join(","))
            .unwrap_or_default();
        let rule = if isolated {
            "isolated".to_string()
        } else if r.rule_id == 0 {
            "default".to_string()
        } else {
            match (policy, r.kind) {
                (Some(p), EnforceEventKind::Net) => p.net_rule_text(r.rule_id),
                (Some(p), _) => p.exec_rule_text(r.rule_id),
                (None, _) => format!("rule {}", r.rule_id),
            }
        };
        let sha256 = by_hash.as_ref().map(|(h, _)| h.clone()).or_else(|| {
            let p = policy?;
            let rule = p.exec.get((r.rule_id as usize).checked_sub(1)?)?;
            match rule.matcher {
                ExecMatch::Sha256(h) if r.kind != EnforceEventKind::Net => Some(hex::encode(h)),
                _ => None,
            }
        });
        let mechanism = match &by_hash {
            Some((_, true)) => {
                "user space: SIGKILL after hashing a file first run after the policy was applied"
                    .to_string()
            }
            Some((_, false)) => "user space (hash), not enforced".to_string(),
            None => r.mechanism.as_str().to_string(),
        };
        e.policy = Some(PolicyInfo {
            policy: if isolated {
                "isolation".into()
            } else {
                policy.map(|p| p.name.clone()).unwrap_or_default()
            },
            selector: if isolated { String::new() } else { selectors },
            rule,
            action: r.verdict.as_str().to_string(),
            mechanism,
            reason: match r.reason {
                Reason::Default => "default",
                Reason::Rule => "rule",
                Reason::Isolated => "isolated",
                Reason::Changed => "changed",
            }
            .to_string(),
            sha256,
            ..PolicyInfo::default()
        });
        if let Some(n) = &r.net {
            e.network = Some(NetInfo {
                protocol: match n.proto {
                    6 => "tcp".into(),
                    17 => "udp".into(),
                    1 => "icmp".into(),
                    58 => "icmpv6".into(),
                    other => other.to_string(),
                },
                family: if n.remote.is_ipv4() {
                    "inet".into()
                } else {
                    "inet6".into()
                },
                direction: match n.direction {
                    Direction::Egress => NetDirection::Outbound,
                    Direction::Ingress => NetDirection::Inbound,
                },
                src: match n.direction {
                    Direction::Egress => n.local.map(|l| NetEndpoint {
                        ip: l.ip(),
                        port: l.port(),
                    }),
                    Direction::Ingress => Some(NetEndpoint {
                        ip: n.remote.ip(),
                        port: n.remote.port(),
                    }),
                },
                dst: match n.direction {
                    Direction::Egress => Some(NetEndpoint {
                        ip: n.remote.ip(),
                        port: n.remote.port(),
                    }),
                    Direction::Ingress => n.local.map(|l| NetEndpoint {
                        ip: l.ip(),
                        port: l.port(),
                    }),
                },
                unix_path: None,
                remote_names: st
                    .dns
                    .iter()
                    .filter(|(_, ips)| ips.contains_key(&n.remote.ip()))
                    .map(|(name, _)| name.clone())
                    .collect(),
                remote_country: None,
            });
        } else {
            e.file = Some(FileInfo::at(
                r.path.clone().unwrap_or_else(|| r.file_name.clone()),
            ));
            e.syscall = Some("execve".into());
        }
        e
    }

    /// The id of the container whose cgroup is `cgroup_id`, if enforcement knows it.
    pub fn container_of_cgroup(&self, cgroup_id: u64) -> Option<String> {
        self.load()
            .ok()?
            .containers
            .into_iter()
            .find(|(_, r)| r.cgroup_id == cgroup_id)
            .map(|(id, _)| id)
    }

    /// Direct access to the pinned kernel state (tests, benchmarks).
    pub fn kernel(&mut self) -> &mut K {
        &mut self.kernel
    }
}

/// For each name or path pattern, the strictest verdict among the rules covering it (itself,
/// and every prefix rule it starts with); returns (text, prefix, verdict, rule id).
fn strictest_cover(list: &[(String, bool, Verdict, u32)]) -> Vec<(String, bool, Verdict, u32)> {
    let mut out: BTreeMap<(String, bool), (Verdict, u32)> = BTreeMap::new();
    for (text, prefix, _, _) in list {
        let mut best: Option<(Verdict, u32)> = None;
        for (t2, p2, v2, r2) in list {
            let covers = if *p2 {
                text.starts_with(t2.as_str())
            } else {
                !*prefix && t2 == text
            };
            if covers && best.is_none_or(|(v, _)| *v2 > v) {
                best = Some((*v2, *r2));
            }
        }
        if let Some(b) = best {
            out.insert((text.clone(), *prefix), b);
        }
    }
    out.into_iter()
        .map(|((t, p), (v, r))| (t, p, v, r))
        .collect()
}

fn dns_patterns(p: &Policy) -> Vec<String> {
    p.network
        .iter()
        .filter_map(|r| match &r.dst {
            Endpoint::Dns(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// A canonical description of what the kernel holds for a group, so that an unchanged group
/// keeps its id across applies.
fn fingerprint(p: &Policy, g: &GroupPlan) -> String {
    use sha2::{Digest, Sha256};
    let exec: Vec<String> = g
        .exec_rules
        .iter()
        .map(|&i| p.exec[i].text.clone())
        .collect();
    let desc = format!(
        "{:?}|{:?}|{:?}|{:?}|{}{}{}|{:?}|{:?}|{:?}|{}",
        p.mode,
        g.egress_default,
        g.ingress_default,
        g.exec_default,
        g.egress,
        g.ingress,
        g.exec,
        g.net,
        exec,
        g.selectors
            .iter()
            .map(|&i| &p.selectors[i].name)
            .collect::<Vec<_>>(),
        p.sha256,
    );
    hex::encode(Sha256::digest(desc.as_bytes()))
}

/// An isolation allow-list entry that is not an address or CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address or CIDR")]
pub struct BadAllowEntry(pub String);

/// Parses `--allow` values of isolation: addresses or CIDRs.
pub fn parse_allow_list(items: &[String]) -> Result<Vec<NetPrefix>, BadAllowEntry> {
    items
        .iter()
        .map(|s| parse_prefix(s).ok_or_else(|| BadAllowEntry(s.clone())))
        .collect()
}

pub(crate) fn random_u64() -> u64 {
    rampart_event::instance_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_kernel::enforce::{MapOp, MemoryMaps};

    /// Reconciling against in-memory maps: no root, no BPF. Cgroups are plain directories (the
    /// id is the directory's inode, as on cgroupfs).
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().expect("tmp"),
            }
        }

        fn enforcer(&self) -> PolicyEnforcer<MemoryMaps> {
            let cfg = EnforceConfig {
                pin_dir: self.dir.path().join("pins"),
                state_dir: self.dir.path().join("state"),
                ..EnforceConfig::default()
            };
            PolicyEnforcer::with_maps(cfg, MemoryMaps::new()).expect("enforcer")
        }

        fn container(&self, name: &str, ip: &str) -> ContainerFacts {
            let cg = self.dir.path().join("cgroup").join(name);
            std::fs::create_dir_all(&cg).expect("cgroup dir");
            ContainerFacts {
                id: format!("{name}-{}", "0".repeat(60)),
                name: name.to_string(),
                image: "busybox".into(),
                labels: Default::default(),
                pid: 0,
                cgroup: Some(cg),
                ips: vec![ip.parse().expect("ip")],
                upper_dir: None,
                running: true,
                inspect: None,
            }
        }
    }

    fn shop(front: &str, back: &str, port: u16) -> Policy {
        let text = format!(
            "name: shop\nselectors:\n  frontend:\n    name: {front}\n    default: {{egress: deny}}\n  backend:\n    name: {back}\n    default: {{ingress: deny}}\nnetwork:\n  - frontend -> backend tcp/{port} allow\nexec:\n  - \"* deny name xmrig\"\n"
        );
        Policy::parse(Path::new("shop.yaml"), &text).expect("policy")
    }

    fn cgid(c: &ContainerFacts) -> u64 {
        cgroup_id(c.cgroup.as_deref().expect("cgroup")).expect("id")
    }

    #[test]
    fn apply_selects_writes_rules_before_targets_and_leaves_the_rest_untouched() {
        let f = Fixture::new();
        let (front, back, other) = (
            f.container("front", "172.30.0.2"),
            f.container("back", "172.30.0.3"),
            f.container("other", "172.30.0.4"),
        );
        let all = [front.clone(), back.clone(), other.clone()];
        let mut e = f.enforcer();
        let report = e.apply(&shop("front", "back", 8080), &all).expect("apply");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.unselected.len(), 1, "{report:?}");
        let k = e.kernel();
        let tf = k.target(cgid(&front)).expect("front target");
        assert!(tf.egress && tf.egress_default == Verdict::Deny && tf.exec);
        let tb = k.target(cgid(&back)).expect("back target");
        assert!(tb.ingress && tb.ingress_default == Verdict::Deny);
        assert!(k.target(cgid(&other)).is_none(), "unselected: no entry");
        assert!(k.attached.contains_key(&front.id) && !k.attached.contains_key(&other.id));
        assert!(k.hook.is_some(), "exec rules need the exec hook");
        assert!(
            k.names.keys().any(|(_, n, _)| n.contains("xmrig")),
            "{:?}",
            k.names
        );
        // A policy's rules are in the maps before any target names it.
        for (i, op) in k.ops.iter().enumerate() {
            if let MapOp::SetTarget(_, policy) = op {
                let first_rule = k
                    .ops
                    .iter()
                    .position(|o| *o == MapOp::PutRule(*policy))
                    .expect("rules of the policy");
                assert!(first_rule < i, "target set before its rules: {:?}", k.ops);
            }
        }
    }

    #[test]
    fn a_changed_policy_gets_a_new_id_written_in_full_before_containers_switch() {
        let f = Fixture::new();
        let all = [
            f.container("front", "172.30.0.2"),
            f.container("back", "172.30.0.3"),
        ];
        let mut e = f.enforcer();
        e.apply(&shop("front", "back", 8080), &all).expect("apply");
        let old: BTreeSet<u32> = e.kernel().policies_in_maps().into_iter().collect();
        // The same policy again: nothing rewritten.
        let report = e.apply(&shop("front", "back", 8080), &all).expect("again");
        assert_eq!(report.groups_written, 0, "{report:?}");
        // A changed port: new ids, old ids gone afterwards, never a container without a target.
        e.kernel().ops.clear();
        let report = e
            .apply(&shop("front", "back", 9090), &all)
            .expect("changed");
        assert!(report.groups_written > 0);
        let k = e.kernel();
        let new: BTreeSet<u32> = k.policies_in_maps().into_iter().collect();
        assert!(new.is_disjoint(&old), "old {old:?} new {new:?}");
        assert!(
            !k.ops.iter().any(|o| matches!(o, MapOp::RemoveTarget(_))),
            "a switch never removes a target: {:?}",
            k.ops
        );
        let last_set = k
            .ops
            .iter()
            .rposition(|o| matches!(o, MapOp::SetTarget(..)))
            .expect("switch");
        for id in &old {
            let removed = k
                .ops
                .iter()
                .position(|o| *o == MapOp::RemovePolicy(*id))
                .expect("old policy removed");
            assert!(removed > last_set, "old rules removed before the switch");
        }
    }

    #[test]
    fn containers_that_stop_lose_their_entry_and_isolation_survives_a_new_policy() {
        let f = Fixture::new();
        let (front, back) = (
            f.container("front", "172.30.0.2"),
            f.container("back", "172.30.0.3"),
        );
        let mut e = f.enforcer();
        e.apply(&shop("front", "back", 8080), &[front.clone(), back.clone()])
            .expect("apply");
        let allow = [parse_prefix("10.0.0.1").expect("prefix")];
        e.isolate(&back, &allow).expect("isolate");
        assert!(e.kernel().target(cgid(&back)).is_some_and(|t| t.isolated));
        assert_eq!(e.kernel().isolate.get(&cgid(&back)).map(Vec::len), Some(1));
        // front stops; a new policy is applied: back stays isolated.
        let report = e
            .apply(&shop("front", "back", 9090), std::slice::from_ref(&back))
            .expect("apply");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let k = e.kernel();
        assert!(
            k.target(cgid(&front)).is_none(),
            "stopped container's entry removed"
        );
        assert!(!k.attached.contains_key(&front.id));
        assert!(k.target(cgid(&back)).is_some_and(|t| t.isolated));
        // Released: back keeps its policy, without isolation.
        assert!(e.release(&back.id, false).expect("release"));
        let t = e.kernel().target(cgid(&back)).expect("policy stays");
        assert!(!t.isolated && t.ingress);
        assert!(e.kernel().isolate.is_empty());
        // Reset: no policy anywhere, nothing attached.
        e.reset().expect("reset");
        assert!(e.kernel().policies_in_maps().is_empty());
        assert!(
            e.kernel().targets().is_empty(),
            "{:?}",
            e.kernel().targets()
        );
        assert!(e.kernel().attached.is_empty(), "{:?}", e.kernel().attached);
    }

    #[test]
    fn a_deny_prefix_covers_an_exact_allow_inside_it() {
        let list = vec![
            ("/usr/bin/".to_string(), true, Verdict::Allow, 1),
            ("/usr/bin/nc".to_string(), false, Verdict::Deny, 2),
            ("/tmp/".to_string(), true, Verdict::Deny, 3),
            ("/tmp/ok".to_string(), false, Verdict::Allow, 4),
        ];
        let out = strictest_cover(&list);
        let get = |t: &str| out.iter().find(|e| e.0 == t).map(|e| (e.2, e.3));
        assert_eq!(get("/usr/bin/"), Some((Verdict::Allow, 1)));
        assert_eq!(get("/usr/bin/nc"), Some((Verdict::Deny, 2)));
        assert_eq!(
            get("/tmp/ok"),
            Some((Verdict::Deny, 3)),
            "the deny prefix wins"
        );
    }
}
