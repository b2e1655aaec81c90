//! What a notification says, and how each receiver is given it safely.
//!
//! Alert text comes from the watched system (command lines, file and container names), so it
//! is untrusted: each format below escapes it for its receiver's markup, so that an attacker's
//! `<!channel>`, `@all`, `[link](https://...)` or CR LF arrives as text.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rampart_event::Priority;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest alert text put in a message (characters); the dashboard has the rest.
const MAX_TEXT: usize = 2500;
/// Longest name or value shown in a title or a fact (characters).
const MAX_FACT: usize = 300;
/// Most groups listed in a summary; the rest are counted in one line.
const MAX_SUMMARY_LINES: usize = 30;

/// The fields of an alert a notification shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertInfo {
    pub id: String,
    pub time_ns: u64,
    pub rule: String,
    pub priority: Priority,
    /// The rule's output with the fields filled in.
    pub text: String,
    pub host: String,
    pub container: String,
    pub image: String,
    pub tags: Vec<String>,
    /// The incident it belongs to, for the dashboard link (fleet alerts carry
    /// `incident.id`).
    pub incident: Option<String>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    metadata: Option<WireMeta>,
    #[serde(default)]
    time_ns: u64,
    rule: String,
    priority: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    device: Option<WireDevice>,
    #[serde(default)]
    container: Option<WireContainer>,
    #[serde(default)]
    output_fields: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct WireMeta {
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize)]
struct WireDevice {
    #[serde(default)]
    hostname: String,
}

#[derive(Deserialize)]
struct WireContainer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
}

impl AlertInfo {
    /// Reads an alert record (its OCSF JSON); `None` for anything else.
    pub fn from_json(json: &[u8]) -> Option<AlertInfo> {
        let w: Wire<'_> = serde_json::from_slice(json).ok()?;
        if w.kind != "alert" {
            return None;
        }
        let priority = w.priority.parse().ok()?;
        let (container, image) = w.container.map(|c| (c.name, c.image)).unwrap_or_default();
        Some(AlertInfo {
            id: w.metadata.map(|m| m.uid).unwrap_or_default(),
            time_ns: w.time_ns,
            rule: w.rule,
            priority,
            text: w.message,
            host: w.device.map(|d| d.hostname).unwrap_or_default(),
            container,
            image,
            tags: w.tags,
            incident: w.output_fields.get("incident.id").cloned(),
        })
    }

    /// From an alert.
    pub fn from_alert(a: &rampart_event::Alert) -> AlertInfo {
        let (container, image) = a
            .container
            .as_deref()
            .map(|c| (c.name.clone(), c.image.clone()))
            .unwrap_or_default();
        AlertInfo {
            id: a.id.to_string(),
            time_ns: a.time_ns,
            rule: a.rule.clone(),
            priority: a.priority,
            text: a.output.clone(),
            host: a.device.hostname.clone(),
            container,
            image,
            tags: a.tags.to_vec(),
            incident: a.output_fields.get("incident.id").map(str::to_string),
        }
    }

    /// The message for this one alert.
    pub fn notice(&self, dashboard: Option<&str>) -> Notice {
        let mut facts = vec![
            ("Priority".to_string(), self.priority.to_string()),
            ("Rule".to_string(), self.rule.clone()),
            ("Host".to_string(), self.host.clone()),
        ];
        if !self.container.is_empty() {
            facts.push(("Container".into(), self.container.clone()));
        }
        if !self.image.is_empty() {
            facts.push(("Image".into(), self.image.clone()));
        }
        if let Some(i) = &self.incident {
            facts.push(("Incident".into(), i.clone()));
        }
        if !self.tags.is_empty() {
            facts.push(("Tags".into(), self.tags.join(", ")));
        }
        if self.time_ns > 0 {
            facts.push(("Time".into(), utc(self.time_ns)));
        }
        for f in &mut facts {
            f.1 = truncate(&f.1, MAX_FACT);
        }
        let link = dashboard.map(|base| match &self.incident {
            Some(i) if i.len() <= MAX_FACT => format!("{base}/ui/#/incidents/{}", enc(i)),
            _ => search_link(base, &self.rule, &self.host),
        });
        Notice {
            title: format!(
                "{}: {} on {}",
                self.priority,
                truncate(&self.rule, MAX_FACT),
                truncate(&self.host, MAX_FACT)
            ),
            priority: self.priority,
            text: truncate(&self.text, MAX_TEXT),
            facts,
            link,
            count: 1,
        }
    }
}

