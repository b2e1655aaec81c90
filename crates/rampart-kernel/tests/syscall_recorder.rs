//! The syscall recorder against the real kernel: it counts exactly the syscalls of the watched
//! cgroups, splits them by seccomp phase, follows children of a watched parent, and sees
//! capability checks where the kernel has the tracepoint.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_kernel::{
    cgroup_layout, CgroupHierarchy, SyscallAbi, SyscallCount, SyscallRecorder, WatchScope,
};

/// x86_64 numbers of the syscalls the tests look for.
const NR_MKDIR: u32 = 83;
const NR_MKDIRAT: u32 = 258;
const NR_EXECVE: u32 = 59;
const NR_EXIT_GROUP: u32 = 231;
const NR_REBOOT: u32 = 169;
const NR_GETPPID: u32 = 110;
const CAP_CHOWN: u32 = 0;

/// A cgroup v2 directory made for the test, removed when dropped.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(parent: &Path, name: &str) -> TestCgroup {
        let p = parent.join(name);
        fs::create_dir_all(&p).expect("mkdir cgroup");
        TestCgroup(p)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Runs `script` with sh inside cgroup `cg` (the child moves itself before exec), optionally
/// under an allow-all seccomp filter installed before exec.
fn run_in(cg: &Path, script: &str, seccomp: bool) {
    let procs = cg.join("cgroup.procs");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    // SAFETY: the closure only makes async-signal-safe system calls (open/write via std::fs on
    // a preformatted path is allocation-free here except the pid string, which is fine in the
    // single-threaded child of fork).
    unsafe {
        cmd.pre_exec(move || {
            fs::write(&procs, std::process::id().to_string())?;
            if seccomp {
                allow_all_filter()?;
            }
            Ok(())
        });
    }
    let st = cmd.status().expect("spawn sh");
    assert!(st.success(), "script failed: {script}");
}

/// Installs a seccomp filter that allows everything (what a learning profile does).
fn allow_all_filter() -> io::Result<()> {
    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let insns = [SockFilter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: SECCOMP_RET_ALLOW,
    }];
    let prog = SockFprog {
        len: 1,
        filter: insns.as_ptr(),
    };
    // SAFETY: prctl and seccomp with valid arguments; prog outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(
            libc::SYS_seccomp,
            1, /* SECCOMP_SET_MODE_FILTER */
            0,
            &prog as *const SockFprog,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn count(counts: &[SyscallCount], id: u64, nr: u32, seccomp: Option<bool>) -> u64 {
    counts
        .iter()
        .filter(|c| {
            c.cgroup.id == id
                && c.abi == SyscallAbi::Native
                && c.nr == nr
                && seccomp.is_none_or(|s| c.under_seccomp == s)
        })
        .map(|c| c.count)
        .sum()
}

fn unified() -> Option<PathBuf> {
    cgroup_layout().unified
}

