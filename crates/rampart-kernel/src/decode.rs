//! Decoding ring-buffer records (see `bpf/rampart.h`) into [`SensorEvent`]s.
//!
//! Meaning of `rp_sys.a[]` and `rp_sys.s[]` per record type:
//!
//! | type | a[0] | a[1] | a[2] | a[3] | s[0] | s[1] | s[2] |
//! |---|---|---|---|---|---|---|---|
//! | FORK | child tgid | child start (boot ns) | | | | | |
//! | EXIT | raw exit code (`status << 8 \| core << 7 \| signal`) | | | | | | |
//! | OPEN | flags | mode | sensitive | fd | full path | | |
//! | UNLINK | flags (0x200 = rmdir) | | | | path as given | | base dir of a relative path |
//! | CHMOD | mode | | | | path (or full path for fchmod) | | base dir |
//! | CHOWN | | uid | gid | | path (or full path for fchown) | | base dir |
//! | RENAME | renameat2 flags | | | | old path | new path | base dir |
//! | MOUNT | mount flags | | | | source | target | fs type |
//! | UMOUNT | flags | | | | target | | |
//! | PIVOT_ROOT | | | | | new root | put old | |
//! | MEMFD | flags | | | | name | | |
//! | SETUID/SETGID | id args in order (-1 = unchanged) | | | | | | |
//! | CAPSET | effective | permitted | inheritable | | | | |
//! | PTRACE | request | pid | | | | | |
//! | UNSHARE | flags | | | | | | |
//! | SETNS | fd | nstype | namespace inode | nstype | | | |
//! | MODULE | (init_module) image address | length | | | module path (finit_module) | | |
//! | BPF | command | program type (PROG_LOAD) | | | | | |
//! | KILL | target pid | signal | | | | | |
//! | SOCKET | domain | type (with SOCK_NONBLOCK/SOCK_CLOEXEC) | protocol | | | | |
//!
//! `RP_DNS` and `RP_PAYLOAD` records are `struct rp_dns` followed by `len` bytes: a DNS message,
//! or the head of an outbound TCP segment's payload (`seg_len` bytes in the segment).
//!
//! A record that is shorter than its type needs, or whose strings point outside it, is counted
//! as malformed and skipped; it never panics the reader.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytemuck::Pod;
use rampart_event::{
    Device, DnsAnswer, DnsInfo, Endpoint, Event, EventId, EventKind, ExitInfo, FileInfo,
    NetDirection, NetInfo, Origin, PayloadInfo, PrivilegeInfo, Process, SensorEvent, SocketInfo,
};

use crate::abi::*;
use crate::syscalls::syscall_name;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const O_CREAT: u32 = 0o100;

/// Turns records into events. One per reader thread.
#[derive(Debug)]
pub struct Decoder {
    device: Arc<Device>,
    instance: u64,
    seq: u64,
    /// Wall clock minus boot clock, nanoseconds.
    boot_to_wall_ns: i128,
    /// Records skipped because they were malformed.
    pub malformed: u64,
}

impl Decoder {
    /// A decoder stamping events with `device` and ids `instance-N`.
    pub fn new(device: Arc<Device>, instance: u64) -> Self {
        Decoder {
            device,
            instance,
            seq: 0,
            boot_to_wall_ns: boot_to_wall_offset(),
            malformed: 0,
        }
    }

