//! Draft notifications: one Markdown document (and the same text as a PDF) per incident, with
//! for each applicable deadline the recipient, the due time, the citation, and the facts the
//! regime asks for: those Rampart knows filled in, the others left as marked blanks.
//!
//! The PDF uses the standard Helvetica fonts (nothing embedded, no network, no external tool);
//! characters outside Latin-1 print as `?` there; the Markdown keeps them.

use std::collections::BTreeSet;
use std::fmt::Write;

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};

use crate::deadline::{countdown, format_utc, DeadlineState};
use crate::incident::{AppliedDeadline, EntryKind, Incident};

/// Facts Rampart can state about an incident from what it recorded.
fn known_facts(inc: &Incident) -> Vec<(String, String)> {
    let mut out = Vec::new();
    out.push((
        "Nature of the incident".into(),
        format!(
            "{} detected by Rampart (rules: {})",
            inc.category.as_str(),
            inc.rules.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    ));
    out.push((
        "Time".into(),
        format!(
            "first detection {}, last activity {}; awareness counted from {}",
            format_utc(inc.first_ns),
            format_utc(inc.last_ns),
            format_utc(inc.awareness_ns())
        ),
    ));
    let systems: Vec<String> = inc
        .subjects
        .iter()
        .map(|s| {
            let region = inc.regions.get(&s.host).map(String::as_str).unwrap_or("");
            if s.container.is_empty() {
                format!("host {} ({region})", s.host)
            } else {
                format!(
                    "container {} on host {} ({region})",
                    &s.container[..s.container.len().min(12)],
                    s.host
                )
            }
        })
        .collect();
    out.push(("Systems affected".into(), systems.join("; ")));
    let responses: Vec<String> = inc
        .timeline
        .iter()
        .filter(|e| e.kind == EntryKind::Response)
        .map(|e| format!("{} {} on {}", format_utc(e.time_ns), e.summary, e.host))
        .collect();
    out.push((
        "Measures taken".into(),
        if responses.is_empty() {
            "no automatic response recorded; [to be completed]".into()
        } else {
            responses.join("; ")
        },
    ));
    let mut iocs = BTreeSet::new();
    for e in &inc.timeline {
        if e.kind == EntryKind::Event {
            if let Some((_, rest)) = e.summary.split_once(" -> ") {
                if let Some(ep) = rest.split_whitespace().next() {
                    iocs.insert(format!("remote endpoint {ep}"));
                }
            }
        }
    }
    out.push((
        "Indicators of compromise".into(),
        if iocs.is_empty() {
            "none recorded by Rampart; [to be completed]".into()
        } else {
            iocs.into_iter().take(20).collect::<Vec<_>>().join(", ")
        },
    ));
    out
}

/// The Markdown draft for `inc` with its applicable `deadlines`, as of `now_ns`.
pub fn markdown(inc: &Incident, deadlines: &[AppliedDeadline], now_ns: u64) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# Draft incident notification: {}\n", inc.id);
    let _ = writeln!(
        m,
        "DRAFT prepared by Rampart on {} from its detections. It is not legal advice: check every \
         statement, complete the marked blanks, and confirm which regimes apply to your \
         organisation before sending.\n",
        format_utc(now_ns)
    );
    let _ = writeln!(m, "## Incident\n");
    let _ = writeln!(m, "- Category: {}", inc.category.as_str());
    let _ = writeln!(m, "- Priority: {}", inc.priority);
    let _ = writeln!(
        m,
        "- Personal-data breach: {}",
        if inc.personal_data_breach {
            "yes (flagged)"
        } else {
            "no (not flagged)"
        }
    );
    let _ = writeln!(
        m,
        "- Jurisdictions of the hosts involved: {}",
        inc.jurisdictions()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (k, v) in known_facts(inc) {
        let _ = writeln!(m, "- {k}: {v}");
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "## Notification deadlines\n");
    if deadlines.is_empty() {
        let _ = writeln!(
            m,
            "No notification deadline applies under the loaded regulations (none covers these \
             hosts' regions for this kind of incident, or the incident is not flagged as a \
             personal-data breach).\n"
        );
    }
    for d in deadlines {
        let _ = writeln!(m, "### {} - {}\n", d.regime_name, d.name);
        let _ = writeln!(m, "- To: {} ({})", d.to, d.authority);
        let _ = writeln!(m, "- Period: {} from {}", d.period, format_utc(d.from_ns));
        match d.due_ns {
            Some(due) => {
                let _ = writeln!(
                    m,
                    "- Due: {} ({}) - {}",
                    format_utc(due),
                    countdown(due, now_ns),
                    d.state.as_str()
                );
            }
            None => {
                let _ = writeln!(m, "- Due: without undue delay (no fixed end)");
            }
        }
        if d.state == DeadlineState::Done {
            if let Some(t) = d.submitted_ns {
                let _ = writeln!(m, "- Submitted: {}", format_utc(t));
            }
        }
        let _ = writeln!(m, "- Hosts concerned: {}", d.hosts.join(", "));
        let _ = writeln!(
            m,
            "- Source: {}{} <{}>",
            d.citation,
            d.article
                .as_deref()
                .map(|a| format!(", {a}"))
                .unwrap_or_default(),
            d.url
        );
        let _ = writeln!(m, "\nWhat the notification must contain:\n");
        for f in &d.facts {
            let _ = writeln!(m, "- [ ] {f}");
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(m, "## Timeline\n");
    for e in &inc.timeline {
        let kind = match e.kind {
            EntryKind::Event => "event",
            EntryKind::Alert => "alert",
            EntryKind::Response => "response",
            EntryKind::Deadline => "deadline",
        };
        let _ = writeln!(
            m,
            "- {} [{kind}] {}: {}",
            format_utc(e.time_ns),
            e.host,
            e.summary.replace('\n', " ")
        );
    }
    if inc.timeline_dropped > 0 {
        let _ = writeln!(m, "- ... {} more entries not kept", inc.timeline_dropped);
    }
    m
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '\u{2014}' | '\u{2013}' => b'-',
            c if (c as u32) < 256 => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

/// Wraps `text` to lines of at most `width` characters (breaking long words).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// A report file that could not be written: `action` is `creating` (the directory) or
/// `writing` (a file).
#[derive(Debug, thiserror::Error)]
#[error("{action} {}", path.display())]
pub struct WriteError {
    pub action: &'static str,
    pub path: std::path::PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes `ID.md` (`markdown`) and `ID.pdf` (its PDF) into `dir`, created when missing, and
/// returns their paths (`rampart incident report`).
pub fn write_files(
    dir: &std::path::Path,
    id: &str,
    markdown: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf), WriteError> {
    let err = |action, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| WriteError {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(err("creating", dir))?;
    let md_path = dir.join(format!("{id}.md"));
    let pdf_path = dir.join(format!("{id}.pdf"));
    std::fs::write(&md_path, markdown).map_err(err("writing", &md_path))?;
    std::fs::write(&pdf_path, pdf(markdown)).map_err(err("writing", &pdf_path))?;
    Ok((md_path, pdf_path))
}

/// The Markdown draft typeset as an A4 PDF (headings in bold, the rest wrapped).
pub fn pdf(markdown: &str) -> Vec<u8> {
    const W: f32 = 595.0;
    const H: f32 = 842.0;
    const MARGIN: f32 = 50.0;
    let regular = Name(b"F1");
    let bold = Name(b"F2");
    // (font, size, text) per output line.
    let mut lines: Vec<(bool, f32, String)> = Vec::new();
    for raw in markdown.lines() {
        let (is_bold, size, text, width) = if let Some(t) = raw.strip_prefix("### ") {
            (true, 11.0, t.to_string(), 80)
        } else if let Some(t) = raw.strip_prefix("## ") {
            (true, 13.0, t.to_string(), 70)
        } else if let Some(t) = raw.strip_prefix("# ") {
            (true, 16.0, t.to_string(), 55)
        } else {
            (false, 9.5, raw.replace("- [ ] ", "[ ] "), 100)
        };
        if text.trim().is_empty() {
            lines.push((false, 6.0, String::new()));
            continue;
        }
        let indent = if text.starts_with("- ") || text.starts_with("[ ] ") {
            "    "
        } else {
            ""
        };
        for (i, l) in wrap(&text, width).into_iter().enumerate() {
            let l = if i == 0 { l } else { format!("{indent}{l}") };
            lines.push((is_bold, size, l));
        }
    }
    // Paginate.
    let mut pages: Vec<Vec<(bool, f32, f32, String)>> = vec![Vec::new()];
    let mut y = H - MARGIN;
    for (b, size, text) in lines {
        let step = size * 1.35;
        if y - step < MARGIN {
            pages.push(Vec::new());
            y = H - MARGIN;
        }
        y -= step;
        if let Some(p) = pages.last_mut() {
            p.push((b, size, y, text));
        }
    }
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let f1 = Ref::new(3);
    let f2 = Ref::new(4);
    let mut next = 5;
    let mut page_ids = Vec::new();
    let mut bodies = Vec::new();
    for page in &pages {
        let pid = Ref::new(next);
        let cid = Ref::new(next + 1);
        next += 2;
        page_ids.push(pid);
        let mut c = Content::new();
        for (b, size, y, text) in page {
            if text.is_empty() {
                continue;
            }
            c.begin_text();
            c.set_font(if *b { bold } else { regular }, *size);
            c.next_line(MARGIN, *y);
            c.show(Str(&latin1(text)));
            c.end_text();
        }
        bodies.push((pid, cid, c.finish()));
    }
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(page_ids.len() as i32);
    for (pid, cid, body) in &bodies {
        let mut page = pdf.page(*pid);
        page.media_box(Rect::new(0.0, 0.0, W, H));
        page.parent(tree);
        page.contents(*cid);
        let mut res = page.resources();
        let mut fonts = res.fonts();
        fonts.pair(regular, f1);
        fonts.pair(bold, f2);
        drop(fonts);
        drop(res);
        drop(page);
        pdf.stream(*cid, body);
    }
    pdf.type1_font(f1)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(f2)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_files_creates_the_directory_and_both_files_or_names_the_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("reports/2026");
        let (md, pdf_path) =
            write_files(&out, "inc-1", "# Incident inc-1\n\ntext\n").expect("write");
        assert_eq!(md, out.join("inc-1.md"));
        assert_eq!(
            std::fs::read_to_string(&md).expect("md"),
            "# Incident inc-1\n\ntext\n"
        );
        assert!(std::fs::read(&pdf_path).expect("pdf").starts_with(b"%PDF-"));
        // A file where the directory should be.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("file");
        let e = write_files(&file.join("sub"), "inc-1", "m").expect_err("not a directory");
        assert_eq!(e.action, "creating");
        assert_eq!(
            e.to_string(),
            format!("creating {}", file.join("sub").display())
        );
    }

    #[test]
    fn wrap_keeps_words_and_breaks_long_ones() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(latin1("Schutz – ü 速"), b"Schutz - \xfc ?".to_vec());
    }
}
