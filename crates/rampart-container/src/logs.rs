//! Log sources: login attempts from sshd, PAM, su and sudo log lines become `auth.login`
//! events, so that rules can correlate failed logins with what follows.
//!
//! Sources: files on the host (tail -F: new lines only, survives rotation and truncation) and
//! the stdout/stderr of containers through the Docker logs API.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use rampart_event::{
    AuthInfo, AuthOutcome, Container, Device, Event, EventId, EventKind, Origin, SensorEvent,
};
use regex::Regex;

use crate::directory::ContainerRecord;
use crate::docker::DockerClient;

/// What a log line says about a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    pub outcome: AuthOutcome,
    pub user: String,
    pub method: Option<String>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub service: String,
}

struct Patterns {
    service: Regex,
    failed: Regex,
    accepted: Regex,
    invalid: Regex,
    pam_failure: Regex,
    su_failed: Regex,
    su_ok: Regex,
    sudo_failed: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| panic!("built-in pattern {s}: {e}"));
        Patterns {
            service: re(r"\b([A-Za-z][\w.-]*)\[\d+\]:"),
            failed: re(r"Failed (\S+) for (?:invalid user )?(\S*) from (\S+) port (\d+)"),
            accepted: re(r"Accepted (\S+) for (\S+) from (\S+) port (\d+)"),
            invalid: re(r"Invalid user (\S*) from (\S+)(?: port (\d+))?"),
            pam_failure: re(
                r"pam_unix\(([\w-]+?)(?:-\w+)?:auth\): authentication failure;.*?(?:rhost=(\S*))?\s+user=(\S+)",
            ),
            su_failed: re(r"FAILED SU \(to (\S+)\) (\S+)"),
            su_ok: re(r"Successful su for (\S+) by (\S+)"),
            sudo_failed: re(r"(\S+) : (\d+) incorrect password attempts?"),
        }
    })
}

/// Cheap test before the regular expressions: most log lines mention none of these.
fn may_be_auth(line: &str) -> bool {
    [
        "Failed ",
        "Accepted ",
        "Invalid user",
        "authentication failure",
        "FAILED SU",
        "Successful su",
        "incorrect password",
    ]
    .iter()
    .any(|k| line.contains(k))
}

/// Parses one log line (syslog or bare sshd output). `None` when it is not a login attempt.
pub fn parse_auth_line(line: &str) -> Option<ParsedAuth> {
    if !may_be_auth(line) {
        return None;
    }
    let p = patterns();
    let service = p.service.captures(line).map(|c| c[1].to_string());
    let ip = |s: &str| s.parse::<IpAddr>().ok();
    let port = |s: Option<regex::Match<'_>>| s.and_then(|m| m.as_str().parse::<u16>().ok());
    if let Some(c) = p.failed.captures(line) {
        return Some(ParsedAuth {
            outcome: AuthOutcome::Failure,
            user: c[2].to_string(),
            method: Some(c[1].to_string()),
            src_ip: ip(&c[3]),
            src_port: port(c.get(4)),
            service: service.unwrap_or_else(|| "sshd".into()),
        });
    }
    if let Some(c) = p.accepted.captures(line) {
        return Some(ParsedAuth {
            outcome: AuthOutcome::Success,
            user: c[2].to_string(),
            method: Some(c[1].to_string()),
            src_ip: ip(&c[3]),
            src_port: port(c.get(4)),
            service: service.unwrap_or_else(|| "sshd".into()),
        });
    }
    if let Some(c) = p.invalid.captures(line) {
        return Some(ParsedAuth {
            outcome: AuthOutcome::Failure,
            user: c[1].to_string(),
            method: None,
            src_ip: ip(&c[2]),
            src_port: port(c.get(3)),
            service: service.unwrap_or_else(|| "sshd".into()),
        });
    }
    if let Some(c) = p.pam_failure.captures(line) {
        // sshd logs its own "Failed ..." line for the same attempt: count it once.
        if &c[1] == "sshd" {
            return None;
        }
        return Some(ParsedAuth {
            outcome: AuthOutcome::Failure,
            user: c[3].to_string(),
            method: Some("password".into()),
            src_ip: c.get(2).and_then(|m| ip(m.as_str())),
            src_port: None,
            service: c[1].to_string(),
        });
    }
    if let Some(c) = p.su_failed.captures(line) {
        return Some(ParsedAuth {
            outcome: AuthOutcome::Failure,
            user: c[1].to_string(),
            method: Some("password".into()),
            src_ip: None,
            src_port: None,
            service: "su".into(),
        });
    }
    if let Some(c) = p.su_ok.captures(line) {
        return Some(ParsedAuth {
            outcome: AuthOutcome::Success,
            user: c[1].to_string(),
            method: Some("password".into()),
            src_ip: None,
            src_port: None,
            service: "su".into(),
        });
    }
    if let Some(c) = p.sudo_failed.captures(line) {
        return Some(ParsedAuth {
            outcome: AuthOutcome::Failure,
            user: c[1].to_string(),
            method: Some("password".into()),
            src_ip: None,
            src_port: None,
            service: "sudo".into(),
        });
    }
    None
}

