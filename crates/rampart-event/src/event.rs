//! Security events: what happened, to what, by which process, in which container.
//!
//! # JSON form
//! One event is one JSON object: the OCSF header (`class_uid`, `class_name`, `category_uid`,
//! `category_name`, `activity_id`, `activity_name`, `type_uid`, `severity_id`, `time` in
//! milliseconds, `metadata`), then Rampart's fields: `type` (the [`EventKind`]), `time_ns`,
//! `device`, and one object per facet that the kind uses (`process`, `container`, `file`,
//! `network`, `dns`, `privilege`, `socket`, `payload`, `exit`, `lifecycle`, `auth`, `stats`,
//! `resources`, `policy`,
//! `response`, `host_inventory`, `container_inventory`, `image_inventory`, `mesh`). Absent facets
//! are omitted;
//! an event without `container` happened on the host.
//!
//! Deserialising accepts what serialising writes; the OCSF header is recomputed from `type` and
//! ignored on input, so a record cannot contradict itself.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::container::Container;
use crate::inventory::{ContainerInventory, HostInventory, ImageInventory};
use crate::ocsf::{OcsfClass, OCSF_VERSION, PRODUCT_NAME};
use crate::process::Process;
use crate::VERSION;

/// A stable event id: assigned once where the event is produced and kept through queueing,
/// shipping and replay, so that ingesting the same event twice stores it once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct EventId(pub String);

impl EventId {
    /// The id of the `seq`-th event produced by the producer instance `instance` (a random
    /// 64-bit number drawn when the producer starts).
    pub fn new(instance: u64, seq: u64) -> Self {
        EventId(format!("{instance:016x}-{seq:x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host an event comes from (OCSF `device`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub hostname: String,
    /// Jurisdiction tag given at enrollment (`eu-de`, `us-ca`, `sg`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $class:literal, $activity:literal, $activity_name:literal, $falco:literal; )*) => {
        /// What happened. The string form (`process.exec`, ...) is the `type` field of the JSON.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum EventKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The position of this kind in [`EventKind::ALL`] (for per-kind counters kept in
            /// an array).
            pub fn index(&self) -> usize {
                // Declaration order: the discriminants of this field-less enum are 0, 1, ...
                *self as usize
            }

            /// The `type` string (`process.exec`).
            pub fn as_str(&self) -> &'static str {
                match self { $(EventKind::$variant => $name,)* }
            }

            /// OCSF class and activity of this kind.
            pub fn ocsf(&self) -> OcsfClass {
                match self { $(EventKind::$variant => OcsfClass::new($class, $activity, $activity_name),)* }
            }

            /// Falco's `evt.type` for this kind when the event does not name its syscall.
            pub fn falco_type(&self) -> &'static str {
                match self { $(EventKind::$variant => $falco,)* }
            }

            /// Parses the `type` string.
            pub fn from_name(name: &str) -> Option<EventKind> {
                match name { $($name => Some(EventKind::$variant),)* _ => None }
            }
        }
    };
}