    /// Nanoseconds since the Unix epoch for a boot-clock timestamp.
    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        let t = i128::from(boot_ns) + self.boot_to_wall_ns;
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }

    fn event(&mut self, h: &RpHeader, kind: EventKind) -> Event {
        self.seq += 1;
        let mut e = Event::new(
            EventId::new(self.instance, self.seq),
            self.wall_ns(h.ktime_ns),
            kind,
            self.device.clone(),
        );
        if h.syscall != u32::MAX {
            e.syscall = Some(Cow::Borrowed(syscall_name(h.syscall)));
            e.result = Some(h.ret);
        }
        e
    }

    /// Decodes one record; `None` (and `malformed` + 1) when it does not parse.
    pub fn decode(&mut self, rec: &[u8]) -> Option<SensorEvent> {
        let out = self.decode_inner(rec);
        if out.is_none() {
            self.malformed += 1;
        }
        out
    }

    fn decode_inner(&mut self, rec: &[u8]) -> Option<SensorEvent> {
        let h: RpHeader = read(rec)?;
        let origin = Origin {
            pid: h.pid,
            tid: h.tid,
            ppid: h.ppid,
            uid: h.uid,
            gid: h.gid,
            cgroup_id: h.cgroup_id,
            cgroup_v1_id: h.cgroup_v1_id,
            mntns: h.mntns,
            comm: h.comm,
        };
        let event = match h.kind {
            RP_EXEC => self.exec(rec)?,
            RP_NET_FIRST..=RP_NET_LAST => self.net(rec)?,
            RP_DNS => self.dns(rec)?,
            RP_PAYLOAD => self.payload(rec)?,
            _ => self.sys(rec)?,
        };
        Some(SensorEvent { origin, event })
    }

    fn exec(&mut self, rec: &[u8]) -> Option<Event> {
        let x: RpExec = read(rec)?;
        let mut e = self.event(&x.h, EventKind::ProcessExec);
        e.syscall = Some(Cow::Borrowed("execve"));
        e.result = Some(0);
        let exe = text(rec, x.exe)?;
        let filename = text(rec, x.filename)?;
        let args = bytes(rec, x.args)?
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>();
        let mut args = args;
        if args.last().is_some_and(|a| a.is_empty()) {
            args.pop();
        }
        // Multi-call binaries (busybox) re-exec applets through /proc/self/exe, which makes
        // comm "exe"; argv[0] names the applet.
        let mut name = comm(&x.h.comm);
        if name == "exe" && filename.starts_with("/proc/") && filename.ends_with("/exe") {
            if let Some(a0) = args.first() {
                name = a0
                    .rsplit('/')
                    .next()
                    .unwrap_or(a0)
                    .chars()
                    .take(15)
                    .collect();
            }
        }
        let exe = if exe.is_empty() { filename } else { exe };
        let fileless = x.exe_nlink == 0 || exe.starts_with("/memfd:");
        e.process = Some(Arc::new(Process {
            pid: x.h.pid,
            tid: x.h.tid,
            ppid: x.h.ppid,
            vpid: Some(x.vpid),
            name,
            exe,
            args,
            args_truncated: x.args_truncated != 0,
            cwd: text(rec, x.cwd)?,
            uid: x.h.uid,
            euid: x.euid,
            gid: x.h.gid,
            egid: x.egid,
            loginuid: x.loginuid,
            user: None,
            tty: x.tty,
            cap_effective: x.cap_effective,
            cap_permitted: x.cap_permitted,
            start_time_ns: self.wall_ns(x.start_ns),
            exe_upper_layer: false,
            exe_fileless: fileless,
            exe_sha256: None,
            stdin_type: fd_type(&x.stdin_info),
            stdout_type: fd_type(&x.stdout_info),
            ancestors: Vec::new(),
        }));
        Some(e)
    }

    fn sys(&mut self, rec: &[u8]) -> Option<Event> {
        let x: RpSys = read(rec)?;
        let a = x.a;
        let s = |i: usize| text(rec, x.s[i]);
        let kind = match x.h.kind {
            RP_FORK => EventKind::ProcessFork,
            RP_EXIT => EventKind::ProcessExit,
            RP_OPEN => EventKind::FileOpen,
            RP_UNLINK => EventKind::FileUnlink,
            RP_RENAME => EventKind::FileRename,
            RP_CHMOD => EventKind::FileChmod,
            RP_CHOWN => EventKind::FileChown,
            RP_MOUNT => EventKind::FileMount,
            RP_UMOUNT => EventKind::FileUmount,
            RP_PIVOT_ROOT => EventKind::FilePivotRoot,
            RP_MEMFD => EventKind::FileMemfd,
            RP_SETUID => EventKind::PrivSetuid,
            RP_SETGID => EventKind::PrivSetgid,
            RP_CAPSET => EventKind::PrivCapset,
            RP_PTRACE => EventKind::PrivPtrace,
            RP_UNSHARE => EventKind::PrivUnshare,
            RP_SETNS => EventKind::PrivSetns,
            RP_MODULE => EventKind::PrivModuleLoad,
            RP_BPF => EventKind::PrivBpf,
            RP_IO_URING => EventKind::PrivIoUring,
            RP_KILL => EventKind::PrivKill,
            RP_SOCKET => EventKind::NetSocket,
            _ => return None,
        };
        let mut e = self.event(&x.h, kind);
        match x.h.kind {
            RP_FORK => {
                e.result = Some(i64::try_from(a[0]).ok()?);
            }
            RP_EXIT => {
                let code = a[0] as u32;
                let signal = code & 0x7f;
                e.exit = Some(ExitInfo {
                    code: ((code >> 8) & 0xff) as i32,
                    signal: (signal != 0).then_some(signal as i32),
                    core_dumped: code & 0x80 != 0,
                });
            }
            RP_OPEN => {
                let flags = a[0] as u32;
                e.file = Some(FileInfo {
                    path: s(0)?,
                    flags: Some(flags),
                    mode: (flags & O_CREAT != 0).then_some(a[1] as u32),
                    fd: Some(a[3] as i32),
                    sensitive: a[2] != 0,
                    ..FileInfo::default()
                });
            }
            RP_UNLINK | RP_CHMOD | RP_CHOWN => {
                let mut f = FileInfo::at(join(&s(2)?, &s(0)?));
                if x.h.kind == RP_CHMOD {
                    f.mode = Some(a[0] as u32);
                }
                if x.h.kind == RP_CHOWN {
                    f.uid = id_arg(a[1]);
                    f.gid = id_arg(a[2]);
                }
                if x.h.kind == RP_UNLINK {
                    f.flags = Some(a[0] as u32);
                }
                e.file = Some(f);
            }
            RP_RENAME => {
                let base = s(2)?;
                e.file = Some(FileInfo {
                    new_path: Some(join(&base, &s(1)?)),
                    flags: (a[0] != 0).then_some(a[0] as u32),
                    ..FileInfo::at(join(&base, &s(0)?))
                });
            }
            RP_MOUNT => {
                e.file = Some(FileInfo {
                    source: Some(s(0)?),
                    fs_type: Some(s(2)?),
                    ..FileInfo::at(s(1)?)
                });
                e.privilege = Some(PrivilegeInfo {
                    flags: Some(a[0]),
                    ..PrivilegeInfo::default()
                });
            }
            RP_SOCKET => {
                e.socket = Some(socket_info(a[0], a[1], a[2]));
            }
            RP_UMOUNT => {
                e.file = Some(FileInfo::at(s(0)?));
                e.privilege = Some(PrivilegeInfo {
                    flags: Some(a[0]),
                    ..PrivilegeInfo::default()
                });
            }
            RP_PIVOT_ROOT => {
                e.file = Some(FileInfo {
                    new_path: Some(s(1)?),
                    ..FileInfo::at(s(0)?)
                });
            }
            RP_MEMFD => {
                let name = s(0)?;
                e.file = Some(FileInfo {
                    fs_type: Some("memfd".into()),
                    fd: i32::try_from(x.h.ret).ok(),
                    ..FileInfo::at(format!("memfd:{name}"))
                });
                e.privilege = Some(PrivilegeInfo {
                    flags: Some(a[0]),
                    name: Some(name),
                    ..PrivilegeInfo::default()
                });
            }
            RP_SETUID | RP_SETGID => {
                let uid = x.h.kind == RP_SETUID;
                let mut p = PrivilegeInfo::default();
                let (r, ef, sv) = match syscall_name(x.h.syscall) {
                    "setuid" | "setgid" => (id_arg(a[0]), None, None),
                    "setfsuid" | "setfsgid" => (None, id_arg(a[0]), None),
                    "setreuid" | "setregid" => (id_arg(a[0]), id_arg(a[1]), None),
                    _ => (id_arg(a[0]), id_arg(a[1]), id_arg(a[2])),
                };
                if uid {
                    (p.uid, p.euid, p.suid) = (r, ef, sv);
                } else {
                    (p.gid, p.egid, p.sgid) = (r, ef, sv);
                }
                e.privilege = Some(p);
            }
            RP_CAPSET => {
                e.privilege = Some(PrivilegeInfo {
                    cap_effective: Some(a[0]),
                    cap_permitted: Some(a[1]),
                    cap_inheritable: Some(a[2]),
                    ..PrivilegeInfo::default()
                });
            }
            RP_PTRACE => {
                e.privilege = Some(PrivilegeInfo {
                    request: Some(a[0] as i64),
                    request_name: Some(ptrace_request_name(a[0]).into()),
                    target_pid: u32::try_from(a[1]).ok().filter(|&p| p != 0),
                    ..PrivilegeInfo::default()
                });
            }
            RP_UNSHARE => {
                e.privilege = Some(PrivilegeInfo {
                    flags: Some(a[0]),
                    namespaces: namespaces(a[0]),
                    ..PrivilegeInfo::default()
                });
            }
            RP_SETNS => {
                e.privilege = Some(PrivilegeInfo {
                    flags: Some(a[1]),
                    namespaces: namespaces(a[1]),
                    ns_inode: (a[2] != 0).then_some(a[2]),
                    ..PrivilegeInfo::default()
                });
            }
            RP_MODULE => {
                let path = s(0)?;
                e.privilege = Some(PrivilegeInfo {
                    name: (!path.is_empty()).then_some(path),
                    ..PrivilegeInfo::default()
                });
            }
            RP_BPF => {
                e.privilege = Some(PrivilegeInfo {
                    request: Some(a[0] as i64),
                    request_name: Some(bpf_cmd_name(a[0]).into()),
                    flags: (a[0] == 5).then_some(a[1]),
                    ..PrivilegeInfo::default()
                });
            }
            RP_IO_URING => {
                // a[0] entries asked for, a[1] IORING_SETUP_* flags (0 when the params could
                // not be read).
                e.privilege = Some(PrivilegeInfo {
                    request: Some(a[0] as i64),
                    flags: Some(a[1]),
                    ..PrivilegeInfo::default()
                });
            }
            RP_KILL => {
                let target = a[0] as i32;
                e.privilege = Some(PrivilegeInfo {
                    target_pid: u32::try_from(target).ok(),
                    request: Some(a[1] as i64),
                    request_name: Some(signal_name(a[1] as i32)),
                    ..PrivilegeInfo::default()
                });
            }
            _ => return None,
        }
        Some(e)
    }

    fn net(&mut self, rec: &[u8]) -> Option<Event> {
        let x: RpNet = read(rec)?;
        let (kind, direction) = match x.h.kind {
            RP_CONNECT => (EventKind::NetConnect, NetDirection::Outbound),
            RP_ACCEPT => (EventKind::NetAccept, NetDirection::Inbound),
            RP_BIND => (EventKind::NetBind, NetDirection::Bind),
            _ => (EventKind::NetListen, NetDirection::Listen),
        };
        let mut e = self.event(&x.h, kind);
        let family = match x.family {
            AF_INET => "inet",
            AF_INET6 => "inet6",
            AF_UNIX => "unix",
            _ => return None,
        };
        let protocol = match (x.family, x.protocol, x.sock_type) {
            (AF_UNIX, _, 1) => "unix",
            (AF_UNIX, _, _) => "unix-dgram",
            (_, 6, _) => "tcp",
            (_, 17, _) => "udp",
            (_, 1, _) | (_, 58, _) => "icmp",
            (_, _, 3) => "raw",
            _ => "other",
        };
        let mut n = NetInfo {
            protocol: protocol.into(),
            family: family.into(),
            direction,
            src: None,
            dst: None,
            unix_path: None,
            remote_names: Vec::new(),
            remote_country: None,
        };
        if x.family == AF_UNIX {
            let p = text(rec, x.unix_path)?;
            if !p.is_empty() {
                n.unix_path = Some(if x.pad0 == 1 { format!("@{p}") } else { p });
            }
        } else {
            let local = Endpoint {
                ip: ip(x.family, &x.laddr),
                port: x.lport,
            };
            let remote = Endpoint {
                ip: ip(x.family, &x.raddr),
                port: x.rport,
            };
            match direction {
                NetDirection::Outbound => {
                    n.src = Some(local);
                    n.dst = Some(remote);
                }
                NetDirection::Inbound => {
                    n.src = Some(remote);
                    n.dst = Some(local);
                }
                NetDirection::Bind | NetDirection::Listen => n.dst = Some(local),
            }
        }
        e.network = Some(n);
        Some(e)
    }

    fn payload(&mut self, rec: &[u8]) -> Option<Event> {
        let x: RpDns = read(rec)?;
        let start = std::mem::size_of::<RpDns>();
        let bytes = rec.get(start..start + x.len as usize)?;
        let mut e = self.event(&x.h, EventKind::NetPayload);
        let mut p = read_request(&String::from_utf8_lossy(bytes));
        p.len = x.seg_len;
        e.payload = Some(p);
        e.network = Some(NetInfo {
            protocol: "tcp".into(),
            family: if x.family == AF_INET6 {
                "inet6"
            } else {
                "inet"
            }
            .into(),
            direction: NetDirection::Outbound,
            src: Some(Endpoint {
                ip: ip(x.family, &x.saddr),
                port: x.sport,
            }),
            dst: Some(Endpoint {
                ip: ip(x.family, &x.daddr),
                port: x.dport,
            }),
            unix_path: None,
            remote_names: Vec::new(),
            remote_country: None,
        });
        Some(e)
    }

    fn dns(&mut self, rec: &[u8]) -> Option<Event> {
        let x: RpDns = read(rec)?;
        let start = std::mem::size_of::<RpDns>();
        let payload = rec.get(start..start + x.len as usize)?;
        let packet = simple_dns::Packet::parse(payload).ok()?;
        let response = packet.has_flags(simple_dns::PacketFlag::RESPONSE);
        let q = packet.questions.first()?;
        let src = Endpoint {
            ip: ip(x.family, &x.saddr),
            port: x.sport,
        };
        let dst = Endpoint {
            ip: ip(x.family, &x.daddr),
            port: x.dport,
        };
        let mut e = self.event(
            &x.h,
            if response {
                EventKind::DnsAnswer
            } else {
                EventKind::DnsQuery
            },
        );
        e.dns = Some(DnsInfo {
            id: packet.id(),
            query: q.qname.to_string().trim_end_matches('.').to_string(),
            qtype: match q.qtype {
                simple_dns::QTYPE::TYPE(t) => format!("{t:?}"),
                other => format!("{other:?}"),
            },
            rcode: response.then(|| format!("{:?}", packet.rcode()).to_uppercase()),
            answers: packet
                .answers
                .iter()
                .map(|rr| {
                    let (rtype, data) = rdata_text(&rr.rdata);
                    DnsAnswer {
                        name: rr.name.to_string().trim_end_matches('.').to_string(),
                        rtype,
                        data,
                        ttl: rr.ttl,
                    }
                })
                .collect(),
            server: Some(if response { src } else { dst }),
        });
        e.network = Some(NetInfo {
            protocol: "udp".into(),
            family: if x.family == AF_INET6 {
                "inet6"
            } else {
                "inet"
            }
            .into(),
            direction: if x.ingress == 1 {
                NetDirection::Inbound
            } else {
                NetDirection::Outbound
            },
            src: Some(src),
            dst: Some(dst),
            unix_path: None,
            remote_names: Vec::new(),
            remote_country: None,
        });
        Some(e)
    }
}

