//! The field catalogue: every field a condition or output may name, its type, and whether
//! Rampart's events carry it.
//!
//! Falco's fields that Rampart does not produce are listed too (with `None` as their
//! [`FieldDef::id`]): a rule using them still loads, the comparison is false as in Falco when a
//! field cannot be extracted, and `rampart rules check` reports a rule that therefore cannot fire.
//! A name in none of the lists is an error, as in Falco. Classes that Rampart has no source for at
//! all (`k8s.*`, `k8smeta.*`, `mesos.*`, `marathon.*`, `span.*`, `evtin.*`) are absent as a whole.
//! `docs/rules.md` documents every entry; a test keeps the two in step.

/// The type of a field's values, which decides how literals are parsed and which operators apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Int,
    Bool,
    /// An IP address; a literal may be an address or a CIDR network.
    Ip,
    /// A network: the field is an address, literals are CIDR networks it must be inside of.
    Net,
    /// Rendered as text, compared as a number when both sides are numbers (`evt.arg.*`).
    Dyn,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "number",
            Ty::Bool => "bool",
            Ty::Ip => "ip address",
            Ty::Net => "ip network",
            Ty::Dyn => "argument",
        }
    }
}

/// What goes between the brackets of `field[...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgSpec {
    None,
    /// An optional non-negative index (`proc.aname[2]`); without it the field has one value per
    /// ancestor.
    Index,
    /// A required key (`container.label[com.example]`).
    Key,
    /// `evt.arg.NAME`, `evt.arg[NAME]` or `evt.arg[N]`.
    EventArg,
}

/// A field Rampart extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum F {
    EvtType,
    EvtKind,
    EvtDir,
    EvtRes,
    EvtRawres,
    EvtFailed,
    EvtTime,
    EvtTimeS,
    EvtTimeIso,
    EvtDatetime,
    EvtDatetimeS,
    EvtRawtime,
    EvtRawtimeS,
    EvtRawtimeNs,
    EvtHostname,
    EvtSource,
    EvtCategory,
    EvtIsOpenRead,
    EvtIsOpenWrite,
    EvtIsOpenExec,
    EvtIsOpenCreate,
    EvtArg,
    EvtRawArg,
    EvtArgs,
    EvtAbspath,
    EvtAbspathSrc,
    EvtAbspathDst,
    EvtRegion,
    ProcPid,
    ProcPpid,
    ProcVpid,
    ProcName,
    ProcExe,
    ProcExepath,
    ProcArgs,
    ProcCmdline,
    ProcExeline,
    ProcCmdnargs,
    ProcCmdlenargs,
    ProcCwd,
    ProcTty,
    ProcPname,
    ProcPexe,
    ProcPexepath,
    ProcPcmdline,
    ProcAname,
    ProcApid,
    ProcAexe,
    ProcAexepath,
    ProcAcmdline,
    ProcDuration,
    ProcPidTs,
    ProcIsExeUpperLayer,
    ProcIsExeFromMemfd,
    ProcExeSha256,
    ProcStdinType,
    ProcStdoutType,
    ProcEuid,
    ProcEgid,
    ProcCapEffectiveRaw,
    ThreadTid,
    ThreadIsMain,
    ThreadCapEffective,
    ThreadCapPermitted,
    UserUid,
    UserName,
    UserLoginuid,
    GroupGid,
    ContainerId,
    ContainerFullId,
    ContainerName,
    ContainerImage,
    ContainerImageId,
    ContainerImageRepository,
    ContainerImageTag,
    ContainerImageDigest,
    ContainerType,
    ContainerPrivileged,
    ContainerBuildStep,
    ContainerLabel,
    ContainerLabels,
    ContainerCpuMillicores,
    ContainerCpuLimitMillicores,
    ContainerMemoryBytes,
    ContainerMemoryLimitBytes,
    ContainerPids,
    ContainerPidsLimit,
    ContainerHighCpuMs,
    ContainerInfo,
    FdNum,
    FdType,
    FdTypechar,
    FdName,
    FdNameraw,
    FdDirectory,
    FdFilename,
    FdIp,
    FdCip,
    FdSip,
    FdLip,
    FdRip,
    FdPort,
    FdCport,
    FdSport,
    FdLport,
    FdRport,
    FdL4proto,
    FdSockfamily,
    FdIsServer,
    FdNet,
    FdCnet,
    FdSnet,
    FdLnet,
    FdRnet,
    FdCipName,
    FdSipName,
    FdLipName,
    FdRipName,
    FsPathName,
    FsPathSource,
    FsPathTarget,
    SyscallType,
    FileSensitive,
    FileNewPath,
    FileFsType,
    FileSource,
    NetDirection,
    NetRemoteCountry,
    NetRemoteName,
    NetRemoteNameSuffixes,
    DnsQuery,
    DnsQuerySuffixes,
    DnsQtype,
    DnsRcode,
    DnsAnswerIp,
    DnsAnswerName,
    DnsServerIp,
    PayloadProtocol,
    PayloadMethod,
    PayloadAgent,
    PayloadUser,
    PayloadKeys,
    PayloadLen,
    SocketDomain,
    SocketType,
    SocketProtocol,
    AuthOutcome,
    AuthUser,
    AuthMethod,
    AuthSrcIp,
    AuthSrcPort,
    AuthService,
    AuthLogSource,
    AuthMessage,
    PrivTargetPid,
    PrivTargetName,
    PrivUid,
    PrivRequest,
    PrivNamespaces,
    PrivCapEffective,
    ExitCode,
    ExitSignal,
    ExitCoreDumped,
    LifecycleAction,
    LifecycleExecCommand,
    LifecycleExecTty,
    LifecycleExecUser,
    LifecycleExitCode,
    SensorDropsTotal,
    CorrelationCount,
    CorrelationKey,
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldDef {
    pub name: &'static str,
    pub ty: Ty,
    pub arg: ArgSpec,
    /// `None`: a Falco field Rampart's events do not carry.
    pub id: Option<F>,
    /// Not in Falco: a Rampart extension.
    pub extension: bool,
}

