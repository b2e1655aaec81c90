//! A scan as the user asks for it (`rampart image scan`, `rampart db update`): which target,
//! which database, which content checks, which report format and which `--fail-on` gate; and
//! the decisions that follow from the request (the database is optional, only the default set
//! of checks is cached, the gate's answer).
//!
//! With the `clap` feature these types are also the command's arguments
//! (`#[command(flatten)]`): the field doc comments are the help text `rampart` prints, so the
//! options, their defaults and their meaning are written down once, here, beside the code that
//! acts on them.

use std::path::PathBuf;
use std::time::Duration;

use rampart_event::Severity;

use crate::analyze::malware::YaraError;
use crate::analyze::ContentChecks;
use crate::cache::{InventoryCache, DEFAULT_CACHE_DIR};
use crate::db::{DbError, UpdateOptions, VulnDb, DEFAULT_DB_PATH, DEFAULT_ECOSYSTEMS};
use crate::image::{ImageReader, Progress, Target};
use crate::limit::Limits;
use crate::report::{self, ScanReport};
use crate::scan::{ScanError, ScanOptions};

/// The database option every command that uses the database takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DbPath {
    /// The vulnerability database (SQLite file); several can live side by side.
    #[cfg_attr(
        feature = "clap",
        arg(long = "db", env = "RAMPART_DB", default_value = DEFAULT_DB_PATH)
    )]
    pub path: PathBuf,
}

impl Default for DbPath {
    fn default() -> Self {
        DbPath {
            path: PathBuf::from(DEFAULT_DB_PATH),
        }
    }
}

/// Options of `rampart db update` (also the server's scheduled update), in the units people
/// give them (MiB); [`UpdateArgs::options`] is what [`crate::update_db`] takes.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct UpdateArgs {
    #[cfg_attr(feature = "clap", command(flatten))]
    pub db: DbPath,
    /// Base URL of the `<ecosystem>/all.zip` layout: osv.dev's bucket, or a mirror (`https://`,
    /// `http://`, `file:///dir` for an air-gapped host).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "RAMPART_OSV_URL", default_value = crate::DEFAULT_OSV_URL)
    )]
    pub base_url: String,
    /// An ecosystem to fetch, as osv.dev names its directories (`PyPI`, `Debian`, `crates.io`);
    /// repeat it. Default: every ecosystem the scanner inventories.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "ecosystem",
            value_name = "NAME",
            env = "RAMPART_OSV_ECOSYSTEMS",
            value_delimiter = ','
        )
    )]
    pub ecosystems: Vec<String>,
    /// Require `<ecosystem>/all.zip.sha256` next to each zip and check it (for mirrors).
    #[cfg_attr(feature = "clap", arg(long))]
    pub checksum: bool,
    /// Fetch everything, ignoring the stored ETag / Last-Modified.
    #[cfg_attr(feature = "clap", arg(long))]
    pub force: bool,
    /// Give up on a server silent this long (`60s`).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "60s", value_parser = humantime::parse_duration)
    )]
    pub read_timeout: Duration,
    /// The longest one download may take (`30m`).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "30m", value_parser = humantime::parse_duration)
    )]
    pub download_timeout: Duration,
    /// The largest zip accepted, MiB.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 2048))]
    pub max_download_mib: u64,
    /// The largest total of one zip's records decompressed, MiB (zip bombs).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 16384))]
    pub max_uncompressed_mib: u64,
}

impl UpdateArgs {
    /// The library's options: no ecosystem given means every ecosystem the scanner
    /// inventories ([`DEFAULT_ECOSYSTEMS`]); sizes in bytes.
    pub fn options(&self) -> UpdateOptions {
        UpdateOptions {
            base_url: self.base_url.clone(),
            ecosystems: if self.ecosystems.is_empty() {
                DEFAULT_ECOSYSTEMS.iter().map(|e| e.to_string()).collect()
            } else {
                self.ecosystems.clone()
            },
            checksum: self.checksum,
            force: self.force,
            read_timeout: self.read_timeout,
            download_timeout: self.download_timeout,
            max_download: self.max_download_mib << 20,
            max_uncompressed: self.max_uncompressed_mib << 20,
            ..UpdateOptions::default()
        }
    }
}

/// The forms a scan report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ReportFormat {
    /// Findings grouped by package, for people.
    Table,
    /// Image, summary, OCSF Vulnerability Findings, packages, warnings.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// CycloneDX 1.5 SBOM (JSON).
    Cyclonedx,
    /// SPDX 2.3 SBOM (JSON).
    Spdx,
}

impl ReportFormat {
    /// SBOMs describe the inventory only: no database is read for them.
    pub fn is_sbom(self) -> bool {
        matches!(self, ReportFormat::Cyclonedx | ReportFormat::Spdx)
    }