/// One message to people: an alert, or the summary of what a window held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// One line: priority, rule, host (or the summary's count).
    pub title: String,
    pub priority: Priority,
    /// The alert's text (or the summary's lines).
    pub text: String,
    /// Name, value pairs shown as a table.
    pub facts: Vec<(String, String)>,
    /// The dashboard page to look at.
    pub link: Option<String>,
    /// Alerts this message stands for.
    pub count: u64,
}

/// Characters percent-encoded in link parts (everything but unreserved ones).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The alert search for `rule` on `host`; a name longer than any real one is left out (the
/// link stays short, the search wider).
fn search_link(base: &str, rule: &str, host: &str) -> String {
    let mut l = format!("{base}/ui/#/search?kind=alert");
    for (k, v) in [("rule", rule), ("host", host)] {
        if !v.is_empty() && v.len() <= MAX_FACT {
            let _ = write!(l, "&{k}={}", enc(v));
        }
    }
    l
}

fn utc(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Notice {
    /// The summary of a window: one line per group (`held`, rule, host, container, most
    /// severe priority), most alerts first.
    pub(crate) fn summary(
        groups: &[(u64, String, String, String, Priority)],
        other: Option<(u64, Priority)>,
        window: Duration,
        dashboard: Option<&str>,
    ) -> Notice {
        let total: u64 = groups.iter().map(|g| g.0).sum::<u64>() + other.map_or(0, |o| o.0);
        let priority = groups
            .iter()
            .map(|g| g.4)
            .chain(other.map(|o| o.1))
            .min()
            .unwrap_or(Priority::Informational);
        let mut text = String::new();
        for (held, rule, host, container, p) in groups.iter().take(MAX_SUMMARY_LINES) {
            let noun = if *held == 1 { "alert" } else { "alerts" };
            let _ = write!(text, "and {held} more {noun} of rule {rule} on host {host}");
            if !container.is_empty() {
                let _ = write!(text, " (container {container})");
            }
            let _ = writeln!(text, ", highest priority {p}");
        }
        if groups.len() > MAX_SUMMARY_LINES {
            let rest: u64 = groups[MAX_SUMMARY_LINES..].iter().map(|g| g.0).sum();
            let _ = writeln!(
                text,
                "and {rest} more alerts in {} more groups",
                groups.len() - MAX_SUMMARY_LINES
            );
        }
        if let Some((n, p)) = other {
            let _ = writeln!(
                text,
                "and {n} more alerts of further groups (too many to tell apart), highest priority {p}"
            );
        }
        let window = humantime::format_duration(window);
        let noun = if total == 1 { "alert" } else { "alerts" };
        let link = dashboard.map(|base| match groups {
            [(_, rule, host, _, _)] => search_link(base, rule, host),
            _ => format!("{base}/ui/#/alerts"),
        });
        Notice {
            title: format!("{total} more {noun} held back in the last {window}"),
            priority,
            text: text.trim_end().to_string(),
            facts: vec![
                ("Alerts".into(), total.to_string()),
                (
                    "Groups".into(),
                    format!(
                        "{}{}",
                        groups.len(),
                        if other.is_some() { " and more" } else { "" }
                    ),
                ),
            ],
            link,
            count: total,
        }
    }

    /// Slack incoming-webhook JSON: `text` (the notification and fallback) and Block Kit
    /// `blocks`. Untrusted text has `&`, `<`, `>` escaped (Slack's control characters: no
    /// mention, channel or link can be formed) and sits in a code block.
    pub fn slack(&self) -> Value {
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&self.title, 148)}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{}```", truncate(&slack_code(&self.text), 2900))}}),
        ];
        let fields: Vec<Value> = self
            .facts
            .iter()
            .take(10)
            .map(|(k, v)| {
                json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", truncate(&slack_escape(v), 1900))})
            })
            .collect();
        if !fields.is_empty() {
            blocks.push(json!({"type": "section", "fields": fields}));
        }
        if let Some(l) = &self.link {
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("<{}|Open in the Rampart dashboard>", slack_escape(l))}]}));
        }
        json!({"text": slack_escape(&self.title), "blocks": blocks})
    }

    /// Mattermost incoming-webhook JSON (Mattermost takes Slack's `text`; it renders Markdown
    /// and ignores Slack's `blocks`). Untrusted text is in a fenced code block whose fence is
    /// longer than any backtick run in it, titles and facts are Markdown-escaped, and `@` is
    /// followed by a zero-width space so that no `@channel`/`@all`/`@user` mention forms.
    pub fn mattermost(&self) -> Value {
        let mut t = format!("#### {}\n", md_escape(&no_mention(&self.title)));
        let body = no_mention(&self.text);
        let fence = "`".repeat(longest_run(&body, '`').max(2) + 1);
        let _ = writeln!(t, "{fence}\n{body}\n{fence}");
        for (k, v) in &self.facts {
            let _ = writeln!(t, "**{k}:** {}  ", md_escape(&no_mention(v)));
        }
        if let Some(l) = &self.link {
            let _ = writeln!(t, "[Open in the Rampart dashboard]({})", md_link(l));
        }
        json!({"text": t.trim_end()})
    }

    /// Microsoft Teams: an Adaptive Card (1.4) in a `message`, as Teams' Workflows ("Post to a
    /// channel when a webhook request is received") and incoming webhooks take it. Untrusted
    /// text is Markdown-escaped (TextBlocks render a Markdown subset).
    pub fn teams(&self) -> Value {
        let color = if self.priority <= Priority::Error {
            "Attention"
        } else if self.priority <= Priority::Warning {
            "Warning"
        } else {
            "Default"
        };
        let facts: Vec<Value> = self
            .facts
            .iter()
            .map(|(k, v)| json!({"title": k, "value": md_escape(v)}))
            .collect();
        let mut card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "color": color, "text": md_escape(&self.title)},
                {"type": "TextBlock", "wrap": true, "fontType": "Monospace", "text": md_escape(&self.text)},
                {"type": "FactSet", "facts": facts},
            ],
        });
        if let Some(l) = &self.link {
            card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open in the Rampart dashboard", "url": l}]);
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }]
        })
    }

    /// The subject of a mail (control characters replaced: no header can be injected).
    pub fn email_subject(&self, prefix: &str) -> String {
        let s = format!("{prefix} {}", self.title);
        let s: String = s
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        truncate(&s, 200)
    }

    /// The plain-text body of a mail.
    pub fn email_body(&self) -> String {
        let mut b = format!("{}\n\n{}\n\n", self.title, self.text);
        for (k, v) in &self.facts {
            let _ = writeln!(b, "{k}: {v}");
        }
        if let Some(l) = &self.link {
            let _ = writeln!(b, "\nOpen in the Rampart dashboard: {l}");
        }
        b
    }
}

/// Slack's escaping: `&`, `<`, `>` are its only control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// For a Slack code block: escaped, and no run of three backticks that would close it.
fn slack_code(s: &str) -> String {
    slack_escape(s).replace("```", "`\u{200b}``")
}

/// `@` followed by a zero-width space: shown the same, never a mention.
fn no_mention(s: &str) -> String {
    s.replace('@', "@\u{200b}")
}

/// Backslash-escapes CommonMark's ASCII punctuation that can start markup.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '+'
                | '-'
                | '.'
                | '!'
                | '|'
                | '<'
                | '>'
                | '~'
                | '&'
        ) {
            out.push('\\');
        }
        if c == '\n' || c == '\r' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// A link target: our own URL, with `(`, `)` and spaces percent-encoded so it cannot end the
/// Markdown link early.
fn md_link(s: &str) -> String {
    s.replace('(', "%28")
        .replace(')', "%29")
        .replace(' ', "%20")
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for x in s.chars() {
        if x == c {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}