const fn p(name: &'static str, ty: Ty, id: F) -> FieldDef {
    FieldDef {
        name,
        ty,
        arg: ArgSpec::None,
        id: Some(id),
        extension: false,
    }
}

const fn pa(name: &'static str, ty: Ty, arg: ArgSpec, id: F) -> FieldDef {
    FieldDef {
        name,
        ty,
        arg,
        id: Some(id),
        extension: false,
    }
}

const fn x(name: &'static str, ty: Ty, id: F) -> FieldDef {
    FieldDef {
        name,
        ty,
        arg: ArgSpec::None,
        id: Some(id),
        extension: true,
    }
}

const fn a(name: &'static str, ty: Ty) -> FieldDef {
    FieldDef {
        name,
        ty,
        arg: ArgSpec::None,
        id: None,
        extension: false,
    }
}

const fn aa(name: &'static str, ty: Ty, arg: ArgSpec) -> FieldDef {
    FieldDef {
        name,
        ty,
        arg,
        id: None,
        extension: false,
    }
}

use ArgSpec::{EventArg, Index, Key};
use Ty::{Bool, Dyn, Int, Ip, Net, Str};

/// Every field, Falco's first (present and absent), then Rampart's extensions.
pub(crate) static FIELDS: &[FieldDef] = &[
    // evt.*
    p("evt.type", Str, F::EvtType),
    p("evt.dir", Str, F::EvtDir),
    p("evt.res", Str, F::EvtRes),
    p("evt.rawres", Int, F::EvtRawres),
    p("evt.failed", Bool, F::EvtFailed),
    p("evt.time", Str, F::EvtTime),
    p("evt.time.s", Str, F::EvtTimeS),
    p("evt.time.iso8601", Str, F::EvtTimeIso),
    p("evt.datetime", Str, F::EvtDatetime),
    p("evt.datetime.s", Str, F::EvtDatetimeS),
    p("evt.rawtime", Int, F::EvtRawtime),
    p("evt.rawtime.s", Int, F::EvtRawtimeS),
    p("evt.rawtime.ns", Int, F::EvtRawtimeNs),
    p("evt.hostname", Str, F::EvtHostname),
    p("evt.source", Str, F::EvtSource),
    p("evt.category", Str, F::EvtCategory),
    p("evt.is_open_read", Bool, F::EvtIsOpenRead),
    p("evt.is_open_write", Bool, F::EvtIsOpenWrite),
    p("evt.is_open_exec", Bool, F::EvtIsOpenExec),
    p("evt.is_open_create", Bool, F::EvtIsOpenCreate),
    pa("evt.arg", Dyn, EventArg, F::EvtArg),
    pa("evt.rawarg", Dyn, EventArg, F::EvtRawArg),
    p("evt.args", Str, F::EvtArgs),
    p("evt.info", Str, F::EvtArgs),
    p("evt.abspath", Str, F::EvtAbspath),
    p("evt.abspath.src", Str, F::EvtAbspathSrc),
    p("evt.abspath.dst", Str, F::EvtAbspathDst),
    p("syscall.type", Str, F::SyscallType),
    a("evt.num", Int),
    a("evt.cpu", Int),
    a("evt.deltatime", Int),
    a("evt.deltatime.s", Int),
    a("evt.deltatime.ns", Int),
    a("evt.outputtime", Int),
    a("evt.reltime", Int),
    a("evt.reltime.s", Int),
    a("evt.reltime.ns", Int),
    a("evt.latency", Int),
    a("evt.latency.s", Int),
    a("evt.latency.ns", Int),
    a("evt.latency.quantized", Int),
    a("evt.latency.human", Str),
    a("evt.buffer", Str),
    a("evt.buflen", Int),
    a("evt.is_io", Bool),
    a("evt.is_io_read", Bool),
    a("evt.is_io_write", Bool),
    a("evt.io_dir", Str),
    a("evt.is_wait", Bool),
    a("evt.wait_latency", Int),
    a("evt.is_syslog", Bool),
    a("evt.count", Int),
    a("evt.count.error", Int),
    a("evt.count.error.file", Int),
    a("evt.count.error.net", Int),
    a("evt.count.error.memory", Int),
    a("evt.count.error.other", Int),
    a("evt.count.exit", Int),
    a("evt.around", Str),
    a("evt.type.is", Int),
    a("evt.is_async", Bool),
    a("evt.asynctype", Str),
    a("evt.pluginname", Str),
    a("evt.plugininfo", Str),
    // proc.* and thread.*
    p("proc.pid", Int, F::ProcPid),
    p("proc.ppid", Int, F::ProcPpid),
    p("proc.vpid", Int, F::ProcVpid),
    p("proc.name", Str, F::ProcName),
    p("proc.exe", Str, F::ProcExe),
    p("proc.exepath", Str, F::ProcExepath),
    p("proc.args", Str, F::ProcArgs),
    p("proc.cmdline", Str, F::ProcCmdline),
    p("proc.exeline", Str, F::ProcExeline),
    p("proc.cmdnargs", Int, F::ProcCmdnargs),
    p("proc.cmdlenargs", Int, F::ProcCmdlenargs),
    p("proc.cwd", Str, F::ProcCwd),
    p("proc.tty", Int, F::ProcTty),
    p("proc.pname", Str, F::ProcPname),
    p("proc.pexe", Str, F::ProcPexe),
    p("proc.pexepath", Str, F::ProcPexepath),
    p("proc.pcmdline", Str, F::ProcPcmdline),
    pa("proc.aname", Str, Index, F::ProcAname),
    pa("proc.apid", Int, Index, F::ProcApid),
    pa("proc.aexe", Str, Index, F::ProcAexe),
    pa("proc.aexepath", Str, Index, F::ProcAexepath),
    pa("proc.acmdline", Str, Index, F::ProcAcmdline),
    p("proc.duration", Int, F::ProcDuration),
    p("proc.pid.ts", Int, F::ProcPidTs),
    p("proc.is_exe_upper_layer", Bool, F::ProcIsExeUpperLayer),
    p("proc.exe_sha256", Str, F::ProcExeSha256),
    p("proc.is_exe_from_memfd", Bool, F::ProcIsExeFromMemfd),
    p("proc.stdin.type", Str, F::ProcStdinType),
    p("proc.stdout.type", Str, F::ProcStdoutType),
    a("proc.stdin.name", Str),
    a("proc.stdout.name", Str),
    a("proc.stderr.type", Str),
    a("proc.stderr.name", Str),
    a("proc.env", Str),
    aa("proc.aenv", Str, Key),
    a("proc.loginshellid", Int),
    a("proc.pvpid", Int),
    a("proc.sid", Int),
    a("proc.sname", Str),
    a("proc.sid.exe", Str),
    a("proc.sid.exepath", Str),
    a("proc.vpgid", Int),
    a("proc.vpgid.name", Str),
    a("proc.vpgid.exe", Str),
    a("proc.vpgid.exepath", Str),
    a("proc.pgid", Int),
    a("proc.pgid.name", Str),
    a("proc.pgid.exe", Str),
    a("proc.pgid.exepath", Str),
    a("proc.is_sid_leader", Bool),
    a("proc.is_vpgid_leader", Bool),
    a("proc.is_pgid_leader", Bool),
    a("proc.ppid.duration", Int),
    a("proc.ppid.ts", Int),
    a("proc.is_exe_writable", Bool),
    a("proc.is_exe_lower_layer", Bool),
    a("proc.exe_ino", Int),
    a("proc.exe_ino.ctime", Int),
    a("proc.exe_ino.mtime", Int),
    a("proc.exe_ino.ctime_duration_proc_start", Int),
    a("proc.exe_ino.ctime_duration_pidns_start", Int),
    a("proc.pidns_init_start_ts", Int),
    a("proc.is_container_healthcheck", Bool),
    a("proc.is_container_liveness_probe", Bool),
    a("proc.is_container_readiness_probe", Bool),
    a("proc.fdopencount", Int),
    a("proc.fdlimit", Int),
    a("proc.fdusage", Int),
    a("proc.vmsize", Int),
    a("proc.vmrss", Int),
    a("proc.vmswap", Int),
    a("proc.pfmajor", Int),
    a("proc.pfminor", Int),
    a("proc.nthreads", Int),
    a("proc.nchilds", Int),
    a("proc.cpu", Int),
    a("proc.cpu.user", Int),
    a("proc.cpu.system", Int),
    a("proc.exe_uid", Int),
    p("thread.tid", Int, F::ThreadTid),
    p("thread.ismain", Bool, F::ThreadIsMain),
    p("thread.cap_effective", Str, F::ThreadCapEffective),
    p("thread.cap_permitted", Str, F::ThreadCapPermitted),
    a("thread.cap_inheritable", Str),
    a("thread.vtid", Int),
    a("thread.exectime", Int),
    a("thread.totexectime", Int),
    a("thread.cgroups", Str),
    aa("thread.cgroup", Str, Key),
    a("thread.vmsize", Int),
    a("thread.vmrss", Int),
    a("thread.pfmajor", Int),
    a("thread.pfminor", Int),
    // user.*, group.*
    p("user.uid", Int, F::UserUid),
    p("user.name", Str, F::UserName),
    p("user.loginuid", Int, F::UserLoginuid),
    a("user.loginname", Str),
    a("user.homedir", Str),
    a("user.shell", Str),
    p("group.gid", Int, F::GroupGid),
    a("group.name", Str),
    // container.*
    p("container.id", Str, F::ContainerId),
    p("container.full_id", Str, F::ContainerFullId),
    p("container.name", Str, F::ContainerName),
    p("container.image", Str, F::ContainerImage),
    p("container.image.id", Str, F::ContainerImageId),
    p(
        "container.image.repository",
        Str,
        F::ContainerImageRepository,
    ),
    p("container.image.tag", Str, F::ContainerImageTag),
    p("container.image.digest", Str, F::ContainerImageDigest),
    p("container.type", Str, F::ContainerType),
    p("container.privileged", Bool, F::ContainerPrivileged),
    x("container.build_step", Bool, F::ContainerBuildStep),
    pa("container.label", Str, Key, F::ContainerLabel),
    p("container.labels", Str, F::ContainerLabels),
    p("container.info", Str, F::ContainerInfo),
    a("container.mounts", Str),
    aa("container.mount", Str, Key),
    aa("container.mount.source", Str, Key),
    aa("container.mount.dest", Str, Key),
    aa("container.mount.mode", Str, Key),
    aa("container.mount.rdwr", Str, Key),
    aa("container.mount.propagation", Str, Key),
    a("container.healthcheck", Str),
    a("container.liveness_probe", Str),
    a("container.readiness_probe", Str),
    a("container.start_ts", Int),
    a("container.duration", Int),
    a("container.ip", Ip),
    a("container.cni.json", Str),
    a("container.host_pid", Bool),
    a("container.host_network", Bool),
    a("container.host_ipc", Bool),
    a("container.user", Str),
    // fd.*, fs.path.*
    p("fd.num", Int, F::FdNum),
    p("fd.type", Str, F::FdType),
    p("fd.typechar", Str, F::FdTypechar),
    p("fd.name", Str, F::FdName),
    p("fd.nameraw", Str, F::FdNameraw),
    p("fd.directory", Str, F::FdDirectory),
    p("fd.filename", Str, F::FdFilename),
    p("fd.ip", Ip, F::FdIp),
    p("fd.cip", Ip, F::FdCip),
    p("fd.sip", Ip, F::FdSip),
    p("fd.lip", Ip, F::FdLip),
    p("fd.rip", Ip, F::FdRip),
    p("fd.port", Int, F::FdPort),
    p("fd.cport", Int, F::FdCport),
    p("fd.sport", Int, F::FdSport),
    p("fd.lport", Int, F::FdLport),
    p("fd.rport", Int, F::FdRport),
    p("fd.l4proto", Str, F::FdL4proto),
    p("fd.sockfamily", Str, F::FdSockfamily),
    p("fd.is_server", Bool, F::FdIsServer),
    p("fd.net", Net, F::FdNet),
    p("fd.cnet", Net, F::FdCnet),
    p("fd.snet", Net, F::FdSnet),
    p("fd.lnet", Net, F::FdLnet),
    p("fd.rnet", Net, F::FdRnet),
    p("fd.cip.name", Str, F::FdCipName),
    p("fd.sip.name", Str, F::FdSipName),
    p("fd.lip.name", Str, F::FdLipName),
    p("fd.rip.name", Str, F::FdRipName),
    a("fd.proto", Str),
    a("fd.cproto", Str),
    a("fd.sproto", Str),
    a("fd.lproto", Str),
    a("fd.rproto", Str),
    a("fd.connected", Bool),
    a("fd.name_changed", Bool),
    a("fd.uid", Str),
    a("fd.containername", Str),
    a("fd.containerdirectory", Str),
    a("fd.dev", Int),
    a("fd.dev.major", Int),
    a("fd.dev.minor", Int),
    a("fd.ino", Int),
    aa("fd.types", Str, Index),
    a("fd.is_upper_layer", Bool),
    a("fd.is_lower_layer", Bool),
    p("fs.path.name", Str, F::FsPathName),
    p("fs.path.nameraw", Str, F::FsPathName),
    p("fs.path.source", Str, F::FsPathSource),
    p("fs.path.sourceraw", Str, F::FsPathSource),
    p("fs.path.target", Str, F::FsPathTarget),
    p("fs.path.targetraw", Str, F::FsPathTarget),
    a("fdlist.nums", Str),
    a("fdlist.names", Str),
    a("fdlist.cips", Str),
    a("fdlist.sips", Str),
    a("fdlist.cports", Str),
    a("fdlist.sports", Str),
    a("syslog.facility.str", Str),
    a("syslog.facility", Int),
    a("syslog.severity.str", Str),
    a("syslog.severity", Int),
    a("syslog.message", Str),
    // Rampart extensions.
    x("evt.kind", Str, F::EvtKind),
    x("evt.region", Str, F::EvtRegion),
    x("proc.euid", Int, F::ProcEuid),
    x("proc.egid", Int, F::ProcEgid),
    x("proc.cap_effective", Int, F::ProcCapEffectiveRaw),
    x("container.cpu_millicores", Int, F::ContainerCpuMillicores),
    x(
        "container.cpu_limit_millicores",
        Int,
        F::ContainerCpuLimitMillicores,
    ),
    x("container.memory_bytes", Int, F::ContainerMemoryBytes),
    x(
        "container.memory_limit_bytes",
        Int,
        F::ContainerMemoryLimitBytes,
    ),
    x("container.pids", Int, F::ContainerPids),
    x("container.pids_limit", Int, F::ContainerPidsLimit),
    x("container.high_cpu_ms", Int, F::ContainerHighCpuMs),
    x("file.sensitive", Bool, F::FileSensitive),
    x("file.new_path", Str, F::FileNewPath),
    x("file.fs_type", Str, F::FileFsType),
    x("file.source", Str, F::FileSource),
    x("net.direction", Str, F::NetDirection),
    x("net.remote_country", Str, F::NetRemoteCountry),
    x("net.remote_name", Str, F::NetRemoteName),
    x("net.remote_name.suffixes", Str, F::NetRemoteNameSuffixes),
    x("dns.query", Str, F::DnsQuery),
    x("dns.query.suffixes", Str, F::DnsQuerySuffixes),
    x("dns.qtype", Str, F::DnsQtype),
    x("dns.rcode", Str, F::DnsRcode),
    x("dns.answer.ip", Ip, F::DnsAnswerIp),
    x("dns.answer.name", Str, F::DnsAnswerName),
    x("dns.server.ip", Ip, F::DnsServerIp),
    x("payload.protocol", Str, F::PayloadProtocol),
    x("payload.method", Str, F::PayloadMethod),
    x("payload.agent", Str, F::PayloadAgent),
    x("payload.user", Str, F::PayloadUser),
    x("payload.keys", Str, F::PayloadKeys),
    x("payload.len", Int, F::PayloadLen),
    x("socket.domain", Str, F::SocketDomain),
    x("socket.type", Str, F::SocketType),
    x("socket.protocol", Int, F::SocketProtocol),
    x("auth.outcome", Str, F::AuthOutcome),
    x("auth.user", Str, F::AuthUser),
    x("auth.method", Str, F::AuthMethod),
    x("auth.src_ip", Ip, F::AuthSrcIp),
    x("auth.src_port", Int, F::AuthSrcPort),
    x("auth.service", Str, F::AuthService),
    x("auth.log_source", Str, F::AuthLogSource),
    x("auth.message", Str, F::AuthMessage),
    x("priv.target_pid", Int, F::PrivTargetPid),
    x("priv.target_name", Str, F::PrivTargetName),
    x("priv.uid", Int, F::PrivUid),
    x("priv.request", Str, F::PrivRequest),
    x("priv.namespaces", Str, F::PrivNamespaces),
    x("priv.cap_effective", Str, F::PrivCapEffective),
    x("exit.code", Int, F::ExitCode),
    x("exit.signal", Int, F::ExitSignal),
    x("exit.core_dumped", Bool, F::ExitCoreDumped),
    x("lifecycle.action", Str, F::LifecycleAction),
    x("lifecycle.exec_command", Str, F::LifecycleExecCommand),
    x("lifecycle.exec_tty", Bool, F::LifecycleExecTty),
    x("lifecycle.exec_user", Str, F::LifecycleExecUser),
    x("lifecycle.exit_code", Int, F::LifecycleExitCode),
    x("sensor.drops", Int, F::SensorDropsTotal),
    x("correlation.count", Int, F::CorrelationCount),
    x("correlation.key", Str, F::CorrelationKey),
];