event_kinds! {
    /// A process replaced its image (execve, execveat).
    ProcessExec = "process.exec", 1007, 1, "Launch", "execve";
    /// A new process (fork, vfork, clone without CLONE_THREAD).
    ProcessFork = "process.fork", 1007, 99, "Fork", "clone";
    /// A process ended; `exit` has the code or signal.
    ProcessExit = "process.exit", 1007, 2, "Terminate", "procexit";
    /// A file was opened for writing, or a sensitive file was opened at all.
    FileOpen = "file.open", 1001, 14, "Open", "openat";
    FileUnlink = "file.unlink", 1001, 4, "Delete", "unlinkat";
    FileRename = "file.rename", 1001, 5, "Rename", "renameat2";
    FileChmod = "file.chmod", 1001, 6, "Set Attributes", "fchmodat";
    FileChown = "file.chown", 1001, 6, "Set Attributes", "fchownat";
    /// A filesystem was mounted (mount, fsmount, move_mount).
    FileMount = "file.mount", 1001, 12, "Mount", "mount";
    FileUmount = "file.umount", 1001, 13, "Unmount", "umount2";
    /// The root filesystem of a mount namespace was swapped.
    FilePivotRoot = "file.pivot_root", 1001, 99, "Pivot Root", "pivot_root";
    /// An anonymous memory-backed file was created (fileless payloads use it).
    FileMemfd = "file.memfd_create", 1001, 1, "Create", "memfd_create";
    /// An outbound connection attempt (connect).
    NetConnect = "net.connect", 4001, 1, "Open", "connect";
    /// An inbound connection was accepted.
    NetAccept = "net.accept", 4001, 1, "Open", "accept4";
    NetBind = "net.bind", 4001, 99, "Bind", "bind";
    NetListen = "net.listen", 4001, 7, "Listen", "listen";
    /// A raw or packet socket was created (`socket(AF_PACKET, ...)`, `SOCK_RAW`); other sockets
    /// are not reported. `socket` has the domain, type and protocol.
    NetSocket = "net.socket", 4001, 1, "Open", "socket";
    /// The first bytes of an outbound TCP segment that look like a mining protocol's JSON-RPC
    /// request (Stratum's `mining.*`, XMRig's `login`/`submit`/`getjob`/`keepalived`,
    /// `eth_submit*`), whatever the port and the process; `payload` has the request.
    NetPayload = "net.payload", 4001, 6, "Traffic", "payload";
    /// A DNS query left a process.
    DnsQuery = "dns.query", 4003, 1, "Query", "dns";
    /// A DNS response reached a process.
    DnsAnswer = "dns.answer", 4003, 2, "Response", "dns";
    /// setuid, setreuid, setresuid, setfsuid.
    PrivSetuid = "priv.setuid", 1007, 5, "Set User ID", "setuid";
    /// setgid, setregid, setresgid, setfsgid, setgroups.
    PrivSetgid = "priv.setgid", 1007, 99, "Set Group ID", "setgid";
    PrivCapset = "priv.capset", 1007, 99, "Set Capabilities", "capset";
    /// ptrace of another process (attach, seize, poke).
    PrivPtrace = "priv.ptrace", 1007, 4, "Inject", "ptrace";
    PrivUnshare = "priv.unshare", 1007, 99, "Unshare Namespaces", "unshare";
    PrivSetns = "priv.setns", 1007, 99, "Enter Namespace", "setns";
    /// init_module or finit_module.
    PrivModuleLoad = "priv.module_load", 1002, 1, "Load", "finit_module";
    /// The bpf() syscall (program or map creation, attach).
    PrivBpf = "priv.bpf", 1003, 4, "Invoke", "bpf";
    /// io_uring_setup: a ring was created. The opens, connects and reads a ring does are made
    /// by the kernel without the syscalls the sensor hooks, so they are not reported; the
    /// ring's creation is.
    PrivIoUring = "priv.io_uring", 1003, 1, "Create", "io_uring_setup";
    /// A signal sent to another process.
    PrivKill = "priv.kill", 1007, 99, "Signal", "kill";
    ContainerCreate = "container.create", 6002, 1, "Install", "container";
    ContainerStart = "container.start", 6002, 3, "Start", "container";
    /// `docker exec` started a process in a running container.
    ContainerExec = "container.exec", 6002, 99, "Exec", "container";
    ContainerDie = "container.die", 6002, 4, "Stop", "container";
    ContainerOom = "container.oom", 6002, 99, "Out Of Memory", "container";
    ContainerStop = "container.stop", 6002, 4, "Stop", "container";
    ContainerDestroy = "container.destroy", 6002, 2, "Remove", "container";
    /// A login attempt, from an sshd/PAM log line.
    AuthLogin = "auth.login", 3002, 1, "Logon", "auth";
    /// Periodic resource use of a container (CPU, memory, pids) and its limits.
    ContainerStats = "container.stats", 6002, 99, "Resource Usage", "container";
    /// Events lost between the kernel and the agent in the last interval.
    SensorDrops = "sensor.drops", 0, 99, "Drops", "sensor";
    /// An exec policy killed (or refused) a program before it ran; `policy` says which policy,
    /// rule and mechanism. With `policy.action` = `audit` it was only reported.
    PolicyExecDenied = "policy.exec_denied", 1007, 1, "Launch", "policy";
    /// A network policy refused a connection or datagram (or, `audit`, would have).
    PolicyNetDenied = "policy.net_denied", 4001, 5, "Refuse", "policy";
    /// A response action ran (kill, freeze, isolate, stop, forensics, ...): what, when, result.
    ResponseAction = "response.action", 7001, 99, "Respond", "response";
    /// What the host is and which protections it can give (`host_inventory`), sent at agent
    /// start and periodically.
    InventoryHost = "inventory.host", 5001, 2, "Collect", "inventory";
    /// A running container's image, signature state, vulnerability counts and compliance score
    /// (`container_inventory`).
    InventoryContainer = "inventory.container", 5001, 2, "Collect", "inventory";
    /// The packages of an image (`image_inventory`), sent when an agent first sees the image.
    InventoryImage = "inventory.image", 5001, 2, "Collect", "inventory";
    /// A Docker API request judged by the admission plugin (`rampart authz`): `policy` says
    /// the outcome and the rules broken, `auth` who asked, `container` the image.
    AdmissionDecision = "admission.decision", 6003, 99, "Authorize", "authz";
    /// A mesh proxy's periodic report (`mesh`): the services it offers and the use of each
    /// edge (source identity -> service) since its previous report (docs/mesh.md).
    MeshReport = "mesh.report", 4001, 99, "Mesh Report", "mesh";
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One security event. See the module docs for the JSON form.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    /// When it happened, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub kind: EventKind,
    pub device: Arc<Device>,
    /// The syscall that produced the event (`openat`, `execve`), when it came from one.
    pub syscall: Option<Cow<'static, str>>,
    /// The syscall's return value (negative errno on failure), when it came from one.
    pub result: Option<i64>,
    /// `None`: the event happened on the host, outside any container.
    pub container: Option<Arc<Container>>,
    /// The process that did it (for container lifecycle events: none).
    pub process: Option<Arc<Process>>,
    pub file: Option<FileInfo>,
    pub network: Option<NetInfo>,
    pub dns: Option<DnsInfo>,
    pub privilege: Option<PrivilegeInfo>,
    /// `net.socket` events: the socket created.
    pub socket: Option<SocketInfo>,
    /// `net.payload` events: what the segment carried.
    pub payload: Option<PayloadInfo>,
    pub exit: Option<ExitInfo>,
    pub lifecycle: Option<LifecycleInfo>,
    pub auth: Option<AuthInfo>,
    pub stats: Option<SensorStats>,
    pub resources: Option<ResourceInfo>,
    /// `policy.*` events: the policy decision.
    pub policy: Option<PolicyInfo>,
    /// `response.action` events: the action and its outcome.
    pub response: Option<ResponseInfo>,
    /// `inventory.host` events.
    pub host_inventory: Option<Box<HostInventory>>,
    /// `inventory.container` events.
    pub container_inventory: Option<Box<ContainerInventory>>,
    /// `inventory.image` events.
    pub image_inventory: Option<Box<ImageInventory>>,
    /// `mesh.report` events.
    pub mesh: Option<Box<MeshReport>>,
}

