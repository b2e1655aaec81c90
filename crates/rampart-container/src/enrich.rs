//! Enrichment: a [`SensorEvent`] becomes an [`Event`] with its process (and ancestry), its
//! container (id, name, image, digest, labels), user name, drift flag, and the DNS names of
//! the remote address.
//!
//! Container identity comes from the task's cgroup id: resolved once per cgroup (from
//! /proc/<pid>/cgroup, or by finding the cgroup directory with that inode when the process is
//! already gone), then the runtime's metadata comes from the [`ContainerDirectory`], or from
//! an inspect call when the Docker watcher has not seen the container yet.

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_event::{Container, ContainerRuntime, Event, EventKind, Origin, Process, SensorEvent};

use crate::cgroup::container_from_cgroup_path;
use crate::directory::{ContainerDirectory, ContainerRecord};
use crate::docker::DockerClient;
use crate::procfs::ProcFs;
use crate::proctable::ProcessTable;

/// Bounds of the enricher's caches (entries).
const DNS_CACHE_MAX: usize = 65_536;
const PENDING_QUERIES_MAX: usize = 16_384;

/// How enrichment is set up.
#[derive(Debug, Clone)]
pub struct EnricherConfig {
    pub max_ancestors: usize,
    /// Path patterns (glob, `*` stays within one component) of files whose read-only opens are
    /// reported; a read-only open the kernel reported on name alone that matches none is
    /// dropped here.
    pub sensitive_paths: Vec<String>,
    /// Mount point of the cgroup v2 hierarchy.
    pub unified: Option<PathBuf>,
    /// Mount point of the v1 `pids` hierarchy.
    pub v1_pids: Option<PathBuf>,
    /// Executables up to this size are hashed at exec (`process.exe_sha256`); 0: none.
    pub hash_max_bytes: u64,
}

/// Where a container's metadata comes from when the directory does not have it.
#[derive(Debug)]
pub struct InspectOnMiss {
    pub client: DockerClient,
    pub runtime: tokio::runtime::Handle,
}

/// Turns sensor events into complete events. One per pipeline; not shared between threads.
#[derive(Debug)]
pub struct Enricher {
    table: ProcessTable,
    procfs: ProcFs,
    dir: Arc<ContainerDirectory>,
    inspect: Option<InspectOnMiss>,
    cfg: EnricherConfig,
    sensitive: Vec<glob::Pattern>,
    /// (v1?, cgroup id) -> container id, `None` for host cgroups.
    cgroups: HashMap<(bool, u64), Option<(String, ContainerRuntime)>>,
    /// container id -> record, valid for `records_generation`.
    records: HashMap<String, Option<ContainerRecord>>,
    records_generation: u64,
    /// container id ("" for the host) -> uid -> user name.
    users: HashMap<String, HashMap<u32, String>>,
    /// (container id, address) -> names it was resolved from.
    dns_names: HashMap<(String, IpAddr), Vec<String>>,
    /// (cgroup id, DNS id, client port) -> querying process.
    pending_queries: HashMap<(u64, u16, u16), u32>,
    /// Country database (MaxMind format), when configured.
    geoip: Option<maxminddb::Reader<Vec<u8>>>,
    /// Executable hashes by file identity.
    hashes: crate::exehash::HashCache,
}

impl Enricher {
    pub fn new(
        cfg: EnricherConfig,
        procfs: ProcFs,
        dir: Arc<ContainerDirectory>,
        inspect: Option<InspectOnMiss>,
    ) -> Enricher {
        let sensitive = cfg
            .sensitive_paths
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        Enricher {
            table: ProcessTable::new(procfs.clone(), cfg.max_ancestors),
            procfs,
            dir,
            inspect,
            sensitive,
            cfg,
            cgroups: HashMap::new(),
            records: HashMap::new(),
            records_generation: u64::MAX,
            users: HashMap::new(),
            dns_names: HashMap::new(),
            pending_queries: HashMap::new(),
            geoip: None,
            hashes: crate::exehash::HashCache::default(),
        }
    }

    /// Looks up the country of every connection's remote address in a MaxMind-format database
    /// (GeoLite2-Country, GeoIP2-Country or compatible).
    pub fn set_geoip(&mut self, path: &Path) -> Result<(), crate::ContainerError> {
        let reader =
            maxminddb::Reader::open_readfile(path).map_err(|e| crate::ContainerError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?;
        self.geoip = Some(reader);
        Ok(())
    }

    /// Checks that `path` opens as a MaxMind-format database (what [`Enricher::set_geoip`]
    /// would accept), without keeping it.
    pub fn check_geoip(path: &Path) -> Result<(), crate::ContainerError> {
        maxminddb::Reader::open_readfile(path)
            .map(drop)
            .map_err(|e| crate::ContainerError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })
    }

