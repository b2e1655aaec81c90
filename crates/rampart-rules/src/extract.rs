//! Reading field values out of an [`Event`].
//!
//! Extraction borrows from the event; values that must be built (`proc.cmdline`, `fd.name` of a
//! connection, rendered flags) are built at most once per event into [`Cache`] strings whose
//! buffers are reused from event to event, so extraction does not allocate once warmed up.
//! A field may have several values (`proc.aname` without an index: one per ancestor); a
//! comparison holds when it holds for any of them. `None` means the event does not carry the
//! field, and every comparison on it is false, as in Falco.

use std::cell::{OnceCell, RefCell};
use std::fmt::Write;
use std::net::IpAddr;

use rampart_event::{AuthOutcome, Event, EventKind, NetDirection, Process};

use crate::condition::Transform;
use crate::fields::F;
use crate::render::{self, TimeFormat};

/// A value of a field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Ip(IpAddr),
    /// Built by a transformer (`tolower(...)`).
    Owned(String),
}

impl Val<'_> {
    /// Appends the value as text.
    pub fn write_to(&self, out: &mut impl Write) {
        let _ = match self {
            Val::Str(s) => out.write_str(s),
            Val::Owned(s) => out.write_str(s),
            Val::Int(i) => {
                if *i < 0 {
                    let _ = out.write_char('-');
                }
                write_decimal(out, i.unsigned_abs())
            }
            Val::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
            Val::Ip(ip) => write_ip(out, *ip),
        };
    }
}

/// Writes `n` in decimal, as `Display` does. Numbers and IPv4 addresses are written digit by
/// digit: through `fmt`, rendering a connection's `fd.name` cost about 2,600 instructions,
/// and correlation keys and alert outputs are made of such values (docs/benchmarks.md).
fn write_decimal(out: &mut impl Write, n: u64) -> std::fmt::Result {
    let mut buf = Digits::new();
    buf.decimal(n);
    out.write_str(buf.as_str())
}

/// Writes `ip` as `Display` does.
fn write_ip(out: &mut impl Write, ip: IpAddr) -> std::fmt::Result {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = Digits::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                buf.decimal(u64::from(octet));
            }
            out.write_str(buf.as_str())
        }
        IpAddr::V6(v6) => write!(out, "{v6}"),
    }
}

/// ASCII text built on the stack (at most 24 bytes: a `u64` has 20 digits, an IPv4 address
/// 15 characters), appended to the output in one call. Writing digit by digit into the output
/// and checking each number with `str::from_utf8` cost about 140 instructions per number; the
/// alert outputs and correlation keys of a busy host are made of numbers and addresses.
struct Digits {
    bytes: [u8; 24],
    len: usize,
}

impl Digits {
    fn new() -> Self {
        Digits {
            bytes: [0; 24],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn decimal(&mut self, mut n: u64) {
        let mut rev = [0u8; 20];
        let mut i = 0;
        loop {
            rev[i] = b'0' + (n % 10) as u8;
            i += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        while i > 0 {
            i -= 1;
            self.push(rev[i]);
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and dots are pushed; the check cannot fail, and an empty string
        // would be the safe answer if it did.
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

/// The name of an event argument (`evt.arg.NAME`), resolved when the rule is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ArgName {
    Fd,
    Path,
    Flags,
    Mode,
    Uid,
    Gid,
    Euid,
    Suid,
    Egid,
    Sgid,
    Oldpath,
    Newpath,
    Dev,
    Dir,
    Type,
    Res,
    Exe,
    Args,
    Cwd,
    Tty,
    Pid,
    Ptid,
    Tid,
    Comm,
    Loginuid,
    Request,
    Nstype,
    CapEffective,
    CapPermitted,
    CapInheritable,
    Tuple,
    Addr,
    Status,
    Domain,
    Proto,
}

impl ArgName {
    /// Falco's argument names that Rampart's events carry.
    pub fn parse(name: &str) -> Option<ArgName> {
        Some(match name {
            "fd" => ArgName::Fd,
            "name" | "path" | "pathname" | "filename" => ArgName::Path,
            "flags" => ArgName::Flags,
            "mode" => ArgName::Mode,
            "uid" | "ruid" => ArgName::Uid,
            "gid" | "rgid" => ArgName::Gid,
            "euid" => ArgName::Euid,
            "suid" => ArgName::Suid,
            "egid" => ArgName::Egid,
            "sgid" => ArgName::Sgid,
            "oldpath" => ArgName::Oldpath,
            "newpath" => ArgName::Newpath,
            "dev" | "source" => ArgName::Dev,
            "dir" => ArgName::Dir,
            "type" => ArgName::Type,
            "res" => ArgName::Res,
            "exe" => ArgName::Exe,
            "args" => ArgName::Args,
            "cwd" => ArgName::Cwd,
            "tty" => ArgName::Tty,
            "pid" => ArgName::Pid,
            "ptid" => ArgName::Ptid,
            "tid" => ArgName::Tid,
            "comm" => ArgName::Comm,
            "loginuid" => ArgName::Loginuid,
            "request" | "cmd" | "sig" => ArgName::Request,
            "nstype" => ArgName::Nstype,
            "cap_effective" => ArgName::CapEffective,
            "cap_permitted" => ArgName::CapPermitted,
            "cap_inheritable" => ArgName::CapInheritable,
            "tuple" => ArgName::Tuple,
            "addr" => ArgName::Addr,
            "status" => ArgName::Status,
            "domain" => ArgName::Domain,
            "proto" | "protocol" => ArgName::Proto,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            ArgName::Fd => "fd",
            ArgName::Path => "name",
            ArgName::Flags => "flags",
            ArgName::Mode => "mode",
            ArgName::Uid => "uid",
            ArgName::Gid => "gid",
            ArgName::Euid => "euid",
            ArgName::Suid => "suid",
            ArgName::Egid => "egid",
            ArgName::Sgid => "sgid",
            ArgName::Oldpath => "oldpath",
            ArgName::Newpath => "newpath",
            ArgName::Dev => "dev",
            ArgName::Dir => "dir",
            ArgName::Type => "type",
            ArgName::Res => "res",
            ArgName::Exe => "exe",
            ArgName::Args => "args",
            ArgName::Cwd => "cwd",
            ArgName::Tty => "tty",
            ArgName::Pid => "pid",
            ArgName::Ptid => "ptid",
            ArgName::Tid => "tid",
            ArgName::Comm => "comm",
            ArgName::Loginuid => "loginuid",
            ArgName::Request => "request",
            ArgName::Nstype => "nstype",
            ArgName::CapEffective => "cap_effective",
            ArgName::CapPermitted => "cap_permitted",
            ArgName::CapInheritable => "cap_inheritable",
            ArgName::Tuple => "tuple",
            ArgName::Addr => "addr",
            ArgName::Status => "status",
            ArgName::Domain => "domain",
            ArgName::Proto => "proto",
        }
    }
}

/// The argument list of each event kind, in Falco's order for `evt.arg[N]` and `evt.args`.
fn arg_list(kind: EventKind) -> &'static [ArgName] {
    use ArgName as A;
    match kind {
        EventKind::FileOpen => &[A::Fd, A::Path, A::Flags, A::Mode],
        EventKind::FileUnlink | EventKind::FileUmount => &[A::Res, A::Path],
        EventKind::FileRename => &[A::Res, A::Oldpath, A::Newpath],
        EventKind::FileChmod => &[A::Res, A::Path, A::Mode],
        EventKind::FileChown => &[A::Res, A::Path, A::Uid, A::Gid],
        EventKind::FileMount => &[A::Res, A::Dev, A::Dir, A::Type, A::Flags],
        EventKind::FilePivotRoot => &[A::Res, A::Path, A::Newpath],
        EventKind::FileMemfd => &[A::Fd, A::Path, A::Flags],
        EventKind::ProcessExec => &[A::Res, A::Exe, A::Args, A::Tid, A::Pid, A::Ptid, A::Cwd],
        EventKind::ProcessFork => &[A::Res],
        EventKind::ProcessExit => &[A::Status],
        EventKind::NetConnect | EventKind::NetAccept => &[A::Res, A::Tuple],
        EventKind::NetBind | EventKind::NetListen => &[A::Res, A::Addr],
        EventKind::PrivSetuid => &[A::Res, A::Uid, A::Euid, A::Suid],
        EventKind::PrivSetgid => &[A::Res, A::Gid, A::Egid, A::Sgid],
        EventKind::PrivCapset => &[A::Res, A::CapInheritable, A::CapPermitted, A::CapEffective],
        EventKind::PrivPtrace => &[A::Request, A::Pid],
        EventKind::PrivUnshare => &[A::Res, A::Flags],
        EventKind::PrivSetns => &[A::Res, A::Nstype],
        EventKind::PrivModuleLoad => &[A::Res, A::Path],
        EventKind::PrivBpf => &[A::Res, A::Request],
        EventKind::PrivIoUring => &[A::Res, A::Flags],
        EventKind::PrivKill => &[A::Res, A::Pid, A::Request],
        EventKind::NetSocket => &[A::Res, A::Domain, A::Type, A::Proto],
        _ => &[],
    }
}

/// An argument of a field reference, resolved at compile time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldArg {
    None,
    Index(u32),
    Key(Box<str>),
    Arg(ArgName),
    ArgPos(u32),
}

/// A compiled field reference.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldRef {
    pub id: F,
    /// The field can have more than one value (`proc.aname` without an index, `fd.ip`, ...).
    pub multi: bool,
    pub arg: FieldArg,
    pub transforms: Box<[Transform]>,
    /// As written, for output fields and messages.
    pub name: Box<str>,
}

/// Strings built once per event.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Cmdline,
    Args,
    Exeline,
    PCmdline,
    FdName,
    CapEff,
    CapPerm,
    Labels,
    Info,
    Time,
    TimeS,
    TimeIso,
    Datetime,
    DatetimeS,
    EvtArgs,
    ArgFlags,
    ArgMode,
    ArgCapEff,
    ArgCapPerm,
    ArgCapInh,
    ArgAddr,
    PrivCaps,
    Acmd0,
}

const ACMD_SLOTS: usize = 8;
const SLOTS: usize = Slot::Acmd0 as usize + ACMD_SLOTS;

/// Per-event scratch space for built strings. Reset between events; each slot keeps its own
/// buffer, so once a slot has held its longest value it never allocates again.
#[derive(Debug)]
pub(crate) struct Cache {
    slots: [OnceCell<String>; SLOTS],
    spare: [RefCell<String>; SLOTS],
    /// Whether any slot was filled since the last reset.
    used: std::cell::Cell<bool>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            slots: std::array::from_fn(|_| OnceCell::new()),
            spare: std::array::from_fn(|_| RefCell::new(String::new())),
            used: std::cell::Cell::new(false),
        }
    }
}