/// The `socket` facet of `socket(domain, type, protocol)`.
fn socket_info(domain: u64, ty: u64, protocol: u64) -> SocketInfo {
    let domain = match domain {
        1 => "AF_UNIX".to_string(),
        2 => "AF_INET".to_string(),
        10 => "AF_INET6".to_string(),
        16 => "AF_NETLINK".to_string(),
        17 => "AF_PACKET".to_string(),
        other => other.to_string(),
    };
    let sock_type = match ty & 0xf {
        1 => "SOCK_STREAM".to_string(),
        2 => "SOCK_DGRAM".to_string(),
        3 => "SOCK_RAW".to_string(),
        5 => "SOCK_SEQPACKET".to_string(),
        10 => "SOCK_PACKET".to_string(),
        other => other.to_string(),
    };
    SocketInfo {
        domain,
        sock_type,
        protocol: u32::try_from(protocol).unwrap_or(u32::MAX),
    }
}

/// Reads the JSON-RPC request at the start of a captured TCP payload (keeping the method, the
/// miner's agent and account and the names of the parameters, never the other values: a
/// request can carry credentials): the first line is parsed
/// as JSON (a capture cut short of its end does not parse; then `method` is read from the text
/// by `loose_method`). serde_json, not a hand-written parser, judges what is JSON.
fn read_request(text: &str) -> PayloadInfo {
    let first = text.trim_start().lines().next().unwrap_or_default();
    let mut p = PayloadInfo {
        protocol: "jsonrpc".into(),
        method: None,
        agent: None,
        user: None,
        keys: Vec::new(),
        len: 0,
    };
    let str_of = |v: &serde_json::Value| v.as_str().map(str::to_string);
    match serde_json::from_str::<serde_json::Value>(first) {
        Ok(v) => {
            p.method = v.get("method").and_then(str_of);
            let params = v.get("params");
            let first_param = params.and_then(|x| x.get(0)).and_then(str_of);
            if let Some(obj) = params.and_then(|x| x.as_object()) {
                p.keys = obj.keys().take(16).cloned().collect();
                p.keys.sort();
            }
            match p.method.as_deref() {
                Some("login") => {
                    p.agent = params.and_then(|x| x.get("agent")).and_then(str_of);
                    p.user = params.and_then(|x| x.get("login")).and_then(str_of);
                }
                Some("mining.subscribe") => p.agent = first_param,
                Some("mining.authorize" | "eth_submitLogin") => p.user = first_param,
                _ => {}
            }
        }
        Err(_) => p.method = loose_method(text),
    }
    p
}

