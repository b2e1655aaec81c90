//! The human table: a header line about the image, then findings grouped by package (the
//! package named once), severity coloured when writing to a terminal.

use std::fmt::Write;

use rampart_event::Severity;

use super::{severity_counts, ScanReport};

fn colour(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "\x1b[1;31m",
        Severity::High => "\x1b[31m",
        Severity::Medium => "\x1b[33m",
        Severity::Low => "\x1b[34m",
        Severity::Unknown => "\x1b[2m",
    }
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

/// Renders the table; `ansi` adds colour.
pub fn render_table(r: &ScanReport, ansi: bool) -> String {
    let inv = &r.inventory;
    let mut out = String::new();
    let id = inv
        .image
        .id
        .as_deref()
        .map(|i| format!(" ({})", &i[..i.len().min(19)]))
        .unwrap_or_default();
    let os = inv
        .os
        .as_ref()
        .map(|o| {
            if o.pretty_name.is_empty() {
                format!("{} {}", o.id, o.version_id)
            } else {
                o.pretty_name.clone()
            }
        })
        .unwrap_or_else(|| "unknown OS".into());
    let counts = severity_counts(&r.matches.findings);
    let by_sev: Vec<String> = counts
        .iter()
        .rev()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let _ = writeln!(
        out,
        "{}{id}: {os}, {} packages, {} vulnerabilities{}{}",
        inv.image.target,
        inv.packages.len(),
        r.matches.findings.len(),
        if by_sev.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_sev.join(", "))
        },
        if r.cached { " [cached inventory]" } else { "" }
    );
    if r.matches.findings.is_empty() {
        return out;
    }
    // Group by package (name, version, path), ordered by the group's worst severity.
    let mut groups: Vec<(String, Vec<&rampart_event::VulnFinding>)> = Vec::new();
    for f in &r.matches.findings {
        let key = format!(
            "{}\0{}\0{}",
            f.package.name, f.package.version, f.package.path
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(f),
            None => groups.push((key, vec![f])),
        }
    }
    let w_pkg = r
        .matches
        .findings
        .iter()
        .map(|f| f.package.name.chars().count())
        .max()
        .unwrap_or(7)
        .clamp(7, 40);
    let w_ver = r
        .matches
        .findings
        .iter()
        .map(|f| f.package.version.chars().count())
        .max()
        .unwrap_or(9)
        .clamp(9, 32);
    let w_id = r
        .matches
        .findings
        .iter()
        .map(|f| f.vulnerability_id.chars().count())
        .max()
        .unwrap_or(13)
        .clamp(13, 40);
    let _ = writeln!(
        out,
        "\n{} {} {} {} FIXED IN",
        pad("PACKAGE", w_pkg),
        pad("INSTALLED", w_ver),
        pad("VULNERABILITY", w_id),
        pad("SEVERITY", 8),
    );
    for (_, fs) in &groups {
        for (i, f) in fs.iter().enumerate() {
            let (pkg, ver) = if i == 0 {
                (f.package.name.as_str(), f.package.version.as_str())
            } else {
                ("", "")
            };
            let sev = pad(&f.severity.as_str().to_uppercase(), 8);
            let sev = if ansi {
                format!("{}{sev}\x1b[0m", colour(f.severity))
            } else {
                sev
            };
            let _ = writeln!(
                out,
                "{} {} {} {} {}",
                pad(pkg, w_pkg),
                pad(ver, w_ver),
                pad(&f.vulnerability_id, w_id),
                sev,
                f.fixed_version.as_deref().unwrap_or("(no fix)")
            );
        }
    }
    let warnings = inv.warnings.len() + r.matches.warnings.len();
    if warnings > 0 {
        let _ = writeln!(out, "\n{warnings} warning(s); see --format json");
    }
    out
}