impl Event {
    /// An event of `kind` with no facets set.
    pub fn new(id: EventId, time_ns: u64, kind: EventKind, device: Arc<Device>) -> Self {
        Event {
            id,
            time_ns,
            kind,
            device,
            syscall: None,
            result: None,
            container: None,
            process: None,
            file: None,
            network: None,
            dns: None,
            privilege: None,
            socket: None,
            payload: None,
            exit: None,
            lifecycle: None,
            auth: None,
            stats: None,
            resources: None,
            policy: None,
            response: None,
            host_inventory: None,
            container_inventory: None,
            image_inventory: None,
            mesh: None,
        }
    }

    /// Falco's `evt.type`: the syscall name when known, otherwise the kind's usual syscall.
    pub fn falco_type(&self) -> &str {
        self.syscall
            .as_deref()
            .unwrap_or_else(|| self.kind.falco_type())
    }

    /// OCSF `severity_id`: 1 (informational) for observations, 3 (medium) for lost events.
    pub fn severity_id(&self) -> u8 {
        match self.kind {
            EventKind::SensorDrops => match &self.stats {
                Some(s) if s.drops_total > 0 => 3,
                _ => 1,
            },
            _ => 1,
        }
    }
}

/// The metadata object of the JSON.
#[derive(Serialize)]
struct Metadata<'a> {
    uid: &'a EventId,
    version: &'static str,
    product: Product,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let class = self.kind.ocsf();
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("class_uid", &class.class_uid)?;
        m.serialize_entry("class_name", class.class_name)?;
        m.serialize_entry("category_uid", &class.category_uid)?;
        m.serialize_entry("category_name", class.category_name)?;
        m.serialize_entry("activity_id", &class.activity_id)?;
        m.serialize_entry("activity_name", class.activity_name)?;
        m.serialize_entry("type_uid", &class.type_uid())?;
        m.serialize_entry("severity_id", &self.severity_id())?;
        m.serialize_entry("time", &(self.time_ns / 1_000_000))?;
        m.serialize_entry(
            "metadata",
            &Metadata {
                uid: &self.id,
                version: OCSF_VERSION,
                product: Product {
                    name: PRODUCT_NAME,
                    vendor_name: PRODUCT_NAME,
                    version: VERSION,
                },
            },
        )?;
        m.serialize_entry("type", &self.kind)?;
        m.serialize_entry("time_ns", &self.time_ns)?;
        m.serialize_entry("device", &*self.device)?;
        if let Some(v) = &self.syscall {
            m.serialize_entry("syscall", v)?;
        }
        if let Some(v) = &self.result {
            m.serialize_entry("result", v)?;
        }
        if let Some(v) = &self.container {
            m.serialize_entry("container", &**v)?;
        }
        if let Some(v) = &self.process {
            m.serialize_entry("process", &**v)?;
        }
        if let Some(v) = &self.file {
            m.serialize_entry("file", v)?;
        }
        if let Some(v) = &self.network {
            m.serialize_entry("network", v)?;
        }
        if let Some(v) = &self.dns {
            m.serialize_entry("dns", v)?;
        }
        if let Some(v) = &self.privilege {
            m.serialize_entry("privilege", v)?;
        }
        if let Some(v) = &self.socket {
            m.serialize_entry("socket", v)?;
        }
        if let Some(v) = &self.payload {
            m.serialize_entry("payload", v)?;
        }
        if let Some(v) = &self.exit {
            m.serialize_entry("exit", v)?;
        }
        if let Some(v) = &self.lifecycle {
            m.serialize_entry("lifecycle", v)?;
        }
        if let Some(v) = &self.auth {
            m.serialize_entry("auth", v)?;
        }
        if let Some(v) = &self.stats {
            m.serialize_entry("stats", v)?;
        }
        if let Some(v) = &self.resources {
            m.serialize_entry("resources", v)?;
        }
        if let Some(v) = &self.policy {
            m.serialize_entry("policy", v)?;
        }
        if let Some(v) = &self.response {
            m.serialize_entry("response", v)?;
        }
        if let Some(v) = &self.host_inventory {
            m.serialize_entry("host_inventory", v)?;
        }
        if let Some(v) = &self.container_inventory {
            m.serialize_entry("container_inventory", v)?;
        }
        if let Some(v) = &self.image_inventory {
            m.serialize_entry("image_inventory", v)?;
        }
        if let Some(v) = &self.mesh {
            m.serialize_entry("mesh", v)?;
        }
        m.end()
    }
}