    fn country(&self, ip: IpAddr) -> Option<String> {
        let db = self.geoip.as_ref()?;
        let hit = db.lookup(ip).ok()?;
        let c: maxminddb::geoip2::Country<'_> = hit.decode().ok()??;
        c.country.iso_code.map(str::to_string)
    }

    /// Seeds the process table from /proc. Returns how many processes.
    pub fn seed(&mut self) -> usize {
        self.table.seed()
    }

    /// The process table (for tools that need the tree, e.g. forensic bundles).
    pub fn processes(&self) -> &ProcessTable {
        &self.table
    }

    /// Drops processes that are gone (exits lost upstream). Returns how many.
    pub fn sweep(&mut self) -> usize {
        self.table.sweep()
    }

    /// The complete event, or `None` when user space filters it out (a read-only open of a
    /// file that matched the kernel's name filter but no sensitive path).
    pub fn enrich(&mut self, se: SensorEvent) -> Option<Event> {
        let SensorEvent { origin, mut event } = se;
        if event.container.is_some() || !from_kernel(event.kind) {
            return Some(event);
        }
        let record = self.container_for(&origin);
        let key = record
            .as_ref()
            .map_or(String::new(), |r| r.container.id.clone());
        match event.kind {
            EventKind::ProcessExec => {
                let mut p = match event.process.take() {
                    Some(p) => Arc::unwrap_or_clone(p),
                    None => self
                        .procfs
                        .process(origin.pid)
                        .unwrap_or_else(|| minimal(&origin)),
                };
                p.user = self.user_name(&key, origin.pid, p.uid);
                if let Some(upper) = record.as_ref().and_then(|r| r.upper_dir.as_ref()) {
                    p.exe_upper_layer = in_upper_layer(upper, &p.exe);
                }
                if self.cfg.hash_max_bytes > 0 && p.exe_sha256.is_none() {
                    let exe = self.procfs.root().join(origin.pid.to_string()).join("exe");
                    p.exe_sha256 = self.hashes.hash(&exe, self.cfg.hash_max_bytes);
                }
                event.process = Some(self.table.exec(p));
            }
            EventKind::ProcessFork => {
                let child = event
                    .result
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(0);
                event.process = self
                    .table
                    .fork(origin.pid, child, event.time_ns)
                    .or_else(|| Some(Arc::new(minimal(&origin))));
            }
            EventKind::ProcessExit => {
                event.process = self
                    .table
                    .remove(origin.pid)
                    .or_else(|| Some(Arc::new(minimal(&origin))));
            }
            EventKind::DnsAnswer if origin.pid == 0 => {
                let (id, port) = event
                    .dns
                    .as_ref()
                    .zip(event.network.as_ref().and_then(|n| n.dst))
                    .map_or((0, 0), |(d, dst)| (d.id, dst.port));
                if let Some(pid) = self.pending_queries.remove(&(origin.cgroup_id, id, port)) {
                    event.process = self.process_for(
                        &Origin {
                            pid,
                            tid: pid,
                            ..origin
                        },
                        &key,
                    );
                }
            }
            _ => event.process = self.process_for(&origin, &key),
        }
        match event.kind {
            EventKind::PrivSetuid | EventKind::PrivSetgid | EventKind::PrivCapset
                if event.result == Some(0) =>
            {
                self.apply_credentials(&origin, &event, &key);
            }
            EventKind::FileOpen => {
                let f = event.file.as_mut()?;
                if f.sensitive {
                    f.sensitive = self.sensitive.iter().any(|p| {
                        p.matches_with(
                            &f.path,
                            glob::MatchOptions {
                                require_literal_separator: true,
                                ..glob::MatchOptions::new()
                            },
                        )
                    });
                    if !f.sensitive && !f.is_write_open() {
                        return None;
                    }
                }
            }
            EventKind::DnsQuery => {
                if let (Some(d), Some(src)) =
                    (&event.dns, event.network.as_ref().and_then(|n| n.src))
                {
                    if self.pending_queries.len() >= PENDING_QUERIES_MAX {
                        self.pending_queries.clear();
                    }
                    self.pending_queries
                        .insert((origin.cgroup_id, d.id, src.port), origin.pid);
                }
            }
            EventKind::DnsAnswer => self.remember_answers(&event, &key),
            EventKind::NetConnect | EventKind::NetAccept => {
                let remote = event
                    .network
                    .as_ref()
                    .and_then(|n| n.remote())
                    .map(|e| e.ip);
                if let (Some(n), Some(remote)) = (event.network.as_mut(), remote) {
                    if let Some(names) = self.dns_names.get(&(key.clone(), remote)) {
                        n.remote_names = names.clone();
                    }
                }
                if let Some(remote) = remote.filter(|_| self.geoip.is_some()) {
                    let country = self.country(remote);
                    if let Some(n) = event.network.as_mut() {
                        n.remote_country = country;
                    }
                }
            }
            _ => {}
        }
        event.container = record.map(|r| r.container);
        Some(event)
    }

