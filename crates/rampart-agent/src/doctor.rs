//! `rampart doctor`: what on this host keeps a Rampart feature from working, and the fix.
//!
//! Every check prints one line, `ok`, `warn` (a feature is degraded) or `fail` (a feature does
//! not work), with what is lost and how to fix it. Exit code 1 when any check fails.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{Context, Result};
use crate::AgentConfig;

/// What `rampart doctor` checks. With the `clap` feature these are also the command's
/// arguments: the doc comments are its help text.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DoctorOptions {
    /// Agent configuration to check and take the Docker socket from (default:
    /// /etc/rampart/agent.yaml when it exists).
    #[cfg_attr(feature = "clap", arg(long, short))]
    pub config: Option<PathBuf>,
    /// State directory whose ownership and permissions are checked.
    #[cfg_attr(feature = "clap", arg(long, default_value = "/var/lib/rampart"))]
    pub state_dir: PathBuf,
    /// Rampart server whose clock is compared with this host's (`https://HOST:8443`).
    #[cfg_attr(feature = "clap", arg(long, value_name = "URL"))]
    pub server: Option<String>,
    /// Credentials from `rampart enroll` (ca.crt, agent.crt, agent.key), used with --server.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "DIR", default_value = "/var/lib/rampart/tls")
    )]
    pub tls_dir: PathBuf,
    /// Clock difference with the server above which the check fails (`2s`, `1m`).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "5s", value_parser = humantime::parse_duration)
    )]
    pub max_skew: Duration,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    /// What was found and what it costs.
    pub detail: String,
    /// What to do about it (empty when ok).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        status: Status::Ok,
        detail: detail.into(),
        fix: String::new(),
    }
}