/// `"method"` `:` `"NAME"` found in text that is not whole JSON (a capture cut at 512 bytes),
/// the name's JSON escapes decoded (`"mining\u002esubscribe"` is `mining.subscribe` to a pool).
fn loose_method(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(i) = rest.find("\"method\"") {
        rest = &rest[i + 8..];
        let Some(after) = rest.trim_start().strip_prefix(':') else {
            continue;
        };
        let after = after.trim_start();
        if !after.starts_with('"') {
            continue;
        }
        // The string literal: up to the first quote not escaped by a backslash.
        let mut escaped = false;
        let end = after
            .char_indices()
            .skip(1)
            .find(|&(_, c)| {
                let stop = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                stop
            })
            .map(|(i, _)| i)?;
        return serde_json::from_str::<String>(&after[..=end]).ok();
    }
    None
}

const RP_NET_FIRST: u32 = RP_CONNECT;
const RP_NET_LAST: u32 = RP_LISTEN;

fn rdata_text(r: &simple_dns::rdata::RData<'_>) -> (String, String) {
    use simple_dns::rdata::RData;
    match r {
        RData::A(a) => ("A".into(), Ipv4Addr::from(a.address).to_string()),
        RData::AAAA(a) => ("AAAA".into(), Ipv6Addr::from(a.address).to_string()),
        RData::CNAME(c) => ("CNAME".into(), c.0.to_string().trim_end_matches('.').into()),
        RData::TXT(t) => (
            "TXT".into(),
            String::try_from(t.clone()).unwrap_or_default(),
        ),
        other => (format!("{:?}", other.type_code()), String::new()),
    }
}

