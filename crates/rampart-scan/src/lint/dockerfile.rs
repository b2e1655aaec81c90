//! Dockerfile lint: the hadolint-class rules that matter for security and image size, each
//! finding with the line of the instruction.
//!
//! Parsing follows the Dockerfile reference: a `# escape=` parser directive, line continuations
//! with the escape character (comment lines inside a continuation are dropped), heredocs
//! (`RUN <<EOF ... EOF`), JSON and shell forms. Instructions are case-insensitive.
//!
//! | rule | severity | what |
//! |---|---|---|
//! | DF001 | medium | base image not pinned by digest (`FROM image:tag` without `@sha256:`) |
//! | DF002 | high | base image `latest` or without a tag |
//! | DF003 | high | final stage runs as root (no `USER`, or `USER root`/`0`) |
//! | DF004 | low | single-stage build that compiles: use a multi-stage build with a minimal final stage |
//! | DF005 | high | `ADD` of a URL (unverified download; use `curl --fail` with a checksum) |
//! | DF006 | low | `ADD` of a local file that is not an archive: use `COPY` |
//! | DF007 | medium | `apt-get install` without cleaning `/var/lib/apt/lists` in the same `RUN` |
//! | DF008 | low | `apt-get install` without `--no-install-recommends` |
//! | DF009 | medium | `apk add` without `--no-cache` |
//! | DF010 | critical | secret-looking `ARG` or `ENV` (kept in the image history / config) |
//! | DF011 | low | `COPY` then `RUN chown`/`chmod -R` of the same files: use `COPY --chown`/`--chmod` |
//! | DF012 | medium | `EXPOSE 22` (SSH in a container) |
//! | DF013 | medium | `sudo` in `RUN` |
//! | DF014 | low | `curl`/`wget` piped into a shell |
//! | DF015 | low | `MAINTAINER` is deprecated; use a label |

use rampart_event::Severity;

use crate::finding::{Finding, FindingKind};

/// One instruction, its arguments joined across continuation lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Upper-case keyword (`RUN`).
    pub keyword: String,
    /// The rest, continuation lines joined with a space, heredoc bodies appended after a newline.
    pub args: String,
    /// 1-based line where the instruction starts.
    pub line: usize,
}