    /// The report in this form; `ansi` colours the table (a terminal).
    pub fn render(self, r: &ScanReport, ansi: bool) -> String {
        match self {
            ReportFormat::Table => report::render_table(r, ansi),
            ReportFormat::Json => report::render_json(r),
            ReportFormat::Sarif => report::render_sarif(r),
            ReportFormat::Cyclonedx => report::render_cyclonedx(r),
            ReportFormat::Spdx => report::render_spdx(r),
        }
    }
}

/// Severities for `--fail-on`; `unknown` (records without a severity) ranks below `low`, so
/// `--fail-on unknown` fails on any vulnerability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FailOn {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl FailOn {
    /// The least severe finding that fails the gate.
    pub fn severity(self) -> Severity {
        match self {
            FailOn::Unknown => Severity::Unknown,
            FailOn::Low => Severity::Low,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        }
    }
}

/// The answer of the `--fail-on` gate for one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Nothing at or above the threshold, and vulnerabilities were matched.
    Pass,
    /// A finding of any kind at or above the threshold (exit 3).
    Found,
    /// Nothing at or above the threshold was found, but vulnerabilities were never matched (no
    /// usable database): the gate cannot pass an image nobody looked at (exit 4).
    NotMatched,
}

impl Gate {
    /// The process exit code `rampart image scan --fail-on` documents: 0, 3 or 4.
    pub fn exit_code(self) -> u8 {
        match self {
            Gate::Pass => 0,
            Gate::Found => 3,
            Gate::NotMatched => 4,
        }
    }
}

impl ScanReport {
    /// The gate's answer at `threshold`. A finding at or above it wins over a database that
    /// could not be used.
    pub fn gate(&self, threshold: Severity) -> Gate {
        if self.worst_severity().is_some_and(|w| w >= threshold) {
            Gate::Found
        } else if self.not_matched.is_some() {
            Gate::NotMatched
        } else {
            Gate::Pass
        }
    }
}

/// One `rampart image scan`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ScanRequest {
    /// What to scan (see above).
    pub target: String,
    #[cfg_attr(feature = "clap", command(flatten))]
    pub db: DbPath,
    /// Inventory only: do not read the vulnerability database (implied by SBOM formats).
    #[cfg_attr(feature = "clap", arg(long))]
    pub skip_db: bool,
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = ReportFormat::Table))]
    pub format: ReportFormat,
    /// Write the report here instead of standard output.
    #[cfg_attr(feature = "clap", arg(long, short))]
    pub output: Option<PathBuf>,
    /// Exit 3 when a vulnerability or another finding (secret, malware, configuration) of this
    /// severity or higher is found (for CI pipelines); exit 4 when nothing of that severity was
    /// found but vulnerabilities could not be matched (no database).
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub fail_on: Option<FailOn>,
    /// Extra YARA rule files, run beside the built-in crypto-miner rules.
    #[cfg_attr(feature = "clap", arg(long = "yara", value_name = "FILE"))]
    pub yara: Vec<PathBuf>,
    /// Do not look for secrets in files.
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_secrets: bool,
    /// Do not run YARA rules (crypto-miners, --yara).
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_malware: bool,
    /// Leave out vulnerabilities without a published fix.
    #[cfg_attr(feature = "clap", arg(long))]
    pub ignore_unfixed: bool,
    /// Warn when the vulnerability database is older than this (`7d`).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "7d", value_parser = humantime::parse_duration)
    )]
    pub max_db_age: Duration,
    /// Where inventories are cached by image id.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "RAMPART_SCAN_CACHE", default_value = DEFAULT_CACHE_DIR)
    )]
    pub cache_dir: PathBuf,
    /// Do not use or write the inventory cache.
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_cache: bool,
    /// Read the image again even when a cached inventory exists.
    #[cfg_attr(feature = "clap", arg(long))]
    pub refresh: bool,
}

/// The database a scan matches against, or why there is none.
#[derive(Debug, Default)]
pub struct ScanDb {
    pub db: Option<VulnDb>,
    /// Why vulnerabilities will not be matched although they were wanted (no database at the
    /// path, a database of another schema), in words.
    pub not_matched: Option<String>,
}

/// A finished scan: the report (filtered as asked) and what the user should be warned about.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub report: ScanReport,
    /// One line each, without the `warning: ` prefix (a stale database).
    pub warnings: Vec<String>,
}