/// What deserialising reads; the OCSF header fields are derived from `type` and not read.
#[derive(Deserialize)]
struct EventWire {
    metadata: WireMetadata,
    #[serde(rename = "type")]
    kind: EventKind,
    time_ns: u64,
    #[serde(default)]
    device: Arc<Device>,
    #[serde(default)]
    syscall: Option<Cow<'static, str>>,
    #[serde(default)]
    result: Option<i64>,
    #[serde(default)]
    container: Option<Arc<Container>>,
    #[serde(default)]
    process: Option<Arc<Process>>,
    #[serde(default)]
    file: Option<FileInfo>,
    #[serde(default)]
    network: Option<NetInfo>,
    #[serde(default)]
    dns: Option<DnsInfo>,
    #[serde(default)]
    privilege: Option<PrivilegeInfo>,
    #[serde(default)]
    socket: Option<SocketInfo>,
    #[serde(default)]
    payload: Option<PayloadInfo>,
    #[serde(default)]
    exit: Option<ExitInfo>,
    #[serde(default)]
    lifecycle: Option<LifecycleInfo>,
    #[serde(default)]
    auth: Option<AuthInfo>,
    #[serde(default)]
    stats: Option<SensorStats>,
    #[serde(default)]
    resources: Option<ResourceInfo>,
    #[serde(default)]
    policy: Option<PolicyInfo>,
    #[serde(default)]
    response: Option<ResponseInfo>,
    #[serde(default)]
    host_inventory: Option<Box<HostInventory>>,
    #[serde(default)]
    container_inventory: Option<Box<ContainerInventory>>,
    #[serde(default)]
    image_inventory: Option<Box<ImageInventory>>,
    #[serde(default)]
    mesh: Option<Box<MeshReport>>,
}

