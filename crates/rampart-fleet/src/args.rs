//! The options of `rampart incident` and of the `rampart server` admin commands (with the
//! `clap` feature, their arguments: the doc comments are the help text), and what follows from
//! them.

use std::path::{Path, PathBuf};

use crate::admin::{self, AdminError};
use crate::{IncidentSettings, MarkRequest, RegulationError};

/// The options every `rampart incident` command takes.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct IncidentOptions {
    /// The server configuration: its `data_dir` and `fleet:` roles and regulations are used
    /// unless the options below are given (default /etc/rampart/server.yaml when it exists).
    #[cfg_attr(feature = "clap", arg(long, global = true))]
    pub config: Option<PathBuf>,
    /// The server's data directory (holds incidents.db; default: the configuration's, else
    /// /var/lib/rampart/server).
    #[cfg_attr(
        feature = "clap",
        arg(long, global = true, env = "RAMPART_SERVER_DATA")
    )]
    pub data_dir: Option<PathBuf>,
    /// Regulation files to use instead of the configuration's or the ones shipped with Rampart.
    #[cfg_attr(feature = "clap", arg(long, global = true))]
    pub regulations: Option<PathBuf>,
    /// A role your organisation has (nis2-entity, cn-ciio, hk-ci-operator); repeatable.
    /// Default: `fleet.roles` of the configuration.
    #[cfg_attr(feature = "clap", arg(long = "role", global = true))]
    pub roles: Vec<String>,
}

/// Why [`IncidentOptions::settings`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The server configuration could not be read or is wrong.
    #[error(transparent)]
    Config(#[from] AdminError),
    /// The regulations the user named (`--regulations` or `fleet.regulations_dir`) did not
    /// load.
    #[error(transparent)]
    UserRegulations(RegulationError),
    /// The built-in regulations did not load.
    #[error(transparent)]
    Regulations(RegulationError),
}

impl SettingsError {
    /// Whether the error is the user's input being wrong (exit code 2): a configuration that
    /// does not parse, or a regulations directory the user named that does not load (the
    /// built-in set cannot be wrong).
    pub fn is_bad_input(&self) -> bool {
        match self {
            SettingsError::Config(e) => e.is_bad_input(),
            SettingsError::UserRegulations(_) => true,
            SettingsError::Regulations(_) => false,
        }
    }
}

impl IncidentOptions {
    /// The options, else the server configuration (`--config`, else `default_config` when it
    /// exists), else defaults.
    pub fn settings(&self, default_config: &Path) -> Result<IncidentSettings, SettingsError> {
        let cfg = match &self.config {
            Some(p) => Some(admin::load_config(p, default_config)?),
            None if default_config.exists() => {
                Some(admin::load_config(default_config, default_config)?)
            }
            None => None,
        };
        let from_user = self.regulations.is_some()
            || cfg
                .as_ref()
                .is_some_and(|s| s.fleet.regulations_dir.is_some());
        IncidentSettings::resolve(
            cfg,
            self.data_dir.clone(),
            self.regulations.clone(),
            self.roles.clone(),
        )
        .map_err(|e| match from_user {
            true => SettingsError::UserRegulations(e),
            false => SettingsError::Regulations(e),
        })
    }
}

/// `rampart incident mark`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct MarkArgs {
    // The incident (a plain comment: `rampart incident mark --help` shows `<ID>` without text).
    pub id: String,
    /// Whether personal data was breached (yes or no).
    #[cfg_attr(feature = "clap", arg(long, value_parser = ["yes", "no"]))]
    pub personal_data_breach: Option<String>,
    /// Whether an attack caused it (yes or no).
    #[cfg_attr(feature = "clap", arg(long, value_parser = ["yes", "no"]))]
    pub malicious: Option<String>,
    /// When your organisation became aware (2026-03-06T16:00:00Z, or `now`).
    #[cfg_attr(feature = "clap", arg(long))]
    pub aware_at: Option<String>,
    /// When the breach was determined to be notifiable (Singapore, Australia).
    #[cfg_attr(feature = "clap", arg(long))]
    pub determined_at: Option<String>,
    /// Confirm the incident (2026-03-06T16:00:00Z, or `now`): its deadlines stop being
    /// provisional and count from awareness (the confirmation unless --aware-at says otherwise).
    #[cfg_attr(feature = "clap", arg(long))]
    pub confirm: Option<String>,
    /// A notification was submitted: REGIME/DEADLINE, optionally @TIME (default now); repeatable.
    #[cfg_attr(feature = "clap", arg(long))]
    pub submitted: Vec<String>,
    /// Close the incident (it takes no more alerts).
    #[cfg_attr(feature = "clap", arg(long))]
    pub close: bool,
}

