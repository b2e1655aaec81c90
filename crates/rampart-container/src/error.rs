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
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    pub(crate) fn docker(op: &'static str, socket: &Path, source: bollard::errors::Error) -> Self {
        ContainerError::Docker {
            op,
            socket: socket.to_path_buf(),
            source: Box::new(source),
        }
    }
}
