//! The audits, learners and hardeners as the user asks for them (`rampart audit`, `rampart
//! profile`, `rampart harden`): the options of each operation, their defaults, how they become
//! this crate's options structs, and what follows from them (report form, `--fail-on`,
//! limits on `--headroom`, where a learned profile goes).
//!
//! With the `clap` feature these types are also the commands' arguments (`#[command(flatten)]`
//! in the binary): the field doc comments are the help text, so an option, its default and its
//! meaning are written once, beside the code that acts on it. Only the binary turns it on.

use std::path::PathBuf;
use std::time::Duration;

use rampart_event::Severity;

use crate::harden::HardenOptions;
use crate::host::HostOptions;
use crate::learn::LearnOptions;
use crate::userns::{self, UsernsOptions};
use crate::{AuditError, ContainerAuditOptions, Detail, Report};

/// The forms an audit report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ReportFormat {
    /// For people: problems with evidence and the fix.
    Table,
    /// One JSON document: subjects, scores, OCSF findings.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// One OCSF Compliance Finding (2003) per line, for the server.
    Ocsf,
}

/// Where and how an audit's report goes, and the Docker daemon audited.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AuditOutput {
    /// Output format.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = ReportFormat::Table))]
    pub format: ReportFormat,
    /// Exit with 1 when a failed check is at least this severe (low, medium, high, critical).
    #[cfg_attr(feature = "clap", arg(long, value_name = "SEVERITY"))]
    pub fail_on: Option<Severity>,
    /// Show passed and not-applicable checks in the table too.
    #[cfg_attr(feature = "clap", arg(long))]
    pub all: bool,
    /// Write the report to FILE instead of standard output.
    #[cfg_attr(feature = "clap", arg(short, long, value_name = "FILE"))]
    pub output: Option<PathBuf>,
    /// Docker Engine socket.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")
    )]
    pub docker_socket: PathBuf,
}

impl Default for AuditOutput {
    fn default() -> Self {
        AuditOutput {
            format: ReportFormat::Table,
            fail_on: None,
            all: false,
            output: None,
            docker_socket: PathBuf::from(rampart_container::DEFAULT_SOCKET),
        }
    }
}

impl AuditOutput {
    /// The report in the form asked for (JSON forms end with a newline).
    pub fn render(&self, report: &Report) -> String {
        match self.format {
            ReportFormat::Table => report.table(if self.all {
                Detail::All
            } else {
                Detail::Problems
            }),
            // `{:#}` is serde_json's pretty form, the same text as `to_string_pretty`.
            ReportFormat::Json => format!("{:#}\n", report.json()),
            ReportFormat::Sarif => format!("{:#}\n", report.sarif()),
            ReportFormat::Ocsf => report.ocsf_lines(),
        }
    }

    /// The `--fail-on` threshold a failed check of `report` reached, if any.
    pub fn failed_threshold(&self, report: &Report) -> Option<Severity> {
        self.fail_on.filter(|t| report.fails_at(*t))
    }
}

/// `rampart audit host`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct HostAuditArgs {
    #[cfg_attr(feature = "clap", command(flatten))]
    pub out: AuditOutput,
    /// The daemon configuration file to check.
    #[cfg_attr(feature = "clap", arg(long, default_value = crate::host::daemon::DAEMON_JSON))]
    pub daemon_json: PathBuf,
    /// Do not load BPF programs to probe the kernel.
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_bpf: bool,
}

impl HostAuditArgs {
    /// The host audit's options.
    pub fn options(&self) -> HostOptions {
        HostOptions {
            daemon_json: self.daemon_json.clone(),
            probe_bpf: !self.no_bpf,
            ..HostOptions::default()
        }
    }
}

/// `rampart audit containers`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ContainersAuditArgs {
    /// Containers (names or ids); every running container when none is given.
    pub names: Vec<String>,
    #[cfg_attr(feature = "clap", command(flatten))]
    pub out: AuditOutput,
    /// A registry images may come from (repeatable; e.g. docker.io, ghcr.io/myorg).
    #[cfg_attr(
        feature = "clap",
        arg(long = "allowed-registry", value_name = "REGISTRY")
    )]
    pub allowed_registries: Vec<String>,
    /// The daemon configuration file (for daemon-wide defaults such as no-new-privileges).
    #[cfg_attr(feature = "clap", arg(long, default_value = crate::host::daemon::DAEMON_JSON))]
    pub daemon_json: PathBuf,
}

