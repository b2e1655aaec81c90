//! What a sensor hands to enrichment: an [`Event`] whose kernel-level facts are filled in, and
//! the [`Origin`] that says which task and cgroup it came from, so that enrichment can attach the
//! process (with ancestry) and the container without the sensor knowing either.

use crate::event::Event;

/// The task and cgroups an event came from, as the kernel saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    /// Thread-group id in the host pid namespace.
    pub pid: u32,
    /// Thread id in the host pid namespace.
    pub tid: u32,
    /// Parent's thread-group id (0 when unknown).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id of the task (the inode number of its directory in the unified hierarchy);
    /// 0 when unknown.
    pub cgroup_id: u64,
    /// cgroup v1 id (kernfs node id) of the task in the hierarchy the sensor watches (the `pids`
    /// controller); 0 when not collected.
    pub cgroup_v1_id: u64,
    /// Mount-namespace inode number; 0 when not collected.
    pub mntns: u32,
    /// The kernel's task name, NUL-padded.
    pub comm: [u8; 16],
}

impl Origin {
    /// `comm` as text (up to the first NUL, lossy UTF-8).
    pub fn comm(&self) -> std::borrow::Cow<'_, str> {
        let end = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end])
    }
}

/// One event from a sensor, before enrichment.
///
/// Guarantees: for `process.exec` the event's `process` is the full new image (without
/// ancestors), or `None` when the sensor could not see it (the proc-connector fallback knows
/// only pids: enrichment then reads /proc); for `process.fork` `result` is the child's pid; for
/// every other kind `process` and `container` are `None` and enrichment fills them from
/// `origin`. `origin` fields a sensor does not know are 0.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorEvent {
    pub origin: Origin,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul() {
        let mut o = Origin::default();
        o.comm[..4].copy_from_slice(b"bash");
        assert_eq!(o.comm(), "bash");
    }
}