#[derive(Deserialize)]
struct WireMetadata {
    uid: EventId,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = EventWire::deserialize(deserializer)?;
        Ok(Event {
            id: w.metadata.uid,
            time_ns: w.time_ns,
            kind: w.kind,
            device: w.device,
            syscall: w.syscall,
            result: w.result,
            container: w.container,
            process: w.process,
            file: w.file,
            network: w.network,
            dns: w.dns,
            privilege: w.privilege,
            socket: w.socket,
            payload: w.payload,
            exit: w.exit,
            lifecycle: w.lifecycle,
            auth: w.auth,
            stats: w.stats,
            resources: w.resources,
            policy: w.policy,
            response: w.response,
            host_inventory: w.host_inventory,
            container_inventory: w.container_inventory,
            image_inventory: w.image_inventory,
            mesh: w.mesh,
        })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The file an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Absolute path in the process's view of the filesystem (the container's root for a
    /// container). For a rename, the old path.
    pub path: String,
    /// For a rename: the new path. For a mount: the mount point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_path: Option<String>,
    /// open(2) flags (O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0o100, O_TRUNC = 0o1000, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    /// Mode: the new mode of a chmod, the creation mode of an open with O_CREAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// New owner of a chown (`None`: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// New group of a chown (`None`: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The file descriptor the open returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    /// Mount source device or filesystem (mount events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Filesystem type (mount events, `memfd` for memfd_create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    /// The path matched the agent's list of sensitive files.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
}

impl FileInfo {
    /// A file event about `path` with nothing else known.
    pub fn at(path: impl Into<String>) -> Self {
        FileInfo {
            path: path.into(),
            ..FileInfo::default()
        }
    }

    /// The open was for writing (O_WRONLY, O_RDWR, O_CREAT or O_TRUNC).
    pub fn is_write_open(&self) -> bool {
        self.flags
            .is_some_and(|f| f & (0o1 | 0o2 | 0o100 | 0o1000) != 0)
    }

    /// The new mode sets the setuid or setgid bit.
    pub fn sets_suid_or_sgid(&self) -> bool {
        self.mode.is_some_and(|m| m & 0o6000 != 0)
    }
}

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

/// Which way a connection goes, seen from the process that made the syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetDirection {
    Outbound,
    Inbound,
    Listen,
    Bind,
}

/// A network operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInfo {
    /// `tcp`, `udp`, `raw`, `unix`, or the protocol number as text.
    pub protocol: String,
    /// `inet`, `inet6`, `unix`, `netlink`, `packet`, or the family number as text.
    pub family: String,
    pub direction: NetDirection,
    /// Source: for an outbound connection the local end; for an inbound one, the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<Endpoint>,
    /// Destination: for an outbound connection the peer; for an inbound one, the local end.
    /// For bind and listen, the local address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<Endpoint>,
    /// Unix socket path (family `unix`); `@name` for the abstract namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_path: Option<String>,
    /// Names the sensor saw resolved to the remote address, from DNS answers in the same
    /// container (most recent first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_names: Vec<String>,
    /// Country of the remote address (ISO 3166-1 alpha-2), when a GeoIP database is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_country: Option<String>,
}

impl NetInfo {
    /// The local end: `src` for outbound, `dst` otherwise.
    pub fn local(&self) -> Option<&Endpoint> {
        match self.direction {
            NetDirection::Outbound => self.src.as_ref(),
            _ => self.dst.as_ref(),
        }
    }

    /// The remote end: `dst` for outbound, `src` for inbound, none for bind and listen.
    pub fn remote(&self) -> Option<&Endpoint> {
        match self.direction {
            NetDirection::Outbound => self.dst.as_ref(),
            NetDirection::Inbound => self.src.as_ref(),
            NetDirection::Listen | NetDirection::Bind => None,
        }
    }
}

