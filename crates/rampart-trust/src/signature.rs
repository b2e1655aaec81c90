//! Signatures in cosign's two storage forms, and their verification with digest pinning.
//!
//! **Simple signing** (cosign 1-2 default, `cosign sign --key`): the payload is the JSON
//! `{"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},
//! "type":"cosign container image signature"},"optional":ANNOTATIONS}`, stored as a layer
//! (`application/vnd.dev.cosign.simplesigning.v1+json`) of an OCI manifest tagged
//! `sha256-<hex>.sig` in the image's repository; the layer's annotation
//! `dev.cosignproject.cosign/signature` holds the base64 ECDSA signature of the payload bytes.
//! Each signer appends a layer.
//!
//! **Sigstore bundle v0.3** (cosign 3 default): an OCI manifest with `artifactType`
//! `application/vnd.dev.sigstore.bundle.v0.3+json` whose `subject` is the image manifest and
//! whose one layer is the bundle JSON. The bundle's `dsseEnvelope` carries an in-toto
//! statement (`predicateType` `https://sigstore.dev/cosign/sign/v1`, subject digest = the
//! image's) signed over DSSE's pre-authentication encoding. It is found through the referrers
//! API, or the `sha256-<hex>` index tag on registries without it. Transparency-log entries in
//! the bundle are not needed and not checked: verification is offline, against keys.
//!
//! Whatever the form, a signature counts only when the digest it names is the digest being
//! verified, which is the digest computed here from the manifest bytes the registry served.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::TrustError;
use crate::keys::{PrivateKey, PublicKey};
use crate::notation::{
    verify_envelope_of, NotationTrust, COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, NOTATION_ARTIFACT_TYPE,
};
use crate::reference::ImageRef;
use crate::registry::{
    b64, sha256_digest, signature_tag, Registry, MAX_SMALL_BLOB, OCI_INDEX, OCI_MANIFEST,
};

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Annotation rampart adds to simple-signing payloads: the tag the signer asked for, so a
/// tag that moved later can be reported with the digest that was signed.
pub const TAG_ANNOTATION: &str = "tag";
/// Most signature manifests looked at for one image (layers of the .sig manifest plus
/// bundle referrers): a repository cannot make verification unbounded.
pub const MAX_SIGNATURES: usize = 64;

/// How a signature was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureForm {
    SimpleSigning,
    Bundle,
    /// A Notary Project (Notation) JWS signature, verified against an X.509 trust store.
    Notation,
}

/// One signature that verified.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedSignature {
    pub form: SignatureForm,
    pub key_id: String,
    pub key_source: String,
    /// `docker-reference` of a simple-signing payload, the subject name of a bundle.
    pub identity: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// The outcome of a successful verification.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub image: String,
    /// The manifest digest that was verified (computed from the served bytes).
    pub digest: String,
    pub signatures: Vec<VerifiedSignature>,
}

/// The simple-signing payload cosign signs.
pub fn simple_signing_payload(
    image: &ImageRef,
    digest: &str,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let optional = if annotations.is_empty() {
        serde_json::Value::Null
    } else {
        json!(annotations)
    };
    let v = json!({
        "critical": {
            "identity": {"docker-reference": image.repo_name()},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_SIGNATURE_TYPE,
        },
        "optional": optional,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// DSSE pre-authentication encoding.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
struct PayloadCritical {
    identity: Option<PayloadIdentity>,
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}
#[derive(Deserialize)]
struct PayloadIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: Option<String>,
}
#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}
#[derive(Deserialize)]
struct Payload {
    critical: PayloadCritical,
    #[serde(default)]
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize, Serialize)]
struct ManifestDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    artifact_type: Option<String>,
    config: serde_json::Value,
    layers: Vec<Layer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Serialize, Clone)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    size: u64,
    digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

/// What a signature that did not count was, for the failure message.
#[derive(Debug, Default)]
struct Rejections {
    found: usize,
    reasons: Vec<String>,
}

impl Rejections {
    fn add(&mut self, r: String) {
        if self.reasons.len() < 8 && !self.reasons.contains(&r) {
            self.reasons.push(r);
        }
    }
}

fn key_matching<'a>(keys: &'a [PublicKey], msg: &[u8], sig: &[u8]) -> Option<&'a PublicKey> {
    keys.iter().find(|k| k.verify(msg, sig))
}