/// A field a condition or output may name, as listed by [`crate::fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    /// The name (`proc.aname`); fields taking an argument are written `name[...]` in rules.
    pub name: &'static str,
    /// `string`, `number`, `bool`, `ip address`, `ip network` or `argument`.
    pub type_name: &'static str,
    /// Rampart's events carry it. Comparisons on an unavailable field are always false.
    pub available: bool,
    /// A Rampart extension, not a Falco field.
    pub extension: bool,
    /// Takes `[index]`, `[key]` or an argument name.
    pub takes_argument: bool,
}

/// Every field Rampart knows: Falco's (available or not) and Rampart's extensions. Classes
/// Rampart has no source for at all (`k8s.*`, ...) are not enumerated.
pub fn catalogue() -> impl Iterator<Item = FieldInfo> {
    FIELDS.iter().map(|d| FieldInfo {
        name: d.name,
        type_name: d.ty.name(),
        available: d.id.is_some(),
        extension: d.extension,
        takes_argument: d.arg != ArgSpec::None,
    })
}

/// Field classes Rampart has no source for at all: any name in them is a known, absent field.
pub(crate) const ABSENT_CLASSES: &[(&str, &str)] = &[
    ("k8s.", "Kubernetes metadata (Rampart targets Docker hosts)"),
    (
        "k8smeta.",
        "Kubernetes metadata (Rampart targets Docker hosts)",
    ),
    ("mesos.", "Mesos metadata"),
    ("marathon.", "Marathon metadata"),
    ("span.", "tracer spans"),
    ("evtin.", "tracer spans"),
];