fn bad(check: &'static str, status: Status, detail: impl Into<String>, fix: &str) -> Finding {
    Finding {
        check,
        status,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Runs every check. The kernel's capabilities are `rampart audit host`'s protections matrix
/// (one source of what this host can do and what to change), each missing protection a
/// warning, a missing event sensor a failure.
pub fn check(args: &DoctorOptions) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    out.push(if root {
        ok("privileges", "running as root")
    } else {
        bad(
            "privileges",
            Status::Warn,
            "not root: the BPF program probes below could not run and report what this user may do, not the agent",
            "run `sudo rampart doctor` to see what the agent (root) can do",
        )
    });
    let (facts, caps) = rampart_audit::host::measure(&rampart_audit::host::HostOptions::default());
    let virt = &facts.virtualization;
    out.push(if virt.container {
        bad(
            "virtualization",
            Status::Fail,
            format!(
                "{} (a container, no kernel of its own): BPF programs cannot be loaded from here",
                virt.kind
            ),
            "run Rampart on the host (or a KVM/Xen VPS), not inside a container or OpenVZ/LXC guest",
        )
    } else {
        ok("virtualization", virt.kind.clone())
    });
    out.extend(matrix_findings(&rampart_audit::host::matrix(
        &facts,
        caps.as_ref(),
    )));
    out.push(bpffs_finding());

    // Configuration.
    let default_cfg = Path::new("/etc/rampart/agent.yaml");
    let cfg_path = args
        .config
        .clone()
        .or_else(|| default_cfg.exists().then(|| default_cfg.to_path_buf()));
    let cfg = match &cfg_path {
        Some(p) => match AgentConfig::load(p) {
            Ok(c) => {
                out.push(ok("agent config", format!("{} is valid", p.display())));
                c
            }
            Err(e) => {
                out.push(bad(
                    "agent config",
                    Status::Fail,
                    format!("{e:#}"),
                    "fix the file; `rampart config check FILE` checks it again",
                ));
                AgentConfig::default()
            }
        },
        None => {
            out.push(ok(
                "agent config",
                "no /etc/rampart/agent.yaml: the agent runs on its defaults",
            ));
            AgentConfig::default()
        }
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    out.push(docker_finding(&rt, &cfg.docker_socket));
    out.push(login_finding(&cfg));
    if cfg.sensor == "proc-connector" {
        out.push(bad(
            "sensor",
            Status::Warn,
            format!(
                "the configuration forces the proc-connector fallback (sensor: proc-connector): not seen: {}",
                rampart_kernel::ProcConnector::MISSING
            ),
            "set `sensor: auto` in agent.yaml where the eBPF sensor can run",
        ));
    }
    out.extend(state_findings(&args.state_dir));
    if let Some(url) = &args.server {
        out.push(clock_finding(&rt, url, &args.tls_dir, args.max_skew));
    }

    Ok(out)
}

/// The report: one line per check (and its fix), then the totals; or one JSON object per
/// line.
pub fn render(out: &[Finding], json: bool) -> String {
    use std::fmt::Write;
    let mut w = String::new();
    let width = out.iter().map(|f| f.check.len()).max().unwrap_or(0).max(18);
    for f in out {
        if json {
            let line = serde_json::to_string(f).unwrap_or_default();
            let _ = writeln!(w, "{line}");
            continue;
        }
        let mark = match f.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(w, "{mark}  {:<width$} {}", f.check, f.detail);
        if !f.fix.is_empty() {
            let _ = writeln!(w, "      {:<width$} fix: {}", "", f.fix);
        }
    }
    if !json {
        let fails = out.iter().filter(|f| f.status == Status::Fail).count();
        let warns = out.iter().filter(|f| f.status == Status::Warn).count();
        let _ = writeln!(w, "{fails} failed, {warns} warnings");
    }
    w
}

/// One finding per row of the audit's protections matrix: a missing event sensor fails (the
/// agent runs on the proc-connector fallback), any other missing protection warns, with the
/// audit's change as the fix.
pub fn matrix_findings(matrix: &[rampart_audit::host::Protection]) -> Vec<Finding> {
    matrix
        .iter()
        .map(|p| {
            if p.available {
                return ok(p.name, p.detail.clone());
            }
            let status = if p.name.starts_with("detection") {
                Status::Fail
            } else {
                Status::Warn
            };
            bad(
                p.name,
                status,
                p.detail.clone(),
                p.change.as_deref().unwrap_or_default(),
            )
        })
        .collect()
}

/// Which sources of host login attempts the agent would read with this configuration.
fn login_finding(cfg: &AgentConfig) -> Finding {
    let mut sources: Vec<String> = cfg
        .auth_log_files
        .iter()
        .filter(|f| f.exists())
        .map(|f| f.display().to_string())
        .collect();
    let journal = rampart_container::JournalOptions::default();
    if cfg.auth_journal && rampart_container::journal_available(&journal) {
        sources.push("the systemd journal".into());
    }
    if sources.is_empty() {
        bad(
            "login sources",
            Status::Warn,
            "no auth log file and no systemd journal: brute-force and login rules cannot see host logins (sshd, su, sudo)",
            "run journald (Debian 12 default) or rsyslog, or list the file sshd logs to in auth_log_files",
        )
    } else {
        ok("login sources", format!("reading {}", sources.join(", ")))
    }
}

/// Where the enforcement state is pinned: bpffs mounted, or mountable by Rampart itself.
fn bpffs_finding() -> Finding {
    use rampart_kernel::enforce::bpffs;
    let root = Path::new(bpffs::BPFFS_ROOT);
    if bpffs::is_on_bpffs(root) {
        ok("bpffs", format!("mounted at {}", root.display()))
    } else if root.is_dir() {
        ok(
            "bpffs",
            format!(
                "not mounted at {} (no systemd mounted it); Rampart mounts it when prevention or isolation first needs it",
                root.display()
            ),
        )
    } else {
        bad(
            "bpffs",
            Status::Warn,
            format!(
                "{} does not exist: prevention and `respond isolate` cannot pin their programs",
                root.display()
            ),
            "a kernel with CONFIG_BPF_SYSCALL and /sys mounted",
        )
    }
}

fn docker_finding(rt: &tokio::runtime::Runtime, socket: &Path) -> Finding {
    const LOST: &str = "events carry no container names or images, `audit containers`, `harden` and policies by selector do not work";
    match std::fs::metadata(socket) {
        Err(e) => {
            return bad(
                "docker socket",
                Status::Warn,
                format!("{}: {e}: {LOST}", socket.display()),
                "start dockerd, or set docker_socket in agent.yaml",
            )
        }
        Ok(m) if !m.file_type().is_socket() => {
            return bad(
                "docker socket",
                Status::Warn,
                format!("{} is not a socket: {LOST}", socket.display()),
                "set docker_socket in agent.yaml to the daemon's socket",
            )
        }
        Ok(_) => {}
    }
    let connect = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            rampart_container::DockerClient::connect(socket),
        )
        .await
    });
    match connect {
        Ok(Ok(_)) => ok("docker socket", format!("{} answers", socket.display())),
        Ok(Err(e)) => bad(
            "docker socket",
            Status::Warn,
            format!("{e}: {LOST}"),
            "check that dockerd runs and that this user may use the socket (root or the docker group)",
        ),
        Err(_) => bad(
            "docker socket",
            Status::Warn,
            format!("{}: no answer within 5 s: {LOST}", socket.display()),
            "check dockerd (`docker info`)",
        ),
    }
}

