//! Errors of image trust: keys, references, registries, signatures, policies.

use std::path::PathBuf;

/// Why a trust operation failed. Every variant names what it was about (file, reference,
/// registry URL, digest) so the message alone says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    /// A key file to be written exists and replacing it was not asked for.
    #[error("{path} exists (use --force to replace it)")]
    Exists { path: PathBuf },
    #[error("{path}: wrong password or corrupted key (the secretbox does not open)")]
    WrongPassword { path: PathBuf },
    #[error("invalid image reference {reference:?}: {message}")]
    Reference { reference: String, message: String },
    #[error("registry {url}: {message}")]
    Registry { url: String, message: String },
    #[error("{what} from {url} has digest {actual}, not the requested {expected}")]
    DigestMismatch {
        what: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: {message}")]
    Verification { reference: String, message: String },
    #[error("{path}:{line}: {message}")]
    Policy {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// An `--annotation` that is not `KEY=VALUE`.
    #[error("--annotation {item:?}: use KEY=VALUE")]
    Annotation { item: String },
    #[error("{0}")]
    Other(String),
}

impl TrustError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> TrustError {
        TrustError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn key(path: impl Into<PathBuf>, message: impl Into<String>) -> TrustError {
        TrustError::Key {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn registry(url: impl Into<String>, message: impl Into<String>) -> TrustError {
        TrustError::Registry {
            url: url.into(),
            message: message.into(),
        }
    }

    /// The user's input is wrong (a key, reference or policy file), not the world.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            TrustError::Key { .. }
                | TrustError::Exists { .. }
                | TrustError::WrongPassword { .. }
                | TrustError::Reference { .. }
                | TrustError::Policy { .. }
                | TrustError::Annotation { .. }
        )
    }
}