    fn process_for(&mut self, origin: &Origin, key: &str) -> Option<Arc<Process>> {
        if origin.pid == 0 {
            return None;
        }
        if let Some(p) = self.table.get(origin.pid) {
            return Some(p.clone());
        }
        let loaded = self.table.get_or_load(origin.pid);
        match loaded {
            Some(p) if p.user.is_none() => {
                let user = self.user_name(key, origin.pid, p.uid);
                self.table.update(origin.pid, |p| p.user = user);
                self.table.get(origin.pid).cloned()
            }
            Some(p) => Some(p),
            None => {
                let mut p = minimal(origin);
                p.ancestors = self.table.ancestors_from(origin.ppid);
                Some(self.table.exec(p))
            }
        }
    }

    fn apply_credentials(&mut self, origin: &Origin, event: &Event, key: &str) {
        let Some(pr) = &event.privilege else { return };
        let user = pr.uid.and_then(|uid| self.user_name(key, origin.pid, uid));
        self.table.update(origin.pid, |p| {
            if let Some(v) = pr.uid {
                p.uid = v;
                p.user = user.clone();
            }
            if let Some(v) = pr.euid {
                p.euid = v;
            }
            if let Some(v) = pr.gid {
                p.gid = v;
            }
            if let Some(v) = pr.egid {
                p.egid = v;
            }
            if let Some(v) = pr.cap_effective {
                p.cap_effective = v;
            }
            if let Some(v) = pr.cap_permitted {
                p.cap_permitted = v;
            }
        });
    }

    fn remember_answers(&mut self, event: &Event, key: &str) {
        let Some(d) = &event.dns else { return };
        if self.dns_names.len() >= DNS_CACHE_MAX {
            self.dns_names.clear();
        }
        for a in &d.answers {
            let Ok(ip) = a.data.parse::<IpAddr>() else {
                continue;
            };
            let names = self.dns_names.entry((key.to_string(), ip)).or_default();
            names.retain(|n| n != &d.query);
            names.insert(0, d.query.clone());
            names.truncate(4);
        }
    }

    /// The user name of `uid` in the passwd file of `pid`'s root filesystem, cached per
    /// container.
    fn user_name(&mut self, key: &str, pid: u32, uid: u32) -> Option<String> {
        if !self.users.contains_key(key) {
            let passwd = self
                .procfs
                .root()
                .join(pid.to_string())
                .join("root/etc/passwd");
            let map = fs::read_to_string(passwd)
                .map(|t| parse_passwd(&t))
                .unwrap_or_default();
            if map.is_empty() {
                return None; // process gone or no passwd: try again with the next process
            }
            self.users.insert(key.to_string(), map);
        }
        self.users.get(key)?.get(&uid).cloned()
    }

    /// The container of the task described by `o`, or `None` on the host.
    fn container_for(&mut self, o: &Origin) -> Option<ContainerRecord> {
        let mut found = None;
        if o.cgroup_id != 0 {
            found = self.cgroup_container(false, o.cgroup_id, o.pid);
        }
        if found.is_none() && o.cgroup_v1_id != 0 {
            found = self.cgroup_container(true, o.cgroup_v1_id, o.pid);
        }
        if found.is_none() && o.cgroup_id == 0 && o.cgroup_v1_id == 0 && o.pid != 0 {
            // Sensors without cgroup ids (the proc connector): straight from /proc.
            let (v2, v1) = self.procfs.cgroup_paths(o.pid);
            found = v2
                .as_deref()
                .and_then(container_from_cgroup_path)
                .or_else(|| v1.as_deref().and_then(container_from_cgroup_path));
        }
        let (id, runtime) = found?;
        self.record(&id, runtime)
    }

    fn cgroup_container(
        &mut self,
        v1: bool,
        cgid: u64,
        pid: u32,
    ) -> Option<(String, ContainerRuntime)> {
        if let Some(hit) = self.cgroups.get(&(v1, cgid)) {
            return hit.clone();
        }
        let (v2_path, v1_path) = if pid != 0 {
            self.procfs.cgroup_paths(pid)
        } else {
            (None, None)
        };
        let from_proc = if v1 { v1_path } else { v2_path };
        // Only trust /proc when it still describes the same cgroup (the pid may be reused or
        // may have moved).
        let root = if v1 {
            &self.cfg.v1_pids
        } else {
            &self.cfg.unified
        };
        let path = match (from_proc, root) {
            (Some(p), Some(r)) if inode(&r.join(p.trim_start_matches('/'))) == Some(cgid) => {
                Some(p)
            }
            (_, Some(r)) => find_cgroup_dir(r, cgid),
            (p, None) => p,
        };
        let hit = path.as_deref().and_then(container_from_cgroup_path);
        if path.is_some() {
            self.cgroups.insert((v1, cgid), hit.clone());
        }
        hit
    }