/// Reads a `T` from the start of `rec` (records are at least as long as their fixed part).
fn read<T: Pod>(rec: &[u8]) -> Option<T> {
    rec.get(..std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
}

fn bytes(rec: &[u8], s: RpStr) -> Option<&[u8]> {
    if s.len == 0 {
        return Some(&[]);
    }
    rec.get(usize::from(s.off)..usize::from(s.off) + usize::from(s.len))
}

fn text(rec: &[u8], s: RpStr) -> Option<String> {
    bytes(rec, s).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn comm(c: &[u8; 16]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..end]).into_owned()
}

fn ip(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*raw))
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

/// A uid/gid argument; -1 (as u32 or u64) means "unchanged".
fn id_arg(v: u64) -> Option<u32> {
    let v = v as u32;
    (v != u32::MAX).then_some(v)
}

/// `base` + `path`, with `.` and `..` resolved lexically; `path` alone when absolute or when
/// there is no base.
pub fn join(base: &str, path: &str) -> String {
    if path.starts_with('/') || base.is_empty() {
        return normalize(path);
    }
    normalize(&format!("{base}/{path}"))
}

fn normalize(path: &str) -> String {
    if !path.starts_with('/') {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Falco-style type of an fd from its inode mode and socket family.
fn fd_type(i: &RpFdInfo) -> Option<String> {
    let major = i.rdev >> 20;
    let minor = i.rdev & 0xfffff;
    let t = match i.mode {
        0 => return None,
        0o14 => match i.family {
            AF_INET => "ipv4",
            AF_INET6 => "ipv6",
            AF_UNIX => "unix",
            _ => "socket",
        },
        0o1 => "pipe",
        0o2 if major == 1 && minor == 3 => "null",
        0o2 if major == 136 || major == 4 || major == 5 => "tty",
        0o2 => "char",
        0o4 => "directory",
        0o10 => "file",
        0o6 => "block",
        _ => "other",
    };
    Some(t.into())
}

fn namespaces(flags: u64) -> Vec<String> {
    const NS: [(u64, &str); 8] = [
        (0x0002_0000, "mnt"),
        (0x0200_0000, "cgroup"),
        (0x0400_0000, "uts"),
        (0x0800_0000, "ipc"),
        (0x1000_0000, "user"),
        (0x2000_0000, "pid"),
        (0x4000_0000, "net"),
        (0x0000_0080, "time"),
    ];
    NS.iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| (*n).to_string())
        .collect()
}

fn ptrace_request_name(r: u64) -> &'static str {
    match r {
        0 => "PTRACE_TRACEME",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        13 => "PTRACE_SETREGS",
        16 => "PTRACE_ATTACH",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        _ => "PTRACE_OTHER",
    }
}