impl Cache {
    /// Forgets the previous event's strings, keeping their buffers.
    pub fn reset(&mut self) {
        if !self.used.replace(false) {
            return;
        }
        for (slot, spare) in self.slots.iter_mut().zip(&mut self.spare) {
            if let Some(mut s) = slot.take() {
                s.clear();
                *spare.get_mut() = s;
            }
        }
    }

    fn get(&self, index: usize, build: impl FnOnce(&mut String)) -> &str {
        self.slots[index].get_or_init(|| {
            self.used.set(true);
            let mut s = std::mem::take(&mut *self.spare[index].borrow_mut());
            build(&mut s);
            s
        })
    }

    fn slot(&self, slot: Slot, build: impl FnOnce(&mut String)) -> &str {
        self.get(slot as usize, build)
    }
}

/// One event under evaluation.
pub(crate) struct Ctx<'a> {
    pub ev: &'a Event,
    pub cache: &'a Cache,
    /// Results of comparisons already made for this event (see `eval::Check`).
    pub memo: &'a [std::cell::Cell<u64>],
    /// Identifies the event: memo slots of other generations are stale.
    pub generation: u64,
}

/// The byte offset of the last `/` in `path`. `memrchr` is vectorised; `str::rfind` on a char
/// was 7% of the instructions of the rule benchmark with Falco's files (fd.directory and
/// fd.filename are read by many rules).
fn last_slash(path: &str) -> Option<usize> {
    memchr::memrchr(b'/', path.as_bytes())
}

fn argv0(p: &Process) -> &str {
    p.args.first().map_or(p.name.as_str(), String::as_str)
}

fn join_args(args: &[String], skip: usize, out: &mut String) {
    for (i, a) in args.iter().skip(skip).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(a);
    }
}

fn cmdline(name: &str, args: &[String], out: &mut String) {
    out.push_str(name);
    for a in args.iter().skip(1) {
        out.push(' ');
        out.push_str(a);
    }
}