#[test]
fn counts_exactly_the_syscalls_of_the_watched_cgroup() {
    testkit::require!(Root, Bpf);
    let Some(root) = unified() else {
        testkit::skip(module_path!(), "a cgroup v2 hierarchy");
        return;
    };
    let cg = TestCgroup::new(&root, &format!("rampart-sysrec-{}", std::process::id()));
    let other = TestCgroup::new(
        &root,
        &format!("rampart-sysrec-other-{}", std::process::id()),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rec = SyscallRecorder::start().expect("recorder");
    let id = rec.watch(&cg.0, WatchScope::Cgroup).expect("watch");
    assert_eq!(id.hierarchy, CgroupHierarchy::V2);

    let script = format!(
        "for i in 1 2 3 4 5; do mkdir {d}/x$i; done; cat /proc/self/status >/dev/null",
        d = dir.path().display()
    );
    run_in(&cg.0, &script, false);
    // The same work outside the watched cgroup must not be counted anywhere.
    run_in(
        &other.0,
        &format!("mkdir {}/y", dir.path().display()),
        false,
    );
    // Nor in this process, which is outside both.
    fs::create_dir(dir.path().join("z")).expect("mkdir");

    let counts = rec.syscalls().expect("read");
    let mkdirs = count(&counts, id.id, NR_MKDIR, None) + count(&counts, id.id, NR_MKDIRAT, None);
    assert_eq!(mkdirs, 5, "five mkdirs in the watched cgroup: {counts:?}");
    assert!(count(&counts, id.id, NR_EXECVE, None) >= 1, "{counts:?}");
    assert!(
        count(&counts, id.id, NR_EXIT_GROUP, None) >= 1,
        "{counts:?}"
    );
    assert_eq!(count(&counts, id.id, NR_REBOOT, None), 0);
    let other_id = rec.cgroup_ref(&other.0).expect("ref").id;
    assert!(
        counts.iter().all(|c| c.cgroup.id == id.id),
        "only the watched cgroup is recorded (other cgroup {other_id}): {counts:?}"
    );
    assert!(
        counts.iter().all(|c| !c.under_seccomp),
        "no seccomp filter was installed"
    );
    assert_eq!(rec.lost().expect("lost"), (0, 0));

    // After unwatch, nothing more is counted.
    rec.unwatch(id).expect("unwatch");
    run_in(
        &cg.0,
        &format!("mkdir {}/after", dir.path().display()),
        false,
    );
    let again = rec.syscalls().expect("read");
    assert_eq!(
        count(&again, id.id, NR_MKDIR, None) + count(&again, id.id, NR_MKDIRAT, None),
        5
    );
}

#[test]
fn separates_syscalls_made_under_a_seccomp_filter() {
    testkit::require!(Root, Bpf);
    let Some(root) = unified() else {
        testkit::skip(module_path!(), "a cgroup v2 hierarchy");
        return;
    };
    let cg = TestCgroup::new(&root, &format!("rampart-sysrec-sc-{}", std::process::id()));
    let mut rec = SyscallRecorder::start().expect("recorder");
    let id = rec.watch(&cg.0, WatchScope::Cgroup).expect("watch");
    // The shell calls getppid only for $PPID; the writes to cgroup.procs happen before the
    // filter and execve after it.
    run_in(&cg.0, "echo $PPID >/dev/null", true);
    let counts = rec.syscalls().expect("read");
    assert!(
        count(&counts, id.id, NR_EXECVE, Some(true)) >= 1,
        "{counts:?}"
    );
    assert!(
        count(&counts, id.id, NR_GETPPID, Some(true)) >= 1,
        "{counts:?}"
    );
    // The seccomp() call itself ran before the filter existed.
    assert!(
        count(&counts, id.id, libc::SYS_seccomp as u32, Some(false)) >= 1,
        "{counts:?}"
    );
    assert_eq!(
        count(&counts, id.id, libc::SYS_seccomp as u32, Some(true)),
        0
    );
}

#[test]
fn children_scope_counts_per_child_cgroup_created_after_the_watch() {
    testkit::require!(Root, Bpf);
    let Some(root) = unified() else {
        testkit::skip(module_path!(), "a cgroup v2 hierarchy");
        return;
    };
    let parent = TestCgroup::new(&root, &format!("rampart-sysrec-p-{}", std::process::id()));
    let mut rec = SyscallRecorder::start().expect("recorder");
    rec.watch(&parent.0, WatchScope::Children).expect("watch");
    let a = TestCgroup::new(&parent.0, "a");
    let b = TestCgroup::new(&parent.0, "b");
    let dir = tempfile::tempdir().expect("tempdir");
    run_in(
        &a.0,
        &format!(
            "mkdir {}/a1 {}/a2",
            dir.path().display(),
            dir.path().display()
        ),
        false,
    );
    run_in(&b.0, &format!("mkdir {}/b1", dir.path().display()), false);
    let a_id = rec.cgroup_ref(&a.0).expect("a").id;
    let b_id = rec.cgroup_ref(&b.0).expect("b").id;
    let counts = rec.syscalls().expect("read");
    let mk = |id| count(&counts, id, NR_MKDIR, None) + count(&counts, id, NR_MKDIRAT, None);
    assert_eq!(mk(a_id), 2, "{counts:?}");
    assert_eq!(mk(b_id), 1, "{counts:?}");
    rec.forget(|c| c.id == a_id).expect("forget");
    let left = rec.syscalls().expect("read");
    assert!(left.iter().all(|c| c.cgroup.id == a_id));
    assert!(!left.is_empty());
}

#[test]
fn records_granted_capability_checks_where_the_tracepoint_exists() {
    testkit::require!(Root, Bpf);
    let Some(root) = unified() else {
        testkit::skip(module_path!(), "a cgroup v2 hierarchy");
        return;
    };
    let cg = TestCgroup::new(&root, &format!("rampart-sysrec-cap-{}", std::process::id()));
    let mut rec = SyscallRecorder::start().expect("recorder");
    if let Err(why) = rec.capability_recording() {
        let has_tp = fs::read_to_string("/proc/kallsyms")
            .map(|k| k.contains("__tracepoint_cap_capable"))
            .unwrap_or(false);
        assert!(
            !has_tp,
            "kernel has the tracepoint but recording is off: {why}"
        );
        testkit::skip(module_path!(), &format!("capability recording: {why}"));
        return;
    }
    let id = rec.watch(&cg.0, WatchScope::Cgroup).expect("watch");
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    fs::write(&f, "x").expect("write");
    // Giving a file away needs CAP_CHOWN; root has it.
    run_in(&cg.0, &format!("chown 1:1 {}", f.display()), false);
    let caps = rec.capabilities().expect("caps");
    assert!(
        caps.iter()
            .any(|c| c.cgroup.id == id.id && c.cap == CAP_CHOWN && c.granted),
        "{caps:?}"
    );
}
