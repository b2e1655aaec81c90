//! The database's reports for people: what `rampart db update`, `import` and `status` print.
//! The JSON forms are the reports' `Serialize` output; these are the text forms.

use std::fmt::Write;

use super::{
    describe_age, DbStatus, ImportStats, UpdateOutcome as Outcome, UpdateReport,
    DEFAULT_STALE_AFTER,
};

impl UpdateReport {
    /// One line per ecosystem, then where the database stands; every line ends in `\n`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.ecosystems {
            let _ = match e.outcome {
                Outcome::Updated => writeln!(
                    out,
                    "{}: updated, {:.1} MB, {} records: {} added, {} updated, {} removed",
                    e.ecosystem,
                    e.bytes as f64 / 1e6,
                    e.records,
                    e.added,
                    e.updated,
                    e.removed
                ),
                Outcome::Unchanged => writeln!(out, "{}: unchanged", e.ecosystem),
                Outcome::Failed => writeln!(
                    out,
                    "{}: FAILED, previous data kept: {}",
                    e.ecosystem,
                    e.error.as_deref().unwrap_or("")
                ),
            };
        }
        let _ = writeln!(
            out,
            "{}: {} in {:.1}s",
            self.path,
            if self.swapped {
                "new database in place"
            } else {
                "database unchanged"
            },
            self.seconds
        );
        out
    }
}

impl ImportStats {
    /// One line (without `\n`): the source and what its import did.
    pub fn text(&self) -> String {
        format!(
            "{}: {} {} files in {:.1}s: {} added, {} updated, {} unchanged, {} removed, {} kept (newer elsewhere), {} unreadable",
            self.source,
            self.kind,
            self.files,
            self.seconds,
            self.added,
            self.updated,
            self.unchanged,
            self.removed,
            self.kept_newer,
            self.errors.len()
        )
    }
}

/// `5s ago`, `3m ago`: how long before `now` (Unix seconds) `secs` was.
fn ago(secs: i64, now: i64) -> String {
    match now - secs {
        d if d < 120 => format!("{d}s ago"),
        d if d < 7200 => format!("{}m ago", d / 60),
        d if d < 172_800 => format!("{}h ago", d / 3600),
        d => format!("{}d ago", d / 86_400),
    }
}

impl DbStatus {
    /// The status for people; every line ends in `\n`. A database older than
    /// [`DEFAULT_STALE_AFTER`] is marked STALE.
    pub fn text(&self) -> String {
        self.text_at(super::now_secs())
    }

    /// [`DbStatus::text`] with ages counted back from `now` (Unix seconds).
    fn text_at(&self, now: i64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: schema {}, {:.1} MB, {} records ({} withdrawn), {} affected packages",
            self.path,
            self.schema_version,
            self.size_bytes as f64 / 1e6,
            self.records,
            self.withdrawn,
            self.affected_packages
        );
        let _ = match self.age_secs {
            Some(age) => writeln!(
                out,
                "updated {} ago{}",
                describe_age(age),
                if age > DEFAULT_STALE_AFTER.as_secs() as i64 {
                    " (STALE: run `rampart db update`)"
                } else {
                    ""
                }
            ),
            None => writeln!(out, "never updated: run `rampart db update`"),
        };
        if !self.feeds.is_empty() {
            let _ = writeln!(out, "\nFEEDS (rampart db update)");
            for f in &self.feeds {
                let _ = writeln!(
                    out,
                    "  {:<14} checked {}, {}",
                    f.ecosystem,
                    f.checked_at
                        .map(|t| ago(t, now))
                        .unwrap_or_else(|| "never".into()),
                    f.url
                );
            }
        }
        let _ = writeln!(out, "\nSOURCES");
        for src in &self.sources {
            let _ = writeln!(
                out,
                "  {} ({}): {} records, imported {}, newest record {}",
                src.path,
                src.kind,
                src.records,
                ago(src.imported_at, now),
                if src.newest_modified.is_empty() {
                    "-"
                } else {
                    &src.newest_modified
                }
            );
        }
        let _ = writeln!(out, "\nECOSYSTEMS");
        for (e, n) in &self.ecosystems {
            let _ = writeln!(out, "  {e:<28} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FeedStatus, SourceStatus};
    use super::*;

    #[test]
    fn status_text_marks_a_stale_database_and_ages_sources() {
        let now = 1_000_000_000;
        let s = DbStatus {
            path: "/x/vuln.db".into(),
            schema_version: 3,
            size_bytes: 2_500_000,
            records: 10,
            withdrawn: 1,
            affected_packages: 12,
            sources: vec![SourceStatus {
                path: "/osv".into(),
                kind: "dir".into(),
                imported_at: now - 7200,
                records: 10,
                newest_modified: String::new(),
            }],
            ecosystems: vec![("PyPI".into(), 10)],
            updated_at: Some(now - 8 * 86_400),
            age_secs: Some(8 * 86_400),
            feeds: vec![FeedStatus {
                ecosystem: "PyPI".into(),
                url: "file:///m/PyPI/all.zip".into(),
                checked_at: None,
                etag: None,
                last_modified: None,
            }],
        };
        let t = s.text_at(now);
        assert!(
            t.starts_with(
                "/x/vuln.db: schema 3, 2.5 MB, 10 records (1 withdrawn), 12 affected packages\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("updated 8 days ago (STALE: run `rampart db update`)\n"),
            "{t}"
        );
        assert!(
            t.contains("  PyPI           checked never, file:///m/PyPI/all.zip\n"),
            "{t}"
        );
        assert!(
            t.contains("  /osv (dir): 10 records, imported 2h ago, newest record -\n"),
            "{t}"
        );
        assert!(
            t.ends_with("\nECOSYSTEMS\n  PyPI                         10\n"),
            "{t}"
        );
    }

    #[test]
    fn update_text_names_failures_and_keeps_the_old_database() {
        let r = UpdateReport {
            path: "/x/vuln.db".into(),
            ecosystems: vec![super::super::EcosystemUpdate {
                ecosystem: "npm".into(),
                url: "u".into(),
                outcome: Outcome::Failed,
                bytes: 0,
                records: 0,
                added: 0,
                updated: 0,
                removed: 0,
                error: Some("HTTP 500".into()),
            }],
            swapped: false,
            updated_at: None,
            seconds: 0.25,
        };
        assert_eq!(
            r.text(),
            "npm: FAILED, previous data kept: HTTP 500\n/x/vuln.db: database unchanged in 0.2s\n"
        );
    }
}
