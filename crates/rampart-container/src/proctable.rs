//! The process table: every live process the agent knows, with its ancestry, so that every
//! event carries its process's parent chain.
//!
//! Seeded from /proc at start (processes that predate the agent), then kept current from exec,
//! fork and exit events. Entries are `Arc<Process>`: events share them, and a change (exec,
//! setuid) replaces the entry instead of mutating it.

use std::collections::HashMap;
use std::sync::Arc;

use rampart_event::{Ancestor, Process};

use crate::procfs::ProcFs;

/// Live processes by pid.
#[derive(Debug)]
pub struct ProcessTable {
    procs: HashMap<u32, Arc<Process>>,
    procfs: ProcFs,
    max_ancestors: usize,
}

impl ProcessTable {
    /// An empty table reading missing processes from `procfs`, keeping at most `max_ancestors`
    /// ancestors per process.
    pub fn new(procfs: ProcFs, max_ancestors: usize) -> Self {
        ProcessTable {
            procs: HashMap::new(),
            procfs,
            max_ancestors,
        }
    }

    /// Loads every process in /proc and links them to their parents. Returns how many.
    pub fn seed(&mut self) -> usize {
        let mut raw: HashMap<u32, Process> = self
            .procfs
            .pids()
            .into_iter()
            .filter_map(|pid| self.procfs.process(pid).map(|p| (pid, p)))
            .collect();
        let pids: Vec<u32> = raw.keys().copied().collect();
        let mut ancestry: HashMap<u32, Vec<Ancestor>> = HashMap::new();
        for &pid in &pids {
            let mut chain = Vec::new();
            let mut cur = raw.get(&pid).map_or(0, |p| p.ppid);
            while cur != 0 && chain.len() < self.max_ancestors {
                let Some(parent) = raw.get(&cur) else { break };
                chain.push(if chain.is_empty() {
                    ancestor_of(parent)
                } else {
                    without_args(&ancestor_of(parent))
                });
                if parent.ppid == cur {
                    break;
                }
                cur = parent.ppid;
            }
            ancestry.insert(pid, chain);
        }
        for (pid, chain) in ancestry {
            if let Some(mut p) = raw.remove(&pid) {
                p.ancestors = chain;
                self.procs.insert(pid, Arc::new(p));
            }
        }
        self.procs.len()
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn get(&self, pid: u32) -> Option<&Arc<Process>> {
        self.procs.get(&pid)
    }

    /// The process `pid`: from the table, else read from /proc (and added), else `None`.
    pub fn get_or_load(&mut self, pid: u32) -> Option<Arc<Process>> {
        if let Some(p) = self.procs.get(&pid) {
            return Some(p.clone());
        }
        let mut p = self.procfs.process(pid)?;
        p.ancestors = self.ancestors_from(p.ppid);
        let p = Arc::new(p);
        self.procs.insert(pid, p.clone());
        Some(p)
    }

    /// The ancestors of a process whose parent is `ppid`: the parent first.
    pub fn ancestors_from(&self, ppid: u32) -> Vec<Ancestor> {
        let Some(parent) = self.procs.get(&ppid) else {
            return Vec::new();
        };
        let mut chain = Vec::with_capacity(self.max_ancestors.min(parent.ancestors.len() + 1));
        chain.push(ancestor_of(parent));
        chain.extend(
            parent
                .ancestors
                .iter()
                .take(self.max_ancestors.saturating_sub(1))
                .map(without_args),
        );
        chain
    }

    /// Records an exec: `p` (without ancestors) replaces whatever `p.pid` was; returns the
    /// entry with its ancestry.
    pub fn exec(&mut self, mut p: Process) -> Arc<Process> {
        p.ancestors = self.ancestors_from(p.ppid);
        let p = Arc::new(p);
        self.procs.insert(p.pid, p.clone());
        p
    }

    /// Records a fork: the child starts as a copy of the parent's image. Returns the parent.
    pub fn fork(
        &mut self,
        parent_pid: u32,
        child_pid: u32,
        child_start_ns: u64,
    ) -> Option<Arc<Process>> {
        let parent = self.get_or_load(parent_pid)?;
        let mut child = (*parent).clone();
        child.pid = child_pid;
        child.tid = child_pid;
        child.ppid = parent_pid;
        child.vpid = None;
        child.start_time_ns = child_start_ns;
        child.ancestors = self.ancestors_from(parent_pid);
        self.procs.insert(child_pid, Arc::new(child));
        Some(parent)
    }

    /// Replaces `pid`'s entry with `f` applied to a copy (credential changes).
    pub fn update(&mut self, pid: u32, f: impl FnOnce(&mut Process)) {
        if let Some(p) = self.procs.get_mut(&pid) {
            f(Arc::make_mut(p));
        }
    }

    /// Forgets `pid` (after its exit event was reported).
    pub fn remove(&mut self, pid: u32) -> Option<Arc<Process>> {
        self.procs.remove(&pid)
    }

    /// Drops entries whose process is gone from /proc (exits the sensor lost). Returns how many.
    pub fn sweep(&mut self) -> usize {
        let live: std::collections::HashSet<u32> = self.procfs.pids().into_iter().collect();
        let before = self.procs.len();
        self.procs.retain(|pid, _| live.contains(pid));
        before - self.procs.len()
    }
}

/// Only the parent carries its argv in events (Falco's `proc.pcmdline`); older ancestors carry
/// pid, name and exe, which keeps every event small.
fn without_args(a: &Ancestor) -> Ancestor {
    Ancestor {
        pid: a.pid,
        name: a.name.clone(),
        exe: a.exe.clone(),
        args: Vec::new(),
    }
}

fn ancestor_of(p: &Process) -> Ancestor {
    Ancestor {
        pid: p.pid,
        name: p.name.clone(),
        exe: p.exe.clone(),
        args: p.args.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, ppid: u32, name: &str) -> Process {
        Process {
            pid,
            ppid,
            name: name.into(),
            exe: format!("/bin/{name}"),
            args: vec![name.into()],
            ..Process::default()
        }
    }

    fn table() -> ProcessTable {
        ProcessTable::new(ProcFs::new("/nonexistent-proc"), 3)
    }

    #[test]
    fn exec_links_ancestors_parent_first_up_to_the_bound() {
        let mut t = table();
        t.exec(proc(1, 0, "init"));
        t.exec(proc(10, 1, "containerd-shim"));
        t.exec(proc(20, 10, "sh"));
        t.exec(proc(30, 20, "bash"));
        let p = t.exec(proc(40, 30, "nc"));
        let names: Vec<_> = p.ancestors.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, vec!["bash", "sh", "containerd-shim"]);
        assert_eq!(
            p.ancestors[0].args,
            vec!["bash"],
            "the parent keeps its argv"
        );
        assert!(p.ancestors[1].args.is_empty(), "older ancestors do not");
    }