/// Checks a simple-signing payload and its signature against `digest` and `keys`.
fn check_simple(
    payload: &[u8],
    sig_b64: &str,
    digest: &str,
    keys: &[PublicKey],
    rej: &mut Rejections,
) -> Option<VerifiedSignature> {
    rej.found += 1;
    let Some(sig) = b64(sig_b64) else {
        rej.add("a signature annotation is not base64".into());
        return None;
    };
    let Some(key) = key_matching(keys, payload, &sig) else {
        rej.add("a simple-signing signature is not by any trusted key".into());
        return None;
    };
    let p: Payload = match serde_json::from_slice(payload) {
        Ok(p) => p,
        Err(e) => {
            rej.add(format!(
                "a signed payload is not cosign's simple-signing JSON: {e}"
            ));
            return None;
        }
    };
    if p.critical.kind != COSIGN_SIGNATURE_TYPE && p.critical.kind != SIGN_PREDICATE {
        rej.add(format!("a signed payload has type {:?}", p.critical.kind));
        return None;
    }
    if p.critical.image.digest != digest {
        rej.add(format!(
            "a signature by {} names {}, not {digest}",
            key.key_id(),
            p.critical.image.digest
        ));
        return None;
    }
    let annotations = p
        .optional
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect();
    Some(VerifiedSignature {
        form: SignatureForm::SimpleSigning,
        key_id: key.key_id(),
        key_source: key.source.clone(),
        identity: p.critical.identity.and_then(|i| i.docker_reference),
        annotations,
    })
}

/// Why one signature (a bundle, an envelope) was not accepted: the reason, for the verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

impl From<String> for Rejected {
    fn from(reason: String) -> Rejected {
        Rejected(reason)
    }
}

/// Checks a Sigstore bundle (v0.1-v0.3) with a DSSE envelope against `digest` and `keys`.
pub fn check_bundle(
    bundle: &[u8],
    digest: &str,
    keys: &[PublicKey],
) -> Result<VerifiedSignature, Rejected> {
    check_bundle_reason(bundle, digest, keys).map_err(Rejected)
}

fn check_bundle_reason(
    bundle: &[u8],
    digest: &str,
    keys: &[PublicKey],
) -> Result<VerifiedSignature, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bundle).map_err(|e| format!("a bundle is not JSON: {e}"))?;
    let mt = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    if !mt.starts_with("application/vnd.dev.sigstore.bundle") {
        return Err(format!("a bundle has media type {mt:?}"));
    }
    let env = v.get("dsseEnvelope").ok_or_else(|| {
        "a bundle has no dsseEnvelope (message signatures are not image signatures)".to_string()
    })?;
    let ptype = env
        .get("payloadType")
        .and_then(|p| p.as_str())
        .unwrap_or_default();
    let payload = env
        .get("payload")
        .and_then(|p| p.as_str())
        .and_then(b64)
        .ok_or("a bundle's DSSE payload is missing or not base64")?;
    let pae = dsse_pae(ptype, &payload);
    let sigs = env
        .get("signatures")
        .and_then(|s| s.as_array())
        .ok_or("a bundle's DSSE envelope has no signatures")?;
    let key = sigs
        .iter()
        .filter_map(|s| s.get("sig").and_then(|x| x.as_str()).and_then(b64))
        .find_map(|sig| key_matching(keys, &pae, &sig))
        .ok_or("a bundle signature is not by any trusted key")?;
    if ptype != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!("a signed bundle has payload type {ptype:?}"));
    }
    let st: serde_json::Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("a signed in-toto statement is not JSON: {e}"))?;
    let pred = st
        .get("predicateType")
        .and_then(|p| p.as_str())
        .unwrap_or_default();
    if pred != SIGN_PREDICATE {
        return Err(format!(
            "a signed statement has predicate {pred:?} (an attestation, not an image signature)"
        ));
    }
    let hex = digest.trim_start_matches("sha256:");
    let subjects = st
        .get("subject")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    let subject = subjects
        .iter()
        .find(|s| s.pointer("/digest/sha256").and_then(|d| d.as_str()) == Some(hex));
    let Some(subject) = subject else {
        let named: Vec<String> = subjects
            .iter()
            .filter_map(|s| s.pointer("/digest/sha256").and_then(|d| d.as_str()))
            .map(|d| format!("sha256:{d}"))
            .collect();
        return Err(format!(
            "a bundle signature by {} names {}, not {digest}",
            key.key_id(),
            named.join(", ")
        ));
    };
    Ok(VerifiedSignature {
        form: SignatureForm::Bundle,
        key_id: key.key_id(),
        key_source: key.source.clone(),
        identity: subject
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string),
        annotations: BTreeMap::new(),
    })
}