/// Turns parsed log lines into `auth.login` events on the pipeline's channel.
#[derive(Debug)]
pub struct AuthLogs {
    device: Arc<Device>,
    instance: u64,
    seq: AtomicU64,
    tx: SyncSender<Box<SensorEvent>>,
    /// Events the pipeline had no room for.
    pub drops: Arc<AtomicU64>,
    /// Lines that were login attempts (sent or dropped).
    produced: AtomicU64,
}

impl AuthLogs {
    pub fn new(
        device: Arc<Device>,
        instance: u64,
        tx: SyncSender<Box<SensorEvent>>,
    ) -> Arc<AuthLogs> {
        Arc::new(AuthLogs {
            device,
            instance,
            seq: AtomicU64::new(0),
            tx,
            drops: Arc::new(AtomicU64::new(0)),
            produced: AtomicU64::new(0),
        })
    }

    /// Parses `line` and sends an event when it is a login attempt. Returns false when the
    /// pipeline is gone.
    pub fn line(&self, line: &str, log_source: &str, container: Option<&Arc<Container>>) -> bool {
        self.entry(line, log_source, container, None)
    }

    /// [`AuthLogs::line`] for an entry whose source gives it a stable identity and time (a
    /// journal entry): the event id is derived from it, so an entry read twice (after a crash
    /// between sending and saving the cursor) is one record at the server.
    pub(crate) fn entry(
        &self,
        line: &str,
        log_source: &str,
        container: Option<&Arc<Container>>,
        stable: Option<(EventId, u64)>,
    ) -> bool {
        let Some(p) = parse_auth_line(line) else {
            return true;
        };
        self.produced.fetch_add(1, Ordering::Relaxed);
        let (id, time_ns) = stable.unwrap_or_else(|| {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            (EventId::new(self.instance, seq), now)
        });
        let mut e = Event::new(id, time_ns, EventKind::AuthLogin, self.device.clone());
        e.container = container.cloned();
        e.auth = Some(AuthInfo {
            outcome: p.outcome,
            user: p.user,
            method: p.method,
            src_ip: p.src_ip,
            src_port: p.src_port,
            service: p.service,
            log_source: log_source.to_string(),
            message: line.trim_end().to_string(),
        });
        match self.tx.try_send(Box::new(SensorEvent {
            origin: Origin::default(),
            event: e,
        })) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.drops.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// How many lines so far were login attempts (sent to the pipeline or dropped).
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    /// Follows a host file like `tail -F`: new lines only; a rotated or truncated file is
    /// read again from its start. Runs until the pipeline is gone.
    pub async fn follow_file(self: Arc<Self>, path: PathBuf) {
        use std::io::{Read, Seek, SeekFrom};
        use std::os::unix::fs::MetadataExt;
        let source = path.display().to_string();
        let mut pos = std::fs::metadata(&path).map_or(0, |m| m.len());
        let mut ino = std::fs::metadata(&path).map_or(0, |m| m.ino());
        let mut partial = String::new();
        let mut interval = tokio::time::interval(Duration::from_millis(250));
        loop {
            interval.tick().await;
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.ino() != ino || meta.len() < pos {
                ino = meta.ino();
                pos = 0;
                partial.clear();
            }
            if meta.len() == pos {
                continue;
            }
            let Ok(mut f) = std::fs::File::open(&path) else {
                continue;
            };
            if f.seek(SeekFrom::Start(pos)).is_err() {
                continue;
            }
            let mut buf = Vec::new();
            let Ok(n) = f.take(4 << 20).read_to_end(&mut buf) else {
                continue;
            };
            pos += n as u64;
            partial.push_str(&String::from_utf8_lossy(&buf));
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                if !self.line(&line, &source, None) {
                    return;
                }
            }
        }
    }