/// Parses Dockerfile text into instructions.
pub fn parse(text: &str) -> Vec<Instruction> {
    let mut escape = '\\';
    let mut lines = text.lines().enumerate().peekable();
    // Parser directives: only at the very top, before any other line.
    while let Some((_, l)) = lines.peek() {
        let t = l.trim();
        let Some(d) = t.strip_prefix('#') else { break };
        let Some((k, v)) = d.split_once('=') else {
            break;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "escape" => {
                escape = v.trim().chars().next().unwrap_or('\\');
                lines.next();
            }
            "syntax" | "check" => {
                lines.next();
            }
            _ => break,
        }
    }
    let mut out = Vec::new();
    while let Some((i, raw)) = lines.next() {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let start = i + 1;
        let mut logical = String::new();
        let mut cur = raw.trim_end().to_string();
        loop {
            if let Some(stripped) = cur.strip_suffix(escape) {
                // Docker drops the escape and the newline, nothing else.
                logical.push_str(stripped);
                // Next non-comment line continues it.
                let mut next = None;
                for (_, l) in lines.by_ref() {
                    if l.trim_start().starts_with('#') {
                        continue;
                    }
                    next = Some(l.trim_end().to_string());
                    break;
                }
                match next {
                    Some(n) => cur = n,
                    None => break,
                }
            } else {
                logical.push_str(&cur);
                break;
            }
        }
        let logical = logical.trim().to_string();
        let (kw, args) = match logical.split_once(char::is_whitespace) {
            Some((k, a)) => (k.to_ascii_uppercase(), a.trim().to_string()),
            None => (logical.to_ascii_uppercase(), String::new()),
        };
        let mut args = args;
        // Heredocs: `<<EOF` / `<<-EOF` / `<<"EOF"`; the body runs to the terminator line.
        let mut search = args.clone();
        while let Some(pos) = search.find("<<") {
            let rest = &search[pos + 2..];
            let rest = rest.strip_prefix('-').unwrap_or(rest);
            let word: String = rest
                .trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if word.is_empty() {
                break;
            }
            let mut body = String::new();
            for (_, l) in lines.by_ref() {
                if l.trim() == word {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            args.push('\n');
            args.push_str(&body);
            search = rest.to_string();
            search.drain(..word.len().min(search.len()));
        }
        out.push(Instruction {
            keyword: kw,
            args,
            line: start,
        });
    }
    out
}

fn finding(rule: &str, sev: Severity, title: String, path: &str, line: usize) -> Finding {
    Finding::new(FindingKind::Dockerfile, rule, title, sev).at(path, Some(line))
}

/// Names that hold secrets (`DB_PASSWORD`, `AWS_SECRET_ACCESS_KEY`, `API_TOKEN`, ...).
pub(crate) fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    let harmless = ["_FILE", "_PATH", "_DIR", "_URL_FILE"];
    if harmless.iter().any(|h| n.ends_with(h)) {
        return false;
    }
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "ACCESS_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|k| n.contains(k))
}

/// `KEY=value` pairs (and the legacy `KEY value` form) of an ARG or ENV.
fn key_values(args: &str, keyword: &str) -> Vec<(String, Option<String>)> {
    if !args.contains('=') {
        let mut it = args.splitn(2, char::is_whitespace);
        let k = it.next().unwrap_or("").to_string();
        let v = it
            .next()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        return if keyword == "ARG" {
            vec![(k, None)]
        } else {
            vec![(k, v)]
        };
    }
    let mut out = Vec::new();
    for part in shell_words(args) {
        match part.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((part, None)),
        }
    }
    out
}

/// Splits on whitespace outside quotes, removing the quotes.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The shell command of a RUN in either form.
fn run_command(args: &str) -> String {
    let a = args.trim();
    // Flags like --mount=... precede the command.
    let mut rest = a;
    while let Some(r) = rest.strip_prefix("--") {
        rest = r
            .split_once(char::is_whitespace)
            .map_or("", |(_, x)| x)
            .trim_start();
    }
    if rest.starts_with('[') {
        serde_json::from_str::<Vec<String>>(rest)
            .map(|v| v.join(" "))
            .unwrap_or_else(|_| rest.to_string())
    } else {
        rest.to_string()
    }
}

fn copy_sources_and_dest(args: &str) -> (Vec<String>, String, bool) {
    let words = shell_words(args);
    let chown = words
        .iter()
        .any(|w| w.starts_with("--chown") || w.starts_with("--chmod"));
    let plain: Vec<String> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
    match plain.split_last() {
        Some((dest, srcs)) => (srcs.to_vec(), dest.clone(), chown),
        None => (Vec::new(), String::new(), chown),
    }
}

const BUILD_TOOLS: [&str; 12] = [
    "gcc ",
    "g++ ",
    "make",
    "cargo build",
    "go build",
    "mvn ",
    "gradle",
    "npm run build",
    "yarn build",
    "build-essential",
    "cmake",
    "javac",
];

