//! The agent's Ed25519 signing key for forensic bundles.
//!
//! Stored as two text files: `<path>` holds the 32-byte secret seed in hex (mode 0600, created
//! with O_EXCL so two processes never write different keys), `<path>.pub` the public key in hex.
//! Hex rather than PKCS#8 keeps the files readable and avoids a DER dependency; the key never
//! leaves the host.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// Where the agent keeps its signing key by default.
pub const DEFAULT_KEY_PATH: &str = "/var/lib/rampart/agent-signing.key";

/// Errors of loading or creating a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a key ({reason})", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: the key is readable by group or others (mode {mode:o}); chmod 600 it", path.display())]
    Permissions { path: PathBuf, mode: u32 },
}

/// The agent's signing key.
pub struct AgentKey {
    key: SigningKey,
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentKey")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl AgentKey {
    /// Loads the key at `path`, creating it (and `path.pub`) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<AgentKey, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)
                    .map_err(|e| KeyError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    })?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(KeyError::Permissions {
                        path: path.to_path_buf(),
                        mode: mode & 0o777,
                    });
                }
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed).map_err(|e| KeyError::Malformed {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                Ok(AgentKey {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(KeyError::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    fn create(path: &Path) -> Result<AgentKey, KeyError> {
        let io = |e| KeyError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
            .map_err(io)?;
        let key = SigningKey::from_bytes(&seed);
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => f,
            // Another process created it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::load_or_create(path)
            }
            Err(e) => return Err(io(e)),
        };
        writeln!(f, "{}", hex::encode(seed)).map_err(io)?;
        f.sync_all().map_err(io)?;
        let public = AgentKey { key };
        let pub_path = pub_path(path);
        std::fs::write(&pub_path, format!("{}\n", public.public_hex())).map_err(|e| {
            KeyError::Io {
                path: pub_path,
                source: e,
            }
        })?;
        Ok(public)
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// `<path>.pub`.
pub fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// A short fingerprint of a public key (hex SHA-256, first 16 digits), for humans.
pub fn fingerprint(public_hex: &str) -> String {
    let bytes = hex::decode(public_hex).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))[..16].to_string()
}

/// Why a bundle's signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("public key: {0}")]
    PublicKey(String),
    #[error("signature is {0} bytes, not 64")]
    Length(usize),
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks an Ed25519 `signature` of `msg` by `public_hex`.
pub fn verify(public_hex: &str, msg: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    let mut pk = [0u8; 32];
    hex::decode_to_slice(public_hex.trim(), &mut pk)
        .map_err(|e| VerifyError::PublicKey(e.to_string()))?;
    let vk = VerifyingKey::from_bytes(&pk).map_err(|e| VerifyError::PublicKey(e.to_string()))?;
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| VerifyError::Length(signature.len()))?;
    vk.verify(msg, &Signature::from_bytes(&sig))
        .map_err(|_| VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn created_once_private_and_verifiable() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("k/agent.key");
        let k = AgentKey::load_or_create(&p).unwrap();
        let again = AgentKey::load_or_create(&p).unwrap();
        assert_eq!(k.public_hex(), again.public_hex());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(pub_path(&p)).unwrap().trim(),
            k.public_hex()
        );
        let sig = k.sign(b"manifest");
        assert!(verify(&k.public_hex(), b"manifest", &sig).is_ok());
        assert!(verify(&k.public_hex(), b"manifest!", &sig).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AgentKey::load_or_create(&p),
            Err(KeyError::Permissions { .. })
        ));
    }
}
