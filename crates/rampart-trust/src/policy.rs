//! The trust policy: which signers each registry/repository needs, what to do without a
//! signature, and which digests are pinned.
//!
//! ```yaml
//! # trust.yaml
//! default: deny            # images no entry matches: deny | warn | allow
//! images:
//!   - match: "127.0.0.1:*/prod/**"   # glob over registry/repository (docker.io/library/x)
//!     keys: [release.pub]            # PEM public keys, relative to this file
//!     missing: deny                  # unsigned or badly signed: deny | warn
//!     digests: [sha256:...]          # optional: only these digests may run
//!     notation:                      # optional: Notation signatures count too
//!       trust_store: [ca.pem]        # PEM certificates, relative to this file
//!       identities: ["x509.subject: C=US, O=Example, CN=release"]   # or "*"
//! ```
//!
//! Entries are tried in order; the first whose `match` matches decides.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TrustError;
use crate::keys::PublicKey;
use crate::notation::NotationTrust;
use crate::reference::{is_digest, ImageRef};
use crate::registry::Registry;
use crate::signature::{verify_with, Verified};

/// What happens to an image without a valid signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    Deny,
    Warn,
    Allow,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "default_missing")]
    default: Missing,
    #[serde(default)]
    images: Vec<EntryFile>,
}

fn default_missing() -> Missing {
    Missing::Deny
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default = "default_missing")]
    missing: Missing,
    #[serde(default)]
    digests: Vec<String>,
    #[serde(default)]
    notation: Option<NotationFile>,
}

/// `notation:` of an entry: Notary Project signatures accepted beside cosign's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotationFile {
    /// PEM certificates (CAs, or self-signed signing certificates), relative to the policy.
    trust_store: Vec<String>,
    /// `*` or `x509.subject: C=..., O=..., CN=...`.
    identities: Vec<String>,
}

/// One entry of the policy.
#[derive(Debug, Clone)]
pub struct TrustRule {
    pub pattern: String,
    glob: glob::Pattern,
    pub keys: Vec<PublicKey>,
    pub missing: Missing,
    pub digests: Vec<String>,
    /// Notation signatures accepted (trust store and identities).
    pub notation: Option<NotationTrust>,
    /// Line of the entry in the policy file.
    pub line: usize,
}

/// A loaded trust policy.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pub path: PathBuf,
    pub default: Missing,
    pub rules: Vec<TrustRule>,
}

/// The verdict of the trust policy on one image.
#[derive(Debug, Clone, Serialize)]
pub struct TrustVerdict {
    pub allowed: bool,
    /// Allowed without a valid signature (`warn`), or denied: why.
    pub message: Option<String>,
    pub verified: Option<Verified>,
    /// The entry that decided (its `match`), `None` for the default.
    pub rule: Option<String>,
}

impl TrustVerdict {
    /// One `Verified IMAGE at DIGEST: signed by KEY (SOURCE) as FORM` line per valid
    /// signature (none when nothing verified), each ending in `\n`.
    pub fn text(&self) -> String {
        let Some(v) = &self.verified else {
            return String::new();
        };
        let mut out = String::new();
        for s in &v.signatures {
            let form = match s.form {
                crate::SignatureForm::SimpleSigning => "cosign simple signing",
                crate::SignatureForm::Bundle => "Sigstore bundle",
                crate::SignatureForm::Notation => "Notation (Notary Project)",
            };
            out.push_str(&format!(
                "Verified {} at {}: signed by {} ({}) as {form}\n",
                v.image, v.digest, s.key_id, s.key_source
            ));
        }
        out
    }
}

fn line_of(text: &str, needle: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .unwrap_or(from.max(1))
}