fn bpf_cmd_name(c: u64) -> &'static str {
    match c {
        5 => "BPF_PROG_LOAD",
        8 => "BPF_PROG_ATTACH",
        17 => "BPF_RAW_TRACEPOINT_OPEN",
        28 => "BPF_LINK_CREATE",
        _ => "BPF_OTHER",
    }
}

fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(sig)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("SIG{sig}"), |s| (*s).to_string())
}

/// CLOCK_REALTIME - CLOCK_BOOTTIME, in nanoseconds.
fn boot_to_wall_offset() -> i128 {
    fn now(clock: libc::clockid_t) -> i128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    }
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_BOOTTIME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    fn header(kind: u32, syscall: u32, size: usize) -> RpHeader {
        let mut h = RpHeader::zeroed();
        h.kind = kind;
        h.syscall = syscall;
        h.size = size as u32;
        h.pid = 10;
        h.tid = 11;
        h.comm[..3].copy_from_slice(b"cat");
        h
    }

    fn with_strings<T: Pod>(fixed: T, strings: &[&str]) -> (Vec<u8>, Vec<RpStr>) {
        let mut rec = bytemuck::bytes_of(&fixed).to_vec();
        let mut refs = Vec::new();
        for s in strings {
            refs.push(RpStr {
                off: rec.len() as u16,
                len: s.len() as u16,
            });
            rec.extend_from_slice(s.as_bytes());
            rec.push(0);
        }
        (rec, refs)
    }

    fn decoder() -> Decoder {
        Decoder::new(Arc::new(Device::default()), 1)
    }

    #[test]
    fn socket_record_names_domain_and_type() {
        let mut x = RpSys::zeroed();
        x.h = header(RP_SOCKET, 41, std::mem::size_of::<RpSys>());
        x.h.ret = 3;
        x.a = [17, 3 | 0o2000000, 0x0300, 0, 0, 0];
        let ev = decoder().decode(bytemuck::bytes_of(&x)).expect("decodes");
        assert_eq!(ev.event.kind, EventKind::NetSocket);
        assert_eq!(ev.event.falco_type(), "socket");
        let s = ev.event.socket.expect("socket");
        assert_eq!(s.domain, "AF_PACKET");
        assert_eq!(s.sock_type, "SOCK_RAW");
        assert_eq!(s.protocol, 0x0300);
    }

    fn payload_record(text: &[u8]) -> Vec<u8> {
        let mut x = RpDns::zeroed();
        x.h = header(
            RP_PAYLOAD,
            u32::MAX,
            std::mem::size_of::<RpDns>() + text.len(),
        );
        x.family = AF_INET;
        x.sport = 40000;
        x.dport = 3333;
        x.saddr[..4].copy_from_slice(&[172, 17, 0, 2]);
        x.daddr[..4].copy_from_slice(&[172, 17, 0, 3]);
        x.len = text.len() as u32;
        x.seg_len = text.len() as u32 + 100;
        let mut rec = bytemuck::bytes_of(&x).to_vec();
        rec.extend_from_slice(text);
        rec
    }

    /// An RP_DNS record as the ingress program writes it: a datagram from port 53.
    fn dns_record(msg: &[u8]) -> Vec<u8> {
        let mut x = RpDns::zeroed();
        x.h = header(RP_DNS, u32::MAX, std::mem::size_of::<RpDns>() + msg.len());
        x.family = AF_INET;
        x.ingress = 1;
        x.sport = 53;
        x.dport = 40000;
        x.saddr[..4].copy_from_slice(&[127, 0, 0, 11]);
        x.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        x.len = msg.len() as u32;
        let mut rec = bytemuck::bytes_of(&x).to_vec();
        rec.extend_from_slice(msg);
        rec
    }

    /// A process in a container can send any datagram from port 53 to itself (root in the
    /// container binds 127.0.0.1:53), and the agent parses it as a DNS answer: compression
    /// pointers that loop, point forward or out of the message, counts that promise more than
    /// is there, and random bytes must each give an event or nothing, never a panic or a hang.
    #[test]
    fn hostile_dns_messages_decode_or_are_dropped_never_hang() {
        // Header: id, flags (response), 1 question, 1 answer, 0, 0.
        let head = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        let mut cases: Vec<Vec<u8>> = vec![
            // The question's name is a pointer to itself (offset 12).
            [&head[..], &[0xc0, 12, 0, 1, 0, 1]].concat(),
            // Two names pointing at each other (12 -> 14 -> 12).
            [&head[..], &[0xc0, 14, 0xc0, 12, 0, 1, 0, 1]].concat(),
            // A label, then a pointer back to the label's start: an endless name.
            [&head[..], &[1, b'a', 0xc0, 12, 0, 1, 0, 1]].concat(),
            // A pointer past the end, a label longer than what remains, a truncated answer.
            [&head[..], &[0xc0, 0xff, 0, 1, 0, 1]].concat(),
            [&head[..], &[63, b'a', b'b']].concat(),
            [
                &head[..],
                &[1, b'a', 0, 0, 1, 0, 1],
                &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10],
            ]
            .concat(),
        ];
        // Counts of 65,535 questions and answers over a 20-byte body.
        let mut big = head.to_vec();
        big[4..8].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        big.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0]);
        cases.push(big);
        // Random messages (a fixed xorshift sequence, so a failure replays).
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = 12 + (seed % 120) as usize;
            let mut m = head.to_vec();
            let mut x = seed;
            while m.len() < len {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Bias towards pointer bytes, the interesting ones.
                m.push(if x >> 60 == 0 { 0xc0 } else { (x >> 32) as u8 });
            }
            cases.push(m);
        }
        let mut d = decoder();
        let start = std::time::Instant::now();
        for m in &cases {
            if let Some(ev) = d.decode(&dns_record(m)) {
                assert_eq!(ev.event.kind, EventKind::DnsAnswer);
            }
        }
        // The decoder still reads a well-formed answer after all that: a.  A 10.0.0.1.
        let good = [
            &head[..],
            &[1, b'a', 0, 0, 1, 0, 1],
            &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1],
        ]
        .concat();
        let ev = d.decode(&dns_record(&good)).expect("a well-formed answer");
        let dns = ev.event.dns.expect("dns");
        assert_eq!(dns.query, "a");
        assert_eq!(dns.answers.len(), 1);
        assert_eq!(dns.answers[0].data, "10.0.0.1");
        // A hang would never get here; quadratic blow-ups would show as seconds.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{:?} for {} messages",
            start.elapsed(),
            cases.len()
        );
    }

    fn request(text: &str) -> PayloadInfo {
        let ev = decoder()
            .decode(&payload_record(text.as_bytes()))
            .expect("decodes");
        assert_eq!(ev.event.kind, EventKind::NetPayload);
        let n = ev.event.network.expect("network");
        assert_eq!(n.dst.expect("dst").port, 3333);
        ev.event.payload.expect("payload")
    }

    #[test]
    fn stratum_and_xmrig_requests_are_read_whatever_the_spelling() {
        let p =
            request("{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"cpuminer/2.5.1\"]}\n");
        assert_eq!(p.method.as_deref(), Some("mining.subscribe"));
        assert_eq!(p.agent.as_deref(), Some("cpuminer/2.5.1"));
        assert!(p.len > 100, "the segment's length: {}", p.len);
        assert!(p.keys.is_empty(), "params is an array: no keys");
        // Keys in another order, blanks, and JSON escapes in the method: what a pool's JSON
        // parser accepts as the same request.
        let p = request(
            " {\"params\" : {\"login\":\"44wallet\",\"pass\":\"x\",\"agent\":\"XMRig/6.21.0\"}, \"jsonrpc\":\"2.0\", \"method\" : \"log\\u0069n\",\"id\":1}\n",
        );
        assert_eq!(p.method.as_deref(), Some("login"));
        assert_eq!(p.agent.as_deref(), Some("XMRig/6.21.0"));
        assert_eq!(p.user.as_deref(), Some("44wallet"));
        assert_eq!(p.keys, ["agent", "login", "pass"]);
        let p = request("{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"wallet.rig\",\"x\"]}\n{\"id\":3");
        assert_eq!(p.method.as_deref(), Some("mining.authorize"));
        assert_eq!(p.user.as_deref(), Some("wallet.rig"));
    }

    #[test]
    fn a_capture_cut_short_still_names_its_method() {
        let mut text = String::from("{\"id\":7,\"method\":\"mining\\u002esubmit\",\"params\":[\"");
        text.push_str(&"a".repeat(600));
        text.truncate(512);
        let p = request(&text);
        assert_eq!(p.method.as_deref(), Some("mining.submit"));
        // No method at all, or a method that is not a string: none, not a panic.
        assert_eq!(request("{\"method\": 5, \"x\":\"login\"").method, None);
        assert_eq!(request("{\"method\":\"unterminated").method, None);
        let ev = decoder()
            .decode(&payload_record(b"{\xff\xfe\"submit\""))
            .expect("invalid UTF-8 decodes, replaced");
        assert_eq!(ev.event.payload.expect("payload").method, None);
    }

    #[test]
    fn payload_shorter_than_its_length_is_malformed() {
        let mut rec = payload_record(b"{\"method\":\"login\"}");
        rec.truncate(rec.len() - 3);
        let mut d = decoder();
        assert!(d.decode(&rec).is_none());
        assert_eq!(d.malformed, 1);
    }

    #[test]
    fn open_record_becomes_file_open_with_path_and_flags() {
        let mut x = RpSys::zeroed();
        x.h = header(RP_OPEN, 257, 0);
        x.h.ret = 3;
        x.a = [0o1101, 0o644, 1, 3, 0o100644, 0];
        let (mut rec, refs) = with_strings(x, &["/etc/shadow"]);
        x.s[0] = refs[0];
        rec[..std::mem::size_of::<RpSys>()].copy_from_slice(bytemuck::bytes_of(&x));
        let ev = decoder().decode(&rec).expect("decodes");
        assert_eq!(ev.origin.pid, 10);
        assert_eq!(ev.event.kind, EventKind::FileOpen);
        assert_eq!(ev.event.falco_type(), "openat");
        let f = ev.event.file.expect("file");
        assert_eq!(f.path, "/etc/shadow");
        assert_eq!(f.mode, Some(0o644));
        assert!(f.sensitive);
        assert!(f.is_write_open());
    }

    #[test]
    fn relative_unlink_is_joined_with_its_base() {
        let mut x = RpSys::zeroed();
        x.h = header(RP_UNLINK, 263, 0);
        let (mut rec, refs) = with_strings(x, &["../tmp/./x", "/var/log"]);
        x.s[0] = refs[0];
        x.s[2] = refs[1];
        rec[..std::mem::size_of::<RpSys>()].copy_from_slice(bytemuck::bytes_of(&x));
        let ev = decoder().decode(&rec).expect("decodes");
        assert_eq!(ev.event.file.expect("file").path, "/var/tmp/x");
    }

    #[test]
    fn string_pointing_outside_the_record_is_malformed_not_a_panic() {
        let mut x = RpSys::zeroed();
        x.h = header(RP_OPEN, 257, 0);
        x.s[0] = RpStr { off: 4000, len: 50 };
        let rec = bytemuck::bytes_of(&x).to_vec();
        let mut d = decoder();
        assert!(d.decode(&rec).is_none());
        assert!(d.decode(&rec[..10]).is_none());
        assert_eq!(d.malformed, 2);
    }

    #[test]
    fn exit_code_splits_status_and_signal() {
        let mut x = RpSys::zeroed();
        x.h = header(RP_EXIT, u32::MAX, 0);
        x.a[0] = 9 | 0x80;
        let ev = decoder().decode(bytemuck::bytes_of(&x)).expect("decodes");
        let exit = ev.event.exit.expect("exit");
        assert_eq!(exit.signal, Some(9));
        assert!(exit.core_dumped);
        x.a[0] = 3 << 8;
        let ev = decoder().decode(bytemuck::bytes_of(&x)).expect("decodes");
        assert_eq!(ev.event.exit.expect("exit").code, 3);
    }

    #[test]
    fn join_normalises() {
        assert_eq!(join("/a/b", "../c"), "/a/c");
        assert_eq!(join("/a", "/etc//passwd"), "/etc/passwd");
        assert_eq!(join("", "rel"), "rel");
        assert_eq!(join("/", ".."), "/");
    }

    #[test]
    fn namespace_flags_are_named() {
        assert_eq!(namespaces(0x2002_0000), vec!["mnt", "pid"]);
    }
}