/// The state directory: owned by root, not readable by others; keys 0600.
pub fn state_findings(dir: &Path) -> Vec<Finding> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![ok(
                "state directory",
                format!(
                    "{} does not exist yet (created 0700 on first start)",
                    dir.display()
                ),
            )]
        }
        Err(e) => {
            return vec![bad(
                "state directory",
                Status::Fail,
                format!("{}: {e}", dir.display()),
                "run as root",
            )]
        }
    };
    let mut out = Vec::new();
    let mode = meta.mode() & 0o7777;
    out.push(if meta.uid() != 0 || mode & 0o077 != 0 {
        bad(
            "state directory",
            Status::Fail,
            format!(
                "{} is owned by uid {} with mode {mode:04o}: queued events and keys are exposed to other users",
                dir.display(),
                meta.uid()
            ),
            &format!("chown root:root {0} && chmod 0700 {0}", dir.display()),
        )
    } else {
        ok("state directory", format!("{} root, {mode:04o}", dir.display()))
    });
    let mut loose = Vec::new();
    walk_keys(dir, 0, &mut loose);
    out.push(if loose.is_empty() {
        ok("key files", "every *.key is 0600 or stricter")
    } else {
        let list = loose
            .iter()
            .map(|(p, m)| format!("{} ({m:04o})", p.display()))
            .collect::<Vec<_>>()
            .join(", ");
        bad(
            "key files",
            Status::Fail,
            format!("readable by others: {list}"),
            "chmod 0600 on each of them (and rotate them if others could read them)",
        )
    });
    out
}

fn walk_keys(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, u32)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() && depth < 4 {
            walk_keys(&p, depth + 1, out);
        } else if m.is_file() && p.extension().is_some_and(|x| x == "key") && m.mode() & 0o077 != 0
        {
            out.push((p, m.mode() & 0o7777));
        }
    }
}

fn clock_finding(
    rt: &tokio::runtime::Runtime,
    url: &str,
    tls_dir: &Path,
    max: Duration,
) -> Finding {
    match rt.block_on(server_clock(url, tls_dir)) {
        Err(e) => bad(
            "server clock",
            Status::Warn,
            format!("cannot read the server's time from {url}: {e}"),
            "check --server and --tls-dir (credentials from `rampart enroll`)",
        ),
        Ok((server, rtt)) => {
            let local = SystemTime::now();
            // The Date header has one-second resolution and was stamped somewhere within the
            // round trip: only a difference beyond that uncertainty is skew.
            let slack = rtt + Duration::from_secs(1);
            let (diff, ahead) = match local.duration_since(server) {
                Ok(d) => (d, "ahead of"),
                Err(e) => (e.duration(), "behind"),
            };
            let diff = diff.saturating_sub(slack);
            if diff > max {
                bad(
                    "server clock",
                    Status::Fail,
                    format!(
                        "this host is at least {} {ahead} the server: event times, correlation windows and certificate checks go wrong",
                        humantime::format_duration(Duration::from_secs(diff.as_secs()))
                    ),
                    "synchronise both clocks (systemd-timesyncd or chrony)",
                )
            } else {
                ok(
                    "server clock",
                    format!(
                        "within {} of {url}",
                        humantime::format_duration(Duration::from_secs(slack.as_secs().max(1)))
                    ),
                )
            }
        }
    }
}