/// Every signature of `digest` in `repo` that verifies with one of `keys`; the second value
/// explains those that did not.
fn signatures_of(
    reg: &Registry,
    repo: &str,
    digest: &str,
    keys: &[PublicKey],
) -> Result<(Vec<VerifiedSignature>, Rejections), TrustError> {
    let mut ok = Vec::new();
    let mut rej = Rejections::default();
    if let Some(m) = reg.manifest(repo, &signature_tag(digest))? {
        let doc: ManifestDoc = serde_json::from_slice(&m.bytes).map_err(|e| {
            TrustError::registry(
                format!("{}/{repo}:{}", reg.host(), signature_tag(digest)),
                format!("not a signature manifest: {e}"),
            )
        })?;
        for layer in doc.layers.iter().take(MAX_SIGNATURES) {
            if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                continue;
            }
            let Some(sig) = layer
                .annotations
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            else {
                continue;
            };
            let payload = reg.blob(repo, &layer.digest, MAX_SMALL_BLOB)?;
            if let Some(v) = check_simple(&payload, sig, digest, keys, &mut rej) {
                ok.push(v);
            }
        }
    }
    let referrers = reg.referrers(repo, digest)?;
    for d in referrers
        .iter()
        .filter(|d| d.artifact_type.as_deref() == Some(BUNDLE_MEDIA_TYPE))
        .take(MAX_SIGNATURES)
    {
        let Some(m) = reg.manifest(repo, &d.digest)? else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<ManifestDoc>(&m.bytes) else {
            continue;
        };
        let subject = doc
            .subject
            .as_ref()
            .and_then(|s| s.get("digest"))
            .and_then(|s| s.as_str());
        if subject != Some(digest) {
            continue;
        }
        for layer in doc.layers.iter().filter(|l| {
            l.media_type
                .starts_with("application/vnd.dev.sigstore.bundle")
        }) {
            rej.found += 1;
            let bundle = reg.blob(repo, &layer.digest, MAX_SMALL_BLOB)?;
            match check_bundle(&bundle, digest, keys) {
                Ok(v) => ok.push(v),
                Err(r) => rej.add(r.0),
            }
        }
    }
    Ok((ok, rej))
}

/// Resolves `image` to the digest of the manifest the registry serves for it. A reference
/// with both a tag and a digest must have the tag still pointing at the digest.
pub fn resolve(reg: &Registry, image: &ImageRef) -> Result<String, TrustError> {
    let by_tag = match &image.tag {
        Some(t) => Some(
            reg.manifest(&image.repository, t)?
                .ok_or_else(|| TrustError::Verification {
                    reference: image.to_string(),
                    message: format!("the registry has no manifest tagged {t:?}"),
                })?
                .digest,
        ),
        None => None,
    };
    match (&image.digest, by_tag) {
        (Some(d), Some(t)) if *d != t => Err(TrustError::Verification {
            reference: image.to_string(),
            message: format!(
                "tag {:?} points to {t}, not the pinned {d}",
                image.tag.as_deref().unwrap_or("")
            ),
        }),
        (Some(d), _) => {
            reg.manifest(&image.repository, d)?
                .ok_or_else(|| TrustError::Verification {
                    reference: image.to_string(),
                    message: format!("the registry has no manifest {d}"),
                })?;
            Ok(d.clone())
        }
        (None, Some(t)) => Ok(t),
        (None, None) => Err(TrustError::Verification {
            reference: image.to_string(),
            message: "neither a tag nor a digest".into(),
        }),
    }
}