    fn record(&mut self, id: &str, runtime: ContainerRuntime) -> Option<ContainerRecord> {
        let generation = self.dir.generation();
        if generation != self.records_generation {
            self.records.clear();
            self.records_generation = generation;
        }
        if let Some(r) = self.records.get(id) {
            return r.clone();
        }
        let rec = self.dir.get(id).or_else(|| {
            let inspect = self.inspect.as_ref()?;
            let rec = inspect
                .runtime
                .block_on(inspect.client.inspect(id))
                .map_err(|e| tracing::debug!("inspect {id}: {e}"))
                .ok()?;
            self.dir.insert(rec.clone());
            self.records_generation = self.dir.generation();
            Some(rec)
        });
        let rec = rec.unwrap_or_else(|| ContainerRecord {
            container: Arc::new(Container::unnamed(id, runtime)),
            pid: 0,
            upper_dir: None,
            started_at_ns: 0,
        });
        self.records.insert(id.to_string(), Some(rec.clone()));
        Some(rec)
    }
}

/// Kinds whose events come from a kernel sensor and need enrichment.
fn from_kernel(kind: EventKind) -> bool {
    !matches!(
        kind,
        EventKind::ContainerCreate
            | EventKind::ContainerStart
            | EventKind::ContainerExec
            | EventKind::ContainerDie
            | EventKind::ContainerOom
            | EventKind::ContainerStop
            | EventKind::ContainerDestroy
            | EventKind::ContainerStats
            | EventKind::AuthLogin
            | EventKind::SensorDrops
    )
}

/// What the sensor itself knew of a process we could not read.
fn minimal(o: &Origin) -> Process {
    Process {
        pid: o.pid,
        tid: o.tid,
        ppid: o.ppid,
        name: o.comm().into_owned(),
        uid: o.uid,
        euid: o.uid,
        gid: o.gid,
        egid: o.gid,
        loginuid: u32::MAX,
        ..Process::default()
    }
}

fn in_upper_layer(upper: &Path, exe: &str) -> bool {
    !exe.is_empty()
        && exe.starts_with('/')
        && fs::symlink_metadata(upper.join(exe.trim_start_matches('/'))).is_ok()
}

fn inode(p: &Path) -> Option<u64> {
    fs::metadata(p).ok().map(|m| m.ino())
}

/// The path (relative to `root`, with a leading `/`) of the cgroup directory whose inode is
/// `id`, searching a few levels deep.
fn find_cgroup_dir(root: &Path, id: u64) -> Option<String> {
    fn walk(root: &Path, dir: &Path, id: u64, depth: usize) -> Option<String> {
        if inode(dir) == Some(id) {
            let rel = dir.strip_prefix(root).ok()?;
            return Some(format!("/{}", rel.display()));
        }
        if depth == 0 {
            return None;
        }
        for e in fs::read_dir(dir).ok()?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if let Some(hit) = walk(root, &e.path(), id, depth - 1) {
                    return Some(hit);
                }
            }
        }
        None
    }
    walk(root, root, id, 6)
}

fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_maps_uids_to_names() {
        let m = parse_passwd(
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nbroken\n",
        );
        assert_eq!(m.get(&0).map(String::as_str), Some("root"));
        assert_eq!(m.get(&33).map(String::as_str), Some("www-data"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn finds_a_cgroup_dir_by_inode() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path().join("docker").join("abc");
        fs::create_dir_all(&d).expect("mkdir");
        let id = inode(&d).expect("inode");
        assert_eq!(
            find_cgroup_dir(tmp.path(), id).as_deref(),
            Some("/docker/abc")
        );
        assert_eq!(find_cgroup_dir(tmp.path(), 1), None);
    }
}

#[cfg(test)]
mod geoip_tests {
    use super::*;

    #[test]
    fn country_of_an_address_from_a_maxmind_database() {
        let mut e = Enricher::new(
            EnricherConfig {
                max_ancestors: 4,
                sensitive_paths: Vec::new(),
                unified: None,
                v1_pids: None,
                hash_max_bytes: 0,
            },
            ProcFs::default(),
            ContainerDirectory::new(),
            None,
        );
        let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/test-country.mmdb");
        e.set_geoip(&db).expect("open");
        assert_eq!(
            e.country("10.1.2.3".parse().expect("ip")).as_deref(),
            Some("CN")
        );
        assert_eq!(e.country("192.0.2.1".parse().expect("ip")), None);
        let err = e
            .set_geoip(Path::new("/nonexistent.mmdb"))
            .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent.mmdb"), "{err}");
    }
}