/// How a field name resolved.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// A catalogue entry; `arg` is set for `evt.arg.NAME` written with dots.
    Known {
        def: &'static FieldDef,
        dotted_arg: Option<String>,
    },
    /// A field of a class Rampart has no source for.
    AbsentClass,
    Unknown,
}

pub(crate) fn lookup(name: &str) -> Lookup {
    if let Some(def) = FIELDS.iter().find(|d| d.name == name) {
        return Lookup::Known {
            def,
            dotted_arg: None,
        };
    }
    for prefix in ["evt.arg.", "evt.rawarg."] {
        if let Some(arg) = name.strip_prefix(prefix) {
            let base = &prefix[..prefix.len() - 1];
            if let Some(def) = FIELDS.iter().find(|d| d.name == base) {
                return Lookup::Known {
                    def,
                    dotted_arg: Some(arg.to_string()),
                };
            }
        }
    }
    if ABSENT_CLASSES
        .iter()
        .any(|(prefix, _)| name.starts_with(prefix))
    {
        return Lookup::AbsentClass;
    }
    Lookup::Unknown
}

/// The closest catalogue name to a misspelt one, for "did you mean".
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .map(|d| (edit_distance(name, d.name), d.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in FIELDS {
            assert!(seen.insert(d.name), "duplicate {}", d.name);
        }
    }

    #[test]
    fn dotted_event_arguments_resolve_to_evt_arg() {
        match lookup("evt.arg.flags") {
            Lookup::Known { def, dotted_arg } => {
                assert_eq!(def.name, "evt.arg");
                assert_eq!(dotted_arg.as_deref(), Some("flags"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(lookup("k8s.ns.name"), Lookup::AbsentClass));
        assert!(matches!(lookup("proc.nmae"), Lookup::Unknown));
        assert_eq!(suggest("proc.nmae"), Some("proc.name"));
    }

    #[test]
    fn every_field_is_documented_in_its_section() {
        let doc = include_str!("../../../docs/rules.md");
        let ext = doc
            .find("## Rampart extension fields")
            .expect("docs/rules.md has an extension fields section");
        for d in FIELDS {
            let needle = format!("`{}`", d.name);
            let at = doc
                .find(&needle)
                .unwrap_or_else(|| panic!("docs/rules.md does not document {needle}"));
            if d.extension {
                assert!(
                    doc[ext..].contains(&needle),
                    "{needle} is an extension: document it under Rampart extension fields"
                );
            } else {
                assert!(
                    at < ext,
                    "{needle} is a Falco field: document it before the extensions"
                );
            }
        }
        for (prefix, _) in ABSENT_CLASSES {
            assert!(
                doc.contains(&format!("`{prefix}*`")),
                "docs/rules.md: class {prefix}*"
            );
        }
    }
}
