//! The seam in front of the kernel: [`EnforceMaps`] is every write and read of the pinned
//! enforcement state that policy logic needs. [`Enforcer`] implements it on the real BPF maps
//! and links (root, BPF); [`MemoryMaps`] implements it in memory, so that reconciling a policy
//! with the running containers (rampart-respond) is tested on any machine, the way youki's
//! `Syscall` trait lets its container logic be tested without a kernel. The real implementation
//! is tested against the real kernel (tests/enforce.rs, rampart-respond's tests/policy.rs).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::{
    Direction, EnforceError, EnforceStats, Enforcer, ExecHook, FileId, NetPrefix, PortRule, Target,
    Verdict,
};

/// The operations on the enforcement state (see [`Enforcer`] for each one's meaning).
pub trait EnforceMaps {
    /// The exec hook attached now, if any.
    fn exec_hook(&self) -> Option<ExecHook>;
    /// Attaches the best exec hook this kernel allows, once.
    fn ensure_exec_hook(&mut self) -> Result<ExecHook, EnforceError>;
    /// Attaches the cgroup programs to `cgroup` under `key`; false when already attached.
    fn attach_cgroup(&mut self, key: &str, cgroup: &Path) -> Result<bool, EnforceError>;
    /// Detaches what `key` attached; false when nothing was.
    fn detach_cgroup(&mut self, key: &str) -> Result<bool, EnforceError>;
    /// Keys with programs attached.
    fn attached_cgroups(&self) -> Vec<String>;
    fn set_target(&mut self, cgroup_id: u64, t: &Target) -> Result<(), EnforceError>;
    fn remove_target(&mut self, cgroup_id: u64) -> Result<bool, EnforceError>;
    fn target(&self, cgroup_id: u64) -> Option<Target>;
    fn targets(&self) -> Vec<(u64, Target)>;
    fn put_exec_name(
        &mut self,
        policy: u32,
        name: &str,
        prefix: bool,
        verdict: Verdict,
        rule_id: u32,
    ) -> Result<(), EnforceError>;
    fn put_exec_path(
        &mut self,
        policy: u32,
        path: &str,
        prefix: bool,
        verdict: Verdict,
        rule_id: u32,
    ) -> Result<(), EnforceError>;
    fn put_exec_file(
        &mut self,
        policy: u32,
        id: FileId,
        verdict: Option<Verdict>,
        rule_id: u32,
    ) -> Result<(), EnforceError>;
    fn mark_exec_seen(&mut self, policy: u32, id: FileId) -> Result<(), EnforceError>;
    fn put_net(
        &mut self,
        policy: u32,
        dir: Direction,
        prefix: NetPrefix,
        rules: &[PortRule],
    ) -> Result<(), EnforceError>;
    /// Removes every rule of `policy`; returns how many entries went.
    fn remove_policy(&mut self, policy: u32) -> Result<usize, EnforceError>;
    /// Policy ids that have rules in the maps.
    fn policies_in_maps(&self) -> HashSet<u32>;
    fn set_isolate_allow(
        &mut self,
        cgroup_id: u64,
        allow: &[NetPrefix],
    ) -> Result<(), EnforceError>;
    fn clear_isolate_allow(&mut self, cgroup_id: u64) -> Result<(), EnforceError>;
    fn stats(&self) -> EnforceStats;
}

