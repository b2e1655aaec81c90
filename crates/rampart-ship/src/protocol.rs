//! The wire protocol between agents and the server, shared by both sides.
//!
//! # Ingest
//! `POST /api/v1/ingest` over HTTPS with the agent's client certificate. The body is a batch of
//! records, one JSON object per line (events and alerts in their JSON forms), compressed with
//! zstd (`Content-Encoding: zstd`, `Content-Type: application/x-ndjson`). The server answers
//! `200` with an [`IngestResponse`] once every accepted record is committed to its store; only
//! then does the agent forget the batch. Records are identified by `metadata.uid`, so a batch
//! sent twice is stored once.
//!
//! With several batches in flight at once (`batch.in_flight`), each on its own connection,
//! their requests can reach the server in any order. Every batch therefore names its place in
//! the agent's queue: [`BATCH_LAST_HEADER`] (the queue sequence number of its last record) and
//! [`BATCH_AFTER_HEADER`] (that of the batch sent before it). The server commits a batch only
//! once the batch before it is committed (or after a bounded wait), so that one agent's records
//! are stored, and correlated, in the order they happened. A batch whose records were never
//! sent before says so ([`BATCH_UNSENT_HEADER`]).
//!
//! # Evidence (forensic bundles)
//! `PUT /api/v1/evidence/{sha256}` over HTTPS with the agent's client certificate uploads one
//! forensic bundle, named by the SHA-256 of its bytes, in one or more requests. Each request
//! carries [`EVIDENCE_SIZE_HEADER`] (the bundle's whole size), [`EVIDENCE_OFFSET_HEADER`]
//! (where its body starts in the bundle) and a body of at most the rest of the bundle; the
//! descriptive headers [`EVIDENCE_NAME_HEADER`], [`EVIDENCE_CONTAINER_HEADER`],
//! [`EVIDENCE_INCIDENT_HEADER`] and [`EVIDENCE_ALERT_HEADER`] are optional. The server answers
//! * `200` with an [`EvidenceReceipt`] once it holds the whole bundle and its hash is the one
//!   named (also, without storing the body, for a bundle this agent uploaded before);
//! * `202` with an [`EvidenceProgress`]: this part is stored, send from `offset` on;
//! * `409` with an [`EvidenceProgress`]: the server holds a different part (an upload cut
//!   short and resumed): send from `offset` on;
//! * `423` with an [`EvidenceProgress`]: another request is writing this upload now; ask
//!   again later;
//! * `413` over the server's size or per-agent limit, `422` when the bytes do not hash to
//!   the name (the server forgets them; start again from 0).
//!
//! Before it sends a body, the client asks where to start: `GET {EVIDENCE_PATH}/{sha256}/upload`
//! ([`EVIDENCE_STATUS_SUFFIX`]) with the same certificate and [`EVIDENCE_SIZE_HEADER`] is
//! answered with an [`EvidenceStatus`] (the receipt of a bundle this agent stored before, or
//! the offset the server holds), or with the `400`/`401`/`403`/`413` the `PUT` would get. So a
//! resumed upload sends only what the server lacks, and a replay sends no body at all.
//!
//! The answers a `PUT` gets without its body being stored (`200` for a stored bundle, `409`,
//! `423`) come after the server has read and discarded a body of up to
//! [`EVIDENCE_DRAIN_BYTES`]: an HTTP/1.1 client that writes its whole body before it reads
//! (most do; hyper's does) would otherwise see the connection reset under its body instead of
//! the answer (RFC 9112 section 9.6). A longer body is not read: the answer says
//! `connection: close`. A request with `expect: 100-continue` gets these answers before any
//! body (the server sends `100 Continue` only when it reads the body).
//!
//! Which host the bundle is of comes from the certificate, never from the request.
//!
//! # Enrollment
//! `POST /api/v1/enroll` with an [`EnrollRequest`]: the agent's own P-256 public key, and a
//! signature by that key over [`enroll_signed_message`] proving it holds the private key. The
//! server answers with an [`EnrollResponse`] carrying a client certificate issued by its CA.
//! The agent checks the server's certificate against the CA fingerprint embedded in the
//! enrollment token (see [`EnrollToken`]), so the first contact is authenticated too.