impl MarkArgs {
    /// The decisions to record (`yes` is true, anything else false; clap admits only `yes`
    /// and `no`).
    pub fn request(&self) -> MarkRequest {
        MarkRequest {
            personal_data_breach: self.personal_data_breach.as_ref().map(|v| v == "yes"),
            malicious: self.malicious.as_ref().map(|v| v == "yes"),
            aware_at: self.aware_at.clone(),
            determined_at: self.determined_at.clone(),
            confirm: self.confirm.clone(),
            submitted: self.submitted.clone(),
            close: self.close,
        }
    }
}

/// `rampart server enroll-token`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct EnrollTokenArgs {
    /// Jurisdiction tag of the hosts that enroll with it (`eu-de`, `us-ca`, `sg`, ...).
    #[cfg_attr(feature = "clap", arg(long))]
    pub region: String,
    /// How many agents may enroll with it.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1))]
    pub uses: u32,
    /// How long it is valid (`30m`, `24h`, `7d`).
    #[cfg_attr(feature = "clap", arg(long, default_value = "24h"))]
    pub ttl: String,
}

impl EnrollTokenArgs {
    /// Creates the token in the server's control store (see [`admin::enroll_token`]).
    pub fn create(
        &self,
        cfg: &rampart_server::ServerConfig,
    ) -> Result<rampart_ship::protocol::EnrollToken, AdminError> {
        admin::enroll_token(cfg, &self.region, self.uses, &self.ttl)
    }
}

/// `rampart server token create`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct TokenCreateArgs {
    // The token's name (a plain comment: the help shows `--name <NAME>` without text).
    #[cfg_attr(feature = "clap", arg(long))]
    pub name: String,
    /// `admin`, `analyst` (events and alerts) or `read-only` (alerts and agents).
    #[cfg_attr(feature = "clap", arg(long))]
    pub role: String,
}

/// `rampart server user add`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct UserAddArgs {
    // The user's name (a plain comment: the help shows `<NAME>` without text).
    pub name: String,
    /// `admin`, `analyst` (events and alerts) or `read-only` (alerts, hosts, incidents;
    /// no raw events).
    #[cfg_attr(feature = "clap", arg(long))]
    pub role: String,
    /// File holding the password (first line).
    #[cfg_attr(feature = "clap", arg(long))]
    pub password_file: Option<PathBuf>,
}

impl UserAddArgs {
    /// Reads the password (`--password-file`, else the first line of `stdin`) and adds the
    /// user; returns the role.
    pub fn add(
        &self,
        control: &rampart_server::control::Control,
        stdin: impl std::io::BufRead,
    ) -> Result<rampart_server::Role, AdminError> {
        let password = admin::read_password(self.password_file.as_deref(), stdin)?;
        admin::add_user(control, &self.name, &self.role, &password)
    }
}