/// A socket a process created (`net.socket`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketInfo {
    /// `AF_PACKET`, `AF_INET`, `AF_INET6`, ..., or the number as text.
    pub domain: String,
    /// `SOCK_RAW`, `SOCK_DGRAM`, `SOCK_PACKET`, ..., or the number as text (flags removed).
    pub sock_type: String,
    /// The protocol argument: an IP protocol number for `AF_INET`/`AF_INET6` (1: ICMP, 58:
    /// ICMPv6, 255: IPPROTO_RAW), an Ethernet protocol in network byte order for `AF_PACKET`.
    pub protocol: u32,
}

/// An application request seen in the first bytes of an outbound TCP segment (`net.payload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadInfo {
    /// `jsonrpc`: a JSON object with a `method`.
    pub protocol: String,
    /// The request's `method` (`mining.subscribe`, `login`, ...), when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The client's self-description: `params.agent` of a `login` (`XMRig/6.21.0`), the first
    /// parameter of `mining.subscribe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The account: `params.login` of a `login`, the first parameter of `mining.authorize` or
    /// `eth_submitLogin` (for a pool, the wallet address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The names of the keys of `params` when it is an object (`id`, `job_id`, `nonce`,
    /// `result` for a share submission). Values are not kept: a request can carry credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Bytes of payload in the segment (the capture may be shorter).
    pub len: u32,
}

/// A DNS message seen on a process's socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsInfo {
    /// Transaction id.
    pub id: u16,
    /// The name asked for, without the trailing dot.
    pub query: String,
    /// `A`, `AAAA`, `TXT`, ...
    pub qtype: String,
    /// Response code (`NOERROR`, `NXDOMAIN`, ...); responses only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<DnsAnswer>,
    /// The resolver the query went to (or the response came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Endpoint>,
}

/// One resource record of a DNS answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAnswer {
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, ...
    pub rtype: String,
    /// The record data as text: an address, a name.
    pub data: String,
    pub ttl: u32,
}

/// Arguments of a privilege-changing or escape-indicating syscall. Only the fields the syscall
/// has are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivilegeInfo {
    /// Target process of ptrace, kill, setns (by pidfd), in the host pid namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// Target process's name, when the target is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// Requested real/effective/saved user ids (`None`: left unchanged, i.e. -1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sgid: Option<u32>,
    /// capset: the new effective, permitted and inheritable sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_effective: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_permitted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_inheritable: Option<u64>,
    /// Syscall flags: unshare/setns CLONE_NEW* flags, memfd_create flags, mount flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    /// Namespace types named by `flags` (`mnt`, `pid`, `net`, `user`, `uts`, `ipc`, `cgroup`, `time`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// ptrace request, bpf command, signal number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<i64>,
    /// Human name of `request` (`PTRACE_ATTACH`, `BPF_PROG_LOAD`, `SIGKILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_name: Option<String>,
    /// setns: inode number of the namespace entered (compare with `/proc/1/ns/*` to tell the
    /// host's namespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_inode: Option<u64>,
    /// Module path (finit_module) or other object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit status (0-255) when the process exited; 0 when a signal ended it.
    pub code: i32,
    /// The signal that ended it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub core_dumped: bool,
}

/// A container lifecycle event from the runtime's API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleInfo {
    /// The runtime's action name (`start`, `die`, `exec_start: sh -c id`).
    pub action: String,
    /// Exit code of a dying container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The command of a `docker exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_command: Option<String>,
    /// The exec runs with a terminal (`docker exec -t`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_tty: Option<bool>,
    /// The exec runs as this user (`docker exec -u`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_user: Option<String>,
}

/// Whether a login worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthOutcome {
    Success,
    Failure,
}

/// A login attempt parsed from a log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    pub outcome: AuthOutcome,
    /// The account name tried (may not exist: `invalid user`).
    pub user: String,
    /// `password`, `publickey`, `keyboard-interactive`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// The service that logged it (`sshd`, `su`, `sudo`, ...).
    pub service: String,
    /// Where the line came from: a file path, or `docker:<container>` for container output.
    pub log_source: String,
    /// The log line itself.
    pub message: String,
}

/// Sensor health for one reporting interval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorStats {
    /// Events received from the kernel in the interval.
    pub events: u64,
    /// Events lost in the interval, all CPUs and causes.
    pub drops_total: u64,
    /// Ring-buffer drops per CPU in the interval (index = CPU number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drops_per_cpu: Vec<u64>,
    /// Events dropped in user space because a downstream queue was full.
    #[serde(default)]
    pub drops_userspace: u64,
    /// Length of the interval in milliseconds.
    pub interval_ms: u64,
    /// How events are collected (`ebpf`, `proc-connector`).
    pub mechanism: String,
}