fn is_file_kind(k: EventKind) -> bool {
    matches!(
        k,
        EventKind::FileOpen
            | EventKind::FileUnlink
            | EventKind::FileRename
            | EventKind::FileChmod
            | EventKind::FileChown
            | EventKind::FileMount
            | EventKind::FileUmount
            | EventKind::FilePivotRoot
            | EventKind::FileMemfd
    )
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Appends `ip:port` (an IPv4-mapped address as IPv4).
fn push_endpoint(s: &mut String, ip: IpAddr, port: u16) {
    let _ = write_ip(s, canonical(ip));
    s.push(':');
    let _ = write_decimal(s, u64::from(port));
}

const O_DIRECTORY: u32 = 0o200000;
const O_CREAT: u32 = 0o100;

/// Which of a connection's ends a field is about.
#[derive(Clone, Copy)]
enum End {
    Client,
    Server,
    Local,
    Remote,
}

impl<'a> Ctx<'a> {
    fn process(&self) -> Option<&'a Process> {
        self.ev.process.as_deref()
    }

    fn endpoint(&self, end: End) -> Option<rampart_event::Endpoint> {
        let n = self.ev.network.as_ref()?;
        match end {
            End::Client => match n.direction {
                NetDirection::Outbound | NetDirection::Inbound => n.src,
                _ => None,
            },
            End::Server => n.dst,
            End::Local => n.local().copied(),
            End::Remote => n.remote().copied(),
        }
    }

    fn ancestor_field(&self, f: F, n: usize) -> Option<Val<'a>> {
        let p = self.process()?;
        if n == 0 {
            return Some(match f {
                F::ProcAname => Val::Str(&p.name),
                F::ProcApid => Val::Int(i64::from(p.pid)),
                F::ProcAexe => Val::Str(argv0(p)),
                F::ProcAexepath => Val::Str(&p.exe),
                _ => return None,
            });
        }
        let a = p.ancestors.get(n - 1)?;
        Some(match f {
            F::ProcAname => Val::Str(&a.name),
            F::ProcApid => Val::Int(i64::from(a.pid)),
            F::ProcAexe => Val::Str(a.args.first().map_or(a.name.as_str(), String::as_str)),
            F::ProcAexepath => Val::Str(&a.exe),
            _ => return None,
        })
    }

    fn acmdline(&self, n: usize) -> Option<Val<'a>> {
        let p = self.process()?;
        let cache = self.cache;
        if n == 0 {
            return Some(Val::Str(
                cache.slot(Slot::Cmdline, |s| cmdline(&p.name, &p.args, s)),
            ));
        }
        let a = p.ancestors.get(n - 1)?;
        if n > ACMD_SLOTS {
            return None;
        }
        Some(Val::Str(cache.get(Slot::Acmd0 as usize + n - 1, |s| {
            cmdline(&a.name, &a.args, s)
        })))
    }

    /// The `i`-th value of field `f` (only 0 for single-valued fields).
    #[inline]
    pub fn get(&self, r: &FieldRef, i: usize) -> Option<Val<'a>> {
        if i > 0 && !r.multi {
            return None;
        }
        let v = self.get_raw(r, i)?;
        if r.transforms.is_empty() {
            return Some(v);
        }
        Some(self.transformed(r, v))
    }

    /// For the suffix fields (`dns.query.suffixes`, `net.remote_name.suffixes`) without
    /// transformers: passes their values, in the order of [`Ctx::get`]'s indexes, to `f` until
    /// it returns true, in one pass over the names (`get(r, i)` scans each name again from its
    /// start). Returns whether `f` returned true and how many values it saw; `None` for other
    /// fields.
    pub fn any_suffix(
        &self,
        r: &FieldRef,
        mut f: impl FnMut(&'a str) -> bool,
    ) -> Option<(bool, usize)> {
        if !r.transforms.is_empty() {
            return None;
        }
        let mut seen = 0;
        match r.id {
            F::DnsQuerySuffixes => {
                let Some(d) = self.ev.dns.as_ref() else {
                    return Some((false, 0));
                };
                let mut rest = d.query.as_str();
                while !rest.is_empty() {
                    seen += 1;
                    if f(rest) {
                        return Some((true, seen));
                    }
                    match memchr::memchr(b'.', rest.as_bytes()) {
                        Some(dot) => rest = &rest[dot + 1..],
                        None => break,
                    }
                }
            }
            F::NetRemoteNameSuffixes => {
                let Some(n) = self.ev.network.as_ref() else {
                    return Some((false, 0));
                };
                for name in &n.remote_names {
                    let mut rest = name.as_str();
                    loop {
                        seen += 1;
                        if f(rest) {
                            return Some((true, seen));
                        }
                        match memchr::memchr(b'.', rest.as_bytes()) {
                            Some(dot) => rest = &rest[dot + 1..],
                            None => break,
                        }
                    }
                }
            }
            _ => return None,
        }
        Some((false, seen))
    }

    #[inline(never)]
    fn transformed(&self, r: &FieldRef, mut v: Val<'a>) -> Val<'a> {
        for t in r.transforms.iter() {
            v = transform(*t, v);
        }
        v
    }

    fn get_raw(&self, r: &FieldRef, i: usize) -> Option<Val<'a>> {
        let ev = self.ev;
        let cache = self.cache;
        match r.id {
            F::EvtType | F::SyscallType => Some(Val::Str(ev.falco_type())),
            F::EvtKind => Some(Val::Str(ev.kind.as_str())),
            F::EvtDir => Some(Val::Str("<")),
            F::EvtRes => {
                let res = ev.result?;
                Some(match render::errno_name(res) {
                    Some(n) => Val::Str(n),
                    None => Val::Int(res),
                })
            }
            F::EvtRawres => ev.result.map(Val::Int),
            F::EvtFailed => ev.result.map(|r| Val::Bool(r < 0)),
            F::EvtTime => Some(Val::Str(
                cache.slot(Slot::Time, |s| render::time(ev.time_ns, TimeFormat::Time, s)),
            )),
            F::EvtTimeS => Some(Val::Str(
                cache.slot(Slot::TimeS, |s| render::time(ev.time_ns, TimeFormat::TimeS, s)),
            )),
            F::EvtTimeIso => Some(Val::Str(cache.slot(Slot::TimeIso, |s| {
                render::time(ev.time_ns, TimeFormat::Iso8601, s)
            }))),
            F::EvtDatetime => Some(Val::Str(cache.slot(Slot::Datetime, |s| {
                render::time(ev.time_ns, TimeFormat::Datetime, s)
            }))),
            F::EvtDatetimeS => Some(Val::Str(cache.slot(Slot::DatetimeS, |s| {
                render::time(ev.time_ns, TimeFormat::DatetimeS, s)
            }))),
            F::EvtRawtime => i64::try_from(ev.time_ns).ok().map(Val::Int),
            F::EvtRawtimeS => Some(Val::Int((ev.time_ns / 1_000_000_000) as i64)),
            F::EvtRawtimeNs => Some(Val::Int((ev.time_ns % 1_000_000_000) as i64)),
            F::EvtHostname => Some(Val::Str(&ev.device.hostname)),
            F::EvtRegion => ev.device.region.as_deref().map(Val::Str),
            F::EvtSource => Some(Val::Str("syscall")),
            F::EvtCategory => Some(Val::Str(match ev.kind.as_str().split('.').next() {
                Some("file") => "file",
                Some("net") | Some("dns") => "net",
                Some("process") | Some("priv") => "process",
                Some("container") => "container",
                Some("auth") => "user",
                _ => "other",
            })),
            F::EvtIsOpenRead | F::EvtIsOpenWrite | F::EvtIsOpenExec | F::EvtIsOpenCreate => {
                if ev.kind != EventKind::FileOpen {
                    return None;
                }
                let f = ev.file.as_ref()?;
                let flags = f.flags?;
                Some(Val::Bool(match r.id {
                    F::EvtIsOpenRead => flags & 3 != 1,
                    F::EvtIsOpenWrite => f.is_write_open(),
                    F::EvtIsOpenCreate => flags & O_CREAT != 0,
                    _ => flags & O_CREAT != 0 && f.mode.is_some_and(|m| m & 0o111 != 0),
                }))
            }
            F::EvtArg | F::EvtRawArg => {
                let name = match &r.arg {
                    FieldArg::Arg(a) => *a,
                    FieldArg::ArgPos(n) => *arg_list(ev.kind).get(*n as usize)?,
                    _ => return None,
                };
                self.evt_arg(name, r.id == F::EvtRawArg)
            }
            F::EvtArgs => Some(Val::Str(cache.slot(Slot::EvtArgs, |s| {
                for name in arg_list(ev.kind) {
                    if let Some(v) = self.evt_arg(*name, false) {
                        if !s.is_empty() {
                            s.push(' ');
                        }
                        s.push_str(name.name());
                        s.push('=');
                        v.write_to(s);
                    }
                }
            }))),
            F::EvtAbspath | F::FsPathName => {
                if !is_file_kind(ev.kind) {
                    return None;
                }
                ev.file.as_ref().map(|f| Val::Str(&f.path))
            }
            F::EvtAbspathSrc | F::FsPathSource => match ev.kind {
                EventKind::FileRename | EventKind::FileMount => {
                    ev.file.as_ref().map(|f| Val::Str(f.source.as_deref().unwrap_or(&f.path)))
                }
                _ => None,
            },
            F::EvtAbspathDst | F::FsPathTarget => match ev.kind {
                EventKind::FileRename | EventKind::FileMount | EventKind::FilePivotRoot => ev
                    .file
                    .as_ref()
                    .and_then(|f| f.new_path.as_deref())
                    .map(Val::Str),
                _ => None,
            },

            F::ProcPid => self.process().map(|p| Val::Int(i64::from(p.pid))),
            F::ProcPpid => self.process().map(|p| Val::Int(i64::from(p.ppid))),
            F::ProcVpid => self.process()?.vpid.map(|v| Val::Int(i64::from(v))),
            F::ProcName => self.process().map(|p| Val::Str(&p.name)),
            F::ProcExe => self.process().map(|p| Val::Str(argv0(p))),
            F::ProcExepath => self.process().map(|p| Val::Str(&p.exe)),
            F::ProcArgs => {
                let p = self.process()?;
                Some(Val::Str(cache.slot(Slot::Args, |s| join_args(&p.args, 1, s))))
            }
            F::ProcCmdline => {
                let p = self.process()?;
                Some(Val::Str(
                    cache.slot(Slot::Cmdline, |s| cmdline(&p.name, &p.args, s)),
                ))
            }
            F::ProcExeline => {
                let p = self.process()?;
                Some(Val::Str(cache.slot(Slot::Exeline, |s| join_args(&p.args, 0, s))))
            }
            F::ProcCmdnargs => self
                .process()
                .map(|p| Val::Int(p.args.len().saturating_sub(1) as i64)),
            F::ProcCmdlenargs => self.process().map(|p| {
                let n: usize = p.args.iter().skip(1).map(|a| a.len() + 1).sum();
                Val::Int(n.saturating_sub(1) as i64)
            }),
            F::ProcCwd => self.process().map(|p| Val::Str(&p.cwd)),
            F::ProcTty => self.process().map(|p| Val::Int(i64::from(p.tty))),
            F::ProcPname => self.process()?.parent().map(|a| Val::Str(&a.name)),
            F::ProcPexe => self
                .process()?
                .parent()
                .map(|a| Val::Str(a.args.first().map_or(a.name.as_str(), String::as_str))),
            F::ProcPexepath => self.process()?.parent().map(|a| Val::Str(&a.exe)),
            F::ProcPcmdline => {
                let a = self.process()?.parent()?;
                Some(Val::Str(
                    cache.slot(Slot::PCmdline, |s| cmdline(&a.name, &a.args, s)),
                ))
            }
            F::ProcAname | F::ProcApid | F::ProcAexe | F::ProcAexepath | F::ProcAcmdline => {
                let n = match r.arg {
                    FieldArg::Index(n) if i == 0 => n as usize,
                    FieldArg::Index(_) => return None,
                    // Without an index: every ancestor, parent first.
                    _ => i + 1,
                };
                if r.id == F::ProcAcmdline {
                    self.acmdline(n)
                } else {
                    self.ancestor_field(r.id, n)
                }
            }
            F::ProcDuration => {
                let p = self.process()?;
                (p.start_time_ns > 0)
                    .then(|| Val::Int(ev.time_ns.saturating_sub(p.start_time_ns) as i64))
            }
            F::ProcPidTs => {
                let p = self.process()?;
                (p.start_time_ns > 0).then_some(Val::Int(p.start_time_ns as i64))
            }
            F::ProcIsExeUpperLayer => self.process().map(|p| Val::Bool(p.exe_upper_layer)),
            F::ProcIsExeFromMemfd => self.process().map(|p| Val::Bool(p.exe_fileless)),
            F::ProcExeSha256 => self.process()?.exe_sha256.as_deref().map(Val::Str),
            F::ProcStdinType => self.process()?.stdin_type.as_deref().map(Val::Str),
            F::ProcStdoutType => self.process()?.stdout_type.as_deref().map(Val::Str),
            F::ProcEuid => self.process().map(|p| Val::Int(i64::from(p.euid))),
            F::ProcEgid => self.process().map(|p| Val::Int(i64::from(p.egid))),
            F::ProcCapEffectiveRaw => self.process().map(|p| Val::Int(p.cap_effective as i64)),
            F::ThreadTid => self
                .process()
                .map(|p| Val::Int(i64::from(if p.tid == 0 { p.pid } else { p.tid }))),
            F::ThreadIsMain => self
                .process()
                .map(|p| Val::Bool(p.tid == 0 || p.tid == p.pid)),
            F::ThreadCapEffective => {
                let p = self.process()?;
                Some(Val::Str(
                    cache.slot(Slot::CapEff, |s| render::caps(p.cap_effective, s)),
                ))
            }
            F::ThreadCapPermitted => {
                let p = self.process()?;
                Some(Val::Str(
                    cache.slot(Slot::CapPerm, |s| render::caps(p.cap_permitted, s)),
                ))
            }
            F::UserUid => self.process().map(|p| Val::Int(i64::from(p.uid))),
            F::UserName => self.process()?.user.as_deref().map(Val::Str),
            F::UserLoginuid => self.process().map(|p| {
                Val::Int(if p.loginuid == u32::MAX {
                    -1
                } else {
                    i64::from(p.loginuid)
                })
            }),
            F::GroupGid => self.process().map(|p| Val::Int(i64::from(p.gid))),

            F::ContainerId => Some(Val::Str(
                ev.container.as_deref().map_or("host", |c| c.short_id()),
            )),
            F::ContainerFullId => Some(Val::Str(
                ev.container.as_deref().map_or("host", |c| c.id.as_str()),
            )),
            F::ContainerName => match ev.container.as_deref() {
                None => Some(Val::Str("host")),
                Some(c) => non_empty(&c.name),
            },
            F::ContainerType => Some(Val::Str(
                ev.container.as_deref().map_or("host", |c| c.runtime.as_str()),
            )),
            F::ContainerImage => non_empty(&ev.container.as_deref()?.image),
            F::ContainerImageId => non_empty(&ev.container.as_deref()?.image_id),
            F::ContainerImageRepository => {
                non_empty(ev.container.as_deref()?.image_repository())
            }
            F::ContainerImageTag => non_empty(ev.container.as_deref()?.image_tag()),
            F::ContainerImageDigest => ev.container.as_deref()?.image_digest.as_deref().map(Val::Str),
            F::ContainerPrivileged => ev.container.as_deref().map(|c| Val::Bool(c.privileged)),
            F::ContainerBuildStep => ev.container.as_deref().map(|c| Val::Bool(c.build_step)),
            F::ContainerLabel => {
                let FieldArg::Key(k) = &r.arg else {
                    return None;
                };
                ev.container.as_deref()?.labels.get(&**k).map(|v| Val::Str(v))
            }
            F::ContainerLabels => {
                let c = ev.container.as_deref()?;
                Some(Val::Str(cache.slot(Slot::Labels, |s| {
                    for (i, (k, v)) in c.labels.iter().enumerate() {
                        if i > 0 {
                            s.push_str(", ");
                        }
                        let _ = write!(s, "{k}:{v}");
                    }
                })))
            }
            F::ContainerInfo => Some(Val::Str(cache.slot(Slot::Info, |s| {
                match ev.container.as_deref() {
                    None => s.push_str("container_id=host container_name=host"),
                    Some(c) => {
                        let _ = write!(
                            s,
                            "container_id={} container_name={} container_image_repository={} container_image_tag={}",
                            c.short_id(),
                            or_na(&c.name),
                            or_na(c.image_repository()),
                            or_na(c.image_tag())
                        );
                    }
                }
            }))),
            F::ContainerCpuMillicores => ev.resources.as_ref().map(|r| Val::Int(r.cpu_millicores as i64)),
            F::ContainerCpuLimitMillicores => ev
                .resources
                .as_ref()?
                .cpu_limit_millicores
                .map(|v| Val::Int(v as i64)),
            F::ContainerMemoryBytes => ev.resources.as_ref().map(|r| Val::Int(r.memory_bytes as i64)),
            F::ContainerMemoryLimitBytes => ev
                .resources
                .as_ref()?
                .memory_limit_bytes
                .map(|v| Val::Int(v as i64)),
            F::ContainerPids => ev.resources.as_ref().map(|r| Val::Int(r.pids as i64)),
            F::ContainerPidsLimit => ev.resources.as_ref()?.pids_limit.map(|v| Val::Int(v as i64)),
            F::ContainerHighCpuMs => ev.resources.as_ref().map(|r| Val::Int(r.high_cpu_ms as i64)),

            F::FdNum => {
                if let Some(f) = ev.file.as_ref().filter(|_| is_file_kind(ev.kind)) {
                    if let Some(fd) = f.fd {
                        return Some(Val::Int(i64::from(fd)));
                    }
                    if matches!(ev.kind, EventKind::FileOpen | EventKind::FileMemfd) {
                        return ev.result.map(|r| Val::Int(if r < 0 { -1 } else { r }));
                    }
                }
                None
            }
            F::FdType | F::FdTypechar => {
                let (ty, ch) = if let Some(f) = ev.file.as_ref().filter(|_| is_file_kind(ev.kind)) {
                    if ev.kind == EventKind::FileMemfd {
                        ("memfd", "m")
                    } else if f.flags.is_some_and(|fl| fl & O_DIRECTORY != 0) {
                        ("directory", "d")
                    } else {
                        ("file", "f")
                    }
                } else {
                    let n = ev.network.as_ref()?;
                    match n.family.as_str() {
                        "inet" => ("ipv4", "4"),
                        "inet6" => ("ipv6", "6"),
                        "unix" => ("unix", "u"),
                        "netlink" => ("netlink", "n"),
                        other => (other, "o"),
                    }
                };
                Some(Val::Str(if r.id == F::FdType { ty } else { ch }))
            }
            F::FdName | F::FdNameraw => {
                if let Some(f) = ev.file.as_ref().filter(|_| is_file_kind(ev.kind)) {
                    return Some(Val::Str(&f.path));
                }
                let n = ev.network.as_ref()?;
                if let Some(path) = &n.unix_path {
                    return Some(Val::Str(path));
                }
                Some(Val::Str(cache.slot(Slot::FdName, |s| {
                    let (c, sv) = (self.endpoint(End::Client), self.endpoint(End::Server));
                    if let Some(c) = c {
                        push_endpoint(s, c.ip, c.port);
                        if sv.is_some() {
                            s.push_str("->");
                        }
                    }
                    if let Some(sv) = sv {
                        push_endpoint(s, sv.ip, sv.port);
                    }
                })))
            }
            F::FdDirectory => {
                let f = ev.file.as_ref().filter(|_| is_file_kind(ev.kind))?;
                let path = f.path.as_str();
                if f.flags.is_some_and(|fl| fl & O_DIRECTORY != 0) {
                    return Some(Val::Str(path));
                }
                Some(Val::Str(match last_slash(path) {
                    Some(0) => "/",
                    Some(i) => &path[..i],
                    None => "",
                }))
            }
            F::FdFilename => {
                let f = ev.file.as_ref().filter(|_| is_file_kind(ev.kind))?;
                let path = f.path.as_str();
                Some(Val::Str(last_slash(path).map_or(path, |i| &path[i + 1..])))
            }
            F::FdIp | F::FdNet => {
                let end = if i == 0 { End::Client } else if i == 1 { End::Server } else { return None };
                match self.endpoint(end) {
                    Some(e) => Some(Val::Ip(canonical(e.ip))),
                    // Keep iterating to the server end when there is no client end.
                    None if i == 0 => self.endpoint(End::Server).map(|e| Val::Ip(canonical(e.ip))),
                    None => None,
                }
            }
            F::FdCip | F::FdCnet => self.endpoint(End::Client).map(|e| Val::Ip(canonical(e.ip))),
            F::FdSip | F::FdSnet => self.endpoint(End::Server).map(|e| Val::Ip(canonical(e.ip))),
            F::FdLip | F::FdLnet => self.endpoint(End::Local).map(|e| Val::Ip(canonical(e.ip))),
            F::FdRip | F::FdRnet => self.endpoint(End::Remote).map(|e| Val::Ip(canonical(e.ip))),
            F::FdPort => {
                let end = if i == 0 { End::Client } else if i == 1 { End::Server } else { return None };
                match self.endpoint(end) {
                    Some(e) => Some(Val::Int(i64::from(e.port))),
                    None if i == 0 => self.endpoint(End::Server).map(|e| Val::Int(i64::from(e.port))),
                    None => None,
                }
            }
            F::FdCport => self.endpoint(End::Client).map(|e| Val::Int(i64::from(e.port))),
            F::FdSport => self.endpoint(End::Server).map(|e| Val::Int(i64::from(e.port))),
            F::FdLport => self.endpoint(End::Local).map(|e| Val::Int(i64::from(e.port))),
            F::FdRport => self.endpoint(End::Remote).map(|e| Val::Int(i64::from(e.port))),
            F::FdL4proto => ev.network.as_ref().map(|n| Val::Str(&n.protocol)),
            F::FdSockfamily => ev.network.as_ref().map(|n| {
                Val::Str(match n.family.as_str() {
                    "inet" | "inet6" => "ip",
                    other => other,
                })
            }),
            F::FdIsServer => ev.network.as_ref().map(|n| {
                Val::Bool(!matches!(n.direction, NetDirection::Outbound))
            }),
            F::FdCipName | F::FdSipName | F::FdRipName | F::NetRemoteName => {
                let n = ev.network.as_ref()?;
                let applies = match r.id {
                    F::FdCipName => n.direction == NetDirection::Inbound,
                    F::FdSipName => n.direction == NetDirection::Outbound,
                    _ => true,
                };
                if !applies {
                    return None;
                }
                n.remote_names.get(i).map(|s| Val::Str(s))
            }
            F::FdLipName => None,
            F::NetRemoteNameSuffixes => {
                let mut n = i;
                for name in &ev.network.as_ref()?.remote_names {
                    let mut rest = name.as_str();
                    loop {
                        if n == 0 {
                            return Some(Val::Str(rest));
                        }
                        n -= 1;
                        match rest.find('.') {
                            Some(dot) => rest = &rest[dot + 1..],
                            None => break,
                        }
                    }
                }
                None
            }

            F::FileSensitive => ev.file.as_ref().map(|f| Val::Bool(f.sensitive)),
            F::FileNewPath => ev.file.as_ref()?.new_path.as_deref().map(Val::Str),
            F::FileFsType => ev.file.as_ref()?.fs_type.as_deref().map(Val::Str),
            F::FileSource => ev.file.as_ref()?.source.as_deref().map(Val::Str),
            F::NetDirection => ev.network.as_ref().map(|n| {
                Val::Str(match n.direction {
                    NetDirection::Outbound => "outbound",
                    NetDirection::Inbound => "inbound",
                    NetDirection::Listen => "listen",
                    NetDirection::Bind => "bind",
                })
            }),
            F::NetRemoteCountry => ev.network.as_ref()?.remote_country.as_deref().map(Val::Str),

            F::DnsQuery => ev.dns.as_ref().map(|d| Val::Str(&d.query)),
            F::DnsQuerySuffixes => {
                let q = ev.dns.as_ref()?.query.as_str();
                let mut rest = q;
                for _ in 0..i {
                    rest = &rest[rest.find('.')? + 1..];
                }
                (!rest.is_empty()).then_some(Val::Str(rest))
            }
            F::DnsQtype => ev.dns.as_ref().map(|d| Val::Str(&d.qtype)),
            F::DnsRcode => ev.dns.as_ref()?.rcode.as_deref().map(Val::Str),
            F::DnsAnswerIp => ev
                .dns
                .as_ref()?
                .answers
                .iter()
                .filter_map(|a| a.data.parse::<IpAddr>().ok())
                .nth(i)
                .map(|ip| Val::Ip(canonical(ip))),
            F::DnsAnswerName => ev
                .dns
                .as_ref()?
                .answers
                .iter()
                .filter(|a| a.data.parse::<IpAddr>().is_err())
                .nth(i)
                .map(|a| Val::Str(&a.data)),
            F::DnsServerIp => ev.dns.as_ref()?.server.map(|s| Val::Ip(canonical(s.ip))),
            F::PayloadProtocol => ev.payload.as_ref().map(|p| Val::Str(&p.protocol)),
            F::PayloadMethod => ev.payload.as_ref()?.method.as_deref().map(Val::Str),
            F::PayloadAgent => ev.payload.as_ref()?.agent.as_deref().map(Val::Str),
            F::PayloadUser => ev.payload.as_ref()?.user.as_deref().map(Val::Str),
            F::PayloadKeys => ev.payload.as_ref()?.keys.get(i).map(|k| Val::Str(k)),
            F::PayloadLen => ev.payload.as_ref().map(|p| Val::Int(i64::from(p.len))),
            F::SocketDomain => ev.socket.as_ref().map(|s| Val::Str(&s.domain)),
            F::SocketType => ev.socket.as_ref().map(|s| Val::Str(&s.sock_type)),
            F::SocketProtocol => ev.socket.as_ref().map(|s| Val::Int(i64::from(s.protocol))),

            F::AuthOutcome => ev.auth.as_ref().map(|a| {
                Val::Str(match a.outcome {
                    AuthOutcome::Success => "success",
                    AuthOutcome::Failure => "failure",
                })
            }),
            F::AuthUser => ev.auth.as_ref().map(|a| Val::Str(&a.user)),
            F::AuthMethod => ev.auth.as_ref()?.method.as_deref().map(Val::Str),
            F::AuthSrcIp => ev.auth.as_ref()?.src_ip.map(|ip| Val::Ip(canonical(ip))),
            F::AuthSrcPort => ev.auth.as_ref()?.src_port.map(|p| Val::Int(i64::from(p))),
            F::AuthService => ev.auth.as_ref().map(|a| Val::Str(&a.service)),
            F::AuthLogSource => ev.auth.as_ref().map(|a| Val::Str(&a.log_source)),
            F::AuthMessage => ev.auth.as_ref().map(|a| Val::Str(&a.message)),

            F::PrivTargetPid => ev.privilege.as_ref()?.target_pid.map(|v| Val::Int(i64::from(v))),
            F::PrivTargetName => ev.privilege.as_ref()?.target_name.as_deref().map(Val::Str),
            F::PrivUid => {
                let p = ev.privilege.as_ref()?;
                p.uid.or(p.euid).map(|v| Val::Int(i64::from(v)))
            }
            F::PrivRequest => {
                let p = ev.privilege.as_ref()?;
                match &p.request_name {
                    Some(n) => Some(Val::Str(n)),
                    None => p.request.map(Val::Int),
                }
            }
            F::PrivNamespaces => ev.privilege.as_ref()?.namespaces.get(i).map(|s| Val::Str(s)),
            F::PrivCapEffective => {
                let set = ev.privilege.as_ref()?.cap_effective?;
                Some(Val::Str(cache.slot(Slot::PrivCaps, |s| render::caps(set, s))))
            }
            F::ExitCode => ev.exit.map(|x| Val::Int(i64::from(x.code))),
            F::ExitSignal => ev.exit?.signal.map(|s| Val::Int(i64::from(s))),
            F::ExitCoreDumped => ev.exit.map(|x| Val::Bool(x.core_dumped)),
            F::LifecycleAction => ev.lifecycle.as_ref().map(|l| Val::Str(&l.action)),
            F::LifecycleExecCommand => ev.lifecycle.as_ref()?.exec_command.as_deref().map(Val::Str),
            F::LifecycleExecTty => ev.lifecycle.as_ref()?.exec_tty.map(Val::Bool),
            F::LifecycleExecUser => ev.lifecycle.as_ref()?.exec_user.as_deref().map(Val::Str),
            F::LifecycleExitCode => ev.lifecycle.as_ref()?.exit_code.map(Val::Int),
            F::SensorDropsTotal => ev.stats.as_ref().map(|s| Val::Int(s.drops_total as i64)),
            // Filled in by the correlation engine when it renders an alert's output.
            F::CorrelationCount | F::CorrelationKey => None,
        }
    }

    fn evt_arg(&self, name: ArgName, raw: bool) -> Option<Val<'a>> {
        let ev = self.ev;
        let cache = self.cache;
        let file = ev.file.as_ref().filter(|_| is_file_kind(ev.kind));
        let priv_ = ev.privilege.as_ref();
        let proc_ = self.process();
        let int = |v: Option<u32>| v.map(|v| Val::Int(i64::from(v)));
        match name {
            ArgName::Fd => {
                if let Some(fd) = file.and_then(|f| f.fd) {
                    return Some(Val::Int(i64::from(fd)));
                }
                if matches!(ev.kind, EventKind::FileOpen | EventKind::FileMemfd) {
                    return ev.result.map(Val::Int);
                }
                None
            }
            ArgName::Path => match ev.kind {
                EventKind::ProcessExec => proc_.map(|p| Val::Str(&p.exe)),
                EventKind::PrivModuleLoad => priv_?.name.as_deref().map(Val::Str),
                _ => file.map(|f| Val::Str(&f.path)),
            },
            ArgName::Flags => match ev.kind {
                EventKind::FileOpen => {
                    let flags = file?.flags?;
                    if raw {
                        return Some(Val::Int(i64::from(flags)));
                    }
                    Some(Val::Str(cache.slot(Slot::ArgFlags, |s| {
                        render::open_flags(u64::from(flags), s)
                    })))
                }
                EventKind::ProcessExec => {
                    let p = proc_?;
                    if raw {
                        let bits = i64::from(p.exe_upper_layer) | (i64::from(p.exe_fileless) << 1);
                        return Some(Val::Int(bits));
                    }
                    Some(Val::Str(match (p.exe_upper_layer, p.exe_fileless) {
                        (false, false) => "0",
                        (true, false) => "EXE_UPPER_LAYER",
                        (false, true) => "EXE_FROM_MEMFD",
                        (true, true) => "EXE_UPPER_LAYER|EXE_FROM_MEMFD",
                    }))
                }
                EventKind::PrivUnshare | EventKind::PrivIoUring => {
                    let flags = priv_?.flags?;
                    if raw {
                        return Some(Val::Int(flags as i64));
                    }
                    let names = if ev.kind == EventKind::PrivUnshare {
                        render::ns_flags
                    } else {
                        render::io_uring_flags
                    };
                    Some(Val::Str(cache.slot(Slot::ArgFlags, |s| names(flags, s))))
                }
                _ => priv_?.flags.map(|f| Val::Int(f as i64)),
            },
            ArgName::Nstype => {
                let flags = priv_?.flags?;
                if raw {
                    return Some(Val::Int(flags as i64));
                }
                Some(Val::Str(
                    cache.slot(Slot::ArgFlags, |s| render::ns_flags(flags, s)),
                ))
            }
            ArgName::Mode => {
                let mode = file?.mode?;
                if raw {
                    return Some(Val::Int(i64::from(mode)));
                }
                Some(Val::Str(cache.slot(Slot::ArgMode, |s| {
                    render::file_mode(u64::from(mode), s)
                })))
            }
            ArgName::Uid => match ev.kind {
                EventKind::FileChown => int(file?.uid),
                EventKind::PrivSetuid => int(priv_?.uid),
                _ => proc_.map(|p| Val::Int(i64::from(p.uid))),
            },
            ArgName::Gid => match ev.kind {
                EventKind::FileChown => int(file?.gid),
                EventKind::PrivSetgid => int(priv_?.gid),
                _ => proc_.map(|p| Val::Int(i64::from(p.gid))),
            },
            ArgName::Euid => int(priv_?.euid),
            ArgName::Suid => int(priv_?.suid),
            ArgName::Egid => int(priv_?.egid),
            ArgName::Sgid => int(priv_?.sgid),
            ArgName::Oldpath => match ev.kind {
                EventKind::FileRename => file.map(|f| Val::Str(&f.path)),
                _ => None,
            },
            ArgName::Newpath => match ev.kind {
                EventKind::FileRename | EventKind::FilePivotRoot => {
                    file?.new_path.as_deref().map(Val::Str)
                }
                _ => None,
            },
            ArgName::Dev => file?.source.as_deref().map(Val::Str),
            ArgName::Dir => match ev.kind {
                EventKind::FileMount => file?.new_path.as_deref().map(Val::Str),
                _ => None,
            },
            ArgName::Type => match ev.kind {
                EventKind::NetSocket => ev.socket.as_ref().map(|s| Val::Str(&s.sock_type)),
                _ => file?.fs_type.as_deref().map(Val::Str),
            },
            ArgName::Domain => ev.socket.as_ref().map(|s| Val::Str(&s.domain)),
            ArgName::Proto => ev.socket.as_ref().map(|s| Val::Int(i64::from(s.protocol))),
            ArgName::Res => ev.result.map(Val::Int),
            ArgName::Exe => proc_.map(|p| Val::Str(argv0(p))),
            ArgName::Args => {
                let p = proc_?;
                Some(Val::Str(
                    cache.slot(Slot::Args, |s| join_args(&p.args, 1, s)),
                ))
            }
            ArgName::Cwd => proc_.map(|p| Val::Str(&p.cwd)),
            ArgName::Tty => proc_.map(|p| Val::Int(i64::from(p.tty))),
            ArgName::Pid => match ev.kind {
                EventKind::PrivPtrace | EventKind::PrivKill | EventKind::PrivSetns => {
                    int(priv_?.target_pid)
                }
                _ => proc_.map(|p| Val::Int(i64::from(p.pid))),
            },
            ArgName::Ptid => proc_.map(|p| Val::Int(i64::from(p.ppid))),
            ArgName::Tid => {
                proc_.map(|p| Val::Int(i64::from(if p.tid == 0 { p.pid } else { p.tid })))
            }
            ArgName::Comm => proc_.map(|p| Val::Str(&p.name)),
            ArgName::Loginuid => proc_.map(|p| {
                Val::Int(if p.loginuid == u32::MAX {
                    -1
                } else {
                    i64::from(p.loginuid)
                })
            }),
            ArgName::Request => {
                let p = priv_?;
                match (&p.request_name, raw) {
                    (Some(n), false) => Some(Val::Str(n)),
                    _ => p.request.map(Val::Int),
                }
            }
            ArgName::CapEffective | ArgName::CapPermitted | ArgName::CapInheritable => {
                let p = priv_?;
                let (set, slot) = match name {
                    ArgName::CapEffective => (p.cap_effective?, Slot::ArgCapEff),
                    ArgName::CapPermitted => (p.cap_permitted?, Slot::ArgCapPerm),
                    _ => (p.cap_inheritable?, Slot::ArgCapInh),
                };
                if raw {
                    return Some(Val::Int(set as i64));
                }
                Some(Val::Str(cache.slot(slot, |s| render::caps(set, s))))
            }
            ArgName::Tuple => {
                ev.network.as_ref()?;
                self.get_raw(
                    &FieldRef {
                        id: F::FdName,
                        multi: false,
                        arg: FieldArg::None,
                        transforms: Box::new([]),
                        name: "".into(),
                    },
                    0,
                )
            }
            ArgName::Addr => {
                let n = ev.network.as_ref()?;
                if let Some(path) = &n.unix_path {
                    return Some(Val::Str(path));
                }
                let e = n.dst?;
                Some(Val::Str(cache.slot(Slot::ArgAddr, |s| {
                    let _ = write!(s, "{}:{}", canonical(e.ip), e.port);
                })))
            }
            ArgName::Status => ev.exit.map(|x| Val::Int(i64::from(x.code))),
        }
    }
}

