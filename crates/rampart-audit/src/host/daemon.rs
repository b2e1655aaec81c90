//! The Docker daemon's configuration: `/etc/docker/daemon.json`, dockerd's command line, what
//! the running daemon reports (`docker info`, the default bridge network) and the TCP sockets
//! dockerd actually listens on. CIS sections 2 and 3 are checked against these.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rampart_container::models::{LocalNodeState, SystemInfo};
use serde::Serialize;
use serde_json::Value;

use crate::check::*;
use crate::error::AuditError;

/// Default location of daemon.json.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// The daemon's configuration from its two sources.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonConfig {
    /// daemon.json path.
    pub path: PathBuf,
    /// Its content; `None` when the file does not exist.
    pub json: Option<serde_json::Map<String, Value>>,
    /// dockerd's argv (without argv[0]); empty when dockerd was not found.
    pub cmdline: Vec<String>,
    /// dockerd's pid, when found.
    pub pid: Option<u32>,
}

impl DaemonConfig {
    /// Reads daemon.json at `path` (absent is fine; malformed is an error naming line and
    /// column) and dockerd's command line from `proc_root`.
    pub fn load(path: &Path, proc_root: &Path) -> Result<DaemonConfig, AuditError> {
        let json = match fs::read_to_string(path) {
            Ok(text) => Some(parse_daemon_json(path, &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(AuditError::io(path, e)),
        };
        let pid = dockerd_pid(proc_root);
        let cmdline = pid
            .and_then(|p| fs::read(proc_root.join(p.to_string()).join("cmdline")).ok())
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .skip(1)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Ok(DaemonConfig {
            path: path.to_path_buf(),
            json,
            cmdline,
            pid,
        })
    }

    /// A daemon.json key.
    pub fn key(&self, k: &str) -> Option<&Value> {
        self.json.as_ref()?.get(k)
    }

    /// The values of command-line flag `--name` (`--name=v`, `--name v`; bare boolean flags
    /// give `"true"`). `short` is the one-letter alias, if any.
    pub fn flag(&self, name: &str, short: Option<&str>) -> Vec<String> {
        let long = format!("--{name}");
        let short = short.map(|s| format!("-{s}"));
        let mut out = Vec::new();
        let mut it = self.cmdline.iter().peekable();
        while let Some(a) = it.next() {
            let matches_flag = |f: &str| a == f || a.starts_with(&format!("{f}="));
            let hit = matches_flag(&long) || short.as_deref().is_some_and(matches_flag);
            if !hit {
                continue;
            }
            if let Some((_, v)) = a.split_once('=') {
                out.push(v.to_string());
            } else if let Some(next) = it.peek().filter(|n| !n.starts_with('-')) {
                out.push((*next).clone());
                it.next();
            } else {
                out.push("true".into());
            }
        }
        out
    }

    /// A boolean setting from daemon.json `key` or flag `--flag` (the flag wins, as dockerd
    /// refuses to start when both are given with different values).
    pub fn bool_setting(&self, key: &str, flag: &str) -> Option<bool> {
        if let Some(v) = self.flag(flag, None).last() {
            return Some(v != "false");
        }
        self.key(key).and_then(Value::as_bool)
    }

    /// A string setting from daemon.json `key` or flag `--flag`.
    pub fn str_setting(&self, key: &str, flag: &str, short: Option<&str>) -> Option<String> {
        if let Some(v) = self.flag(flag, short).last() {
            return Some(v.clone());
        }
        self.key(key).and_then(Value::as_str).map(str::to_string)
    }

    /// Every `hosts` entry and `-H` flag.
    pub fn hosts(&self) -> Vec<String> {
        let mut h = self.flag("host", Some("H"));
        if let Some(Value::Array(a)) = self.key("hosts") {
            h.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string)));
        }
        h
    }

    /// Where a setting came from, for evidence.
    fn source(&self, key: &str, flag: &str) -> String {
        if !self.flag(flag, None).is_empty() {
            format!("dockerd --{flag}")
        } else if self.key(key).is_some() {
            format!("{} \"{key}\"", self.path.display())
        } else {
            "not set".into()
        }
    }
}

