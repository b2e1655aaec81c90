//! `rampart config check FILE`: validates an agent, server, policy, playbook or rule file the
//! way the command that reads it would, with errors as `file:line[:column]: message`.
//!
//! The kind comes from the caller, else from the content (a YAML sequence is a rule file; the
//! top-level keys tell a policy, a playbook file, a server and an agent configuration apart),
//! else from the file name (`agent.yaml`, `server.yaml`, a `rules.d/` or `policies/` directory).

use std::path::Path;

use crate::{AgentConfig, AgentError};

/// The kinds of file `config check` knows (with the `clap` feature, the values of `--kind`;
/// the doc comments are their help).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Kind {
    /// `agent.yaml` (`rampart agent --config`).
    Agent,
    /// `server.yaml` (`rampart server --config`).
    Server,
    /// An exec and network policy (`rampart policy apply`).
    Policy,
    /// A rule file in Falco's language (`rampart rules check`).
    Rules,
    /// A playbook file (listed under `playbooks:` in agent.yaml).
    Playbooks,
}

impl Kind {
    /// What the kind is called in `config check`'s answer.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Agent => "agent configuration",
            Kind::Server => "server configuration",
            Kind::Policy => "policy",
            Kind::Rules => "rule file",
            Kind::Playbooks => "playbook file",
        }
    }
}

/// Top-level keys only a server configuration has.
const SERVER_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "tls",
    "store",
    "regions",
    "default_region",
    "pseudonym_key_file",
    "retention_interval",
    "agent_cert_days",
    "metrics_public",
];
/// Top-level keys only a policy has.
const POLICY_KEYS: &[&str] = &["selectors", "network", "exec", "mode"];

/// Guesses the kind of `text` (read from `path`); `None` when neither content nor name tells.
pub fn detect(path: &Path, text: &str) -> Option<Kind> {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Sequence(_)) => return Some(Kind::Rules),
        Ok(serde_yaml::Value::Mapping(m)) => {
            let keys: Vec<&str> = m.keys().filter_map(|k| k.as_str()).collect();
            if keys.iter().any(|k| POLICY_KEYS.contains(k)) {
                return Some(Kind::Policy);
            }
            // A playbook file has only `playbooks:`, a list of playbooks (mappings); the agent's
            // `playbooks:` is a list of file paths beside other keys.
            let playbook_list = m
                .get("playbooks")
                .and_then(|v| v.as_sequence())
                .is_some_and(|l| l.iter().any(|p| p.is_mapping()));
            if keys == ["playbooks"] && playbook_list {
                return Some(Kind::Playbooks);
            }
            if keys.iter().any(|k| SERVER_KEYS.contains(k)) {
                return Some(Kind::Server);
            }
            if !keys.is_empty() && !by_name(path).is_some_and(|k| k != Kind::Agent) {
                return Some(Kind::Agent);
            }
        }
        _ => {}
    }
    by_name(path)
}

fn by_name(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with("agent.") {
        Some(Kind::Agent)
    } else if name.starts_with("server.") {
        Some(Kind::Server)
    } else if path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|d| d == "rules.d" || d == "rules")
    {
        Some(Kind::Rules)
    } else if path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|d| d == "policies")
    {
        Some(Kind::Policy)
    } else {
        None
    }
}

/// Why a file did not pass `config check`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// agent.yaml did not load (its own error says whether it is the user's input).
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// server.yaml could not be read.
    #[error(transparent)]
    ServerRead(rampart_server::config::ConfigError),
    /// A rule file could not be read.
    #[error(transparent)]
    RulesRead(rampart_rules::Error),
    /// The file is wrong; the message starts with `path:line` where the parser knows it.
    #[error("{0}")]
    Invalid(String),
    /// The file could not be read to tell its kind.
    #[error("reading {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Neither its content nor its name tells what the file is.
    #[error("{}: cannot tell what kind of file this is; give --kind agent|server|policy|rules|playbooks", path.display())]
    UnknownKind { path: std::path::PathBuf },
}

impl CheckError {
    /// Whether the error is the user's input being wrong.
    pub fn is_bad_input(&self) -> bool {
        match self {
            CheckError::Agent(e) => e.is_bad_input(),
            CheckError::Invalid(_) | CheckError::UnknownKind { .. } => true,
            CheckError::ServerRead(_) | CheckError::RulesRead(_) | CheckError::Read { .. } => false,
        }
    }
}