    /// Follows a container's stdout and stderr from now on, until it stops.
    pub async fn follow_container(self: Arc<Self>, client: DockerClient, rec: ContainerRecord) {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i32);
        let opts = bollard::query_parameters::LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            since,
            ..Default::default()
        };
        let source = format!("docker:{}", rec.container.name);
        let mut stream = client.docker.logs(&rec.container.id, Some(opts));
        let mut partial = String::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return };
            partial.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                if !self.line(&line, &source, Some(&rec.container)) {
                    return;
                }
            }
            if partial.len() > 64 << 10 {
                partial.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_failures_and_successes() {
        let f = parse_auth_line(
            "Nov 28 10:00:01 vps sshd[1234]: Failed password for invalid user admin from 203.0.113.9 port 40022 ssh2",
        )
        .expect("parsed");
        assert_eq!(f.outcome, AuthOutcome::Failure);
        assert_eq!((f.user.as_str(), f.service.as_str()), ("admin", "sshd"));
        assert_eq!(f.src_ip, "203.0.113.9".parse().ok());
        assert_eq!(f.src_port, Some(40022));
        assert_eq!(f.method.as_deref(), Some("password"));
        let a = parse_auth_line("sshd[9]: Accepted publickey for deploy from 2001:db8::7 port 5022 ssh2: ED25519 SHA256:x")
            .expect("parsed");
        assert_eq!(a.outcome, AuthOutcome::Success);
        assert_eq!(a.user, "deploy");
        assert_eq!(a.src_ip, "2001:db8::7".parse().ok());
        let i = parse_auth_line("sshd[9]: Invalid user oracle from 198.51.100.4 port 3333")
            .expect("parsed");
        assert_eq!(
            (i.outcome, i.user.as_str()),
            (AuthOutcome::Failure, "oracle")
        );
    }

    #[test]
    fn pam_su_and_sudo_lines() {
        assert!(
            parse_auth_line("sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root")
                .is_none(),
            "sshd's PAM line duplicates its own Failed line"
        );
        let su = parse_auth_line("su[77]: pam_unix(su:auth): authentication failure; logname=bob uid=1000 euid=0 tty=pts/0 ruser=bob rhost=  user=root")
            .expect("parsed");
        assert_eq!((su.service.as_str(), su.user.as_str()), ("su", "root"));
        assert_eq!(su.src_ip, None);
        let f = parse_auth_line("su[5]: FAILED SU (to root) bob on pts/1").expect("parsed");
        assert_eq!((f.outcome, f.user.as_str()), (AuthOutcome::Failure, "root"));
        let ok = parse_auth_line("su[5]: Successful su for root by bob").expect("parsed");
        assert_eq!(ok.outcome, AuthOutcome::Success);
        let s = parse_auth_line("sudo[3]:      bob : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/sh")
            .expect("parsed");
        assert_eq!((s.service.as_str(), s.user.as_str()), ("sudo", "bob"));
    }

    #[test]
    fn other_lines_are_not_logins() {
        for l in [
            "GET /login HTTP/1.1 200",
            "sshd[1]: Connection closed by 1.2.3.4 port 22 [preauth]",
            "Failed to start nginx.service",
        ] {
            assert_eq!(parse_auth_line(l), None, "{l}");
        }
    }
}