/// Parses daemon.json; the error names the file, line and column.
pub fn parse_daemon_json(
    path: &Path,
    text: &str,
) -> Result<serde_json::Map<String, Value>, AuditError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AuditError::Json {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            message: "daemon.json must be a JSON object".into(),
        }),
        Err(e) => Err(AuditError::json(path, &e)),
    }
}

fn dockerd_pid(proc_root: &Path) -> Option<u32> {
    for f in ["/var/run/docker.pid", "/run/docker.pid"] {
        if let Some(pid) = fs::read_to_string(f)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
                .is_ok_and(|c| c.trim() == "dockerd")
            {
                return Some(pid);
            }
        }
    }
    fs::read_dir(proc_root).ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (fs::read_to_string(e.path().join("comm")).ok()?.trim() == "dockerd").then_some(pid)
    })
}

/// TCP sockets process `pid` listens on (`addr:port`), from its fds and /proc/PID/net/tcp{,6}.
pub fn tcp_listeners(proc_root: &Path, pid: u32) -> Vec<String> {
    let dir = proc_root.join(pid.to_string());
    let inodes: BTreeSet<String> = fs::read_dir(dir.join("fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    l.to_str()
                        .and_then(|s| s.strip_prefix("socket:["))
                        .and_then(|s| s.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for (file, v6) in [("net/tcp", false), ("net/tcp6", true)] {
        let Ok(t) = fs::read_to_string(dir.join(file)) else {
            continue;
        };
        for l in t.lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" || !inodes.contains(cols[9]) {
                continue;
            }
            if let Some(a) = decode_addr(cols[1], v6) {
                out.push(a);
            }
        }
    }
    out.sort();
    out
}

/// `0100007F:0CEB` -> `127.0.0.1:3307` (and the IPv6 form).
fn decode_addr(s: &str, v6: bool) -> Option<String> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !v6 {
        let v = u32::from_str_radix(ip, 16).ok()?;
        let ip = std::net::Ipv4Addr::from(v.to_le_bytes());
        return Some(format!("{ip}:{port}"));
    }
    if ip.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let w = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    Some(format!("[{}]:{port}", std::net::Ipv6Addr::from(bytes)))
}

/// What the running daemon reports, for the checks (a subset of `docker info` and the
/// default bridge network).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonFacts {
    pub info: Option<SystemInfo>,
    /// Options of the default `bridge` network (`com.docker.network.bridge.enable_icc`).
    pub bridge_options: Option<std::collections::HashMap<String, String>>,
    /// TCP sockets dockerd listens on (measured).
    pub tcp_listeners: Vec<String>,
    /// Whether any docker-proxy process runs (the userland proxy in use).
    pub docker_proxy_running: bool,
}

impl DaemonFacts {
    fn security_options(&self) -> Vec<String> {
        self.info
            .as_ref()
            .and_then(|i| i.security_options.clone())
            .unwrap_or_default()
    }

    /// `name=userns` is among the daemon's security options.
    pub fn userns_remap(&self) -> Option<bool> {
        self.info.as_ref()?;
        Some(self.security_options().iter().any(|o| o == "name=userns"))
    }
}

/// True when a `docker-proxy` process runs.
pub fn docker_proxy_running(proc_root: &Path) -> bool {
    fs::read_dir(proc_root)
        .map(|d| {
            d.flatten().any(|e| {
                fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "docker-proxy")
            })
        })
        .unwrap_or(false)
}

/// CIS 2.9 on its own: the running daemon decides when it answered; the configuration
/// otherwise (or to explain a difference).
pub fn userns_check(cfg: &DaemonConfig, facts: &DaemonFacts) -> Outcome {
    let configured = cfg.str_setting("userns-remap", "userns-remap", None);
    let cfg_ev = match &configured {
        Some(v) => format!(
            "userns-remap {v:?} ({})",
            cfg.source("userns-remap", "userns-remap")
        ),
        None => "userns-remap not configured".to_string(),
    };
    match facts.userns_remap() {
        Some(true) => D_2_9.pass(format!("docker info security options include name=userns; {cfg_ev}")),
        Some(false) if configured.is_some() => D_2_9.fail(format!(
            "{cfg_ev}, but the running daemon does not remap (no name=userns in docker info): restart dockerd"
        )),
        Some(false) => D_2_9.fail(format!("docker info security options lack name=userns; {cfg_ev}")),
        None => D_2_9.check(
            configured.as_deref().is_some_and(|v| !v.is_empty()),
            format!("{cfg_ev} (daemon not reachable: from configuration only)"),
        ),
    }
}

