//! TLS for the agent side: rustls with the *ring* provider (no OpenSSL, no C toolchain beyond
//! ring's own), PEM loading, the mutual-TLS client configuration, and the pinned-CA verifier
//! used for the first contact at enrollment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where an enrolled agent keeps its credentials: `ca.crt`, `agent.crt`, `agent.key` (0600).
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "agent.crt";
pub const KEY_FILE: &str = "agent.key";
/// The system's CA bundle on Debian and its derivatives.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS set-up errors; each names the file or the step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in the file")]
    NoCerts { path: PathBuf },
    #[error("{path}: no PEM private key in the file ({detail})")]
    NoKey { path: PathBuf, detail: String },
    #[error("{path}: certificate not usable as a trust anchor: {source}")]
    Anchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS configuration ({context}): {source}")]
    Config {
        context: &'static str,
        #[source]
        source: rustls::Error,
    },
}

/// The crypto provider every Rampart TLS endpoint uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path`.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&data)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCerts {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| TlsError::NoKey {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// A root store holding every certificate of the PEM file at `path`.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|source| TlsError::Anchor {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// A client configuration trusting `roots`, presenting `identity` (certificate chain and key)
/// when given: the agent's mutual-TLS configuration.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            context: "protocol versions",
            source,
        })?
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|source| TlsError::Config {
                context: "client certificate and key",
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The agent's mutual-TLS configuration from an enrollment directory (`ca.crt`, `agent.crt`,
/// `agent.key`).
pub fn agent_client_config(dir: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(&dir.join(CA_FILE))?;
    let chain = load_certs(&dir.join(CERT_FILE))?;
    let key = load_key(&dir.join(KEY_FILE))?;
    client_config(roots, Some((chain, key)))
}

/// SHA-256 of a certificate's DER.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A client configuration that trusts exactly one CA, identified by the SHA-256 of its
/// certificate, which the server must send in its chain. Used at enrollment, when the agent
/// knows the CA only by the fingerprint in its token.
pub fn pinned_ca_client_config(ca_sha256: [u8; 32]) -> Arc<ClientConfig> {
    let verifier = Arc::new(PinnedCaVerifier {
        ca_sha256,
        provider: provider(),
    });
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    // The ring provider supports the default protocol versions; this cannot fail.
    Arc::new(cfg.unwrap_or_else(|_| {
        ClientConfig::builder()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth()
    }))
}

#[derive(Debug)]
struct PinnedCaVerifier {
    ca_sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.ca_sha256)
        else {
            return Err(rustls::Error::General(format!(
                "the server did not present the CA with fingerprint {} (wrong server or token)",
                hex::encode(self.ca_sha256)
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