/// The kind of `path`: `given` (`--kind`), else [`detect`]ed from its content and name.
pub fn kind_of(path: &Path, given: Option<Kind>) -> Result<Kind, CheckError> {
    if let Some(k) = given {
        return Ok(k);
    }
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    detect(path, &text).ok_or_else(|| CheckError::UnknownKind {
        path: path.to_path_buf(),
    })
}

/// Validates `path` as `kind` the way the command that reads it would; what it holds, as
/// ` (N rules, ...)` (empty for agent and server configurations).
pub fn check(path: &Path, kind: Kind) -> Result<String, CheckError> {
    let invalid = |e: &dyn std::fmt::Display| CheckError::Invalid(e.to_string());
    match kind {
        Kind::Agent => {
            AgentConfig::load(path)?;
            Ok(String::new())
        }
        Kind::Server => {
            rampart_server::ServerConfig::load(path).map_err(|e| match e {
                e @ rampart_server::config::ConfigError::Read { .. } => CheckError::ServerRead(e),
                other => invalid(&other),
            })?;
            Ok(String::new())
        }
        Kind::Policy => {
            let p = rampart_respond::Policy::load(path).map_err(|e| invalid(&e))?;
            Ok(format!(
                " ({} selectors, {} network rules, {} exec rules)",
                p.selectors.len(),
                p.network.len(),
                p.exec.len()
            ))
        }
        Kind::Playbooks => {
            let p = rampart_respond::load_playbooks(path).map_err(|e| invalid(&e))?;
            Ok(format!(" ({} playbooks)", p.len()))
        }
        Kind::Rules => {
            // The agent loads a user's rule file after the defaults (it may use their macros
            // and lists); a file that fails that way but loads alone (the default file itself,
            // or a self-contained set) is fine too.
            let files = [path.to_path_buf()];
            let load = |defaults| {
                rampart_rules::load_files(defaults, &files, rampart_rules::Options::default())
            };
            let (set, how) = match load(true) {
                Ok(set) => (set, "loaded after the defaults"),
                Err(e) => match load(false) {
                    Ok(set) => (set, "loaded alone"),
                    Err(_) => {
                        return Err(match e {
                            e @ rampart_rules::Error::Io { .. } => CheckError::RulesRead(e),
                            other => invalid(&other),
                        })
                    }
                },
            };
            let r = set.report();
            Ok(format!(
                " ({} rules, {} cannot fire; {how})",
                r.rules,
                r.cannot_fire.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_of_takes_the_given_kind_then_reads_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let absent = dir.path().join("absent.yaml");
        // A given kind is not second-guessed (and the file need not be read for it).
        assert_eq!(
            kind_of(&absent, Some(Kind::Policy)).expect("given"),
            Kind::Policy
        );
        let e = kind_of(&absent, None).expect_err("unreadable");
        assert!(
            matches!(e, CheckError::Read { .. }) && !e.is_bad_input(),
            "{e}"
        );
        assert!(e.to_string().starts_with("reading "), "{e}");
        let rules = dir.path().join("mine.yaml");
        std::fs::write(&rules, "- rule: a\n").expect("write");
        assert_eq!(kind_of(&rules, None).expect("detected"), Kind::Rules);
        let odd = dir.path().join("odd.txt");
        std::fs::write(&odd, "just some words\n").expect("write");
        let e = kind_of(&odd, None).expect_err("unknown");
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot tell what kind of file this is; give --kind agent|server|policy|rules|playbooks",
                odd.display()
            )
        );
    }

    #[test]
    fn kinds_are_told_apart_by_content_then_name() {
        let p = Path::new("/x/whatever.yaml");
        assert_eq!(detect(p, "- rule: a\n"), Some(Kind::Rules));
        assert_eq!(detect(p, "selectors: {a: {name: x}}\n"), Some(Kind::Policy));
        assert_eq!(detect(p, "listen: 0.0.0.0:1\n"), Some(Kind::Server));
        assert_eq!(detect(p, "dns: false\n"), Some(Kind::Agent));
        assert_eq!(
            detect(p, "playbooks:\n  - name: m\n    match: {rules: [x]}\n"),
            Some(Kind::Playbooks)
        );
        assert_eq!(
            detect(p, "playbooks: [/etc/rampart/playbooks/m.yaml]\n"),
            Some(Kind::Agent),
            "agent.yaml's playbooks: lists files"
        );
        assert_eq!(detect(p, "# only comments\n"), None);
        assert_eq!(
            detect(Path::new("/etc/rampart/server.yaml"), "# all defaults\n"),
            Some(Kind::Server)
        );
        assert_eq!(
            detect(Path::new("/etc/rampart/agent.yaml"), "{}\n"),
            Some(Kind::Agent)
        );
    }
}