/// Other digests of the repository signed by `keys`, with the tag each signature recorded:
/// what a tag that moved was signed at. At most `limit` signature tags are read.
pub fn signed_digests(
    reg: &Registry,
    repo: &str,
    keys: &[PublicKey],
    limit: usize,
) -> Result<Vec<(String, Option<String>)>, TrustError> {
    let mut out = Vec::new();
    for tag in reg
        .tags(repo)?
        .into_iter()
        .filter(|t| t.starts_with("sha256-") && t.ends_with(".sig"))
        .take(limit)
    {
        let digest = tag
            .trim_end_matches(".sig")
            .replacen("sha256-", "sha256:", 1);
        let (ok, _) = signatures_of(reg, repo, &digest, keys)?;
        if let Some(first) = ok.first() {
            out.push((digest, first.annotations.get(TAG_ANNOTATION).cloned()));
        }
    }
    Ok(out)
}

/// Verifies that `image` is signed by one of `keys`. `expected` is the digest that will run (a
/// local image's repository digest): when given, it is the digest verified, whatever the tag
/// points to now (the digest that runs must be the digest that was signed). Errors name the
/// digests involved: a tag signed at one digest and now at another is reported as moved.
pub fn verify(
    reg: &Registry,
    image: &ImageRef,
    keys: &[PublicKey],
    expected: Option<&str>,
) -> Result<Verified, TrustError> {
    verify_with(reg, image, keys, None, expected)
}

/// Notation signatures of `digest` (referrers with the Notary Project artifact type) that
/// verify against `trust`.
fn notation_signatures(
    reg: &Registry,
    repo: &str,
    digest: &str,
    trust: &NotationTrust,
    rej: &mut Rejections,
) -> Result<Vec<VerifiedSignature>, TrustError> {
    let mut ok = Vec::new();
    let now = rustls_pki_types::UnixTime::now();
    for d in reg
        .referrers(repo, digest)?
        .iter()
        .filter(|d| d.artifact_type.as_deref() == Some(NOTATION_ARTIFACT_TYPE))
        .take(MAX_SIGNATURES)
    {
        let Some(m) = reg.manifest(repo, &d.digest)? else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<ManifestDoc>(&m.bytes) else {
            continue;
        };
        let subject = doc
            .subject
            .as_ref()
            .and_then(|s| s.get("digest"))
            .and_then(|s| s.as_str());
        if subject != Some(digest) {
            continue;
        }
        for layer in doc
            .layers
            .iter()
            .filter(|l| l.media_type == JWS_MEDIA_TYPE || l.media_type == COSE_MEDIA_TYPE)
        {
            rej.found += 1;
            let env = reg.blob(repo, &layer.digest, MAX_SMALL_BLOB)?;
            match verify_envelope_of(&layer.media_type, &env, trust, digest, now) {
                Ok(v) => ok.push(VerifiedSignature {
                    form: SignatureForm::Notation,
                    key_id: format!("notation:{}", v.subject),
                    key_source: trust.source.clone(),
                    identity: Some(v.subject),
                    annotations: BTreeMap::from([(
                        "io.cncf.notary.signingTime".to_string(),
                        v.signing_time,
                    )]),
                }),
                Err(r) => rej.add(format!("a Notation signature: {r}")),
            }
        }
    }
    Ok(ok)
}

