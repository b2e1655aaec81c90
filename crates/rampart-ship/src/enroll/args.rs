//! `rampart enroll` as the user asks for it, and its one-line answer.
//!
//! With the `clap` feature [`EnrollArgs`] is also the command's arguments: the field doc
//! comments are the help text. Only the binary turns it on.

use std::path::PathBuf;

use super::{enroll, EnrollError, Enrollment};

/// Default credentials directory; the agent's `ship.outputs[].tls_dir` points here.
pub const DEFAULT_TLS_DIR: &str = "/var/lib/rampart/agent/tls";

/// The options of `rampart enroll`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct EnrollArgs {
    /// The server, `https://host:port`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub server: String,
    /// The enrollment token (`rampart server enroll-token`); it carries the region and the
    /// fingerprint of the server's CA.
    #[cfg_attr(feature = "clap", arg(long, env = "RAMPART_ENROLL_TOKEN"))]
    pub token: String,
    /// Where to write `ca.crt`, `agent.crt`, `agent.key` (0600) and `enrollment.json`.
    #[cfg_attr(feature = "clap", arg(long, default_value = DEFAULT_TLS_DIR))]
    pub dir: PathBuf,
    /// Host name the server records for this agent (default: the kernel's hostname).
    #[cfg_attr(feature = "clap", arg(long))]
    pub hostname: Option<String>,
    /// Replace an existing enrollment in `--dir`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub force: bool,
}

impl EnrollArgs {
    /// The host name sent: `--hostname`, else the kernel's ([`rampart_event::hostname`]).
    pub fn hostname(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(rampart_event::hostname)
    }

    /// Enrolls with these options ([`enroll`]).
    pub async fn enroll(&self) -> Result<Enrollment, EnrollError> {
        enroll(
            &self.server,
            &self.token,
            &self.hostname(),
            &self.dir,
            self.force,
        )
        .await
    }
}

impl EnrollError {
    /// The user's input is wrong (the token, an existing enrollment without `--force`, a
    /// refusal by the server), not the world.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            EnrollError::Token(_) | EnrollError::Exists { .. } | EnrollError::Refused { .. }
        )
    }
}

impl Enrollment {
    /// `rampart enroll`'s answer, with the credentials directory `dir`.
    pub fn text(&self, dir: &std::path::Path) -> String {
        let until =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.not_after.max(0) as u64);
        format!(
            "enrolled as {} (region {}, host {}); credentials in {}, valid until {}",
            self.agent_id,
            self.region,
            self.hostname,
            dir.display(),
            humantime::format_rfc3339_seconds(until)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_names_the_agent_and_the_expiry_in_utc() {
        let e = Enrollment {
            server: "https://s:8443".into(),
            agent_id: "agt-1".into(),
            region: "eu-de".into(),
            hostname: "web-1".into(),
            ca_sha256: "00".into(),
            not_after: 1_767_225_600,
        };
        assert_eq!(
            e.text(std::path::Path::new("/var/lib/rampart/agent/tls")),
            "enrolled as agt-1 (region eu-de, host web-1); credentials in /var/lib/rampart/agent/tls, valid until 2026-01-01T00:00:00Z"
        );
        let before_epoch = Enrollment { not_after: -5, ..e };
        assert!(before_epoch
            .text(std::path::Path::new("d"))
            .ends_with("valid until 1970-01-01T00:00:00Z"));
    }

    #[tokio::test]
    async fn a_malformed_token_is_bad_input_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = EnrollArgs {
            server: "https://127.0.0.1:1".into(),
            token: "not-a-token".into(),
            dir: dir.path().join("tls"),
            hostname: Some("h".into()),
            force: false,
        };
        assert_eq!(a.hostname(), "h");
        let e = a.enroll().await.expect_err("refused");
        assert!(e.is_bad_input(), "{e}");
        assert!(!dir.path().join("tls").exists());
        let unnamed = EnrollArgs {
            hostname: None,
            ..a
        };
        assert_eq!(unnamed.hostname(), rampart_event::hostname());
    }
}
