//! The built-in certificate authority: issues the server's certificate and the agents' client
//! certificates, and signs the revocation list.
//!
//! Files in `<data_dir>/ca/`: `ca.crt`, `ca.key` (0600), `ca.json` (the CA's name, from which
//! its issuer parameters are rebuilt), `server.crt` + `server.key` (the server's chain: leaf and
//! CA), and `crl.pem` (rewritten on every revocation; servers sharing the directory reload it).
//!
//! An agent certificate says who the agent is in two URI subject alternative names,
//! `urn:rampart:agent:<id>` and `urn:rampart:region:<region>`, so any server holding the CA can
//! tell an agent's identity and jurisdiction from the certificate alone.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// URI prefix naming the agent in its certificate.
pub const AGENT_URI: &str = "urn:rampart:agent:";
/// URI prefix naming the agent's region in its certificate.
pub const REGION_URI: &str = "urn:rampart:region:";

/// CA failures, naming the file or the step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("agent public key: {0}")]
    PublicKey(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct CaMeta {
    name: String,
}

/// A CA's files as text: `ca.crt`, `ca.key`, `ca.json` (see [`Ca::files`]).
pub type CaFiles = (String, String, String);

/// The CA: its key and certificate, loaded from or created in a directory.
pub struct Ca {
    dir: PathBuf,
    params: CertificateParams,
    key: KeyPair,
    cert: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// An agent certificate just issued.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub der: CertificateDer<'static>,
    pub pem: String,
    /// Serial number, big-endian bytes (as in the certificate and the CRL).
    pub serial: Vec<u8>,
    pub not_after: i64,
}

/// An agent's ECDSA P-256 public key (uncompressed point), as sent at enrollment.
struct AgentKey(Vec<u8>);

impl PublicKeyData for AgentKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn odt(t: SystemTime) -> OffsetDateTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> Result<Vec<u8>, CaError> {
    let mut s = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut s)
        .map_err(|_| CaError::PublicKey("no system randomness".into()))?;
    s[0] &= 0x7f; // positive
    s[0] |= 0x01; // and 16 bytes long
    Ok(s.to_vec())
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Rampart");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

impl Ca {
    /// Loads the CA from `dir`, or creates one (valid 20 years) when the directory has none.
    pub fn load_or_create(dir: &Path) -> Result<Ca, CaError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let (crt, key, meta) = (dir.join("ca.crt"), dir.join("ca.key"), dir.join("ca.json"));
        if !crt.exists() {
            let id = hex::encode(&random_serial()?[..4]);
            let name = format!("Rampart CA {id}");
            let mut params = ca_params(&name);
            let now = SystemTime::now();
            params.not_before = odt(now - Duration::from_secs(3600));
            params.not_after = odt(now + Duration::from_secs(20 * 365 * 86400));
            let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let cert = params.self_signed(&kp)?;
            write_private(&key, kp.serialize_pem().as_bytes(), 0o600)?;
            write_private(
                &meta,
                &serde_json::to_vec(&CaMeta { name }).unwrap_or_default(),
                0o644,
            )?;
            write_private(&crt, cert.pem().as_bytes(), 0o644)?;
            tracing::info!(dir = %dir.display(), "created the built-in CA");
        }
        let cert_pem = std::fs::read_to_string(&crt).map_err(io_err(&crt))?;
        let cert =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| CaError::Invalid {
                path: crt.clone(),
                reason: e.to_string(),
            })?;
        let key_pem = std::fs::read_to_string(&key).map_err(io_err(&key))?;
        let kp = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Invalid {
            path: key.clone(),
            reason: e.to_string(),
        })?;
        let m: CaMeta = serde_json::from_slice(&std::fs::read(&meta).map_err(io_err(&meta))?)
            .map_err(|e| CaError::Invalid {
                path: meta.clone(),
                reason: e.to_string(),
            })?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            params: ca_params(&m.name),
            key: kp,
            cert,
            cert_pem,
        })
    }

    /// The CA's files in `dir` (`ca.crt`, `ca.key`, `ca.json`) as text: what a shared control
    /// store keeps so that every server of a fleet is the same CA.
    pub fn files(dir: &Path) -> Result<CaFiles, CaError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|source| CaError::Io { path: p, source })
        };
        Ok((read("ca.crt")?, read("ca.key")?, read("ca.json")?))
    }

    /// Makes `dir` hold the fleet's CA `files` (as [`Ca::files`] returns them): writes them when
    /// `dir` has no CA yet; refuses when it has another one, naming both, since agents
    /// enrolled by that CA would be trusted by this server only.
    pub fn adopt(dir: &Path, files: &CaFiles) -> Result<(), CaError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let crt = dir.join("ca.crt");
        match std::fs::read_to_string(&crt) {
            Ok(have) if have == files.0 => return Ok(()),
            Ok(have) => {
                let fp = |pem: &str| {
                    CertificateDer::from_pem_slice(pem.as_bytes())
                        .map(|c| hex::encode(rampart_ship::tls::fingerprint(&c)))
                        .unwrap_or_else(|_| "unreadable".into())
                };
                return Err(CaError::Invalid {
                    path: crt,
                    reason: format!(
                        "this server's CA (SHA-256 {}) is not the fleet's CA in the shared control store (SHA-256 {}): agents it enrolled would be trusted by this server only. Move {} away to adopt the fleet's CA (its agents enroll again), or point control_store at this server's own database",
                        fp(&have),
                        fp(&files.0),
                        dir.display()
                    ),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CaError::Io { path: crt, source }),
        }
        write_private(&dir.join("ca.key"), files.1.as_bytes(), 0o600)?;
        write_private(&dir.join("ca.json"), files.2.as_bytes(), 0o644)?;
        // The certificate last: its presence is what marks the directory as holding a CA.
        write_private(&crt, files.0.as_bytes(), 0o644)?;
        tracing::info!(dir = %dir.display(), "adopted the fleet's CA from the shared control store");
        Ok(())
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// The CA certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate: what enrollment tokens carry.
    pub fn fingerprint(&self) -> [u8; 32] {
        rampart_ship::tls::fingerprint(&self.cert)
    }

    /// Signs `msg` with the CA key (ECDSA P-256, SHA-256, ASN.1 DER signature): what the
    /// vulnerability database bundle carries ([`crate::vulndb`]). Agents check it against the
    /// CA certificate they pinned at enrollment.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CaError> {
        Ok(rcgen::SigningKey::sign(&self.key, msg)?)
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's certificate chain and key for `names`: `server.crt`/`server.key` in the CA
    /// directory, issued anew when missing, expiring within 30 days, or not covering `names`.
    pub fn server_identity(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let (crt, key, names_file) = (
            self.dir.join("server.crt"),
            self.dir.join("server.key"),
            self.dir.join("server.names"),
        );
        let wanted = names.join("\n");
        let fresh = std::fs::read_to_string(&names_file)
            .ok()
            .is_some_and(|n| n == wanted)
            && std::fs::metadata(&crt)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < Duration::from_secs(365 * 86400));
        if !fresh || !key.exists() {
            let mut params = CertificateParams::new(names.to_vec())?;
            let mut dn = DistinguishedName::new();
            dn.push(
                DnType::CommonName,
                names.first().map_or("rampart", String::as_str),
            );
            params.distinguished_name = dn;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.use_authority_key_identifier_extension = true;
            params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
            let now = SystemTime::now();
            params.not_before = odt(now - Duration::from_secs(3600));
            params.not_after = odt(now + Duration::from_secs(395 * 86400));
            let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let cert = params.signed_by(&kp, &self.issuer())?;
            write_private(&key, kp.serialize_pem().as_bytes(), 0o600)?;
            write_private(
                &crt,
                format!("{}{}", cert.pem(), self.cert_pem).as_bytes(),
                0o644,
            )?;
            write_private(&names_file, wanted.as_bytes(), 0o644)?;
        }
        let chain = rampart_ship::tls::load_certs(&crt).map_err(|e| CaError::Invalid {
            path: crt.clone(),
            reason: e.to_string(),
        })?;
        let key = rampart_ship::tls::load_key(&key).map_err(|e| CaError::Invalid {
            path: key.clone(),
            reason: e.to_string(),
        })?;
        Ok((chain, key))
    }

    /// Issues a client certificate for an agent's public key (uncompressed P-256 point),
    /// valid from `not_before` to `not_after`.
    pub fn issue_agent_cert(
        &self,
        public_key: &[u8],
        agent_id: &str,
        region: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, CaError> {
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err(CaError::PublicKey(format!(
                "expected an uncompressed P-256 point (65 bytes starting 04), got {} bytes",
                public_key.len()
            )));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent_id);
        dn.push(DnType::OrganizationName, "Rampart agent");
        params.distinguished_name = dn;
        let uri = |s: String| -> Result<SanType, CaError> {
            Ok(SanType::URI(s.try_into().map_err(|e: rcgen::Error| {
                CaError::PublicKey(e.to_string())
            })?))
        };
        params.subject_alt_names = vec![
            uri(format!("{AGENT_URI}{agent_id}"))?,
            uri(format!("{REGION_URI}{region}"))?,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = odt(not_before);
        params.not_after = odt(not_after);
        let cert = params.signed_by(&AgentKey(public_key.to_vec()), &self.issuer())?;
        Ok(IssuedCert {
            pem: cert.pem(),
            der: cert.der().clone(),
            serial,
            not_after: params.not_after.unix_timestamp(),
        })
    }

    /// Issues a mesh workload or mesh-proxy certificate (`docs/mesh.md`) for a P-256 public key
    /// (uncompressed point): one SPIFFE URI SAN (`spiffe://<fleet>/<host>[/<workload>]`), plus
    /// `dns` as a DNS SAN when given (the proxy's name, which TLS clients check). `server`
    /// selects the server-auth usage (a proxy's inbound side), otherwise client auth (a
    /// workload). The caller checks that the requester may hold `spiffe_uri`.
    pub fn issue_mesh_cert(
        &self,
        public_key: &[u8],
        spiffe_uri: &str,
        dns: Option<&str>,
        server: bool,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, CaError> {
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err(CaError::PublicKey(format!(
                "expected an uncompressed P-256 point (65 bytes starting 04), got {} bytes",
                public_key.len()
            )));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spiffe_uri);
        dn.push(DnType::OrganizationName, "Rampart mesh");
        params.distinguished_name = dn;
        let bad = |e: rcgen::Error| CaError::PublicKey(format!("{spiffe_uri}: {e}"));
        params.subject_alt_names = vec![SanType::URI(spiffe_uri.try_into().map_err(bad)?)];
        if let Some(d) = dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.try_into().map_err(bad)?));
        }
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = odt(not_before);
        params.not_after = odt(not_after);
        let cert = params.signed_by(&AgentKey(public_key.to_vec()), &self.issuer())?;
        Ok(IssuedCert {
            pem: cert.pem(),
            der: cert.der().clone(),
            serial,
            not_after: params.not_after.unix_timestamp(),
        })
    }

    /// Signs a CRL listing `revoked` (serial, revocation time), numbered `number`, valid for
    /// 30 days, and writes it to `crl.pem`.
    pub fn write_crl(
        &self,
        revoked: &[(Vec<u8>, SystemTime)],
        number: u64,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let now = SystemTime::now();
        let params = CertificateRevocationListParams {
            this_update: odt(now - Duration::from_secs(60)),
            next_update: odt(now + Duration::from_secs(30 * 86400)),
            crl_number: SerialNumber::from_slice(&number.max(1).to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|(serial, at)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: odt(*at),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer())?;
        let path = self.dir.join("crl.pem");
        write_private(&path, crl.pem()?.as_bytes(), 0o644)?;
        Ok(crl.der().clone())
    }

    /// Reads `crl.pem` from the CA directory.
    pub fn read_crl(dir: &Path) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let path = dir.join("crl.pem");
        let data = std::fs::read(&path).map_err(io_err(&path))?;
        CertificateRevocationListDer::from_pem_slice(&data).map_err(|e| CaError::Invalid {
            path,
            reason: e.to_string(),
        })
    }
}