/// Resource use of a container over one sampling interval, and its limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceInfo {
    /// CPU used in the interval, in thousandths of a core (1000 = one core fully busy).
    pub cpu_millicores: u64,
    /// CPU limit in thousandths of a core; `None`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_millicores: Option<u64>,
    pub memory_bytes: u64,
    /// `None`: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    /// For how long (ms) CPU use has stayed above 80% of a core without interruption.
    #[serde(default)]
    pub high_cpu_ms: u64,
    pub interval_ms: u64,
    /// Bytes read from block devices since the cgroup was created (all devices summed).
    /// Absent when the cgroup's IO counters are not readable. On cgroup v1 only direct IO and
    /// reads are charged to the container: buffered writes flushed later by the kernel's
    /// writeback are charged to the root cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_bytes: Option<u64>,
    /// Bytes written to block devices since the cgroup was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_write_bytes: Option<u64>,
    /// Read operations since the cgroup was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_ops: Option<u64>,
    /// Write operations since the cgroup was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_write_ops: Option<u64>,
    /// Bytes read per second over the interval (absent on a container's first sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_bps: Option<u64>,
    /// Bytes written per second over the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_write_bps: Option<u64>,
    /// Read operations per second over the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_iops: Option<u64>,
    /// Write operations per second over the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_write_iops: Option<u64>,
}

/// What one mesh proxy reports (`mesh.report`): its services, and per edge the connections
/// its inbound side allowed and denied since the previous report. The reporting host is the
/// record's `device.hostname` (at the server: the host the sender enrolled as).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshReport {
    /// The services this host offers to the mesh.
    #[serde(default)]
    pub services: Vec<MeshService>,
    /// Edges used since the previous report (counts are that interval's, not totals).
    #[serde(default)]
    pub edges: Vec<MeshEdge>,
}

/// A service a host offers to the mesh (`name` is the container's name, the last segment of
/// its identity).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshService {
    pub name: String,
    pub port: u16,
}

/// The use of one edge over one report interval, as the destination's inbound proxy saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshEdge {
    /// The verified client identity (`spiffe://<fleet>/<host>/<container>`).
    pub source_identity: String,
    /// The service's identity on the reporting host.
    pub destination_identity: String,
    pub port: u16,
    /// Connections the policy let through in the interval.
    pub allowed: u64,
    /// Connections refused (policy or unknown service) in the interval.
    pub denied: u64,
    /// Nanoseconds since the Unix epoch of the edge's last connection.
    pub last_ns: u64,
}

/// A prevention decision (`policy.exec_denied`, `policy.net_denied`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The policy's name (its file's `name:`).
    pub policy: String,
    /// The selector whose rules applied to the container.
    pub selector: String,
    /// The rule that decided, as written in the policy, or `default` when none matched.
    pub rule: String,
    /// `deny` (enforced) or `audit` (reported only).
    pub action: String,
    /// What stopped it: `bpf_send_signal@tp_btf/sched_process_exec`,
    /// `bpf_lsm/bprm_check_security`, `cgroup/connect4`, `cgroup_skb/ingress`, `user space`, ...
    pub mechanism: String,
    /// `rule`, `default`, `isolated`, or `changed` (a file modified after it was hashed).
    pub reason: String,
    /// SHA-256 of the executable, when a hash decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The mesh identity of the side that opened the connection
    /// (`spiffe://<fleet>/<host>/<container>`), when the mesh proxy decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    /// The mesh identity of the service it asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_identity: Option<String>,
}

/// One response action and its outcome (`response.action`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseInfo {
    /// `kill`, `kill_tree`, `freeze`, `thaw`, `isolate`, `release`, `stop`, `forensics`.
    pub action: String,
    /// `ok`, `failed`, `dry_run`, `skipped` or `rate_limited`.
    pub outcome: String,
    /// What happened: the error, the bundle's path, the processes killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The playbook that ran it; `None` for a command or a rule's own `actions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    /// The incident (one playbook run) the action belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// The alert that triggered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<EventId>,
    /// The rule of that alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The process acted on (kill), host pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// When the action started, nanoseconds since the Unix epoch (`time_ns` is when it ended).
    pub started_ns: u64,
    /// The forensic bundle a `forensics` action wrote, and what became of its upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceInfo>,
}