impl EnforceMaps for Enforcer {
    fn exec_hook(&self) -> Option<ExecHook> {
        Enforcer::exec_hook(self)
    }
    fn ensure_exec_hook(&mut self) -> Result<ExecHook, EnforceError> {
        Enforcer::ensure_exec_hook(self)
    }
    fn attach_cgroup(&mut self, key: &str, cgroup: &Path) -> Result<bool, EnforceError> {
        Enforcer::attach_cgroup(self, key, cgroup)
    }
    fn detach_cgroup(&mut self, key: &str) -> Result<bool, EnforceError> {
        Enforcer::detach_cgroup(self, key)
    }
    fn attached_cgroups(&self) -> Vec<String> {
        Enforcer::attached_cgroups(self)
    }
    fn set_target(&mut self, cgroup_id: u64, t: &Target) -> Result<(), EnforceError> {
        Enforcer::set_target(self, cgroup_id, t)
    }
    fn remove_target(&mut self, cgroup_id: u64) -> Result<bool, EnforceError> {
        Enforcer::remove_target(self, cgroup_id)
    }
    fn target(&self, cgroup_id: u64) -> Option<Target> {
        Enforcer::target(self, cgroup_id)
    }
    fn targets(&self) -> Vec<(u64, Target)> {
        Enforcer::targets(self)
    }
    fn put_exec_name(
        &mut self,
        policy: u32,
        name: &str,
        prefix: bool,
        verdict: Verdict,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        Enforcer::put_exec_name(self, policy, name, prefix, verdict, rule_id)
    }
    fn put_exec_path(
        &mut self,
        policy: u32,
        path: &str,
        prefix: bool,
        verdict: Verdict,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        Enforcer::put_exec_path(self, policy, path, prefix, verdict, rule_id)
    }
    fn put_exec_file(
        &mut self,
        policy: u32,
        id: FileId,
        verdict: Option<Verdict>,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        Enforcer::put_exec_file(self, policy, id, verdict, rule_id)
    }
    fn mark_exec_seen(&mut self, policy: u32, id: FileId) -> Result<(), EnforceError> {
        Enforcer::mark_exec_seen(self, policy, id)
    }
    fn put_net(
        &mut self,
        policy: u32,
        dir: Direction,
        prefix: NetPrefix,
        rules: &[PortRule],
    ) -> Result<(), EnforceError> {
        Enforcer::put_net(self, policy, dir, prefix, rules)
    }
    fn remove_policy(&mut self, policy: u32) -> Result<usize, EnforceError> {
        Enforcer::remove_policy(self, policy)
    }
    fn policies_in_maps(&self) -> HashSet<u32> {
        Enforcer::policies_in_maps(self)
    }
    fn set_isolate_allow(
        &mut self,
        cgroup_id: u64,
        allow: &[NetPrefix],
    ) -> Result<(), EnforceError> {
        Enforcer::set_isolate_allow(self, cgroup_id, allow)
    }
    fn clear_isolate_allow(&mut self, cgroup_id: u64) -> Result<(), EnforceError> {
        Enforcer::clear_isolate_allow(self, cgroup_id)
    }
    fn stats(&self) -> EnforceStats {
        Enforcer::stats(self)
    }
}

/// One operation, as [`MemoryMaps`] records it (to check the order of writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOp {
    SetTarget(u64, u32),
    RemoveTarget(u64),
    PutRule(u32),
    RemovePolicy(u32),
    Attach(String),
    Detach(String),
    IsolateAllow(u64),
    ClearIsolateAllow(u64),
}

/// A file rule: (policy, file) and (verdict, rule id).
pub type FileRule = ((u32, FileId), (Option<Verdict>, u32));

/// The enforcement state in memory: what the pinned maps and links would hold.
#[derive(Debug, Default, Clone)]
pub struct MemoryMaps {
    pub hook: Option<ExecHook>,
    pub attached: BTreeMap<String, PathBuf>,
    pub targets: BTreeMap<u64, Target>,
    /// (policy, name, prefix) -> (verdict, rule id).
    pub names: BTreeMap<(u32, String, bool), (Verdict, u32)>,
    /// (policy, path, prefix) -> (verdict, rule id).
    pub paths: BTreeMap<(u32, String, bool), (Verdict, u32)>,
    /// (policy, file) -> (verdict, rule id).
    pub files: Vec<FileRule>,
    pub seen: Vec<(u32, FileId)>,
    /// (policy, direction, prefix) -> port rules.
    pub net: BTreeMap<(u32, Direction, NetPrefix), Vec<PortRule>>,
    pub isolate: BTreeMap<u64, Vec<NetPrefix>>,
    /// Every operation in order.
    pub ops: Vec<MapOp>,
}

impl MemoryMaps {
    pub fn new() -> MemoryMaps {
        MemoryMaps::default()
    }
}

