//! Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo.

use std::fmt;
use std::fs;
use std::path::PathBuf;

/// The cgroup hierarchies of this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    /// Mount point of the cgroup v2 (unified) hierarchy, if any.
    pub unified: Option<PathBuf>,
    /// Mount point of the v1 hierarchy that has the `pids` controller, if any.
    pub v1_pids: Option<PathBuf>,
    /// Index of the `pids` controller in /proc/cgroups (its `cgroup_subsys_id`), if present.
    pub pids_subsys_id: Option<u32>,
    /// Whether any v1 controller hierarchy is mounted.
    pub any_v1: bool,
}

impl CgroupLayout {
    /// `v2`, `v1` or `hybrid`.
    pub fn mode(&self) -> &'static str {
        match (self.unified.is_some(), self.any_v1) {
            (true, true) => "hybrid",
            (true, false) => "v2",
            (false, true) => "v1",
            (false, false) => "none",
        }
    }
}

impl fmt::Display for CgroupLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mode())?;
        if let Some(u) = &self.unified {
            write!(f, " (v2 at {})", u.display())?;
        }
        Ok(())
    }
}

/// Reads the layout of this process's mount namespace.
pub fn cgroup_layout() -> CgroupLayout {
    let mut layout = CgroupLayout::default();
    if let Ok(info) = fs::read_to_string("/proc/self/mountinfo") {
        parse_mountinfo(&info, &mut layout);
    }
    if let Ok(cgroups) = fs::read_to_string("/proc/cgroups") {
        layout.pids_subsys_id = cgroups
            .lines()
            .filter(|l| !l.starts_with('#'))
            .position(|l| l.split_whitespace().next() == Some("pids"))
            .and_then(|i| u32::try_from(i).ok());
    }
    layout
}

fn parse_mountinfo(info: &str, layout: &mut CgroupLayout) {
    for line in info.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or_default();
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or_default();
        let superopts = r.nth(1).unwrap_or_default();
        match fstype {
            "cgroup2" if layout.unified.is_none() => {
                layout.unified = Some(PathBuf::from(mount_point));
            }
            "cgroup" => {
                if superopts.split(',').any(|o| o == "pids") {
                    layout.v1_pids = Some(PathBuf::from(mount_point));
                }
                if !superopts
                    .split(',')
                    .all(|o| o.starts_with("name=") || o == "rw" || o == "ro")
                {
                    layout.any_v1 = true;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_layout_from_mountinfo() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
40 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";
        let mut l = CgroupLayout::default();
        parse_mountinfo(info, &mut l);
        assert_eq!(l.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(l.v1_pids, Some(PathBuf::from("/sys/fs/cgroup/pids")));
        assert_eq!(l.mode(), "hybrid");
    }

    #[test]
    fn pure_v2() {
        let mut l = CgroupLayout::default();
        parse_mountinfo(
            "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            &mut l,
        );
        assert_eq!(l.mode(), "v2");
        assert_eq!(l.v1_pids, None);
    }
}
