//! `rampart image sign` and `rampart image verify`: cosign-compatible signatures in the image's
//! registry, verified against keys or a trust policy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rampart_trust::{ImageRef, PrivateKey, PublicKey, Registry, SignForm, TrustError, TrustPolicy};

use super::key::password_from_env;
use super::BadInput;

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image (registry/repository:tag or @sha256:digest); the signature goes to the same
    /// repository.
    pub image: String,
    /// Private key (cosign's formats; password from RAMPART_KEY_PASSWORD or COSIGN_PASSWORD).
    #[arg(long)]
    pub key: PathBuf,
    /// Store a Sigstore bundle v0.3 as an OCI referrer (cosign 3's form) instead of the
    /// `sha256-<digest>.sig` tag.
    #[arg(long)]
    pub bundle: bool,
    /// Extra annotations in the signed payload (KEY=VALUE).
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image to verify.
    pub image: String,
    /// Trusted public keys (any one signature by one of them is enough).
    #[arg(long, required_unless_present = "policy", conflicts_with = "policy")]
    pub key: Vec<PathBuf>,
    /// A trust policy file (signers per repository, missing-signature action, pinned digests).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// JSON output (the verified digest and signatures, or the failure).
    #[arg(long)]
    pub json: bool,
}

fn trust_error(e: TrustError) -> anyhow::Error {
    if e.is_bad_input() {
        BadInput(e.to_string()).into()
    } else {
        e.into()
    }
}

pub fn sign(a: SignArgs) -> anyhow::Result<ExitCode> {
    let image = ImageRef::parse(&a.image).map_err(trust_error)?;
    let password = password_from_env();
    let key = PrivateKey::load(&a.key, password.as_deref()).map_err(trust_error)?;
    let mut annotations = BTreeMap::new();
    for kv in &a.annotations {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| BadInput(format!("--annotation {kv:?}: use KEY=VALUE")))?;
        annotations.insert(k.to_string(), v.to_string());
    }
    let reg = Registry::new(&image.registry);
    let form = if a.bundle {
        SignForm::Bundle
    } else {
        SignForm::SimpleSigning
    };
    let digest = rampart_trust::sign(&reg, &image, &key, form, annotations).map_err(trust_error)?;
    println!(
        "Signed {image} at {digest} with {} ({})",
        key.public().key_id(),
        if a.bundle {
            "Sigstore bundle referrer"
        } else {
            "cosign signature tag"
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let image = ImageRef::parse(&a.image).map_err(trust_error)?;
    let policy = match &a.policy {
        Some(p) => TrustPolicy::load(p).map_err(trust_error)?,
        None => {
            let keys = a
                .key
                .iter()
                .map(|k| PublicKey::load(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(trust_error)?;
            TrustPolicy::require_keys(keys)
        }
    };
    let reg = Registry::new(&image.registry);
    let verdict = policy.evaluate(&reg, &image, None).map_err(trust_error)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", verdict.text());
    }
    match (&verdict.message, verdict.allowed) {
        (Some(m), true) => eprintln!("warning: {m}"),
        (Some(m), false) => eprintln!("error: verification failed: {m}"),
        _ => {}
    }
    Ok(if verdict.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