impl ContainersAuditArgs {
    /// The container audit's options.
    pub fn options(&self) -> ContainerAuditOptions {
        ContainerAuditOptions {
            allowed_registries: self.allowed_registries.clone(),
            daemon_json: self.daemon_json.clone(),
            ..ContainerAuditOptions::default()
        }
    }
}

/// `rampart audit image`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ImageAuditArgs {
    /// The image (name:tag, name@digest or id).
    pub image: String,
    #[cfg_attr(feature = "clap", command(flatten))]
    pub out: AuditOutput,
    /// A registry images may come from (repeatable).
    #[cfg_attr(
        feature = "clap",
        arg(long = "allowed-registry", value_name = "REGISTRY")
    )]
    pub allowed_registries: Vec<String>,
}

/// `rampart harden host --userns`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct UsernsArgs {
    /// Turn on user-namespace remapping (`userns-remap`): container root becomes an
    /// unprivileged host uid of 100000 or more.
    #[cfg_attr(feature = "clap", arg(long, required = true))]
    pub userns: bool,
    /// The remap user: `default` (dockerd creates user and group dockremap), `USER` or
    /// `USER:GROUP` (names that exist on the host).
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "SPEC", default_value = "default")
    )]
    pub remap: String,
    /// Write the changes (daemon.json, subuid, subgid); without it, only show them.
    #[cfg_attr(feature = "clap", arg(long, conflicts_with = "verify"))]
    pub apply: bool,
    /// After dockerd's restart: check that the daemon remaps and that running containers' root
    /// maps to the allocated range (from /proc/PID/uid_map).
    #[cfg_attr(feature = "clap", arg(long))]
    pub verify: bool,
    /// With --verify: the container to check [default: every running container].
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME", requires = "verify"))]
    pub container: Vec<String>,
    /// daemon.json to edit.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH", default_value = crate::host::daemon::DAEMON_JSON))]
    pub daemon_json: PathBuf,
    /// Subordinate uid file.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH", default_value = userns::SUBUID))]
    pub subuid: PathBuf,
    /// Subordinate gid file.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH", default_value = userns::SUBGID))]
    pub subgid: PathBuf,
    /// Docker Engine socket (for --verify).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")
    )]
    pub docker_socket: PathBuf,
}

impl UsernsArgs {
    /// The planner's options; the running dockerd's `--userns-remap` flag is read from its
    /// command line ([`userns::running_flag`]).
    pub fn options(&self) -> UsernsOptions {
        UsernsOptions {
            spec: self.remap.clone(),
            daemon_json: self.daemon_json.clone(),
            subuid: self.subuid.clone(),
            subgid: self.subgid.clone(),
            flag_remap: userns::running_flag(&self.daemon_json),
        }
    }
}

/// What a recording of a container is asked to do (`rampart profile seccomp`, `rampart
/// harden`): how long, and whether the container restarts under the recorder.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct SeccompLearnArgs {
    /// Container name or id.
    pub container: String,
    /// How long to record (e.g. 60s, 5m).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "60s", value_parser = humantime::parse_duration)
    )]
    pub duration: Duration,
    /// Where to write the profile.
    #[cfg_attr(feature = "clap", arg(short, long, value_name = "PROFILE.json"))]
    pub output: PathBuf,
    /// Restart the container under the recorder so its start-up is learned too (needed for a
    /// profile the container can start with).
    #[cfg_attr(feature = "clap", arg(long))]
    pub restart: bool,
    /// Merge the learned syscalls into these existing profiles' (repeatable).
    #[cfg_attr(feature = "clap", arg(long, value_name = "PROFILE.json"))]
    pub merge: Vec<PathBuf>,
    /// Also save the raw recording (syscall counts, capability checks, writes, peaks).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub recording: Option<PathBuf>,
    /// Docker Engine socket.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")
    )]
    pub docker_socket: PathBuf,
}

impl SeccompLearnArgs {
    /// The recorder's options.
    pub fn learn_options(&self) -> LearnOptions {
        LearnOptions {
            duration: self.duration,
            restart: self.restart,
            ..LearnOptions::default()
        }
    }
}