/// The server's clock (its HTTP `Date` header on `/healthz`) and the round-trip time.
async fn server_clock(url: &str, tls_dir: &Path) -> Result<(SystemTime, Duration)> {
    let tls = if url.starts_with("https://") {
        Some(rampart_ship::tls::agent_client_config(tls_dir).context("TLS credentials")?)
    } else {
        None
    };
    let mut client = rampart_ship::client::HttpClient::new(url, tls)
        .context("--server")?
        .with_timeout(Duration::from_secs(5));
    let started = std::time::Instant::now();
    let resp = client
        .request(hyper::Method::GET, "/healthz", &[], bytes::Bytes::new())
        .await
        .context("GET /healthz")?;
    let rtt = started.elapsed();
    let date = resp
        .headers
        .get("date")
        .and_then(|v| v.to_str().ok())
        .with_context(|| format!("the answer (HTTP {}) has no Date header", resp.status))?;
    let t = httpdate::parse_http_date(date).with_context(|| format!("Date header {date:?}"))?;
    Ok((t, rtt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_audit_matrix_is_rendered_with_its_changes_as_fixes() {
        use rampart_audit::host::Protection;
        let matrix = vec![
            Protection {
                name: "detection (eBPF sensor)",
                available: false,
                detail: "no BTF".into(),
                change: Some("boot a kernel with BTF".into()),
            },
            Protection {
                name: "in-kernel kill",
                available: false,
                detail: "bpf_send_signal no".into(),
                change: None,
            },
            Protection {
                name: "DNS visibility",
                available: true,
                detail: "cgroup_skb yes".into(),
                change: Some("ignored when available".into()),
            },
        ];
        let f = matrix_findings(&matrix);
        assert_eq!(
            f[0].status,
            Status::Fail,
            "no sensor: the agent is degraded"
        );
        assert_eq!(f[0].fix, "boot a kernel with BTF");
        assert_eq!(f[1].status, Status::Warn);
        assert!(f[1].fix.is_empty());
        assert_eq!(f[2].status, Status::Ok);
        assert!(f[2].fix.is_empty());
        let text = render(&f, false);
        assert!(
            text.contains("FAIL  detection (eBPF sensor) no BTF"),
            "{text}"
        );
        assert!(text.contains("fix: boot a kernel with BTF"), "{text}");
        assert!(text.ends_with("1 failed, 1 warnings\n"), "{text}");
        let json = render(&f, true);
        assert_eq!(json.lines().count(), 3);
        let first: serde_json::Value =
            serde_json::from_str(json.lines().next().unwrap_or_default()).expect("json");
        assert_eq!(first["status"], "fail");
    }

    #[test]
    fn loose_state_directory_and_keys_fail() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir(dir.path().join("tls"))?;
        let key = dir.path().join("tls/agent.key");
        std::fs::write(&key, "k")?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
        let f = state_findings(dir.path());
        let uid = unsafe { libc::geteuid() };
        assert_eq!(f[0].status, Status::Fail, "{f:?}");
        assert_eq!(f[1].status, Status::Fail, "{f:?}");
        assert!(f[1].detail.contains("agent.key (0644)"), "{f:?}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        let f = state_findings(dir.path());
        assert_eq!(f[0].status == Status::Ok, uid == 0, "{f:?}");
        assert_eq!(f[1].status, Status::Ok, "{f:?}");
        Ok(())
    }
}