/// Who an agent certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub region: String,
    /// Certificate serial number, big-endian.
    pub serial: Vec<u8>,
}

/// Reads the agent identity from a (verified) client certificate; `None` when it is not an
/// agent certificate of this CA's making.
pub fn agent_identity(cert: &CertificateDer<'_>) -> Option<AgentIdentity> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut agent_id = None;
    let mut region = None;
    for uri in ee.valid_uri_names() {
        if let Some(a) = uri.strip_prefix(AGENT_URI) {
            agent_id = Some(a.to_string());
        } else if let Some(r) = uri.strip_prefix(REGION_URI) {
            region = Some(r.to_string());
        }
    }
    Some(AgentIdentity {
        agent_id: agent_id?,
        region: region?,
        serial: strip_sign_byte(ee.serial()).to_vec(),
    })
}

/// DER integers carry a leading zero when the top bit is set; rcgen's serials never have one.
fn strip_sign_byte(s: &[u8]) -> &[u8] {
    match s {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_certificates_carry_identity_and_chain_to_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("ca");
        let again = Ca::load_or_create(dir.path()).expect("reload");
        assert_eq!(
            ca.fingerprint(),
            again.fingerprint(),
            "same CA after reload"
        );
        let agent_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let now = SystemTime::now();
        let issued = again
            .issue_agent_cert(
                agent_key.public_key_raw(),
                "agt-1",
                "eu-de",
                now,
                now + Duration::from_secs(86400),
            )
            .expect("issue");
        let id = agent_identity(&issued.der).expect("identity");
        assert_eq!(id.agent_id, "agt-1");
        assert_eq!(id.region, "eu-de");
        assert_eq!(id.serial, issued.serial);
        // Verifies against the CA with webpki, as the TLS server will.
        let anchor = webpki::anchor_from_trusted_cert(ca.cert()).expect("anchor");
        let ee = webpki::EndEntityCert::try_from(&issued.der).expect("parse");
        ee.verify_for_usage(
            &[webpki::ring::ECDSA_P256_SHA256],
            &[anchor],
            &[],
            rustls::pki_types::UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .expect("chains to the CA");
        assert!(ca.issue_agent_cert(&[1, 2, 3], "x", "y", now, now).is_err());
        let crl = ca
            .write_crl(&[(issued.serial.clone(), now)], 2)
            .expect("crl");
        assert_eq!(Ca::read_crl(dir.path()).expect("read"), crl);
    }
}