/// CIS section 2 and 3 checks.
pub fn checks(cfg: &DaemonConfig, facts: &DaemonFacts) -> Vec<Outcome> {
    let mut out = Vec::new();
    let info = facts.info.clone().unwrap_or_default();
    let have_info = facts.info.is_some();
    let secopts = facts.security_options();

    out.push(if secopts.iter().any(|o| o == "name=rootless") {
        D_2_1.pass("docker info security options include name=rootless")
    } else {
        D_2_1.warn(format!(
            "dockerd runs as root (security options: {})",
            if have_info {
                secopts.join(", ")
            } else {
                "daemon not reachable".into()
            }
        ))
    });

    // 2.2 icc, measured on the default bridge.
    let icc_opt = facts
        .bridge_options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.enable_icc").cloned());
    let icc_cfg = cfg.bool_setting("icc", "icc");
    out.push(match icc_opt.as_deref() {
        Some(v) => D_2_2.check(
            v == "false",
            format!(
                "bridge network com.docker.network.bridge.enable_icc={v}; icc {}",
                cfg.source("icc", "icc")
            ),
        ),
        None => D_2_2.check(
            icc_cfg == Some(false),
            format!(
                "default bridge not inspected; icc={:?} ({})",
                icc_cfg,
                cfg.source("icc", "icc")
            ),
        ),
    });

    let level = cfg.str_setting("log-level", "log-level", Some("l"));
    out.push(D_2_3.check(
        level.as_deref().is_none_or(|l| l == "info"),
        format!(
            "log-level {} ({})",
            level.as_deref().unwrap_or("info (default)"),
            cfg.source("log-level", "log-level")
        ),
    ));

    let ipt = cfg.bool_setting("iptables", "iptables");
    out.push(D_2_4.check(
        ipt != Some(false),
        format!(
            "iptables {} ({})",
            ipt.map_or("true (default)".into(), |b| b.to_string()),
            cfg.source("iptables", "iptables")
        ),
    ));

    let mut insecure: Vec<String> = Vec::new();
    if let Some(rc) = &info.registry_config {
        for (name, idx) in rc.index_configs.clone().unwrap_or_default() {
            if idx.secure == Some(false) {
                insecure.push(name);
            }
        }
        for cidr in rc.insecure_registry_cidrs.clone().unwrap_or_default() {
            if cidr != "127.0.0.0/8" && cidr != "::1/128" {
                insecure.push(cidr);
            }
        }
    }
    if let Some(Value::Array(a)) = cfg.key("insecure-registries") {
        insecure.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    insecure.extend(cfg.flag("insecure-registry", None));
    insecure.sort();
    insecure.dedup();
    out.push(D_2_5.check(
        insecure.is_empty(),
        if insecure.is_empty() {
            "no insecure registry besides loopback".to_string()
        } else {
            format!("insecure registries: {}", insecure.join(", "))
        },
    ));

    let driver = info.driver.clone().unwrap_or_default();
    out.push(if have_info {
        D_2_6.check(driver != "aufs", format!("storage driver {driver}"))
    } else {
        D_2_6.warn("daemon not reachable")
    });

    // 2.7 TLS on TCP, from the configuration and the sockets dockerd really listens on.
    let tcp_hosts: Vec<String> = cfg
        .hosts()
        .into_iter()
        .filter(|h| h.starts_with("tcp://"))
        .collect();
    let tlsverify = cfg.bool_setting("tlsverify", "tlsverify") == Some(true);
    let tls_files = ["tlscacert", "tlscert", "tlskey"]
        .iter()
        .all(|k| cfg.str_setting(k, k, None).is_some());
    let on_tcp = !tcp_hosts.is_empty() || !facts.tcp_listeners.is_empty();
    out.push(if !on_tcp {
        D_2_7.pass("dockerd listens on no TCP socket (measured from its file descriptors) and no tcp:// host is configured")
    } else {
        D_2_7.check(
            tlsverify && tls_files,
            format!(
                "configured TCP hosts: [{}]; listening TCP sockets: [{}]; tlsverify {}; tlscacert/tlscert/tlskey {}",
                tcp_hosts.join(", "),
                facts.tcp_listeners.join(", "),
                tlsverify,
                if tls_files { "set" } else { "missing" }
            ),
        )
    });

    let ulimits =
        cfg.key("default-ulimits").is_some() || !cfg.flag("default-ulimit", None).is_empty();
    out.push(D_2_8.check(
        ulimits,
        if ulimits {
            format!(
                "default ulimits set ({})",
                cfg.source("default-ulimits", "default-ulimit")
            )
        } else {
            "no default-ulimits".into()
        },
    ));

    out.push(userns_check(cfg, facts));

    let parent = cfg.str_setting("cgroup-parent", "cgroup-parent", None);
    out.push(match &parent {
        Some(p) => D_2_10.warn(format!("cgroup-parent {p:?}: confirm it is intended")),
        None => D_2_10.pass("no cgroup-parent: containers use Docker's default cgroup"),
    });

    let mut storage_opts = cfg.flag("storage-opt", None);
    if let Some(Value::Array(a)) = cfg.key("storage-opts") {
        storage_opts.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    let basesize = storage_opts.iter().any(|o| o.contains("dm.basesize"));
    out.push(if basesize {
        D_2_11.warn(format!(
            "storage options {storage_opts:?} change dm.basesize"
        ))
    } else {
        D_2_11.pass("dm.basesize not changed")
    });

    let authz = info
        .plugins
        .as_ref()
        .and_then(|p| p.authorization.clone())
        .unwrap_or_default();
    out.push(if have_info {
        D_2_12.check(
            !authz.is_empty(),
            if authz.is_empty() {
                "no authorization plugin".to_string()
            } else {
                format!("authorization plugins: {}", authz.join(", "))
            },
        )
    } else {
        D_2_12.warn("daemon not reachable")
    });

    let log_driver = info.logging_driver.clone().unwrap_or_default();
    out.push(if have_info {
        D_2_13.check(
            !matches!(log_driver.as_str(), "json-file" | "local" | "none" | ""),
            format!("logging driver {log_driver}"),
        )
    } else {
        D_2_13.warn("daemon not reachable")
    });

    let nnp = cfg.bool_setting("no-new-privileges", "no-new-privileges") == Some(true);
    out.push(D_2_14.check(
        nnp,
        format!(
            "no-new-privileges {} ({})",
            nnp,
            cfg.source("no-new-privileges", "no-new-privileges")
        ),
    ));

    out.push(if have_info {
        D_2_15.check(
            info.live_restore_enabled == Some(true),
            format!(
                "docker info LiveRestoreEnabled={}",
                info.live_restore_enabled.unwrap_or(false)
            ),
        )
    } else {
        D_2_15.warn("daemon not reachable")
    });

    let proxy = cfg.bool_setting("userland-proxy", "userland-proxy");
    out.push(D_2_16.check(
        proxy == Some(false),
        format!(
            "userland-proxy {} ({}); docker-proxy processes {}",
            proxy.map_or("true (default)".into(), |b| b.to_string()),
            cfg.source("userland-proxy", "userland-proxy"),
            if facts.docker_proxy_running {
                "running"
            } else {
                "not running"
            }
        ),
    ));

    let seccomp = secopts.iter().find(|o| o.starts_with("name=seccomp"));
    out.push(match seccomp {
        _ if !have_info => D_2_17.warn("daemon not reachable"),
        None => D_2_17
            .fail("docker info has no seccomp security option: containers run without seccomp"),
        Some(o) if o.contains("profile=unconfined") => {
            D_2_17.fail(format!("{o}: the daemon-wide profile is unconfined"))
        }
        Some(o) => D_2_17.pass(o.clone()),
    });

    out.push(if have_info {
        D_2_18.check(
            info.experimental_build != Some(true),
            format!(
                "docker info ExperimentalBuild={}",
                info.experimental_build.unwrap_or(false)
            ),
        )
    } else {
        D_2_18.warn("daemon not reachable")
    });

    // BuildKit's entitlements travel over /grpc, where an authorization plugin cannot read
    // them: the daemon's configuration is what bounds them.
    let entitlement = |k: &str| {
        cfg.key("builder")
            .and_then(|b| b.get("entitlements"))
            .and_then(|e| e.get(k))
            .and_then(Value::as_bool)
    };
    let insecure_flag = cfg
        .flag("allow-insecure-entitlement", None)
        .iter()
        .any(|v| v.split(',').any(|x| x.trim() == "security.insecure"));
    let insecure = entitlement("security-insecure") == Some(true) || insecure_flag;
    let network_host = entitlement("network-host") != Some(false);
    out.push(D_BUILDKIT_INSECURE.check(
        !insecure,
        format!(
            "security.insecure {} ({}); network.host {} (builder.entitlements.network-host{})",
            if insecure { "granted" } else { "not granted" },
            if insecure_flag {
                "--allow-insecure-entitlement"
            } else {
                "builder.entitlements.security-insecure"
            },
            if network_host {
                "granted"
            } else {
                "not granted"
            },
            if network_host {
                "; false to refuse RUN --network=host over /grpc"
            } else {
                ""
            }
        ),
    ));

    // Section 3: ownership and permissions.
    out.extend(file_checks(&[
        (
            &D_3_5,
            &D_3_6,
            Path::new("/etc/docker"),
            FileRule {
                owner_gid: Some(0),
                max_mode: 0o755,
            },
        ),
        (
            &D_3_15,
            &D_3_16,
            Path::new("/var/run/docker.sock"),
            FileRule {
                owner_gid: None,
                max_mode: 0o660,
            },
        ),
        (
            &D_3_17,
            &D_3_18,
            cfg.path.as_path(),
            FileRule {
                owner_gid: Some(0),
                max_mode: 0o644,
            },
        ),
    ]));
    let root_644 = || FileRule {
        owner_gid: Some(0),
        max_mode: 0o644,
    };
    let service = unit_file("docker.service");
    let socket = unit_file("docker.socket");
    out.extend(file_checks(&[
        (&D_3_1, &D_3_2, service.as_path(), root_644()),
        (&D_3_3, &D_3_4, socket.as_path(), root_644()),
    ]));
    out.extend(files_checks(
        &D_3_7,
        &D_3_8,
        "registry certificates under /etc/docker/certs.d",
        &registry_cert_files(Path::new("/etc/docker/certs.d")),
        FileRule {
            owner_gid: Some(0),
            max_mode: 0o444,
        },
    ));
    for (own, mode, key, max_mode) in [
        (&D_3_9, &D_3_10, "tlscacert", 0o444),
        (&D_3_11, &D_3_12, "tlscert", 0o444),
        (&D_3_13, &D_3_14, "tlskey", 0o400),
    ] {
        match cfg.str_setting(key, key, None) {
            Some(file) => out.extend(file_checks(&[(
                own,
                mode,
                Path::new(&file),
                FileRule {
                    owner_gid: Some(0),
                    max_mode,
                },
            )])),
            None => {
                let why = format!("{key} is not configured (the daemon does not serve TLS)");
                out.push(own.not_applicable(why.clone()));
                out.push(mode.not_applicable(why));
            }
        }
    }
    out.extend(file_checks(&[
        (
            &D_3_19,
            &D_3_20,
            Path::new("/etc/default/docker"),
            root_644(),
        ),
        // 3.21 is the mode and 3.22 the ownership of /etc/sysconfig/docker (the benchmark's order).
        (
            &D_3_22,
            &D_3_21,
            Path::new("/etc/sysconfig/docker"),
            root_644(),
        ),
        (
            &D_3_23,
            &D_3_24,
            Path::new("/run/containerd/containerd.sock"),
            FileRule {
                owner_gid: Some(0),
                max_mode: 0o660,
            },
        ),
    ]));

    // 5.1: the benchmark numbers it with the containers, but it is the daemon's state.
    let swarm = info.swarm.as_ref().and_then(|s| s.local_node_state);
    out.push(match swarm {
        _ if !have_info => D_5_1.warn("daemon not reachable"),
        Some(LocalNodeState::ACTIVE | LocalNodeState::PENDING | LocalNodeState::LOCKED) => D_5_1
            .warn(format!(
                "swarm mode is {} (docker info Swarm.LocalNodeState): keep it only on a swarm node",
                swarm.map(|s| s.to_string()).unwrap_or_default()
            )),
        s => D_5_1.pass(format!(
            "swarm mode is {} (docker info Swarm.LocalNodeState)",
            s.map(|s| s.to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "inactive".into())
        )),
    });
    out
}

/// Ownership and mode expectations of one file.
pub(crate) struct FileRule {
    /// Required group id; `None` means the `docker` group (or root).
    pub owner_gid: Option<u32>,
    pub max_mode: u32,
}

fn docker_gid() -> Option<u32> {
    fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut p = l.split(':');
            (p.next()? == "docker")
                .then(|| p.nth(1)?.parse().ok())
                .flatten()
        })
}