impl ScanRequest {
    /// A request for `target` with the command's defaults.
    pub fn new(target: &str) -> ScanRequest {
        ScanRequest {
            target: target.to_string(),
            db: DbPath::default(),
            skip_db: false,
            format: ReportFormat::Table,
            output: None,
            fail_on: None,
            yara: Vec::new(),
            no_secrets: false,
            no_malware: false,
            ignore_unfixed: false,
            max_db_age: Duration::from_secs(7 * 86_400),
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            no_cache: false,
            refresh: false,
        }
    }

    /// The content checks asked for.
    pub fn checks(&self) -> ContentChecks {
        ContentChecks {
            secrets: !self.no_secrets,
            malware: !self.no_malware,
            yara_files: self.yara.clone(),
        }
    }

    /// The reader with the checks asked for; a YARA file that does not compile is the user's
    /// input.
    pub fn reader(&self) -> Result<ImageReader, YaraError> {
        ImageReader::with_checks(Limits::default(), &self.checks())
    }

    /// Cache and refresh. Inventories depend on the content checks, so only inventories made
    /// with the default set are cached.
    pub fn options(&self) -> ScanOptions {
        let default_checks = self.checks() == ContentChecks::default();
        ScanOptions {
            cache: (!self.no_cache && default_checks).then(|| InventoryCache::new(&self.cache_dir)),
            refresh: self.refresh,
        }
    }

    /// Whether the database is wanted: not with `--skip-db`, not for an SBOM.
    pub fn wants_db(&self) -> bool {
        !self.skip_db && !self.format.is_sbom()
    }

    /// The database to match against, when wanted ([`ScanRequest::wants_db`]). A missing or
    /// unusable database does not stop the scan: the inventory, secrets, malware and
    /// configuration checks still run, and `not_matched` says why vulnerabilities were not
    /// matched (the report says so, and the gate refuses to pass). Other failures to open it
    /// are errors.
    pub fn open_db(&self) -> Result<ScanDb, DbError> {
        if !self.wants_db() {
            return Ok(ScanDb::default());
        }
        Ok(match report::open_for_scan(&self.db.path)? {
            Ok(db) => ScanDb {
                db: Some(db),
                not_matched: None,
            },
            Err(why) => ScanDb {
                db: None,
                not_matched: Some(why),
            },
        })
    }

    /// Scans with `reader` (from [`ScanRequest::reader`]) against `db` (from
    /// [`ScanRequest::open_db`]): the report says why vulnerabilities were not matched, its
    /// database is marked stale past `--max-db-age`, and fixless findings are left out with
    /// `--ignore-unfixed`.
    pub fn scan(
        &self,
        reader: &ImageReader,
        db: ScanDb,
        progress: &dyn Progress,
    ) -> Result<Scanned, ScanError> {
        let mut warnings = Vec::new();
        let target = Target::parse(&self.target);
        let mut report =
            crate::scan::scan(reader, &target, db.db.as_ref(), &self.options(), progress)?;
        report.not_matched = db.not_matched;
        if report.mark_stale(self.max_db_age) {
            if let Some(info) = &report.db {
                warnings.push(info.describe());
            }
        }
        if self.ignore_unfixed {
            report
                .matches
                .findings
                .retain(|f| f.fixed_version.is_some());
        }
        Ok(Scanned { report, warnings })
    }

