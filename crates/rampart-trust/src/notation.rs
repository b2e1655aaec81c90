//! Notation (Notary Project) signatures, verified beside cosign's.
//!
//! Format (Notary Project specification, `signature-specification.md`,
//! `signature-envelope-jws.md`, `trust-store-trust-policy.md`):
//!
//! * A signature is an OCI manifest whose `artifactType` is
//!   `application/vnd.cncf.notary.signature` and whose `subject` is the image manifest, found
//!   through the referrers API (or its `sha256-<hex>` tag fallback), with one layer: the envelope.
//! * The JWS envelope (`application/jose+json`) is the JSON serialization
//!   `{"payload","protected","header":{"x5c":[...]},"signature"}`. The protected header must
//!   carry `alg` (PS256/384/512, ES256/384), `cty: application/vnd.cncf.notary.payload.v1+json`,
//!   `io.cncf.notary.signingScheme: notary.x509` (listed in `crit`), `io.cncf.notary.signingTime`
//!   and optionally `io.cncf.notary.expiry` (then also in `crit`); any other critical header is
//!   refused. The payload is `{"targetArtifact":{"digest","mediaType","size"}}`; its digest
//!   must be the digest being verified.
//! * `x5c` is the certificate chain, leaf first. The chain must lead to a certificate of the
//!   trust store (a CA, or a self-signed signing certificate), be valid now (no timestamp
//!   countersignatures are read, so without an authentic timestamp the spec requires validity at
//!   verification time), and the leaf must allow code signing (extended key usage
//!   1.3.6.1.5.5.7.3.3). The leaf's subject must match one of the trusted identities
//!   (`x509.subject: C=US, O=Example, CN=signer`, compared as a set of attributes) or `*`.
//!
//! * The COSE envelope (`application/cose`, `signature-envelope-cose.md`) is a tagged
//!   `COSE_Sign1` (RFC 9052): the protected header carries `alg` (label 1: PS256/384/512 = -37,
//!   -38, -39; ES256/384 = -7, -35), `crit` (2), content type (3) as above,
//!   `io.cncf.notary.signingScheme`, `io.cncf.notary.signingTime` and optionally
//!   `io.cncf.notary.expiry` (both CBOR tag 1, Unix seconds); the unprotected header carries the
//!   chain as `x5chain` (33) and optionally `io.cncf.notary.signingAgent`; the signature is over
//!   the `Sig_structure` `["Signature1", protected, h'', payload]` (with the protected header's
//!   bytes as received), ECDSA signatures as `r || s`. The same checks as for JWS follow.
//!   Parsed by the `coset` crate.
//!
//! Not supported (a signature using them is not counted): the
//! `notary.x509.signingAuthority` scheme (it needs a timestamp authority), timestamp
//! countersignatures (ignored: validity is checked at verification time), revocation checks.
//! Chain building and signature checks are rustls-webpki's (ring), subject names x509-parser's.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use serde::Deserialize;

use crate::error::TrustError;

/// `artifactType` of a Notation signature manifest.
pub const NOTATION_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Media type of the JWS envelope layer.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// Media type of the COSE envelope layer.
pub const COSE_MEDIA_TYPE: &str = "application/cose";
const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// DER contents of OID 1.3.6.1.5.5.7.3.3 (id-kp-codeSigning).
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// What a trust policy entry trusts for Notation signatures.
#[derive(Debug, Clone)]
pub struct NotationTrust {
    /// Trust store certificates (DER).
    pub roots: Vec<Vec<u8>>,
    /// `*`, or `x509.subject: ...` names of signers.
    pub identities: Vec<String>,
    /// Where the trust store came from (for messages).
    pub source: String,
}

