//! The fallback event source for hosts where BPF cannot load (old kernels, OpenVZ/LXC guests,
//! lockdown that refuses tracing programs): the netlink proc connector reports exec, fork,
//! exit and uid/gid changes with pids only; enrichment reads the details (argv, exe, cwd,
//! credentials, cgroup) from /proc right away, which loses processes that exit before they are
//! read (their exec is still reported, with the pid).
//!
//! Missing in this mode: file, network, DNS and most privilege events (only setuid/setgid are
//! seen), and events of processes that exit within microseconds carry no argv.
//!
//! The netlink connector protocol is written here with libc: it is a fixed four-struct layout
//! (nlmsghdr, cn_msg, proc_event) and the crates that wrap it are unmaintained.

use std::borrow::Cow;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use rampart_event::{
    Device, Event, EventId, EventKind, ExitInfo, Origin, PrivilegeInfo, SensorEvent,
};

use crate::error::KernelError;

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;

const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_UID: u32 = 0x4;
const PROC_EVENT_GID: u32 = 0x40;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// The running fallback source; dropping it stops the reader.
#[derive(Debug)]
pub struct ProcConnector {
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    userspace_drops: Arc<AtomicU64>,
}

impl ProcConnector {
    /// Subscribes to the proc connector and starts the reader thread.
    pub fn start(
        device: Arc<Device>,
        instance: u64,
        tx: SyncSender<Box<SensorEvent>>,
    ) -> Result<ProcConnector, KernelError> {
        let sock = subscribe().map_err(KernelError::ProcConnector)?;
        let stop = Arc::new(AtomicBool::new(false));
        let drops = Arc::new(AtomicU64::new(0));
        let reader = {
            let stop = stop.clone();
            let drops = drops.clone();
            std::thread::Builder::new()
                .name("rampart-procconn".into())
                .spawn(move || {
                    let mut src = Source {
                        device,
                        instance,
                        seq: 0,
                    };
                    src.run(sock, tx, &stop, &drops);
                })
                .map_err(KernelError::ProcConnector)?
        };
        Ok(ProcConnector {
            stop,
            reader: Some(reader),
            userspace_drops: drops,
        })
    }

    /// Events the consumer had no room for.
    pub fn userspace_drops(&self) -> u64 {
        self.userspace_drops.load(Ordering::Relaxed)
    }

    /// What this source cannot see, for the capability report and the agent's warning.
    pub const MISSING: &'static str = "file, network, DNS, mount, ptrace, capset, unshare/setns, module and bpf events; argv of very short-lived processes";
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn subscribe() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM, NETLINK_CONNECTOR) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is its documented initial state.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = CN_IDX_PROC;
    addr.nl_pid = 0;
    // SAFETY: addr is a valid sockaddr_nl of the size given.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: setsockopt with a timeval of the right size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let mut msg = Vec::with_capacity(NLMSG_HDR + CN_MSG_HDR + 4);
    let total = (NLMSG_HDR + CN_MSG_HDR + 4) as u32;
    msg.extend_from_slice(&total.to_ne_bytes());
    msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&std::process::id().to_ne_bytes());
    msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
    msg.extend_from_slice(&4u16.to_ne_bytes()); // len
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    // SAFETY: sending our own buffer.
    let n = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

struct Source {
    device: Arc<Device>,
    instance: u64,
    seq: u64,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

impl Source {
    fn run(
        &mut self,
        sock: OwnedFd,
        tx: SyncSender<Box<SensorEvent>>,
        stop: &AtomicBool,
        drops: &AtomicU64,
    ) {
        let own = std::process::id();
        let mut buf = vec![0u8; 8192];
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: receiving into our own buffer of the given length.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let msg = &buf[..n as usize];
            let ev = &msg[(NLMSG_HDR + CN_MSG_HDR).min(msg.len())..];
            let Some(what) = u32_at(ev, 0) else { continue };
            let data = &ev[16.min(ev.len())..];
            let out = match what {
                PROC_EVENT_EXEC => u32_at(data, 4).and_then(|tgid| self.exec(tgid)),
                PROC_EVENT_FORK => self.fork(data),
                PROC_EVENT_EXIT => self.exit(data),
                PROC_EVENT_UID | PROC_EVENT_GID => self.id_change(what, data),
                _ => None,
            };
            if let Some(e) = out {
                if e.origin.pid == own {
                    continue;
                }
                match tx.try_send(Box::new(e)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        drops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
    }

    fn new_event(&mut self, kind: EventKind) -> Event {
        self.seq += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Event::new(
            EventId::new(self.instance, self.seq),
            now,
            kind,
            self.device.clone(),
        )
    }

    /// The fallback knows only pids: enrichment reads the rest from /proc.
    fn origin(pid: u32) -> Origin {
        Origin {
            pid,
            tid: pid,
            ..Origin::default()
        }
    }

    fn exec(&mut self, pid: u32) -> Option<SensorEvent> {
        let origin = Self::origin(pid);
        let mut e = self.new_event(EventKind::ProcessExec);
        e.syscall = Some(Cow::Borrowed("execve"));
        e.result = Some(0);
        Some(SensorEvent { origin, event: e })
    }

    fn fork(&mut self, data: &[u8]) -> Option<SensorEvent> {
        let parent_tgid = u32_at(data, 4)?;
        let child_pid = u32_at(data, 8)?;
        let child_tgid = u32_at(data, 12)?;
        if child_pid != child_tgid {
            return None;
        }
        let origin = Self::origin(parent_tgid);
        let mut e = self.new_event(EventKind::ProcessFork);
        e.result = Some(i64::from(child_tgid));
        Some(SensorEvent { origin, event: e })
    }

    fn exit(&mut self, data: &[u8]) -> Option<SensorEvent> {
        let pid = u32_at(data, 0)?;
        let tgid = u32_at(data, 4)?;
        if pid != tgid {
            return None;
        }
        let code = u32_at(data, 8)?;
        let origin = Origin {
            pid: tgid,
            tid: pid,
            ppid: u32_at(data, 20).unwrap_or(0),
            ..Origin::default()
        };
        let mut e = self.new_event(EventKind::ProcessExit);
        let signal = code & 0x7f;
        e.exit = Some(ExitInfo {
            code: ((code >> 8) & 0xff) as i32,
            signal: (signal != 0).then_some(signal as i32),
            core_dumped: code & 0x80 != 0,
        });
        Some(SensorEvent { origin, event: e })
    }

    fn id_change(&mut self, what: u32, data: &[u8]) -> Option<SensorEvent> {
        let tgid = u32_at(data, 4)?;
        let real = u32_at(data, 8)?;
        let effective = u32_at(data, 12)?;
        let origin = Self::origin(tgid);
        let (kind, p) = if what == PROC_EVENT_UID {
            (
                EventKind::PrivSetuid,
                PrivilegeInfo {
                    uid: Some(real),
                    euid: Some(effective),
                    ..PrivilegeInfo::default()
                },
            )
        } else {
            (
                EventKind::PrivSetgid,
                PrivilegeInfo {
                    gid: Some(real),
                    egid: Some(effective),
                    ..PrivilegeInfo::default()
                },
            )
        };
        let mut e = self.new_event(kind);
        e.privilege = Some(p);
        Some(SensorEvent { origin, event: e })
    }
}