impl EnforceMaps for MemoryMaps {
    fn exec_hook(&self) -> Option<ExecHook> {
        self.hook
    }
    fn ensure_exec_hook(&mut self) -> Result<ExecHook, EnforceError> {
        Ok(*self.hook.get_or_insert(ExecHook::TpBtf))
    }
    fn attach_cgroup(&mut self, key: &str, cgroup: &Path) -> Result<bool, EnforceError> {
        if !cgroup.is_dir() {
            return Err(EnforceError::Io {
                path: cgroup.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        self.ops.push(MapOp::Attach(key.to_string()));
        Ok(self
            .attached
            .insert(key.to_string(), cgroup.to_path_buf())
            .is_none())
    }
    fn detach_cgroup(&mut self, key: &str) -> Result<bool, EnforceError> {
        self.ops.push(MapOp::Detach(key.to_string()));
        Ok(self.attached.remove(key).is_some())
    }
    fn attached_cgroups(&self) -> Vec<String> {
        self.attached.keys().cloned().collect()
    }
    fn set_target(&mut self, cgroup_id: u64, t: &Target) -> Result<(), EnforceError> {
        self.ops.push(MapOp::SetTarget(cgroup_id, t.policy));
        self.targets.insert(cgroup_id, *t);
        Ok(())
    }
    fn remove_target(&mut self, cgroup_id: u64) -> Result<bool, EnforceError> {
        self.ops.push(MapOp::RemoveTarget(cgroup_id));
        Ok(self.targets.remove(&cgroup_id).is_some())
    }
    fn target(&self, cgroup_id: u64) -> Option<Target> {
        self.targets.get(&cgroup_id).copied()
    }
    fn targets(&self) -> Vec<(u64, Target)> {
        self.targets.iter().map(|(k, v)| (*k, *v)).collect()
    }
    fn put_exec_name(
        &mut self,
        policy: u32,
        name: &str,
        prefix: bool,
        verdict: Verdict,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        self.ops.push(MapOp::PutRule(policy));
        self.names
            .insert((policy, name.to_string(), prefix), (verdict, rule_id));
        Ok(())
    }
    fn put_exec_path(
        &mut self,
        policy: u32,
        path: &str,
        prefix: bool,
        verdict: Verdict,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        self.ops.push(MapOp::PutRule(policy));
        self.paths
            .insert((policy, path.to_string(), prefix), (verdict, rule_id));
        Ok(())
    }
    fn put_exec_file(
        &mut self,
        policy: u32,
        id: FileId,
        verdict: Option<Verdict>,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        self.ops.push(MapOp::PutRule(policy));
        self.files.retain(|(k, _)| *k != (policy, id));
        self.files.push(((policy, id), (verdict, rule_id)));
        Ok(())
    }
    fn mark_exec_seen(&mut self, policy: u32, id: FileId) -> Result<(), EnforceError> {
        if !self.seen.contains(&(policy, id)) {
            self.seen.push((policy, id));
        }
        Ok(())
    }
    fn put_net(
        &mut self,
        policy: u32,
        dir: Direction,
        prefix: NetPrefix,
        rules: &[PortRule],
    ) -> Result<(), EnforceError> {
        self.ops.push(MapOp::PutRule(policy));
        self.net.insert((policy, dir, prefix), rules.to_vec());
        Ok(())
    }
    fn remove_policy(&mut self, policy: u32) -> Result<usize, EnforceError> {
        self.ops.push(MapOp::RemovePolicy(policy));
        let before = self.names.len()
            + self.paths.len()
            + self.files.len()
            + self.seen.len()
            + self.net.len();
        self.names.retain(|k, _| k.0 != policy);
        self.paths.retain(|k, _| k.0 != policy);
        self.files.retain(|(k, _)| k.0 != policy);
        self.seen.retain(|k| k.0 != policy);
        self.net.retain(|k, _| k.0 != policy);
        let after = self.names.len()
            + self.paths.len()
            + self.files.len()
            + self.seen.len()
            + self.net.len();
        Ok(before - after)
    }
    fn policies_in_maps(&self) -> HashSet<u32> {
        let mut s: BTreeSet<u32> = BTreeSet::new();
        s.extend(self.names.keys().map(|k| k.0));
        s.extend(self.paths.keys().map(|k| k.0));
        s.extend(self.files.iter().map(|(k, _)| k.0));
        s.extend(self.seen.iter().map(|k| k.0));
        s.extend(self.net.keys().map(|k| k.0));
        s.into_iter().collect()
    }
    fn set_isolate_allow(
        &mut self,
        cgroup_id: u64,
        allow: &[NetPrefix],
    ) -> Result<(), EnforceError> {
        self.ops.push(MapOp::IsolateAllow(cgroup_id));
        self.isolate.insert(cgroup_id, allow.to_vec());
        Ok(())
    }
    fn clear_isolate_allow(&mut self, cgroup_id: u64) -> Result<(), EnforceError> {
        self.ops.push(MapOp::ClearIsolateAllow(cgroup_id));
        self.isolate.remove(&cgroup_id);
        Ok(())
    }
    fn stats(&self) -> EnforceStats {
        EnforceStats::default()
    }
}