use serde::{Deserialize, Serialize};

/// Path of the ingest endpoint.
pub const INGEST_PATH: &str = "/api/v1/ingest";
/// Path of the enrollment endpoint.
pub const ENROLL_PATH: &str = "/api/v1/enroll";
/// Ingest header: queue sequence number of the batch's last record.
pub const BATCH_LAST_HEADER: &str = "rampart-batch-last";
/// Ingest header: [`BATCH_LAST_HEADER`] of the batch the agent sent before this one (absent
/// for the first batch since the agent started).
pub const BATCH_AFTER_HEADER: &str = "rampart-batch-after";
/// Ingest header, value `1`: no record of the batch was sent before (see
/// [`crate::output::Dispatch::unsent`]), so the server need not look for them among stored
/// records (the ClickHouse store skips its lookup of known ids). Without it, or if the claim
/// is wrong, nothing is stored twice in query results: stores deduplicate by id.
pub const BATCH_UNSENT_HEADER: &str = "rampart-batch-unsent";
/// Where agents upload forensic bundles (`{EVIDENCE_PATH}/{sha256}`).
pub const EVIDENCE_PATH: &str = "/api/v1/evidence";
/// The size of the whole bundle being uploaded.
pub const EVIDENCE_SIZE_HEADER: &str = "rampart-evidence-size";
/// Where the request's body starts in the bundle (default 0).
pub const EVIDENCE_OFFSET_HEADER: &str = "rampart-evidence-offset";
/// The bundle's file name on the agent (descriptive).
pub const EVIDENCE_NAME_HEADER: &str = "rampart-evidence-name";
/// The container the bundle is of (descriptive).
pub const EVIDENCE_CONTAINER_HEADER: &str = "rampart-evidence-container";
/// The agent's response incident (`playbook@alert-id`) that took the bundle (descriptive).
pub const EVIDENCE_INCIDENT_HEADER: &str = "rampart-evidence-incident";
/// The alert that triggered the capture (descriptive).
pub const EVIDENCE_ALERT_HEADER: &str = "rampart-evidence-alert";

/// The server's receipt for a stored forensic bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceReceipt {
    /// SHA-256 of the bytes the server stored, hex (computed by the server).
    pub sha256: String,
    pub size: u64,
    /// When the server had the whole bundle, ns since the epoch (the server's clock).
    pub received_ns: u64,
    /// The uploading agent, from its certificate.
    pub agent_id: String,
    /// Its host name as recorded at enrollment.
    pub hostname: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub container: String,
    #[serde(default)]
    pub incident: String,
    #[serde(default)]
    pub alert_id: String,
    /// True when this agent had uploaded the bundle before (the first receipt is returned).
    #[serde(default)]
    pub duplicate: bool,
}

/// Suffix of the upload status route: `GET {EVIDENCE_PATH}/{sha256}{EVIDENCE_STATUS_SUFFIX}`.
pub const EVIDENCE_STATUS_SUFFIX: &str = "/upload";
/// Largest request body the server reads and discards before an evidence answer that does
/// not store it (a replay, `409`, `423`). Upload parts should not be larger (the client's
/// default is 8 MiB).
pub const EVIDENCE_DRAIN_BYTES: u64 = 16 << 20;

/// Where an upload stands on the server (the answer to the status route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceStatus {
    /// Bytes of the bundle the server holds; the next `PUT` starts here.
    pub offset: u64,
    pub size: u64,
    /// Another request is writing this upload now (a `PUT` would get `423`).
    #[serde(default)]
    pub uploading: bool,
    /// The first receipt, when this agent has stored the bundle before (nothing to send).
    #[serde(default)]
    pub receipt: Option<EvidenceReceipt>,
}