/// `rampart profile apparmor`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AppArmorArgs {
    /// Container name or id (running, unless --events is given).
    pub container: String,
    /// How long to record (e.g. 60s, 5m).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "60s", value_parser = humantime::parse_duration)
    )]
    pub duration: Duration,
    /// Where to write the learned profile.
    #[cfg_attr(
        feature = "clap",
        arg(short, long, value_name = "PROFILE", required_unless_present = "check")
    )]
    pub output: Option<PathBuf>,
    /// The profile's name (default: rampart-CONTAINER).
    #[cfg_attr(feature = "clap", arg(long))]
    pub name: Option<String>,
    /// Write the profile in complain mode: AppArmor logs what it would refuse, refuses nothing.
    #[cfg_attr(feature = "clap", arg(long))]
    pub complain: bool,
    /// Do not learn: report what the container did (recorded now, or read from --events)
    /// that PROFILE would refuse; exits 1 when there is any.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "PROFILE", conflicts_with_all = ["output", "complain"])
    )]
    pub check: Option<PathBuf>,
    /// Read the container's events from this JSON-lines file (`rampart agent -o jsonl:FILE`)
    /// instead of recording.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub events: Option<PathBuf>,
    /// Docker Engine socket.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")
    )]
    pub docker_socket: PathBuf,
}

impl AppArmorArgs {
    /// The learned profile's name: `--name`, else `rampart-CONTAINER` for the container's name
    /// `cname` ([`crate::apparmor::profile_name`]).
    pub fn profile_name(&self, cname: &str) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| crate::apparmor::profile_name(cname))
    }

    /// How the events were obtained, for the profile's header.
    pub fn how(&self) -> String {
        match self.events {
            Some(_) => "from a file of events".to_string(),
            None => format!("recorded for {}", humantime::format_duration(self.duration)),
        }
    }
}

/// What `rampart harden CONTAINER` observes and how it sizes the proposal.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct HardenObserveArgs {
    /// How long to observe it (e.g. 60s, 5m), unless --recording is given.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "60s", value_parser = humantime::parse_duration)
    )]
    pub duration: Duration,
    /// Restart the container under the recorder so its start-up is observed too.
    #[cfg_attr(feature = "clap", arg(long))]
    pub restart: bool,
    /// Use a saved recording (`rampart profile seccomp --recording FILE`) instead of observing.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "FILE", conflicts_with_all = ["restart"])
    )]
    pub recording: Option<PathBuf>,
    /// Where to write the learned seccomp profile [default: ./CONTAINER.seccomp.json].
    #[cfg_attr(feature = "clap", arg(long, value_name = "PROFILE.json"))]
    pub profile_out: Option<PathBuf>,
    /// The AppArmor profile learned for the container (`rampart profile apparmor`) and loaded
    /// with `apparmor_parser -r`: the run line gets --security-opt apparmor=NAME.
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME"))]
    pub apparmor: Option<String>,
    /// Multiplier for observed peaks when sizing limits.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1.5))]
    pub headroom: f64,
}

impl HardenObserveArgs {
    /// The range `--headroom` must be in: below 1 limits would cut the observed peaks, above
    /// 10 they stop being limits.
    pub const HEADROOM: std::ops::RangeInclusive<f64> = 1.0..=10.0;

    /// Refuses a headroom outside [`HardenObserveArgs::HEADROOM`] (NaN included).
    pub fn validate(&self) -> Result<(), AuditError> {
        if Self::HEADROOM.contains(&self.headroom) {
            Ok(())
        } else {
            Err(AuditError::Option {
                option: "--headroom",
                value: self.headroom.to_string(),
                reason: "must be between 1.0 and 10.0",
            })
        }
    }

    /// The recorder's options.
    pub fn learn_options(&self) -> LearnOptions {
        LearnOptions {
            duration: self.duration,
            restart: self.restart,
            ..LearnOptions::default()
        }
    }

    /// Where the learned profile goes: `--profile-out`, else `./CONTAINER.seccomp.json` for the
    /// recorded container's name.
    pub fn profile_path(&self, container: &str) -> PathBuf {
        self.profile_out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{container}.seccomp.json")))
    }