/// Lints `text` (the Dockerfile at `path`, for the findings).
pub fn lint(path: &str, text: &str) -> Vec<Finding> {
    let ins = parse(text);
    let mut out = Vec::new();
    // Stage boundaries.
    let stages: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, _)| n)
        .collect();
    let mut stage_names: Vec<String> = Vec::new();
    for i in &ins {
        if i.keyword != "FROM" {
            continue;
        }
        let words = shell_words(&i.args);
        let words: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
        let Some(image) = words.first() else { continue };
        if let (Some(kw), Some(name)) = (words.get(1), words.get(2)) {
            if kw.eq_ignore_ascii_case("as") {
                stage_names.push(name.to_ascii_lowercase());
            }
        }
        let lower = image.to_ascii_lowercase();
        // `scratch` and earlier stages (`FROM build`) are not images to pin.
        if lower == "scratch" || stage_names.contains(&lower) {
            continue;
        }
        if image.contains('$') {
            continue; // a build argument: cannot judge
        }
        if !image.contains("@sha256:") {
            let last = image.rsplit('/').next().unwrap_or(image);
            if !last.contains(':') || last.ends_with(":latest") {
                out.push(finding(
                    "DF002",
                    Severity::High,
                    format!("base image {image} has no tag or uses latest: builds are not reproducible and can change under you"),
                    path,
                    i.line,
                ));
            } else {
                out.push(finding(
                    "DF001",
                    Severity::Medium,
                    format!("base image {image} is not pinned by digest (FROM {image}@sha256:...)"),
                    path,
                    i.line,
                ));
            }
        }
    }
    // The final stage: USER, and build tools in a single-stage build.
    if let Some(&last) = stages.last() {
        let final_stage = &ins[last..];
        let user = final_stage.iter().rev().find(|i| i.keyword == "USER");
        match user {
            None => out.push(finding(
                "DF003",
                Severity::High,
                "the final stage sets no USER: the container runs as root".into(),
                path,
                ins[last].line,
            )),
            Some(u) => {
                let name = u.args.split(':').next().unwrap_or("").trim();
                if name == "root" || name == "0" {
                    out.push(finding(
                        "DF003",
                        Severity::High,
                        format!("the final stage runs as {name}"),
                        path,
                        u.line,
                    ));
                }
            }
        }
        if stages.len() == 1 {
            if let Some(b) = final_stage.iter().find(|i| {
                i.keyword == "RUN" && {
                    let c = format!("{} ", run_command(&i.args));
                    BUILD_TOOLS.iter().any(|t| c.contains(t))
                }
            }) {
                out.push(finding(
                    "DF004",
                    Severity::Low,
                    "single-stage build that compiles: build in one stage and copy the result into a minimal final stage (distroless, scratch, alpine)".into(),
                    path,
                    b.line,
                ));
            }
        }
    }
    let mut copies: Vec<(String, usize)> = Vec::new();
    for i in &ins {
        match i.keyword.as_str() {
            "ADD" => {
                let (srcs, _, _) = copy_sources_and_dest(&i.args);
                for s in &srcs {
                    let lower = s.to_ascii_lowercase();
                    if lower.starts_with("http://") || lower.starts_with("https://") {
                        out.push(finding(
                            "DF005",
                            Severity::High,
                            format!("ADD of a URL ({s}): an unverified download; fetch it with curl and check a checksum, or use ADD --checksum"),
                            path,
                            i.line,
                        ));
                    } else if !lower.starts_with("git@")
                        && ![
                            ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".txz", ".tar.zst",
                        ]
                        .iter()
                        .any(|e| lower.ends_with(e))
                    {
                        out.push(finding(
                            "DF006",
                            Severity::Low,
                            format!(
                                "ADD of {s}: use COPY for files that are not archives to extract"
                            ),
                            path,
                            i.line,
                        ));
                    }
                }
            }
            "COPY" => {
                let (_, dest, chown) = copy_sources_and_dest(&i.args);
                if !chown {
                    copies.push((dest.trim_end_matches('/').to_string(), i.line));
                }
            }
            "RUN" => {
                let cmd = run_command(&i.args);
                if cmd.contains("apt-get install") || cmd.contains("apt install") {
                    if !cmd.contains("/var/lib/apt/lists") {
                        out.push(finding(
                            "DF007",
                            Severity::Medium,
                            "apt-get install without `rm -rf /var/lib/apt/lists/*` in the same RUN: the package lists stay in the layer".into(),
                            path,
                            i.line,
                        ));
                    }
                    if !cmd.contains("--no-install-recommends") {
                        out.push(finding(
                            "DF008",
                            Severity::Low,
                            "apt-get install without --no-install-recommends pulls in packages nobody asked for".into(),
                            path,
                            i.line,
                        ));
                    }
                }
                if cmd.contains("apk add") && !cmd.contains("--no-cache") {
                    out.push(finding(
                        "DF009",
                        Severity::Medium,
                        "apk add without --no-cache leaves the package index in the layer".into(),
                        path,
                        i.line,
                    ));
                }
                if cmd
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w == "sudo")
                {
                    out.push(finding(
                        "DF013",
                        Severity::Medium,
                        "sudo in RUN: build steps already run as root; switch USER instead".into(),
                        path,
                        i.line,
                    ));
                }
                let piped = (cmd.contains("curl ") || cmd.contains("wget "))
                    && ["| sh", "|sh", "| bash", "|bash"]
                        .iter()
                        .any(|p| cmd.contains(p));
                if piped {
                    out.push(finding(
                        "DF014",
                        Severity::Low,
                        "a download piped into a shell runs whatever the server sends; download, verify, then run".into(),
                        path,
                        i.line,
                    ));
                }
                let words: Vec<&str> = cmd.split_whitespace().collect();
                for (n, w) in words.iter().enumerate() {
                    let recursive =
                        *w == "chown" || (*w == "chmod" && words.get(n + 1) == Some(&"-R"));
                    if !recursive {
                        continue;
                    }
                    if let Some((dest, copy_line)) = copies.iter().find(|(d, _)| {
                        !d.is_empty() && words[n + 1..].iter().any(|a| a.trim_end_matches('/') == d)
                    }) {
                        out.push(finding(
                            "DF011",
                            Severity::Low,
                            format!("RUN {w} of {dest}, copied at line {copy_line}: use COPY --chown/--chmod (one layer instead of two copies)"),
                            path,
                            i.line,
                        ));
                        break;
                    }
                }
            }
            "ARG" | "ENV" => {
                for (k, v) in key_values(&i.args, &i.keyword) {
                    if secret_name(&k) {
                        let shown = match &v {
                            Some(v) if !v.is_empty() && !v.starts_with('$') => {
                                format!("{k}={}", crate::finding::mask(v))
                            }
                            _ => k.clone(),
                        };
                        out.push(
                            finding(
                                "DF010",
                                Severity::Critical,
                                format!("{} {k} looks like a secret: build arguments and environment are stored in the image; use a build secret (RUN --mount=type=secret)", i.keyword),
                                path,
                                i.line,
                            )
                            .evidence(shown),
                        );
                    }
                }
            }
            "EXPOSE"
                if i.args
                    .split_whitespace()
                    .any(|p| p == "22" || p.starts_with("22/")) =>
            {
                out.push(finding(
                    "DF012",
                    Severity::Medium,
                    "EXPOSE 22: an SSH server in a container; use docker exec".into(),
                    path,
                    i.line,
                ));
            }
            "MAINTAINER" => out.push(finding(
                "DF015",
                Severity::Low,
                "MAINTAINER is deprecated; use LABEL org.opencontainers.image.authors".into(),
                path,
                i.line,
            )),
            _ => {}
        }
    }
    out.sort_by_key(|f| (f.line, f.rule.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_comments_and_heredocs() {
        let ins = parse(
            "# syntax=docker/dockerfile:1\nFROM debian:12\nRUN apt-get update && \\\n    # a comment inside\n    apt-get install -y curl\nRUN <<EOF\necho hi\nEOF\nCMD [\"x\"]\n",
        );
        let kws: Vec<(&str, usize)> = ins.iter().map(|i| (i.keyword.as_str(), i.line)).collect();
        assert_eq!(kws, [("FROM", 2), ("RUN", 3), ("RUN", 6), ("CMD", 9)]);
        assert!(ins[1].args.contains("apt-get install -y curl"));
        assert!(ins[2].args.contains("echo hi"));
    }

    #[test]
    fn escape_directive() {
        let ins = parse("# escape=`\nFROM x\nRUN a `\n  b\n");
        assert_eq!(ins[1].args, "a   b");
    }
}