/// `rampart server config publish`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ConfigPublishArgs {
    // The source directory (a plain comment: the help shows `<DIR>` without text).
    pub dir: PathBuf,
    /// The version to publish (above every version published before; default: the next).
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub set_version: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn user_add_reads_the_password_from_the_file_else_stdin_and_refuses_a_short_one() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = rampart_server::ServerConfig::with_data_dir(dir.path());
        let (control, _ca) = rampart_server::open_control(&cfg).unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "correct horse battery\nignored\n").unwrap();
        let mut a = UserAddArgs {
            name: "ana".into(),
            role: "analyst".into(),
            password_file: Some(pw),
        };
        let role = a.add(&control, &b"not read\n"[..]).unwrap();
        assert_eq!(role.as_str(), "analyst");
        assert!(control.users().unwrap().iter().any(|u| u.username == "ana"));
        a.name = "bob".into();
        a.password_file = None;
        let e = a.add(&control, &b"short\n"[..]).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        a.role = "root".into();
        let e = a
            .add(&control, &b"a long enough password\n"[..])
            .unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(!control.users().unwrap().iter().any(|u| u.username == "bob"));
    }

    #[test]
    fn enroll_token_ttl_that_is_not_a_duration_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = rampart_server::ServerConfig::with_data_dir(dir.path());
        let mut a = EnrollTokenArgs {
            region: "eu-de".into(),
            uses: 2,
            ttl: "soon".into(),
        };
        let e = a.create(&cfg).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("--ttl \"soon\""),
            "{e}"
        );
        a.ttl = "1h".into();
        let t = a.create(&cfg).unwrap();
        assert!(!t.secret.is_empty() && t.ca_sha256 != [0; 32]);
    }

    #[test]
    fn mark_args_become_the_request_yes_and_no_as_booleans() {
        let a = MarkArgs {
            id: "inc-1".into(),
            personal_data_breach: Some("yes".into()),
            malicious: Some("no".into()),
            confirm: Some("now".into()),
            submitted: vec!["gdpr/art33".into()],
            close: true,
            ..MarkArgs::default()
        };
        let r = a.request();
        assert_eq!(r.personal_data_breach, Some(true));
        assert_eq!(r.malicious, Some(false));
        assert_eq!(r.confirm.as_deref(), Some("now"));
        assert_eq!(r.aware_at, None);
        assert_eq!(r.submitted, vec!["gdpr/art33".to_string()]);
        assert!(r.close);
        assert_eq!(MarkArgs::default().request(), MarkRequest::default());
    }

    #[test]
    fn settings_prefer_options_over_the_configuration_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("server.yaml");
        // No configuration: the defaults and the built-in regulations.
        let s = IncidentOptions::default().settings(&missing).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/rampart/server"));
        assert!(!s.regulations.is_empty() && s.roles.is_empty());
        // The configuration's data directory and roles, unless the options say otherwise.
        let cfg = dir.path().join("cfg.yaml");
        std::fs::write(
            &cfg,
            "data_dir: /srv/rampart\nfleet:\n  roles: [nis2-entity]\n",
        )
        .unwrap();
        let mut o = IncidentOptions {
            config: Some(cfg.clone()),
            ..IncidentOptions::default()
        };
        let s = o.settings(&missing).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/rampart"));
        assert_eq!(s.roles, vec!["nis2-entity".to_string()]);
        o.data_dir = Some(dir.path().into());
        o.roles = vec!["cn-ciio".into()];
        let s = o.settings(&missing).unwrap();
        assert_eq!(s.data_dir, dir.path());
        assert_eq!(s.roles, vec!["cn-ciio".to_string()]);
        // The default configuration is read when it exists.
        let s = IncidentOptions::default().settings(&cfg).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/rampart"));
    }

    #[test]
    fn a_regulations_directory_or_configuration_that_is_wrong_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("server.yaml");
        let regs = dir.path().join("regs");
        std::fs::create_dir(&regs).unwrap();
        std::fs::write(regs.join("bad.yaml"), "regime: [unclosed\n").unwrap();
        let o = IncidentOptions {
            regulations: Some(regs),
            ..IncidentOptions::default()
        };
        let e = o.settings(&missing).unwrap_err();
        assert!(
            matches!(e, SettingsError::UserRegulations(_)) && e.is_bad_input(),
            "{e}"
        );
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "data_dir: [\n").unwrap();
        let o = IncidentOptions {
            config: Some(bad),
            ..IncidentOptions::default()
        };
        let e = o.settings(&missing).unwrap_err();
        assert!(
            matches!(e, SettingsError::Config(_)) && e.is_bad_input(),
            "{e}"
        );
        // A configuration that cannot be read is not the user's input being wrong.
        let o = IncidentOptions {
            config: Some(dir.path().join("absent.yaml")),
            ..IncidentOptions::default()
        };
        assert!(!o.settings(&missing).unwrap_err().is_bad_input());
    }
}