    #[test]
    fn fork_copies_the_parent_image_and_exec_replaces_it() {
        let mut t = table();
        t.exec(proc(1, 0, "init"));
        t.exec(proc(5, 1, "sh"));
        let parent = t.fork(5, 6, 99).expect("parent known");
        assert_eq!(parent.pid, 5);
        let child = t.get(6).expect("child");
        assert_eq!(
            (child.name.as_str(), child.ppid, child.start_time_ns),
            ("sh", 5, 99)
        );
        assert_eq!(child.ancestors[0].name, "sh");
        let after = t.exec(proc(6, 5, "cat"));
        assert_eq!(after.name, "cat");
        assert_eq!(after.ancestors[0].pid, 5);
        assert!(t.remove(6).is_some());
        assert!(t.get(6).is_none());
    }

    #[test]
    fn update_replaces_without_touching_shared_copies() {
        let mut t = table();
        let before = t.exec(proc(7, 0, "su"));
        t.update(7, |p| p.uid = 0);
        t.update(7, |p| p.euid = 1000);
        assert_eq!(t.get(7).map(|p| p.euid), Some(1000));
        assert_eq!(before.euid, 0, "events that hold the old entry keep it");
    }

    #[test]
    fn seed_reads_this_machines_proc_and_links_parents() {
        let mut t = ProcessTable::new(ProcFs::default(), 8);
        assert!(t.seed() > 1);
        let me = t.get(std::process::id()).expect("this test process");
        assert!(!me.ancestors.is_empty(), "the test runner has a parent");
        assert_eq!(me.ancestors[0].pid, me.ppid);
    }
}
