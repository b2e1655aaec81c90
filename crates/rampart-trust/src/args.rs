//! Signing and verification as the user asks for them (`rampart image sign|verify`, `rampart
//! key generate`): the options, the key password from the environment, annotations, and which
//! trust policy a verification uses.
//!
//! With the `clap` feature [`SignArgs`] and [`VerifyArgs`] are also the commands' arguments
//! (`#[command(flatten)]` or a subcommand's fields in the binary): the field doc comments are
//! the help text. Only the binary turns it on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::{PublicKey, SignForm, TrustError, TrustPolicy};

/// `rampart image sign`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct SignArgs {
    /// The image (registry/repository:tag or @sha256:digest); the signature goes to the same
    /// repository.
    pub image: String,
    /// Private key (cosign's formats; password from RAMPART_KEY_PASSWORD or COSIGN_PASSWORD).
    #[cfg_attr(feature = "clap", arg(long))]
    pub key: PathBuf,
    /// Store a Sigstore bundle v0.3 as an OCI referrer (cosign 3's form) instead of the
    /// `sha256-<digest>.sig` tag.
    #[cfg_attr(feature = "clap", arg(long))]
    pub bundle: bool,
    /// Extra annotations in the signed payload (KEY=VALUE).
    #[cfg_attr(
        feature = "clap",
        arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")
    )]
    pub annotations: Vec<String>,
}

impl SignArgs {
    /// The form the signature is stored in.
    pub fn form(&self) -> SignForm {
        if self.bundle {
            SignForm::Bundle
        } else {
            SignForm::SimpleSigning
        }
    }

    /// The annotations, `KEY=VALUE` each (the value may hold `=`; a later key replaces an
    /// earlier one).
    pub fn annotations(&self) -> Result<BTreeMap<String, String>, TrustError> {
        let mut out = BTreeMap::new();
        for kv in &self.annotations {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| TrustError::Annotation { item: kv.clone() })?;
            out.insert(k.to_string(), v.to_string());
        }
        Ok(out)
    }
}

impl SignForm {
    /// What the signature is, in the words `rampart image sign` prints.
    pub fn describe(self) -> &'static str {
        match self {
            SignForm::Bundle => "Sigstore bundle referrer",
            SignForm::SimpleSigning => "cosign signature tag",
        }
    }
}

/// `rampart image verify`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct VerifyArgs {
    /// The image to verify.
    pub image: String,
    /// Trusted public keys (any one signature by one of them is enough).
    #[cfg_attr(
        feature = "clap",
        arg(long, required_unless_present = "policy", conflicts_with = "policy")
    )]
    pub key: Vec<PathBuf>,
    /// A trust policy file (signers per repository, missing-signature action, pinned digests).
    #[cfg_attr(feature = "clap", arg(long))]
    pub policy: Option<PathBuf>,
    /// JSON output (the verified digest and signatures, or the failure).
    #[cfg_attr(feature = "clap", arg(long))]
    pub json: bool,
}

impl VerifyArgs {
    /// The policy file when one is given, else a policy requiring a signature by one of the
    /// keys.
    pub fn policy(&self) -> Result<TrustPolicy, TrustError> {
        match &self.policy {
            Some(p) => TrustPolicy::load(p),
            None => {
                let keys = self
                    .key
                    .iter()
                    .map(|k| PublicKey::load(k))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(TrustPolicy::require_keys(keys))
            }
        }
    }
}

/// The environment variables a private key's password is read from, in order: Rampart's, then
/// cosign's.
pub const PASSWORD_VARS: [&str; 2] = ["RAMPART_KEY_PASSWORD", "COSIGN_PASSWORD"];

/// The password for private keys, from the environment ([`PASSWORD_VARS`]). An empty value is
/// a password too (cosign's default).
pub fn password_from_env() -> Option<Vec<u8>> {
    password_from(|name| std::env::var_os(name))
}

fn password_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<Vec<u8>> {
    PASSWORD_VARS
        .iter()
        .find_map(|name| var(name))
        .map(|v| v.into_encoded_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(annotations: &[&str], bundle: bool) -> SignArgs {
        SignArgs {
            image: "registry.example/app:1".into(),
            key: PathBuf::from("cosign.key"),
            bundle,
            annotations: annotations.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn annotations_split_at_the_first_equals_sign() {
        let a = sign(
            &["team=web", "url=https://x/?a=b", "team=api", "empty="],
            false,
        )
        .annotations()
        .expect("annotations");
        assert_eq!(a["team"], "api", "a later key replaces an earlier one");
        assert_eq!(a["url"], "https://x/?a=b");
        assert_eq!(a["empty"], "");
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn an_annotation_without_equals_is_bad_input_naming_it() {
        let e = sign(&["ok=1", "no-value"], false)
            .annotations()
            .expect_err("refused");
        assert!(e.is_bad_input());
        assert_eq!(e.to_string(), "--annotation \"no-value\": use KEY=VALUE");
    }

    #[test]
    fn the_form_follows_bundle() {
        assert_eq!(sign(&[], true).form(), SignForm::Bundle);
        assert_eq!(sign(&[], false).form().describe(), "cosign signature tag");
        assert_eq!(SignForm::Bundle.describe(), "Sigstore bundle referrer");
    }

    #[test]
    fn rampart_password_wins_over_cosign_and_empty_is_a_password() {
        let both = |n: &str| match n {
            "RAMPART_KEY_PASSWORD" => Some("r".into()),
            "COSIGN_PASSWORD" => Some("c".into()),
            _ => None,
        };
        assert_eq!(password_from(both), Some(b"r".to_vec()));
        let cosign = |n: &str| (n == "COSIGN_PASSWORD").then(|| "".into());
        assert_eq!(password_from(cosign), Some(Vec::new()));
        assert_eq!(password_from(|_| None), None);
    }

    #[test]
    fn verify_reads_the_policy_or_the_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = VerifyArgs {
            image: "x".into(),
            key: vec![dir.path().join("absent.pub")],
            policy: None,
            json: false,
        };
        let e = missing.policy().expect_err("no key file");
        assert!(e.to_string().contains("absent.pub"), "{e}");
        let key = crate::PrivateKey::generate();
        let (_, public) =
            crate::write_key_pair(&key, &dir.path().join("k"), None, false).expect("write keys");
        let ok = VerifyArgs {
            key: vec![public],
            ..missing
        };
        ok.policy().expect("a policy of the key");
    }
}