/// The unit file systemd would load for `unit` (`/etc` before `/run` before the package's).
fn unit_file(unit: &str) -> PathBuf {
    let dirs = [
        "/etc/systemd/system",
        "/run/systemd/system",
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
    ];
    dirs.iter()
        .map(|d| Path::new(d).join(unit))
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new(dirs[2]).join(unit))
}

/// The files of `/etc/docker/certs.d/<registry>/` (CA certificates, client certificates and
/// keys dockerd uses to talk to each registry).
fn registry_cert_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for reg in fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in fs::read_dir(reg.path()).into_iter().flatten().flatten() {
            if f.file_type().is_ok_and(|t| t.is_file()) {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

/// One ownership and one mode outcome for a set of files (`what` names the set): failed when
/// any file fails, with every offending file in the evidence.
pub(crate) fn files_checks(
    own_def: &'static CheckDef,
    mode_def: &'static CheckDef,
    what: &str,
    files: &[PathBuf],
    rule: FileRule,
) -> Vec<Outcome> {
    if files.is_empty() {
        return vec![
            own_def.not_applicable(format!("no {what}")),
            mode_def.not_applicable(format!("no {what}")),
        ];
    }
    let (mut bad_owner, mut bad_mode) = (Vec::new(), Vec::new());
    for f in files {
        let Ok(m) = fs::metadata(f) else { continue };
        if m.uid() != 0 || rule.owner_gid.is_some_and(|g| g != m.gid()) {
            bad_owner.push(format!("{} (uid {} gid {})", f.display(), m.uid(), m.gid()));
        }
        let mode = m.permissions().mode() & 0o7777;
        if mode & !rule.max_mode != 0 {
            bad_mode.push(format!("{} ({mode:o})", f.display()));
        }
    }
    let n = files.len();
    vec![
        own_def.check(
            bad_owner.is_empty(),
            if bad_owner.is_empty() {
                format!("{n} {what}, all owned by root:root")
            } else {
                format!("not owned by root:root: {}", bad_owner.join(", "))
            },
        ),
        mode_def.check(
            bad_mode.is_empty(),
            if bad_mode.is_empty() {
                format!("{n} {what}, all mode {:o} or stricter", rule.max_mode)
            } else {
                format!(
                    "mode wider than {:o}: {}",
                    rule.max_mode,
                    bad_mode.join(", ")
                )
            },
        ),
    ]
}

pub(crate) fn file_checks(
    items: &[(&'static CheckDef, &'static CheckDef, &Path, FileRule)],
) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (own_def, mode_def, path, rule) in items {
        match fs::metadata(path) {
            Err(_) => {
                out.push(own_def.not_applicable(format!("{} does not exist", path.display())));
                out.push(mode_def.not_applicable(format!("{} does not exist", path.display())));
            }
            Ok(m) => {
                let (uid, gid) = (m.uid(), m.gid());
                let group_ok = match rule.owner_gid {
                    Some(g) => gid == g,
                    None => gid == 0 || Some(gid) == docker_gid(),
                };
                out.push(own_def.check(
                    uid == 0 && group_ok,
                    format!("{} is owned by uid {uid} gid {gid}", path.display()),
                ));
                let mode = m.permissions().mode() & 0o7777;
                let extra = mode & !rule.max_mode;
                out.push(mode_def.check(
                    extra == 0,
                    format!(
                        "{} has mode {mode:o} (at most {:o} expected)",
                        path.display(),
                        rule.max_mode
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_event::ComplianceStatus;

    fn cfg(json: &str, cmdline: &[&str]) -> DaemonConfig {
        DaemonConfig {
            path: PathBuf::from("/etc/docker/daemon.json"),
            json: Some(parse_daemon_json(Path::new("daemon.json"), json).expect("json")),
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            pid: None,
        }
    }

    fn status_of(outs: &[Outcome], id: &str) -> (ComplianceStatus, String) {
        let o = outs
            .iter()
            .find(|o| o.def.id == id)
            .unwrap_or_else(|| panic!("no outcome {id}"));
        (o.status, o.evidence.clone())
    }

    /// 3.9-3.14 follow the TLS files the configuration names (from daemon.json or the
    /// command line), whatever the umask made of them; without TLS they do not apply.
    #[test]
    fn tls_files_are_checked_where_the_configuration_points() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let file = |name: &str, mode: u32| {
            let p = dir.path().join(name);
            fs::write(&p, "x").expect("write");
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
            p.display().to_string()
        };
        let (ca, cert, key) = (
            file("ca.pem", 0o444),
            file("cert.pem", 0o644),
            file("key.pem", 0o600),
        );
        let c = cfg(
            &format!(r#"{{"tlscacert": "{ca}", "tlscert": "{cert}"}}"#),
            &["--tlskey", &key],
        );
        let outs = checks(&c, &DaemonFacts::default());
        assert_eq!(status_of(&outs, "3.10").0, ComplianceStatus::Pass);
        assert_eq!(
            status_of(&outs, "3.12").0,
            ComplianceStatus::Fail,
            "0644 is wider than 444"
        );
        let (st, ev) = status_of(&outs, "3.14");
        assert_eq!(st, ComplianceStatus::Fail, "0600 is not 400: {ev}");
        assert!(ev.contains("key.pem"), "{ev}");
        let none = checks(&cfg("{}", &[]), &DaemonFacts::default());
        for id in ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"] {
            assert_eq!(
                status_of(&none, id).0,
                ComplianceStatus::NotApplicable,
                "{id}"
            );
        }
    }

    #[test]
    fn a_set_of_files_fails_on_any_one_and_names_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let reg = dir.path().join("registry.example.com:5000");
        fs::create_dir(&reg).expect("mkdir");
        for (n, mode) in [
            ("ca.crt", 0o444),
            ("client.cert", 0o444),
            ("client.key", 0o644),
        ] {
            let p = reg.join(n);
            fs::write(&p, "x").expect("write");
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let files = registry_cert_files(dir.path());
        assert_eq!(files.len(), 3);
        let rule = || FileRule {
            owner_gid: Some(0),
            max_mode: 0o444,
        };
        let outs = files_checks(&D_3_7, &D_3_8, "registry certificates", &files, rule());
        assert_eq!(outs[1].status, ComplianceStatus::Fail);
        assert!(
            outs[1].evidence.contains("client.key (644)"),
            "{}",
            outs[1].evidence
        );
        assert!(!outs[1].evidence.contains("ca.crt"), "{}", outs[1].evidence);
        let empty = files_checks(&D_3_7, &D_3_8, "registry certificates", &[], rule());
        assert_eq!(empty[0].status, ComplianceStatus::NotApplicable);
    }

    #[test]
    fn swarm_mode_is_reported_from_docker_info() {
        use rampart_container::models::SwarmInfo;
        let facts = |state| DaemonFacts {
            info: Some(SystemInfo {
                swarm: Some(SwarmInfo {
                    local_node_state: Some(state),
                    ..SwarmInfo::default()
                }),
                ..SystemInfo::default()
            }),
            ..DaemonFacts::default()
        };
        let c = cfg("{}", &[]);
        let on = checks(&c, &facts(LocalNodeState::ACTIVE));
        assert_eq!(status_of(&on, "5.1").0, ComplianceStatus::Warning);
        let off = checks(&c, &facts(LocalNodeState::INACTIVE));
        assert_eq!(status_of(&off, "5.1").0, ComplianceStatus::Pass);
    }

    #[test]
    fn flags_and_keys() {
        let c = cfg(
            r#"{"icc": false, "hosts": ["unix:///var/run/docker.sock"], "log-level": "debug"}"#,
            &[
                "-H",
                "tcp://0.0.0.0:2375",
                "--no-new-privileges",
                "--userland-proxy=false",
                "--log-level=warn",
            ],
        );
        assert_eq!(c.bool_setting("icc", "icc"), Some(false));
        assert_eq!(
            c.bool_setting("no-new-privileges", "no-new-privileges"),
            Some(true)
        );
        assert_eq!(
            c.bool_setting("userland-proxy", "userland-proxy"),
            Some(false)
        );
        assert_eq!(
            c.str_setting("log-level", "log-level", Some("l"))
                .as_deref(),
            Some("warn")
        );
        assert_eq!(
            c.hosts(),
            vec!["tcp://0.0.0.0:2375", "unix:///var/run/docker.sock"]
        );
    }

    #[test]
    fn buildkit_insecure_entitlement() {
        let facts = DaemonFacts::default();
        let status = |c: &DaemonConfig| {
            checks(c, &facts)
                .iter()
                .find(|o| o.def.id == "RAMPART-D-BUILDKIT-INSECURE")
                .expect("check")
                .status
        };
        assert_eq!(status(&cfg("{}", &[])), ComplianceStatus::Pass);
        assert_eq!(
            status(&cfg(
                r#"{"builder": {"entitlements": {"security-insecure": true}}}"#,
                &[]
            )),
            ComplianceStatus::Fail
        );
        assert_eq!(
            status(&cfg(
                "{}",
                &[
                    "--allow-insecure-entitlement",
                    "network.host,security.insecure"
                ]
            )),
            ComplianceStatus::Fail
        );
        assert_eq!(
            status(&cfg(
                r#"{"builder": {"entitlements": {"security-insecure": false, "network-host": false}}}"#,
                &[]
            )),
            ComplianceStatus::Pass
        );
    }

    #[test]
    fn malformed_daemon_json_names_line_and_column() {
        let e = parse_daemon_json(
            Path::new("/etc/docker/daemon.json"),
            "{\n  \"icc\": false,\n  \"live-restore\" true\n}",
        )
        .expect_err("bad");
        let t = e.to_string();
        assert!(t.starts_with("/etc/docker/daemon.json:3:"), "{t}");
    }

    #[test]
    fn tcp_without_tls_fails_and_with_tls_passes() {
        let facts = DaemonFacts::default();
        let open = cfg(r#"{"hosts": ["tcp://0.0.0.0:2375"]}"#, &[]);
        let o = checks(&open, &facts);
        let tls = o.iter().find(|o| o.def.id == "2.7").expect("2.7");
        assert_eq!(tls.status, ComplianceStatus::Fail);
        let secured = cfg(
            r#"{"hosts": ["tcp://0.0.0.0:2376"], "tlsverify": true, "tlscacert": "/c", "tlscert": "/s", "tlskey": "/k"}"#,
            &[],
        );
        let o = checks(&secured, &facts);
        assert_eq!(
            o.iter().find(|o| o.def.id == "2.7").expect("2.7").status,
            ComplianceStatus::Pass
        );
        // A measured listener counts even when nothing is configured.
        let measured = DaemonFacts {
            tcp_listeners: vec!["0.0.0.0:2375".into()],
            ..DaemonFacts::default()
        };
        let o = checks(&cfg("{}", &[]), &measured);
        assert_eq!(
            o.iter().find(|o| o.def.id == "2.7").expect("2.7").status,
            ComplianceStatus::Fail
        );
    }

    #[test]
    fn addresses_decode() {
        assert_eq!(
            decode_addr("0100007F:0CEB", false).as_deref(),
            Some("127.0.0.1:3307")
        );
        assert_eq!(
            decode_addr("00000000:094F", false).as_deref(),
            Some("0.0.0.0:2383")
        );
        assert_eq!(
            decode_addr("00000000000000000000000000000000:0016", true).as_deref(),
            Some("[::]:22")
        );
    }
}