fn non_empty(s: &str) -> Option<Val<'_>> {
    (!s.is_empty()).then_some(Val::Str(s))
}

fn or_na(s: &str) -> &str {
    if s.is_empty() {
        "<NA>"
    } else {
        s
    }
}

fn transform(t: Transform, v: Val<'_>) -> Val<'_> {
    let text = |v: &Val<'_>| {
        let mut s = String::new();
        v.write_to(&mut s);
        s
    };
    match t {
        // libsinsp maps each byte with the C library's toupper/tolower: ASCII letters only.
        Transform::ToLower => Val::Owned(text(&v).to_ascii_lowercase()),
        Transform::ToUpper => Val::Owned(text(&v).to_ascii_uppercase()),
        Transform::Len => Val::Int(match &v {
            Val::Str(s) => s.len() as i64,
            Val::Owned(s) => s.len() as i64,
            other => text(other).len() as i64,
        }),
        Transform::Basename => match v {
            Val::Str(s) => Val::Str(last_slash(s).map_or(s, |i| &s[i + 1..])),
            other => {
                let s = text(&other);
                Val::Owned(s.rsplit('/').next().unwrap_or(&s).to_string())
            }
        },
        Transform::B64 => Val::Owned(b64_decode(&text(&v))),
    }
}

/// Standard base64 (RFC 4648) decoding, lossy to UTF-8; invalid input decodes to what precedes
/// the first invalid character. Written here because the `b64()` transformer is the only user.
fn b64_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        let ints = [0, 1, 9, 10, 99, 100, 65535, -1, -10, i64::MAX, i64::MIN];
        for i in ints {
            let mut s = String::new();
            Val::Int(i).write_to(&mut s);
            assert_eq!(s, i.to_string());
        }
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.255",
            "192.168.100.7",
            "::1",
            "::ffff:1.2.3.4",
            "fe80::1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            let mut s = String::new();
            Val::Ip(ip).write_to(&mut s);
            assert_eq!(s, ip.to_string());
        }
        let mut s = String::new();
        push_endpoint(&mut s, "::ffff:10.1.2.3".parse().expect("ip"), 443);
        assert_eq!(s, "10.1.2.3:443");
    }

    /// `any_suffix` sees the values `get(r, 0)`, `get(r, 1)`, ... return, in that order, for
    /// names with empty labels, trailing dots, no dot, several names and none.
    #[test]
    fn suffixes_in_one_pass_are_the_indexed_values() {
        use rampart_event::{Device, DnsInfo, EventId, NetInfo};
        let names = ["pool.minexmr.com", "a..b", "a.", ".", "", "nodot", "x.y.z."];
        let field = |id: F| FieldRef {
            id,
            multi: true,
            arg: FieldArg::None,
            transforms: Box::new([]),
            name: "f".into(),
        };
        let device = std::sync::Arc::new(Device {
            hostname: "h".into(),
            region: None,
        });
        let mut events = Vec::new();
        for q in names {
            let mut ev = Event::new(EventId::new(1, 1), 0, EventKind::DnsQuery, device.clone());
            ev.dns = Some(DnsInfo {
                id: 1,
                query: q.into(),
                qtype: "A".into(),
                rcode: None,
                answers: Vec::new(),
                server: None,
            });
            events.push((F::DnsQuerySuffixes, ev));
        }
        for remote in [&names[..], &names[..2], &names[5..6], &[]] {
            let mut ev = Event::new(EventId::new(1, 2), 0, EventKind::NetConnect, device.clone());
            ev.network = Some(NetInfo {
                protocol: "tcp".into(),
                family: "inet".into(),
                direction: NetDirection::Outbound,
                src: None,
                dst: None,
                unix_path: None,
                remote_names: remote.iter().map(|s| s.to_string()).collect(),
                remote_country: None,
            });
            events.push((F::NetRemoteNameSuffixes, ev));
        }
        let cache = Cache::default();
        for (id, ev) in &events {
            let ctx = Ctx {
                ev,
                cache: &cache,
                memo: &[],
                generation: 1,
            };
            let r = field(*id);
            let mut indexed = Vec::new();
            while let Some(Val::Str(s)) = ctx.get(&r, indexed.len()) {
                indexed.push(s);
            }
            let mut one_pass = Vec::new();
            let (hit, seen) = ctx
                .any_suffix(&r, |s| {
                    one_pass.push(s);
                    false
                })
                .expect("a suffix field");
            assert!(!hit);
            assert_eq!(seen, indexed.len());
            assert_eq!(one_pass, indexed, "{:?}", ev.dns);
            // It stops at the first value `f` accepts.
            if let Some(last) = indexed.last() {
                let mut n = 0;
                let (hit, _) = ctx
                    .any_suffix(&r, |s| {
                        n += 1;
                        s == *last
                    })
                    .expect("a suffix field");
                assert!(hit);
                assert_eq!(n, indexed.iter().position(|s| s == last).expect("seen") + 1);
            }
        }
        assert!(Ctx {
            ev: &events[0].1,
            cache: &cache,
            memo: &[],
            generation: 1,
        }
        .any_suffix(&field(F::ProcName), |_| true)
        .is_none());
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(b64_decode("Y3VybCB4"), "curl x");
        assert_eq!(b64_decode("aGk="), "hi");
    }
}