    /// The gate's answer for `report`, `None` without `--fail-on`.
    pub fn gate(&self, report: &ScanReport) -> Option<Gate> {
        self.fail_on.map(|t| report.gate(t.severity()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::NoProgress;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/os-release"),
            "ID=debian\nVERSION_ID=\"12\"\n",
        )
        .expect("os-release");
        dir
    }

    #[test]
    fn update_args_default_to_every_ecosystem_and_count_mib() {
        let a = UpdateArgs {
            db: DbPath::default(),
            base_url: "file:///mirror".into(),
            ecosystems: Vec::new(),
            checksum: true,
            force: false,
            read_timeout: Duration::from_secs(1),
            download_timeout: Duration::from_secs(2),
            max_download_mib: 3,
            max_uncompressed_mib: 5,
        };
        let o = a.options();
        assert_eq!(o.ecosystems.len(), DEFAULT_ECOSYSTEMS.len());
        assert_eq!(o.max_download, 3 << 20);
        assert_eq!(o.max_uncompressed, 5 << 20);
        assert!(o.checksum);
        assert_eq!(o.connect_timeout, UpdateOptions::default().connect_timeout);
        let one = UpdateArgs {
            ecosystems: vec!["PyPI".into()],
            ..a
        };
        assert_eq!(one.options().ecosystems, ["PyPI"]);
    }

    #[test]
    fn only_the_default_checks_are_cached() {
        let mut r = ScanRequest::new("dir:/x");
        assert!(r.options().cache.is_some());
        r.no_secrets = true;
        assert!(
            r.options().cache.is_none(),
            "a partial inventory must not be cached"
        );
        let mut r = ScanRequest::new("dir:/x");
        r.yara = vec![PathBuf::from("extra.yar")];
        assert!(r.options().cache.is_none());
        let mut r = ScanRequest::new("dir:/x");
        r.no_cache = true;
        assert!(r.options().cache.is_none());
    }

    #[test]
    fn sboms_and_skip_db_do_not_want_the_database() {
        let mut r = ScanRequest::new("x");
        assert!(r.wants_db());
        r.format = ReportFormat::Spdx;
        assert!(!r.wants_db());
        r.format = ReportFormat::Json;
        r.skip_db = true;
        assert!(!r.wants_db());
    }

    #[test]
    fn a_missing_database_is_a_warning_and_fails_the_gate_with_4() {
        let fs = rootfs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = ScanRequest::new(&format!("dir:{}", fs.path().display()));
        r.db.path = dir.path().join("absent.db");
        r.no_cache = true;
        r.fail_on = Some(FailOn::Critical);
        let reader = r.reader().expect("reader");
        let db = r.open_db().expect("a missing database is not an error");
        let why = db.not_matched.clone().expect("says why");
        assert!(why.starts_with("no vulnerability database at"), "{why}");
        let s = r.scan(&reader, db, &NoProgress).expect("scan");
        assert_eq!(s.report.not_matched.as_deref(), Some(why.as_str()));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(r.gate(&s.report), Some(Gate::NotMatched));
        assert_eq!(Gate::NotMatched.exit_code(), 4);
        // Without the database wanted, nothing is said and the gate passes.
        r.skip_db = true;
        let db = r.open_db().expect("not opened");
        assert!(db.db.is_none() && db.not_matched.is_none());
        let s = r.scan(&reader, db, &NoProgress).expect("scan");
        assert!(s.warnings.is_empty() && s.report.not_matched.is_none());
        assert_eq!(r.gate(&s.report), Some(Gate::Pass));
        r.fail_on = None;
        assert_eq!(r.gate(&s.report), None);
    }

    #[test]
    fn a_finding_at_the_threshold_fails_with_3_even_without_a_database() {
        let fs = rootfs();
        // A private key is a secret finding of the inventory.
        std::fs::write(
            fs.path().join("id_rsa"),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n-----END RSA PRIVATE KEY-----\n",
        )
        .expect("key");
        let mut r = ScanRequest::new(&format!("dir:{}", fs.path().display()));
        r.no_cache = true;
        r.skip_db = true;
        let reader = r.reader().expect("reader");
        let s = r
            .scan(&reader, ScanDb::default(), &NoProgress)
            .expect("scan");
        let worst = s.report.worst_severity().expect("the key is a finding");
        assert_eq!(s.report.gate(worst), Gate::Found);
        assert_eq!(Gate::Found.exit_code(), 3);
        let mut missing = s.report.clone();
        missing.not_matched = Some("no database".into());
        assert_eq!(
            missing.gate(worst),
            Gate::Found,
            "a finding wins over no database"
        );
        if worst < Severity::Critical {
            assert_eq!(s.report.gate(Severity::Critical), Gate::Pass);
            assert_eq!(missing.gate(Severity::Critical), Gate::NotMatched);
        }
    }

    #[test]
    fn fail_on_ranks_unknown_below_low() {
        assert!(FailOn::Unknown.severity() < FailOn::Low.severity());
        assert_eq!(FailOn::Critical.severity(), Severity::Critical);
    }

    #[test]
    fn report_formats_render_their_own_form() {
        let fs = rootfs();
        let mut r = ScanRequest::new(&format!("dir:{}", fs.path().display()));
        r.no_cache = true;
        r.skip_db = true;
        let reader = r.reader().expect("reader");
        let s = r
            .scan(&reader, ScanDb::default(), &NoProgress)
            .expect("scan");
        let json: serde_json::Value =
            serde_json::from_str(&ReportFormat::Json.render(&s.report, false)).expect("json");
        assert!(json.get("summary").is_some());
        let sarif: serde_json::Value =
            serde_json::from_str(&ReportFormat::Sarif.render(&s.report, false)).expect("sarif");
        assert_eq!(sarif["version"], "2.1.0");
        let cdx: serde_json::Value =
            serde_json::from_str(&ReportFormat::Cyclonedx.render(&s.report, false)).expect("cdx");
        assert_eq!(cdx["bomFormat"], "CycloneDX");
        let spdx: serde_json::Value =
            serde_json::from_str(&ReportFormat::Spdx.render(&s.report, false)).expect("spdx");
        assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
        assert!(!ReportFormat::Table
            .render(&s.report, false)
            .contains('\u{1b}'));
    }
}