impl NotationTrust {
    /// Loads PEM certificates from `paths`.
    pub fn load(paths: &[&Path], identities: Vec<String>) -> Result<NotationTrust, TrustError> {
        let mut roots = Vec::new();
        for p in paths {
            let pem = std::fs::read(p).map_err(|e| TrustError::io(p, e))?;
            let before = roots.len();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| TrustError::Key {
                    path: p.to_path_buf(),
                    message: format!("not a PEM certificate: {e:?}"),
                })?;
                roots.push(c.as_ref().to_vec());
            }
            if roots.len() == before {
                return Err(TrustError::Key {
                    path: p.to_path_buf(),
                    message: "no CERTIFICATE in the file".into(),
                });
            }
        }
        for i in &identities {
            if i != "*" && !i.starts_with("x509.subject:") {
                return Err(TrustError::Other(format!(
                    "trusted identity {i:?}: use \"*\" or \"x509.subject: C=..., O=..., CN=...\""
                )));
            }
        }
        Ok(NotationTrust {
            roots,
            identities,
            source: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// A verified Notation signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotationVerified {
    /// The leaf certificate's subject.
    pub subject: String,
    pub signing_time: String,
    pub digest: String,
    /// `io.cncf.notary.signingAgent`, when present.
    pub agent: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    payload: String,
    protected: String,
    header: Unprotected,
    signature: String,
}

#[derive(Deserialize)]
struct Unprotected {
    x5c: Vec<String>,
    #[serde(rename = "io.cncf.notary.signingAgent", default)]
    agent: Option<String>,
}

#[derive(Deserialize)]
struct Protected {
    alg: String,
    #[serde(default)]
    crit: Vec<String>,
    #[serde(default)]
    cty: String,
    #[serde(rename = "io.cncf.notary.signingScheme", default)]
    scheme: String,
    #[serde(rename = "io.cncf.notary.signingTime", default)]
    signing_time: String,
    #[serde(rename = "io.cncf.notary.expiry", default)]
    expiry: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target: Target,
}

#[derive(Deserialize)]
struct Target {
    digest: String,
    #[serde(rename = "mediaType", default)]
    _media_type: String,
}

/// JWS ECDSA signatures are `r || s`; ring takes ASN.1 DER.
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    fn int(b: &[u8]) -> Vec<u8> {
        let mut b = b;
        while b.len() > 1 && b[0] == 0 {
            b = &b[1..];
        }
        let mut v = Vec::with_capacity(b.len() + 3);
        v.push(0x02);
        let pad = b[0] & 0x80 != 0;
        v.push((b.len() + usize::from(pad)) as u8);
        if pad {
            v.push(0);
        }
        v.extend_from_slice(b);
        v
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body: Vec<u8> = int(r).into_iter().chain(int(s)).collect();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

/// RFC 3339 to Unix seconds (`2024-06-18T17:08:35+08:00`, `...Z`, fractions ignored).
fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

fn attributes(name: &str) -> Vec<String> {
    let mut v: Vec<String> = name
        .split(',')
        .map(|a| a.trim().replace(" = ", "="))
        .filter(|a| !a.is_empty())
        .collect();
    v.sort();
    v
}

/// Verifies one JWS envelope for `digest` against `trust` at time `now`.
pub fn verify_envelope(
    envelope: &[u8],
    trust: &NotationTrust,
    digest: &str,
    now: UnixTime,
) -> Result<NotationVerified, crate::signature::Rejected> {
    verify_envelope_reason(envelope, trust, digest, now).map_err(crate::signature::Rejected)
}

fn verify_envelope_reason(
    envelope: &[u8],
    trust: &NotationTrust,
    digest: &str,
    now: UnixTime,
) -> Result<NotationVerified, String> {
    let env: Envelope =
        serde_json::from_slice(envelope).map_err(|e| format!("not a JWS envelope: {e}"))?;
    let protected_raw = URL_SAFE_NO_PAD
        .decode(&env.protected)
        .map_err(|e| format!("protected header: {e}"))?;
    let protected: Protected =
        serde_json::from_slice(&protected_raw).map_err(|e| format!("protected header: {e}"))?;
    if protected.cty != PAYLOAD_TYPE {
        return Err(format!(
            "content type {:?} is not {PAYLOAD_TYPE}",
            protected.cty
        ));
    }
    if protected.scheme != "notary.x509" {
        return Err(format!(
            "signing scheme {:?} is not supported (notary.x509 only)",
            protected.scheme
        ));
    }
    if !protected
        .crit
        .iter()
        .any(|c| c == "io.cncf.notary.signingScheme")
    {
        return Err("io.cncf.notary.signingScheme is not marked critical".into());
    }
    for c in &protected.crit {
        if !matches!(
            c.as_str(),
            "io.cncf.notary.signingScheme" | "io.cncf.notary.expiry"
        ) {
            return Err(format!("critical header {c:?} is not understood"));
        }
    }
    if protected.expiry.is_some() && !protected.crit.iter().any(|c| c == "io.cncf.notary.expiry") {
        return Err("io.cncf.notary.expiry is not marked critical".into());
    }
    if let Some(exp) = &protected.expiry {
        let t = rfc3339(exp).ok_or_else(|| format!("expiry {exp:?} is not RFC 3339"))?;
        if (now.as_secs() as i64) >= t {
            return Err(format!("the signature expired at {exp}"));
        }
    }
    rfc3339(&protected.signing_time)
        .ok_or_else(|| format!("signing time {:?} is not RFC 3339", protected.signing_time))?;
    let alg = algorithm(&protected.alg)?;
    let chain: Vec<Vec<u8>> = env
        .header
        .x5c
        .iter()
        .map(|c| STANDARD.decode(c))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("x5c: {e}"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(&env.signature)
        .map_err(|e| format!("signature: {e}"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(&env.payload)
        .map_err(|_| "the payload is not a Notary Project payload".to_string())?;
    verify_parts(
        Parts {
            alg,
            chain,
            signing_input: format!("{}.{}", env.protected, env.payload).into_bytes(),
            signature,
            payload,
            signing_time: protected.signing_time,
            agent: env.header.agent,
        },
        trust,
        digest,
        now,
    )
}

/// A Notary Project algorithm name: the webpki algorithm and whether it is ECDSA (`r || s`).
type Alg = (&'static dyn SignatureVerificationAlgorithm, bool);

fn algorithm(name: &str) -> Result<Alg, String> {
    Ok(match name {
        "PS256" => (webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY, false),
        "PS384" => (webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY, false),
        "PS512" => (webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY, false),
        "ES256" => (webpki::ring::ECDSA_P256_SHA256, true),
        "ES384" => (webpki::ring::ECDSA_P384_SHA384, true),
        a => return Err(format!("signature algorithm {a:?} is not supported")),
    })
}

/// What either envelope yields once its own headers are checked.
struct Parts {
    alg: Alg,
    /// DER certificates, leaf first.
    chain: Vec<Vec<u8>>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    payload: Vec<u8>,
    signing_time: String,
    agent: Option<String>,
}

/// The checks both envelopes share: the chain to the trust store, the signature, the payload's
/// digest, the leaf's code-signing usage and the trusted identities.
fn verify_parts(
    p: Parts,
    trust: &NotationTrust,
    digest: &str,
    now: UnixTime,
) -> Result<NotationVerified, String> {
    let (alg, ecdsa) = p.alg;
    let chain: Vec<CertificateDer<'static>> =
        p.chain.into_iter().map(CertificateDer::from).collect();
    let Some((leaf_der, intermediates)) = chain.split_first() else {
        return Err("the certificate chain is empty".into());
    };
    let leaf = webpki::EndEntityCert::try_from(leaf_der)
        .map_err(|e| format!("signing certificate: {e}"))?;
    let anchors: Vec<_> = trust
        .roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors: Vec<_> = anchors
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    let algs = [
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        webpki::ring::RSA_PKCS1_2048_8192_SHA384,
        webpki::ring::RSA_PKCS1_2048_8192_SHA512,
        webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        webpki::ring::ECDSA_P256_SHA256,
        webpki::ring::ECDSA_P384_SHA384,
        webpki::ring::ECDSA_P256_SHA384,
        webpki::ring::ECDSA_P384_SHA256,
    ];
    leaf.verify_for_usage(
        &algs,
        &anchors,
        intermediates,
        now,
        // Every certificate of the path is checked against this: intermediates commonly have
        // no EKU, so "if present"; the leaf's code-signing EKU is required below.
        webpki::KeyUsage::required_if_present(CODE_SIGNING),
        None,
        None,
    )
    .map_err(|e| format!("certificate chain not trusted by {}: {e}", trust.source))?;
    let sig = if ecdsa {
        ecdsa_der(&p.signature)
    } else {
        p.signature
    };
    leaf.verify_signature(alg, &p.signing_input, &sig)
        .map_err(|e| format!("the signature does not verify: {e}"))?;
    let payload: Payload = serde_json::from_slice(&p.payload)
        .map_err(|_| "the payload is not a Notary Project payload".to_string())?;
    if payload.target.digest != digest {
        return Err(format!(
            "the signature is for {}, not {digest}",
            payload.target.digest
        ));
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf_der.as_ref())
        .map_err(|e| format!("signing certificate: {e}"))?;
    let code_signing = parsed
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.code_signing);
    if !code_signing {
        return Err(
            "the signing certificate does not allow code signing (extended key usage)".into(),
        );
    }
    let subject = parsed.subject().to_string();
    let ok = trust.identities.iter().any(|i| {
        i == "*"
            || i.strip_prefix("x509.subject:")
                .is_some_and(|want| attributes(want) == attributes(&subject))
    });
    if !ok {
        return Err(format!(
            "signer {subject:?} is not among the trusted identities ({})",
            trust.identities.join("; ")
        ));
    }
    Ok(NotationVerified {
        subject,
        signing_time: p.signing_time,
        digest: digest.to_string(),
        agent: p.agent,
    })
}

/// Verifies an envelope of `media_type` (JWS or COSE) for `digest`.
pub fn verify_envelope_of(
    media_type: &str,
    envelope: &[u8],
    trust: &NotationTrust,
    digest: &str,
    now: UnixTime,
) -> Result<NotationVerified, crate::signature::Rejected> {
    match media_type {
        JWS_MEDIA_TYPE => verify_envelope(envelope, trust, digest, now),
        COSE_MEDIA_TYPE => verify_cose_envelope(envelope, trust, digest, now),
        m => Err(crate::signature::Rejected(format!(
            "envelope media type {m:?} is not supported"
        ))),
    }
}

/// Unix seconds to RFC 3339 UTC (the COSE signing time, shown as JWS's is).
fn unix_to_rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Verifies one COSE envelope (a tagged `COSE_Sign1`) for `digest` against `trust` at `now`.
pub fn verify_cose_envelope(
    envelope: &[u8],
    trust: &NotationTrust,
    digest: &str,
    now: UnixTime,
) -> Result<NotationVerified, crate::signature::Rejected> {
    verify_cose_envelope_reason(envelope, trust, digest, now).map_err(crate::signature::Rejected)
}

fn verify_cose_envelope_reason(
    envelope: &[u8],
    trust: &NotationTrust,
    digest: &str,
    now: UnixTime,
) -> Result<NotationVerified, String> {
    use coset::cbor::value::Value;
    use coset::{iana, Label, RegisteredLabel, RegisteredLabelWithPrivate, TaggedCborSerializable};
    let sign1 = coset::CoseSign1::from_tagged_slice(envelope)
        .map_err(|e| format!("not a COSE_Sign1 envelope: {e}"))?;
    let p = &sign1.protected.header;
    let text = |h: &coset::Header, k: &str| {
        h.rest
            .iter()
            .find(|(l, _)| *l == Label::Text(k.to_string()))
            .map(|(_, v)| v.clone())
    };
    let time = |v: Option<Value>, what: &str| -> Result<Option<i64>, String> {
        match v {
            None => Ok(None),
            Some(Value::Tag(1, t)) => match *t {
                Value::Integer(i) => i64::try_from(i128::from(i))
                    .map(Some)
                    .map_err(|_| format!("{what} is out of range")),
                _ => Err(format!("{what} is not an integer time")),
            },
            Some(_) => Err(format!("{what} is not a CBOR time (tag 1)")),
        }
    };
    match &p.content_type {
        Some(RegisteredLabel::Text(t)) if t == PAYLOAD_TYPE => {}
        other => return Err(format!("content type {other:?} is not {PAYLOAD_TYPE}")),
    }
    match text(p, "io.cncf.notary.signingScheme") {
        Some(Value::Text(s)) if s == "notary.x509" => {}
        other => {
            return Err(format!(
                "signing scheme {other:?} is not supported (notary.x509 only)"
            ))
        }
    }
    let crit: Vec<String> = p
        .crit
        .iter()
        .map(|c| match c {
            RegisteredLabelWithPrivate::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    if !crit.iter().any(|c| c == "io.cncf.notary.signingScheme") {
        return Err("io.cncf.notary.signingScheme is not marked critical".into());
    }
    for c in &crit {
        if !matches!(
            c.as_str(),
            "io.cncf.notary.signingScheme" | "io.cncf.notary.expiry"
        ) {
            return Err(format!("critical header {c:?} is not understood"));
        }
    }
    let expiry = time(text(p, "io.cncf.notary.expiry"), "expiry")?;
    if let Some(t) = expiry {
        if !crit.iter().any(|c| c == "io.cncf.notary.expiry") {
            return Err("io.cncf.notary.expiry is not marked critical".into());
        }
        if (now.as_secs() as i64) >= t {
            return Err(format!("the signature expired at {}", unix_to_rfc3339(t)));
        }
    }
    let signing_time = time(text(p, "io.cncf.notary.signingTime"), "signing time")?
        .ok_or("the signing time is missing")?;
    let alg = match &p.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) => match a {
            iana::Algorithm::PS256 => algorithm("PS256")?,
            iana::Algorithm::PS384 => algorithm("PS384")?,
            iana::Algorithm::PS512 => algorithm("PS512")?,
            iana::Algorithm::ES256 => algorithm("ES256")?,
            iana::Algorithm::ES384 => algorithm("ES384")?,
            a => return Err(format!("signature algorithm {a:?} is not supported")),
        },
        other => return Err(format!("signature algorithm {other:?} is not supported")),
    };
    // x5chain: one certificate as a byte string, or an array of them, leaf first.
    let x5 = sign1
        .unprotected
        .rest
        .iter()
        .find(|(l, _)| *l == Label::Int(iana::HeaderParameter::X5Chain as i64))
        .map(|(_, v)| v.clone())
        .ok_or("the unprotected header has no x5chain")?;
    let chain: Vec<Vec<u8>> = match x5 {
        Value::Bytes(b) => vec![b],
        Value::Array(a) => a
            .into_iter()
            .map(|c| match c {
                Value::Bytes(b) => Ok(b),
                _ => Err("x5chain holds something other than certificates".to_string()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("x5chain is neither a certificate nor an array of them".into()),
    };
    let agent = match text(&sign1.unprotected, "io.cncf.notary.signingAgent") {
        Some(Value::Text(a)) => Some(a),
        _ => None,
    };
    let payload = sign1
        .payload
        .clone()
        .ok_or("the payload is detached (the Notary Project embeds it)")?;
    verify_parts(
        Parts {
            alg,
            chain,
            signing_input: sign1.tbs_data(&[]),
            signature: sign1.signature.clone(),
            payload,
            signing_time: unix_to_rfc3339(signing_time),
            agent,
        },
        trust,
        digest,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signature made by Notation 1.0.0 (notaryproject/notation-go,
    /// `verifier/testdata/timestamp/sigEnv/withoutTimestamp.sig`): PS256, a self-signed
    /// code-signing certificate `CN=alpine` valid 2023-05-09 to 2033-05-10.
    const NOTATION_JWS: &str =
        include_str!("../tests/fixtures/notation-1.0.0-withoutTimestamp.sig");
    const DIGEST: &str = "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda";

    fn trust(identities: &[&str]) -> NotationTrust {
        let env: Envelope = serde_json::from_str(NOTATION_JWS).expect("json");
        NotationTrust {
            roots: vec![STANDARD.decode(&env.header.x5c[0]).expect("b64")],
            identities: identities.iter().map(|s| s.to_string()).collect(),
            source: "test".into(),
        }
    }

    fn at(y2024: i64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(y2024 as u64))
    }

    #[test]
    fn notation_signature_verifies() {
        let now = at(rfc3339("2026-01-01T00:00:00Z").expect("t"));
        let v = verify_envelope(NOTATION_JWS.as_bytes(), &trust(&["*"]), DIGEST, now)
            .expect("verifies");
        assert_eq!(v.agent.as_deref(), Some("Notation/1.0.0"));
        assert!(v.subject.contains("CN=alpine"), "{v:?}");
        let exact = trust(&["x509.subject: CN=alpine, O=Notary, L=Seattle, ST=WA, C=US"]);
        assert!(verify_envelope(NOTATION_JWS.as_bytes(), &exact, DIGEST, now).is_ok());
        // Another digest, another identity, another trust store, after expiry: refused.
        let other = format!("sha256:{}", "0".repeat(64));
        assert!(
            verify_envelope(NOTATION_JWS.as_bytes(), &trust(&["*"]), &other, now)
                .expect_err("digest")
                .0
                .contains("is for sha256:c066")
        );
        let wrong = trust(&["x509.subject: CN=mallory, O=Notary, L=Seattle, ST=WA, C=US"]);
        assert!(verify_envelope(NOTATION_JWS.as_bytes(), &wrong, DIGEST, now).is_err());
        let mut empty = trust(&["*"]);
        empty.roots.clear();
        assert!(verify_envelope(NOTATION_JWS.as_bytes(), &empty, DIGEST, now).is_err());
        let late = at(rfc3339("2034-01-01T00:00:00Z").expect("t"));
        assert!(verify_envelope(NOTATION_JWS.as_bytes(), &trust(&["*"]), DIGEST, late).is_err());
        // One byte of the signature changed.
        let mut env: serde_json::Value = serde_json::from_str(NOTATION_JWS).expect("json");
        let sig = env["signature"].as_str().expect("sig").to_string();
        let flipped = format!(
            "{}{}",
            if sig.starts_with('A') { "B" } else { "A" },
            &sig[1..]
        );
        env["signature"] = flipped.into();
        assert!(
            verify_envelope(env.to_string().as_bytes(), &trust(&["*"]), DIGEST, now)
                .expect_err("tampered")
                .0
                .contains("does not verify")
        );
    }

    /// COSE envelopes made by Notation 1.0.0 (notaryproject/notation-go test data:
    /// `internal/testdata/cose_signature.sig`, `verifier/testdata/timestamp/sigEnv/
    /// coseWithTimestamp.sig` and `coseExpiredWithTimestamp.sig`): PS256, one self-signed
    /// code-signing certificate each (`CN=alpine` 2000-2123 and 2023-2033; `CN=testTSA` valid
    /// ten minutes on 2024-06-18), the second and third with a timestamp countersignature.
    const COSE: &[u8] = include_bytes!("../tests/fixtures/notation-cose-signature.sig");
    const COSE_TS: &[u8] = include_bytes!("../tests/fixtures/notation-cose-withTimestamp.sig");
    const COSE_EXPIRED: &[u8] =
        include_bytes!("../tests/fixtures/notation-cose-expiredWithTimestamp.sig");
    const COSE_DIGEST: &str =
        "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0";

    fn cose_trust(env: &[u8], identities: &[&str]) -> NotationTrust {
        use coset::cbor::value::Value;
        use coset::TaggedCborSerializable;
        let s = coset::CoseSign1::from_tagged_slice(env).expect("cose");
        let chain = s
            .unprotected
            .rest
            .iter()
            .find(|(l, _)| *l == coset::Label::Int(33))
            .map(|(_, v)| v.clone())
            .expect("x5chain");
        let Value::Array(a) = chain else {
            panic!("x5chain")
        };
        let Some(Value::Bytes(root)) = a.last().cloned() else {
            panic!("cert")
        };
        NotationTrust {
            roots: vec![root],
            identities: identities.iter().map(|s| s.to_string()).collect(),
            source: "test".into(),
        }
    }

    #[test]
    fn notation_cose_signatures_verify() {
        let now = at(rfc3339("2026-01-01T00:00:00Z").expect("t"));
        let v = verify_envelope_of(
            COSE_MEDIA_TYPE,
            COSE,
            &cose_trust(
                COSE,
                &["x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine"],
            ),
            COSE_DIGEST,
            now,
        )
        .expect("verifies");
        assert_eq!(v.agent.as_deref(), Some("Notation/1.0.0"));
        assert_eq!(v.signing_time, "2023-03-14T04:45:22Z");
        let v = verify_cose_envelope(COSE_TS, &cose_trust(COSE_TS, &["*"]), DIGEST, now)
            .expect("verifies");
        assert!(v.subject.contains("CN=alpine"), "{v:?}");
        // Its certificate lived ten minutes: valid then, refused now (no timestamp is read).
        let then = at(rfc3339("2024-06-18T07:25:00Z").expect("t"));
        let t = cose_trust(COSE_EXPIRED, &["*"]);
        assert!(verify_cose_envelope(COSE_EXPIRED, &t, DIGEST, then).is_ok());
        assert!(verify_cose_envelope(COSE_EXPIRED, &t, DIGEST, now)
            .expect_err("expired")
            .0
            .contains("not trusted"));
        // Another digest, signer, trust store; the JWS verifier on COSE bytes: refused.
        assert!(
            verify_cose_envelope(COSE, &cose_trust(COSE, &["*"]), DIGEST, now)
                .expect_err("digest")
                .0
                .contains("is for sha256:19db")
        );
        let wrong = cose_trust(COSE, &["x509.subject: CN=mallory"]);
        assert!(verify_cose_envelope(COSE, &wrong, COSE_DIGEST, now).is_err());
        assert!(
            verify_cose_envelope(COSE, &cose_trust(COSE_EXPIRED, &["*"]), COSE_DIGEST, now)
                .is_err()
        );
        assert!(verify_envelope_of(
            JWS_MEDIA_TYPE,
            COSE,
            &cose_trust(COSE, &["*"]),
            COSE_DIGEST,
            now
        )
        .is_err());
        // One byte of the signature, the payload or the protected header changed.
        let n = COSE.len();
        for at_byte in [n - 10, n - 200] {
            let mut bad = COSE.to_vec();
            bad[at_byte] ^= 1;
            assert!(
                verify_cose_envelope(&bad, &cose_trust(COSE, &["*"]), COSE_DIGEST, now).is_err(),
                "byte {at_byte}"
            );
        }
        let pos = COSE
            .windows(11)
            .position(|w| w == b"notary.x509")
            .expect("scheme");
        let mut bad = COSE.to_vec();
        bad[pos + 10] = b'8';
        assert!(
            verify_cose_envelope(&bad, &cose_trust(COSE, &["*"]), COSE_DIGEST, now)
                .expect_err("scheme")
                .0
                .contains("not supported")
        );
        let pos = COSE
            .windows(5)
            .position(|w| w == b"19dbd")
            .expect("digest in payload");
        let mut bad = COSE.to_vec();
        bad[pos] = b'2';
        assert!(verify_cose_envelope(
            &bad,
            &cose_trust(COSE, &["*"]),
            "sha256:29dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0",
            now
        )
        .expect_err("payload")
        .0
        .contains("does not verify"));
        assert!(
            verify_cose_envelope(b"\xa0", &cose_trust(COSE, &["*"]), COSE_DIGEST, now).is_err()
        );
        assert_eq!(unix_to_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_to_rfc3339(1_718_701_715), "2024-06-18T09:08:35Z");
    }

    #[test]
    fn times_and_ecdsa_encoding() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2024-06-18T17:08:35+08:00"), Some(1_718_701_715));
        assert_eq!(rfc3339("2024-06-18T09:08:35.123Z"), Some(1_718_701_715));
        assert_eq!(rfc3339("yesterday"), None);
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80;
        raw[63] = 1;
        let der = ecdsa_der(&raw);
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
    }
}