/// [`verify`], also accepting Notation signatures that verify against `notation`.
pub fn verify_with(
    reg: &Registry,
    image: &ImageRef,
    keys: &[PublicKey],
    notation: Option<&NotationTrust>,
    expected: Option<&str>,
) -> Result<Verified, TrustError> {
    // The digest that runs is the one that must be signed; without one, what the registry
    // serves for the reference now.
    let digest = match expected {
        Some(e) => {
            let pinned = ImageRef {
                tag: None,
                ..image.with_digest(e)
            };
            resolve(reg, &pinned)?
        }
        None => resolve(reg, image)?,
    };
    let (mut ok, mut rej) = signatures_of(reg, &image.repository, &digest, keys)?;
    if let Some(trust) = notation {
        ok.extend(notation_signatures(
            reg,
            &image.repository,
            &digest,
            trust,
            &mut rej,
        )?);
    }
    if !ok.is_empty() {
        return Ok(Verified {
            image: image.to_string(),
            digest,
            signatures: ok,
        });
    }
    let mut keys_named: Vec<String> = keys
        .iter()
        .map(|k| format!("{} ({})", k.key_id(), k.source))
        .collect();
    if let Some(t) = notation {
        keys_named.push(format!("the Notation trust store {}", t.source));
    }
    let mut message = if rej.found == 0 {
        format!("{digest} has no signature")
    } else {
        format!(
            "{digest} has {} signature(s), none valid for {}: {}",
            rej.found,
            keys_named.join(", "),
            rej.reasons.join("; ")
        )
    };
    // Name what the tag was signed at, when it moved.
    if let Some(tag) = &image.tag {
        let others = signed_digests(reg, &image.repository, keys, 32).unwrap_or_default();
        let same_tag: Vec<&String> = others
            .iter()
            .filter(|(_, t)| t.as_deref() == Some(tag.as_str()))
            .map(|(d, _)| d)
            .collect();
        if !same_tag.is_empty() {
            message.push_str(&format!(
                "; tag {tag:?} was signed at {} and now points to {digest}: the tag moved after signing",
                same_tag.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
            ));
        } else if !others.is_empty() {
            message.push_str(&format!(
                "; signed digests in {}: {}",
                image.repo_name(),
                others
                    .iter()
                    .map(|(d, _)| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Err(TrustError::Verification {
        reference: image.to_string(),
        message,
    })
}

/// How to store a new signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignForm {
    /// cosign's `sha256-<hex>.sig` tag with a simple-signing layer (the default: every cosign
    /// version verifies it).
    SimpleSigning,
    /// A Sigstore bundle v0.3 referrer (cosign 3's default form), without transparency log.
    Bundle,
}

/// Signs `image` (resolved to its digest) with `key` and stores the signature in the same
/// repository. Returns the signed digest.
pub fn sign(
    reg: &Registry,
    image: &ImageRef,
    key: &PrivateKey,
    form: SignForm,
    mut annotations: BTreeMap<String, String>,
) -> Result<String, TrustError> {
    let digest = resolve(reg, image)?;
    let repo = &image.repository;
    if let Some(t) = &image.tag {
        annotations
            .entry(TAG_ANNOTATION.to_string())
            .or_insert_with(|| t.clone());
    }
    match form {
        SignForm::SimpleSigning => {
            let payload = simple_signing_payload(image, &digest, &annotations);
            let sig = key.sign(&payload);
            let payload_digest = reg.put_blob(repo, &payload)?;
            let mut sig_annotations = BTreeMap::new();
            sig_annotations.insert(SIGNATURE_ANNOTATION.to_string(), base64_std(&sig));
            let layer = Layer {
                media_type: SIMPLE_SIGNING_MEDIA_TYPE.into(),
                size: payload.len() as u64,
                digest: payload_digest.clone(),
                annotations: Some(sig_annotations),
            };
            let tag = signature_tag(&digest);
            let mut layers: Vec<Layer> = match reg.manifest(repo, &tag)? {
                Some(m) => serde_json::from_slice::<ManifestDoc>(&m.bytes)
                    .map(|d| d.layers)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            layers.retain(|l| l.digest != payload_digest || l.annotations != layer.annotations);
            layers.push(layer);
            let config = json!({
                "architecture": "",
                "created": "0001-01-01T00:00:00Z",
                "history": [{"created": "0001-01-01T00:00:00Z"}],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
                "config": {},
            });
            let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
            let config_digest = reg.put_blob(repo, &config_bytes)?;
            let doc = ManifestDoc {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.into()),
                artifact_type: None,
                config: json!({
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "size": config_bytes.len(),
                    "digest": config_digest,
                }),
                layers,
                subject: None,
                annotations: None,
            };
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            reg.put_manifest(repo, &tag, OCI_MANIFEST, &bytes)?;
        }
        SignForm::Bundle => {
            let subject_manifest =
                reg.manifest(repo, &digest)?
                    .ok_or_else(|| TrustError::Verification {
                        reference: image.to_string(),
                        message: format!("the registry has no manifest {digest}"),
                    })?;
            let statement = json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": image.repo_name(), "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
                "predicateType": SIGN_PREDICATE,
                "predicate": {},
            });
            let payload = serde_json::to_vec(&statement).unwrap_or_default();
            let sig = key.sign(&dsse_pae(IN_TOTO_PAYLOAD_TYPE, &payload));
            let hint = base64_std(&sha2::Digest::finalize(
                <sha2::Sha256 as sha2::Digest>::new_with_prefix(key.public().spki_der()),
            ));
            let bundle = json!({
                "mediaType": BUNDLE_MEDIA_TYPE,
                "verificationMaterial": {"publicKey": {"hint": hint}},
                "dsseEnvelope": {
                    "payload": base64_std(&payload),
                    "payloadType": IN_TOTO_PAYLOAD_TYPE,
                    "signatures": [{"sig": base64_std(&sig)}],
                },
            });
            let bundle_bytes = serde_json::to_vec(&bundle).unwrap_or_default();
            let bundle_digest = reg.put_blob(repo, &bundle_bytes)?;
            let empty = b"{}";
            let empty_digest = reg.put_blob(repo, empty)?;
            let mut ann = BTreeMap::new();
            ann.insert(
                "dev.sigstore.bundle.content".to_string(),
                "dsse-envelope".to_string(),
            );
            ann.insert(
                "dev.sigstore.bundle.predicateType".to_string(),
                SIGN_PREDICATE.to_string(),
            );
            let doc = ManifestDoc {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.into()),
                artifact_type: Some(BUNDLE_MEDIA_TYPE.into()),
                config: json!({"mediaType": EMPTY_CONFIG_TYPE, "size": 2, "digest": empty_digest}),
                layers: vec![Layer {
                    media_type: BUNDLE_MEDIA_TYPE.into(),
                    size: bundle_bytes.len() as u64,
                    digest: bundle_digest,
                    annotations: None,
                }],
                subject: Some(json!({
                    "mediaType": subject_manifest.media_type,
                    "size": subject_manifest.bytes.len(),
                    "digest": digest,
                })),
                annotations: Some(ann.clone()),
            };
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let referrer_digest = sha256_digest(&bytes);
            reg.put_manifest(repo, &referrer_digest, OCI_MANIFEST, &bytes)?;
            // Registries without the referrers API: maintain the `sha256-<hex>` index tag.
            let url_tag = crate::registry::fallback_tag(&digest);
            let mut manifests: Vec<serde_json::Value> = match reg.manifest(repo, &url_tag)? {
                Some(m) => serde_json::from_slice::<serde_json::Value>(&m.bytes)
                    .ok()
                    .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            manifests
                .retain(|m| m.get("digest").and_then(|d| d.as_str()) != Some(&referrer_digest));
            manifests.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": referrer_digest,
                "size": bytes.len(),
                "artifactType": BUNDLE_MEDIA_TYPE,
                "annotations": ann,
            }));
            let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
            let index_bytes = serde_json::to_vec(&index).unwrap_or_default();
            reg.put_manifest(repo, &url_tag, OCI_INDEX, &index_bytes)?;
        }
    }
    Ok(digest)
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            dsse_pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn bundle_checks_digest_and_key() {
        let k = PrivateKey::generate();
        let other = PrivateKey::generate();
        let d = format!("sha256:{}", "b".repeat(64));
        let st = json!({"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r","digest":{"sha256":"b".repeat(64)}}],"predicateType":SIGN_PREDICATE,"predicate":{}});
        let payload = serde_json::to_vec(&st).expect("json");
        let sig = k.sign(&dsse_pae(IN_TOTO_PAYLOAD_TYPE, &payload));
        let bundle = json!({"mediaType":BUNDLE_MEDIA_TYPE,"verificationMaterial":{},"dsseEnvelope":{"payload":base64_std(&payload),"payloadType":IN_TOTO_PAYLOAD_TYPE,"signatures":[{"sig":base64_std(&sig)}]}});
        let b = serde_json::to_vec(&bundle).expect("json");
        let v = check_bundle(&b, &d, &[k.public()]).expect("verifies");
        assert_eq!(v.form, SignatureForm::Bundle);
        let e = check_bundle(&b, &d, &[other.public()]).expect_err("wrong key");
        assert!(e.0.contains("not by any trusted key"), "{e}");
        let d2 = format!("sha256:{}", "c".repeat(64));
        let e = check_bundle(&b, &d2, &[k.public()]).expect_err("wrong digest");
        assert!(e.0.contains(&d2) && e.0.contains(&"b".repeat(64)), "{e}");
    }
}
