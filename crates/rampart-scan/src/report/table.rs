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
        "{}{id}: {os}, {} packages, {} security findings, {} vulnerabilities{}{}",
        inv.image.target,
        inv.packages.len(),
        inv.findings.len(),
        r.matches.findings.len(),
        if by_sev.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_sev.join(", "))
        },
        if r.cached { " [cached inventory]" } else { "" }
    );
    match (&r.db, &r.not_matched) {
        (Some(db), _) => {
            let _ = writeln!(out, "{}", db.describe());
        }
        (None, Some(why)) => {
            let _ = writeln!(
                out,
                "VULNERABILITIES NOT MATCHED: {why}; packages, secrets, malware and configuration were still checked"
            );
        }
        (None, None) => {}
    }
    if !r.matches.findings.is_empty() {
        vulnerability_table(r, ansi, &mut out);
    }
    other_findings(r, ansi, &mut out);
    layer_sizes(r, &mut out);
    let warnings = inv.warnings.len() + r.matches.warnings.len();
    if warnings > 0 {
        let _ = writeln!(out, "\n{warnings} warning(s); see --format json");
    }
    out
}

fn sev_cell(s: Severity, ansi: bool) -> String {
    let cell = pad(&s.as_str().to_uppercase(), 8);
    if ansi {
        format!("{}{cell}\x1b[0m", colour(s))
    } else {
        cell
    }
}

fn other_findings(r: &ScanReport, ansi: bool, out: &mut String) {
    let fs = &r.inventory.findings;
    if fs.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nSECURITY FINDINGS ({})", fs.len());
    for f in fs {
        let mut place = f.path.clone().unwrap_or_default();
        if let Some(l) = f.line {
            place.push_str(&format!(":{l}"));
        }
        let mut line = format!(
            "{} {:<15} {}",
            sev_cell(f.severity, ansi),
            f.kind.as_str(),
            f.title
        );
        if !place.is_empty() {
            line.push_str(&format!("  [{place}]"));
        }
        if let Some(e) = &f.evidence {
            line.push_str(&format!("  {e}"));
        }
        if f.removed_in_later_layer {
            line.push_str("  (deleted by a later layer, still in the image)");
        }
        let _ = writeln!(out, "{line}");
    }
}

fn layer_sizes(r: &ScanReport, out: &mut String) {
    let layers = &r.inventory.image.layers;
    if layers.len() < 2 {
        return;
    }
    let mut idx: Vec<usize> = (0..layers.len()).collect();
    idx.sort_by_key(|i| std::cmp::Reverse(layers[*i].size));
    let _ = writeln!(out, "\nLARGEST LAYERS");
    for i in idx.into_iter().take(5) {
        let l = &layers[i];
        let step: String = l
            .created_by
            .as_deref()
            .unwrap_or("")
            .replace("/bin/sh -c ", "")
            .replace("#(nop) ", "")
            .chars()
            .take(70)
            .collect();
        let _ = writeln!(
            out,
            "  {:>2}. {:>9.1} MB  {step}",
            i + 1,
            l.size as f64 / 1e6
        );
    }
}

fn vulnerability_table(r: &ScanReport, ansi: bool, out: &mut String) {
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
            let sev = sev_cell(f.severity, ansi);
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
}
