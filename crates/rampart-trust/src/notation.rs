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
//! Not supported (a signature using them is not counted): COSE envelopes, the
//! `notary.x509.signingAuthority` scheme (it needs a timestamp authority), revocation checks.
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
    let alg: &dyn SignatureVerificationAlgorithm = match protected.alg.as_str() {
        "PS256" => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        "PS384" => webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        "PS512" => webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        "ES256" => webpki::ring::ECDSA_P256_SHA256,
        "ES384" => webpki::ring::ECDSA_P384_SHA384,
        a => return Err(format!("signature algorithm {a:?} is not supported")),
    };
    let chain: Vec<CertificateDer<'static>> = env
        .header
        .x5c
        .iter()
        .map(|c| STANDARD.decode(c).map(CertificateDer::from))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("x5c: {e}"))?;
    let Some((leaf_der, intermediates)) = chain.split_first() else {
        return Err("x5c is empty".into());
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
    let sig = URL_SAFE_NO_PAD
        .decode(&env.signature)
        .map_err(|e| format!("signature: {e}"))?;
    let sig = if protected.alg.starts_with("ES") {
        ecdsa_der(&sig)
    } else {
        sig
    };
    let signing_input = format!("{}.{}", env.protected, env.payload);
    leaf.verify_signature(alg, signing_input.as_bytes(), &sig)
        .map_err(|e| format!("the signature does not verify: {e}"))?;
    let payload: Payload = URL_SAFE_NO_PAD
        .decode(&env.payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or("the payload is not a Notary Project payload")?;
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
        signing_time: protected.signing_time,
        digest: digest.to_string(),
        agent: env.header.agent,
    })
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