    /// The proposal's options, with the profile at `profile_path` (absolute) and what the
    /// daemon does already.
    pub fn options(
        &self,
        profile_path: &std::path::Path,
        daemon_userns_remap: bool,
    ) -> HardenOptions {
        HardenOptions {
            headroom: self.headroom,
            profile_path: Some(profile_path.display().to_string()),
            daemon_userns_remap,
            apparmor_profile: self.apparmor.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harden(headroom: f64) -> HardenObserveArgs {
        HardenObserveArgs {
            duration: Duration::from_secs(60),
            restart: false,
            recording: None,
            profile_out: None,
            apparmor: Some("rampart-web".into()),
            headroom,
        }
    }

    #[test]
    fn headroom_outside_one_to_ten_is_bad_input() {
        for ok in [1.0, 1.5, 10.0] {
            assert!(harden(ok).validate().is_ok(), "{ok}");
        }
        for bad in [0.99, 10.01, -1.0, f64::NAN, f64::INFINITY] {
            let e = harden(bad).validate().expect_err("refused");
            assert!(e.is_bad_input(), "{bad}: {e}");
            assert!(e.to_string().contains("--headroom"), "{e}");
        }
    }

    #[test]
    fn harden_profile_path_defaults_to_the_container_name() {
        let mut a = harden(1.5);
        assert_eq!(a.profile_path("web"), PathBuf::from("web.seccomp.json"));
        a.profile_out = Some(PathBuf::from("/tmp/p.json"));
        assert_eq!(a.profile_path("web"), PathBuf::from("/tmp/p.json"));
        let o = a.options(std::path::Path::new("/abs/p.json"), true);
        assert_eq!(o.profile_path.as_deref(), Some("/abs/p.json"));
        assert!(o.daemon_userns_remap);
        assert_eq!(o.apparmor_profile.as_deref(), Some("rampart-web"));
        assert_eq!(o.headroom, 1.5);
    }

    #[test]
    fn apparmor_names_and_header_follow_the_options() {
        let mut a = AppArmorArgs {
            container: "web".into(),
            duration: Duration::from_secs(120),
            output: None,
            name: None,
            complain: false,
            check: None,
            events: None,
            docker_socket: PathBuf::from("/run/docker.sock"),
        };
        assert_eq!(a.profile_name("web"), crate::apparmor::profile_name("web"));
        assert_eq!(a.how(), "recorded for 2m");
        a.name = Some("mine".into());
        a.events = Some(PathBuf::from("ev.jsonl"));
        assert_eq!(a.profile_name("web"), "mine");
        assert_eq!(a.how(), "from a file of events");
    }

    #[test]
    fn audit_options_carry_the_flags() {
        let h = HostAuditArgs {
            out: AuditOutput::default(),
            daemon_json: PathBuf::from("/x/daemon.json"),
            no_bpf: true,
        };
        let o = h.options();
        assert!(!o.probe_bpf);
        assert_eq!(o.daemon_json, PathBuf::from("/x/daemon.json"));
        let c = ContainersAuditArgs {
            names: vec![],
            out: AuditOutput::default(),
            allowed_registries: vec!["ghcr.io/me".into()],
            daemon_json: PathBuf::from("/y.json"),
        };
        let o = c.options();
        assert_eq!(o.allowed_registries, ["ghcr.io/me"]);
        assert_eq!(o.proc_root, PathBuf::from("/proc"));
    }

    #[test]
    fn report_forms_and_the_gate() {
        let report = Report::default();
        let mut out = AuditOutput {
            format: ReportFormat::Json,
            ..AuditOutput::default()
        };
        let text = out.render(&report);
        assert!(text.ends_with('\n'));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).expect("json"),
            report.json()
        );
        assert_eq!(
            text,
            serde_json::to_string_pretty(&report.json()).expect("json") + "\n"
        );
        out.format = ReportFormat::Sarif;
        assert_eq!(
            out.render(&report),
            serde_json::to_string_pretty(&report.sarif()).expect("sarif") + "\n"
        );
        out.format = ReportFormat::Ocsf;
        assert_eq!(out.render(&report), report.ocsf_lines());
        out.fail_on = Some(Severity::Low);
        assert_eq!(out.failed_threshold(&report), None, "nothing failed");
    }
}
