//! A small client of the OCI distribution (registry HTTP API v2): manifests, blobs, tags and
//! referrers, with Docker's token and basic authentication.
//!
//! Every manifest and blob read is hashed here and compared with the digest that was asked
//! for (or that the registry announced): a registry or proxy that answers with other bytes is
//! caught at the client, whatever the registry claims. Loopback registries (127.0.0.0/8,
//! `localhost`, `[::1]`) are spoken to over plain HTTP, as dockerd does by default; every
//! other registry over HTTPS with the platform's trust roots.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::TrustError;
use crate::reference::is_digest;

/// The most a manifest may weigh (the distribution spec's own recommendation is 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The most a signature, bundle or config blob read by this client may weigh.
pub const MAX_SMALL_BLOB: u64 = 4 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:` + hex of the SHA-256 of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// Computed here from the bytes.
    pub digest: String,
}

type Response = ureq::http::Response<ureq::Body>;
type Build<'a> = &'a dyn Fn(Option<&str>) -> Result<Response, ureq::Error>;

/// A registry client. Cheap to share: tokens are cached per repository and action.
pub struct Registry {
    agent: ureq::Agent,
    host: String,
    base: String,
    basic: Option<String>,
    tokens: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({})", self.base)
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.split_once(']').map(|(a, _)| a))
        .unwrap_or_else(|| host.rsplit_once(':').map_or(host, |(a, _)| a));
    h == "localhost" || h == "::1" || h.starts_with("127.")
}

/// `user:password` (base64) for `host` from `~/.docker/config.json` (`auths.<host>.auth`).
fn docker_config_auth(host: &str) -> Option<String> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let data = std::fs::read(dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let keys: Vec<String> = if host == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "index.docker.io".into(),
        ]
    } else {
        vec![
            host.to_string(),
            format!("https://{host}"),
            format!("http://{host}"),
        ]
    };
    keys.iter()
        .find_map(|k| auths.get(k)?.get("auth")?.as_str().map(str::to_string))
        .filter(|s| !s.is_empty())
}

/// Parses `Bearer realm="..",service="..",scope=".."`.
fn parse_challenge(h: &str) -> Option<(String, HashMap<String, String>)> {
    let (scheme, rest) = h.trim().split_once(' ')?;
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, v) = s.split_once('=')?;
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, next) = if let Some(v) = v.strip_prefix('"') {
            let end = v.find('"')?;
            (&v[..end], &v[end + 1..])
        } else {
            match v.find(',') {
                Some(i) => (&v[..i], &v[i..]),
                None => (v, ""),
            }
        };
        params.insert(k, val.to_string());
        s = next.trim_start_matches(',').trim();
    }
    Some((scheme.to_ascii_lowercase(), params))
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// Referrer descriptors of a manifest (OCI 1.1 referrers API, or the tag-schema fallback).
#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(rename = "artifactType", default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Registry {
    /// A client for `host` (`docker.io` is reached at `registry-1.docker.io`).
    pub fn new(host: &str) -> Registry {
        let scheme = if is_loopback(host) { "http" } else { "https" };
        let api_host = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls)
            .build()
            .into();
        Registry {
            agent,
            host: host.to_string(),
            base: format!("{scheme}://{api_host}"),
            basic: docker_config_auth(host),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn err(&self, url: &str, m: impl Into<String>) -> TrustError {
        TrustError::registry(url, m)
    }

    fn token(&self, scope: &str) -> Option<String> {
        self.tokens.lock().ok()?.get(scope).cloned()
    }

    /// Fetches a token answering `challenge` and caches it under `scope_key`.
    fn authenticate(&self, challenge: &str, scope_key: &str, url: &str) -> Result<(), TrustError> {
        let (scheme, p) = parse_challenge(challenge)
            .ok_or_else(|| self.err(url, format!("unreadable WWW-Authenticate {challenge:?}")))?;
        let value = match scheme.as_str() {
            "basic" => {
                let b = self.basic.clone().ok_or_else(|| {
                    self.err(
                        url,
                        "the registry wants a login (docker login) and none is configured",
                    )
                })?;
                format!("Basic {b}")
            }
            "bearer" => {
                let realm = p
                    .get("realm")
                    .ok_or_else(|| self.err(url, "bearer challenge without realm"))?;
                let mut req = self.agent.get(realm.as_str());
                if let Some(s) = p.get("service") {
                    req = req.query("service", s);
                }
                req = req.query("scope", scope_key);
                if let Some(b) = &self.basic {
                    req = req.header("Authorization", &format!("Basic {b}"));
                }
                let mut resp = req
                    .call()
                    .map_err(|e| self.err(realm, format!("token request: {e}")))?;
                if !resp.status().is_success() {
                    return Err(self.err(realm, format!("token request: HTTP {}", resp.status())));
                }
                let t: TokenResponse = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_json()
                    .map_err(|e| self.err(realm, format!("token response: {e}")))?;
                let tok = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| self.err(realm, "token response without a token"))?;
                format!("Bearer {tok}")
            }
            other => return Err(self.err(url, format!("unsupported auth scheme {other}"))),
        };
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(scope_key.to_string(), value);
        }
        Ok(())
    }

    /// Sends a request built by `build` (called again after authenticating), returning the
    /// response whatever its status.
    fn send(&self, url: &str, scope: &str, build: Build<'_>) -> Result<Response, TrustError> {
        let auth = self.token(scope);
        let resp = build(auth.as_deref()).map_err(|e| self.err(url, e.to_string()))?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.authenticate(&challenge, scope, url)?;
        let auth = self.token(scope);
        build(auth.as_deref()).map_err(|e| self.err(url, e.to_string()))
    }

    /// A GET of `url` with pull rights on `repo` (authenticating when challenged).
    fn pull(&self, url: &str, repo: &str, accept: Option<&str>) -> Result<Response, TrustError> {
        self.send(url, &Self::pull_scope(repo), &|auth| {
            let mut r = self.agent.get(url);
            if let Some(a) = accept {
                r = r.header("Accept", a);
            }
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.call()
        })
    }

    fn pull_scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    /// The manifest `reference` (tag or digest) of `repo`; `None` when the registry has none.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>, TrustError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let mut resp = self.pull(&url, repo, Some(ACCEPT_ALL))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => return Err(self.err(&url, format!("HTTP {s}"))),
        }
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| self.err(&url, format!("reading the manifest: {e}")))?;
        let digest = sha256_digest(&bytes);
        let expected = if is_digest(reference) {
            Some(reference.to_string())
        } else {
            announced.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected {
            if expected != digest {
                return Err(TrustError::DigestMismatch {
                    what: "manifest".into(),
                    url,
                    expected,
                    actual: digest,
                });
            }
        }
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
                .unwrap_or_else(|| OCI_MANIFEST.to_string())
        } else {
            media_type
        };
        Ok(Some(Manifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// A blob, checked against its digest; at most `limit` bytes.
    pub fn blob(&self, repo: &str, digest: &str, limit: u64) -> Result<Vec<u8>, TrustError> {
        if !is_digest(digest) {
            return Err(self.err(repo, format!("not a sha256 digest: {digest:?}")));
        }
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let mut resp = self.pull(&url, repo, None)?;
        if !resp.status().is_success() {
            return Err(self.err(&url, format!("HTTP {}", resp.status())));
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.err(&url, format!("reading the blob: {e}")))?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(TrustError::DigestMismatch {
                what: "blob".into(),
                url,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Uploads `data` as a blob unless the registry has it already; returns its digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> Result<String, TrustError> {
        let digest = sha256_digest(data);
        let scope = Self::push_scope(repo);
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let head = self.send(&url, &scope, &|auth| {
            let mut r = self.agent.head(&url);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.call()
        })?;
        if head.status().is_success() {
            return Ok(digest);
        }
        let start = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self.send(&start, &scope, &|auth| {
            let mut r = self.agent.post(&start);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send_empty()
        })?;
        if resp.status() != 202 {
            return Err(self.err(
                &start,
                format!("starting an upload: HTTP {}", resp.status()),
            ));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.err(&start, "upload without a Location"))?;
        let mut put = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        };
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str("digest=");
        put.push_str(&digest);
        let resp = self.send(&put, &scope, &|auth| {
            let mut r = self
                .agent
                .put(&put)
                .header("Content-Type", "application/octet-stream");
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send(data)
        })?;
        if resp.status() != 201 {
            return Err(self.err(&put, format!("uploading the blob: HTTP {}", resp.status())));
        }
        Ok(digest)
    }

    /// Stores a manifest under `reference` (a tag or its digest); returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, TrustError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.send(&url, &Self::push_scope(repo), &|auth| {
            let mut r = self.agent.put(&url).header("Content-Type", media_type);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send(bytes)
        })?;
        if resp.status() != 201 {
            return Err(self.err(
                &url,
                format!("storing the manifest: HTTP {}", resp.status()),
            ));
        }
        Ok(sha256_digest(bytes))
    }

    /// The repository's tags (first 10 000).
    pub fn tags(&self, repo: &str) -> Result<Vec<String>, TrustError> {
        let url = format!("{}/v2/{repo}/tags/list?n=10000", self.base);
        let mut resp = self.pull(&url, repo, None)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(Vec::new()),
            s => return Err(self.err(&url, format!("HTTP {s}"))),
        }
        let t: TagList = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_json()
            .map_err(|e| self.err(&url, format!("tag list: {e}")))?;
        Ok(t.tags.unwrap_or_default())
    }

    /// Manifests that name `digest` as their subject: the referrers API when the registry has
    /// it, else the `sha256-<hex>` tag holding an index (the OCI 1.1 fallback cosign uses).
    pub fn referrers(&self, repo: &str, digest: &str) -> Result<Vec<Descriptor>, TrustError> {
        let url = format!("{}/v2/{repo}/referrers/{digest}", self.base);
        let mut resp = self.pull(&url, repo, Some(OCI_INDEX))?;
        if resp.status() == 200 {
            let idx: Index = resp
                .body_mut()
                .with_config()
                .limit(MAX_MANIFEST)
                .read_json()
                .map_err(|e| self.err(&url, format!("referrers index: {e}")))?;
            return Ok(idx.manifests);
        }
        let tag = fallback_tag(digest);
        match self.manifest(repo, &tag)? {
            Some(m) => {
                let idx: Index = serde_json::from_slice(&m.bytes).map_err(|e| {
                    self.err(&url, format!("referrers tag {tag} is not an index: {e}"))
                })?;
                Ok(idx.manifests)
            }
            None => Ok(Vec::new()),
        }
    }
}

/// The OCI 1.1 referrers tag schema: `sha256-<hex>`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The tag where cosign stores signatures of `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", fallback_tag(digest))
}

/// Decodes standard base64 (signatures in annotations and bundles).
pub(crate) fn b64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_and_loopback() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .expect("parsed");
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:a/b:pull");
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:80"));
        assert!(!is_loopback("registry.example:5000"));
        assert_eq!(signature_tag("sha256:ab"), "sha256-ab.sig");
    }
}
