//! Errors of talking to container runtimes.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// A Docker Engine API call failed.
    #[error("docker {op} via {}: {source}", socket.display())]
    Docker {
        op: &'static str,
        socket: PathBuf,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    /// A Docker Engine API call about `target` (a container, image, network) failed.
    #[error("docker {op} {target} via {}: {source}", socket.display())]
    Api {
        op: &'static str,
        target: String,
        socket: PathBuf,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    /// The daemon's HTTP status, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ContainerError::Docker { source, .. } | ContainerError::Api { source, .. } => {
                match source.as_ref() {
                    bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
                        Some(*status_code)
                    }
                    _ => None,
                }
            }
            ContainerError::Io { .. } => None,
        }
    }

    /// The daemon answered 404: no such container, image, network or volume.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// What the daemon (or the transport) said, without the operation and socket.
    pub fn message(&self) -> String {
        match self {
            ContainerError::Docker { source, .. } | ContainerError::Api { source, .. } => {
                source.to_string()
            }
            ContainerError::Io { source, .. } => source.to_string(),
        }
    }

    pub(crate) fn docker(op: &'static str, socket: &Path, source: bollard::errors::Error) -> Self {
        ContainerError::Docker {
            op,
            socket: socket.to_path_buf(),
            source: Box::new(source),
        }
    }
}