/// How much of a bundle the server holds (answers `202`, `409` and `423`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceProgress {
    /// Bytes held; the next request starts here.
    pub offset: u64,
    pub size: u64,
    #[serde(default)]
    pub error: Option<String>,
}

/// Largest decompressed ingest body the server accepts; agents keep batches well below it.
pub const MAX_INGEST_BODY: usize = 64 << 20;

/// What the server says about an ingested batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// Records stored by this request.
    pub accepted: u64,
    /// Records already stored earlier (same id): a retry or replay.
    pub duplicates: u64,
    /// Lines that are not a record the server can store; they are not retried.
    #[serde(default)]
    pub rejected: Vec<RejectedLine>,
}

/// A line of an ingest batch the server refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedLine {
    /// 1-based line number in the batch.
    pub line: usize,
    pub error: String,
}

/// An enrollment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The secret part of the enrollment token.
    pub token: String,
    /// The agent's host name (recorded by the server, shown in `agents` listings).
    pub hostname: String,
    /// The agent's ECDSA P-256 public key, uncompressed point, hex.
    pub public_key: String,
    /// ASN.1 ECDSA-SHA256 signature of [`enroll_signed_message`] by that key, hex.
    pub signature: String,
}

/// The server's answer to an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The agent's id (also in its certificate).
    pub agent_id: String,
    /// The jurisdiction the enrollment token assigned.
    pub region: String,
    /// The agent's client certificate, PEM.
    pub certificate_pem: String,
    /// The server's CA certificate, PEM: trust anchor for the server and issuer of the above.
    pub ca_pem: String,
    /// When the certificate expires, Unix seconds.
    pub not_after: i64,
}

/// The bytes an enrolling agent signs: binds the key to the token and host name.
pub fn enroll_signed_message(token: &str, hostname: &str, public_key_hex: &str) -> Vec<u8> {
    format!("rampart-enroll-v1\n{token}\n{hostname}\n{public_key_hex}").into_bytes()
}

/// An enrollment token as handed to `rampart enroll --token`: `rmp1.<secret>.<ca sha256>`.
/// The secret authorises one enrollment (or as many as the server allows); the CA fingerprint
/// lets the agent authenticate the server before it has the CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollToken {
    pub secret: String,
    /// SHA-256 of the CA certificate (DER), 32 bytes.
    pub ca_sha256: [u8; 32],
}

/// A token that is not `rmp1.<secret>.<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "enrollment token: expected rmp1.<secret>.<64 hex digits of the CA fingerprint>, got {shown:?}"
)]
pub struct BadToken {
    /// The token with its secret masked.
    pub shown: String,
}

impl EnrollToken {
    /// Parses `rmp1.<secret>.<ca sha256 hex>`.
    pub fn parse(s: &str) -> Result<EnrollToken, BadToken> {
        let bad = || BadToken { shown: mask(s) };
        let mut parts = s.trim().split('.');
        let (Some("rmp1"), Some(secret), Some(fp), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        let mut ca_sha256 = [0u8; 32];
        hex::decode_to_slice(fp, &mut ca_sha256).map_err(|_| bad())?;
        Ok(EnrollToken {
            secret: secret.to_string(),
            ca_sha256,
        })
    }
}

impl std::fmt::Display for EnrollToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rmp1.{}.{}", self.secret, hex::encode(self.ca_sha256))
    }
}

fn mask(s: &str) -> String {
    let mut parts: Vec<String> = s.split('.').map(str::to_string).collect();
    if parts.len() >= 2 {
        parts[1] = "***".into();
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_errors_hide_the_secret() {
        let t = EnrollToken {
            secret: "abc123".into(),
            ca_sha256: [0xab; 32],
        };
        let s = t.to_string();
        assert_eq!(EnrollToken::parse(&s), Ok(t));
        let err = EnrollToken::parse("rmp1.topsecret.zz").expect_err("bad fingerprint");
        assert!(!err.to_string().contains("topsecret"), "{err}");
        assert!(EnrollToken::parse("rmp2.a.b").is_err());
    }
}