impl TrustPolicy {
    pub fn load(path: &Path) -> Result<TrustPolicy, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrustError::io(path, e))?;
        TrustPolicy::parse(&text, path)
    }

    /// Parses policy text; key paths are relative to `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<TrustPolicy, TrustError> {
        let bad = |line: usize, message: String| TrustError::Policy {
            path: path.to_path_buf(),
            line,
            message,
        };
        let f: PolicyFile = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            bad(line, e.to_string())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut rules = Vec::new();
        let mut cursor = 1;
        for e in f.images {
            let line = line_of(text, &e.pattern, cursor);
            cursor = line + 1;
            let glob = glob::Pattern::new(&e.pattern)
                .map_err(|err| bad(line, format!("match {:?}: {err}", e.pattern)))?;
            let mut keys = Vec::new();
            for k in &e.keys {
                let kl = line_of(text, k, line);
                let key = if k.contains("BEGIN PUBLIC KEY") {
                    PublicKey::from_pem(k, &format!("{}:{kl}", path.display()))
                } else {
                    PublicKey::load(&base.join(k))
                }
                .map_err(|err| bad(kl, err.to_string()))?;
                keys.push(key);
            }
            let notation = match &e.notation {
                Some(n) => {
                    let nl = line_of(text, "notation", line);
                    let paths: Vec<PathBuf> = n.trust_store.iter().map(|p| base.join(p)).collect();
                    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
                    if refs.is_empty() || n.identities.is_empty() {
                        return Err(bad(
                            nl,
                            "notation: needs trust_store (PEM certificates) and identities (\"*\" or \"x509.subject: ...\")".into(),
                        ));
                    }
                    Some(
                        NotationTrust::load(&refs, n.identities.clone())
                            .map_err(|err| bad(nl, err.to_string()))?,
                    )
                }
                None => None,
            };
            if keys.is_empty() && notation.is_none() && e.missing == Missing::Deny {
                return Err(bad(
                    line,
                    format!(
                        "entry {:?} needs signatures (missing: deny) but names no keys",
                        e.pattern
                    ),
                ));
            }
            for d in &e.digests {
                if !is_digest(d) {
                    return Err(bad(
                        line_of(text, d, line),
                        format!("{d:?} is not a sha256 digest"),
                    ));
                }
            }
            rules.push(TrustRule {
                pattern: e.pattern,
                glob,
                keys,
                missing: e.missing,
                digests: e.digests,
                notation,
                line,
            });
        }
        Ok(TrustPolicy {
            path: path.to_path_buf(),
            default: f.default,
            rules,
        })
    }

    /// A policy that requires one of `keys` for every image.
    pub fn require_keys(keys: Vec<PublicKey>) -> TrustPolicy {
        TrustPolicy {
            path: PathBuf::from("--key"),
            default: Missing::Deny,
            rules: vec![TrustRule {
                pattern: "**".into(),
                glob: glob::Pattern::new("**").unwrap_or_default(),
                keys,
                missing: Missing::Deny,
                digests: Vec::new(),
                notation: None,
                line: 0,
            }],
        }
    }

    /// The entry that applies to `image`.
    pub fn rule_for(&self, image: &ImageRef) -> Option<&TrustRule> {
        let name = image.repo_name();
        self.rules.iter().find(|r| r.glob.matches(&name))
    }

    /// Applies the policy to `image`. `running` is the digest that will run (a local image's
    /// repo digest): it must be the digest the registry serves and that was signed.
    pub fn evaluate(
        &self,
        reg: &Registry,
        image: &ImageRef,
        running: Option<&str>,
    ) -> Result<TrustVerdict, TrustError> {
        let Some(rule) = self.rule_for(image) else {
            return Ok(TrustVerdict {
                allowed: self.default != Missing::Deny,
                message: (self.default != Missing::Allow).then(|| {
                    format!(
                        "{image}: no trust policy entry matches {}",
                        image.repo_name()
                    )
                }),
                verified: None,
                rule: None,
            });
        };
        let where_ = if rule.line > 0 {
            format!("{}:{}", self.path.display(), rule.line)
        } else {
            self.path.display().to_string()
        };
        let result = if rule.keys.is_empty() && rule.notation.is_none() {
            Err(TrustError::Verification {
                reference: image.to_string(),
                message: "no trusted keys".into(),
            })
        } else {
            verify_with(reg, image, &rule.keys, rule.notation.as_ref(), running)
        };
        let pin_violation = |digest: &str| -> Option<String> {
            (!rule.digests.is_empty() && !rule.digests.iter().any(|d| d == digest)).then(|| {
                format!(
                    "{image}: digest {digest} is not among the pinned digests ({}) of {where_}",
                    rule.digests.join(", ")
                )
            })
        };
        match result {
            Ok(v) => {
                if let Some(m) = pin_violation(&v.digest) {
                    return Ok(TrustVerdict {
                        allowed: false,
                        message: Some(m),
                        verified: Some(v),
                        rule: Some(rule.pattern.clone()),
                    });
                }
                Ok(TrustVerdict {
                    allowed: true,
                    message: None,
                    verified: Some(v),
                    rule: Some(rule.pattern.clone()),
                })
            }
            Err(e @ (TrustError::Verification { .. } | TrustError::DigestMismatch { .. })) => {
                Ok(TrustVerdict {
                    allowed: rule.missing != Missing::Deny,
                    message: Some(format!("{e} (policy {where_})")),
                    verified: None,
                    rule: Some(rule.pattern.clone()),
                })
            }
            Err(e) => Err(e),
        }
    }
}
