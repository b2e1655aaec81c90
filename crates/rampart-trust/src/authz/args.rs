//! `rampart authz` as the user asks for it: the plugin's socket, the daemon judged, the
//! database and scan cache, where decisions go; and how the options become the engine's
//! [`EngineConfig`].
//!
//! With the `clap` feature [`AuthzArgs`] is also the command's arguments: the field doc comments
//! are the help text. Only the binary turns it on.

use std::path::PathBuf;
use std::time::Duration;

use rampart_scan::DbPath;

use super::{AdmissionPolicy, EngineConfig};

/// The options of `rampart authz`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AuthzArgs {
    /// The admission policy (YAML; see docs/trust.md).
    #[cfg_attr(feature = "clap", arg(long))]
    pub policy: PathBuf,
    /// The plugin socket; dockerd finds `NAME.sock` under /run/docker/plugins.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "/run/docker/plugins/rampart.sock")
    )]
    pub socket: PathBuf,
    /// The dockerd whose requests are judged (image metadata, scans on demand).
    #[cfg_attr(feature = "clap", arg(long, default_value = "/var/run/docker.sock"))]
    pub docker_socket: PathBuf,
    #[cfg_attr(feature = "clap", command(flatten))]
    pub db: DbPath,
    /// Scan results cached by image id (the cache `rampart image scan` fills).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "RAMPART_SCAN_CACHE", default_value = rampart_scan::DEFAULT_CACHE_DIR)
    )]
    pub cache_dir: PathBuf,
    /// Append every decision as a JSON line to this file (default: standard output).
    #[cfg_attr(feature = "clap", arg(long))]
    pub events: Option<PathBuf>,
    /// How long a signature verdict for one image digest is reused.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "60s", value_parser = humantime::parse_duration)
    )]
    pub verdict_ttl: Duration,
    /// Ship every decision as an `admission.decision` event: a YAML file with the keys of the
    /// agent's `ship:` section (queue, outputs, ...; docs/shipping.md). Give it a queue
    /// directory of its own, not the agent's.
    #[cfg_attr(feature = "clap", arg(long))]
    pub ship: Option<PathBuf>,
    /// Host name put in the shipped events (default: the kernel's hostname).
    #[cfg_attr(feature = "clap", arg(long))]
    pub hostname: Option<String>,
}

impl AuthzArgs {
    /// The engine's configuration for `policy` (loaded from `--policy`).
    pub fn engine_config(&self, policy: AdmissionPolicy) -> EngineConfig {
        EngineConfig {
            policy,
            docker_socket: self.docker_socket.clone(),
            db_path: self.db.path.clone(),
            cache_dir: self.cache_dir.clone(),
            verdict_ttl: self.verdict_ttl,
        }
    }

    /// The host name put in shipped decisions: `--hostname`, else the kernel's
    /// ([`rampart_event::hostname`]).
    pub fn hostname(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(rampart_event::hostname)
    }

    /// The `DOCKER_HOST` value that points scans on demand at the judged daemon.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.docker_socket.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args() -> AuthzArgs {
        AuthzArgs {
            policy: PathBuf::from("a.yaml"),
            socket: PathBuf::from("/run/docker/plugins/rampart.sock"),
            docker_socket: PathBuf::from("/tmp/d/docker.sock"),
            db: DbPath {
                path: PathBuf::from("/tmp/vuln.db"),
            },
            cache_dir: PathBuf::from("/tmp/cache"),
            events: None,
            verdict_ttl: Duration::from_secs(7),
            ship: None,
            hostname: None,
        }
    }

    #[test]
    fn the_engine_judges_the_daemon_and_database_given() {
        let policy =
            AdmissionPolicy::parse("trust: t.yaml\n", Path::new("a.yaml")).expect("policy");
        let c = args().engine_config(policy);
        assert_eq!(c.docker_socket, PathBuf::from("/tmp/d/docker.sock"));
        assert_eq!(c.db_path, PathBuf::from("/tmp/vuln.db"));
        assert_eq!(c.cache_dir, PathBuf::from("/tmp/cache"));
        assert_eq!(c.verdict_ttl, Duration::from_secs(7));
        assert_eq!(args().docker_host(), "unix:///tmp/d/docker.sock");
    }

    #[test]
    fn the_hostname_is_the_option_else_the_kernels() {
        assert_eq!(args().hostname(), rampart_event::hostname());
        let named = AuthzArgs {
            hostname: Some("edge-1".into()),
            ..args()
        };
        assert_eq!(named.hostname(), "edge-1");
    }
}