/// A forensic bundle and its copy on the server (`response.evidence`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceInfo {
    /// The bundle on the host.
    pub path: String,
    /// SHA-256 of the bundle's bytes, hex.
    pub sha256: String,
    pub size: u64,
    /// The server's receipt: the SHA-256 it computed of what it stored (equal to `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_sha256: Option<String>,
    /// When the server had the whole bundle (its clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_ns: Option<u64>,
    /// Why the bundle is not on the server (after every retry), or why no upload was tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerRuntime;

    #[test]
    fn a_kind_index_is_its_position_in_all() {
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{}", k.as_str());
        }
    }

    fn sample() -> Event {
        let mut e = Event::new(
            EventId::new(0xabc, 7),
            1_700_000_000_123_456_789,
            EventKind::FileOpen,
            Arc::new(Device {
                hostname: "vps1".into(),
                region: Some("eu-de".into()),
            }),
        );
        e.syscall = Some("openat".into());
        e.result = Some(3);
        e.container = Some(Arc::new(Container::unnamed(
            "f".repeat(64),
            ContainerRuntime::Docker,
        )));
        e.process = Some(Arc::new(Process {
            pid: 42,
            name: "cat".into(),
            args: vec!["cat".into(), "/etc/shadow".into()],
            ..Process::default()
        }));
        e.file = Some(FileInfo {
            flags: Some(0),
            sensitive: true,
            ..FileInfo::at("/etc/shadow")
        });
        e
    }

    #[test]
    fn json_has_ocsf_header_and_round_trips() {
        let e = sample();
        let v = serde_json::to_value(&e).expect("serialise");
        assert_eq!(v["class_uid"], 1001);
        assert_eq!(v["activity_id"], 14);
        assert_eq!(v["type_uid"], 100_114);
        assert_eq!(v["category_uid"], 1);
        assert_eq!(v["time"], 1_700_000_000_123u64);
        assert_eq!(v["metadata"]["uid"], "0000000000000abc-7");
        assert_eq!(v["metadata"]["product"]["name"], "Rampart");
        assert_eq!(v["type"], "file.open");
        assert_eq!(v["file"]["path"], "/etc/shadow");
        assert!(v.get("network").is_none());
        let back: Event = serde_json::from_value(v).expect("deserialise");
        assert_eq!(back, e);
    }

    #[test]
    fn resources_io_fields_are_additive() {
        // An event of an agent without IO counters reads, and writes back without them.
        let old = r#"{"cpu_millicores":5,"memory_bytes":1,"pids":1,"interval_ms":10000}"#;
        let r: ResourceInfo = serde_json::from_str(old).expect("old shape");
        assert_eq!(r.io_write_bytes, None);
        let v = serde_json::to_value(&r).expect("json");
        assert!(
            v.get("io_write_bytes").is_none() && v.get("io_read_bps").is_none(),
            "{v}"
        );
        let r = ResourceInfo {
            io_write_bytes: Some(52_428_800),
            io_write_bps: Some(0),
            ..r
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["io_write_bytes"], 52_428_800);
        assert_eq!(v["io_write_bps"], 0);
        assert_eq!(serde_json::from_value::<ResourceInfo>(v).expect("back"), r);
    }

    #[test]
    fn every_kind_has_a_unique_name_that_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for k in EventKind::ALL {
            assert!(seen.insert(k.as_str()), "duplicate {}", k);
            assert_eq!(EventKind::from_name(k.as_str()), Some(*k));
        }
    }

    #[test]
    fn write_open_and_setuid_mode_are_recognised() {
        let f = FileInfo {
            flags: Some(0o101),
            mode: Some(0o4755),
            ..FileInfo::at("/x")
        };
        assert!(f.is_write_open());
        assert!(f.sets_suid_or_sgid());
        assert!(!FileInfo {
            flags: Some(0o400000),
            ..FileInfo::at("/x")
        }
        .is_write_open());
    }

    #[test]
    fn unknown_type_is_an_error_naming_it() {
        let err = serde_json::from_str::<Event>(
            r#"{"metadata":{"uid":"x"},"type":"bogus.kind","time_ns":1}"#,
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("bogus.kind"), "{err}");
    }
}
