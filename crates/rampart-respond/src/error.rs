//! Errors of response actions and policy enforcement.

use std::path::PathBuf;

use rampart_kernel::enforce::EnforceError;

use crate::policy::PolicyError;

/// Why a response action or a policy change failed. Each variant names what it was about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("kernel: {0}")]
    Kernel(#[from] EnforceError),
    #[error("docker {op} {target}: {message}")]
    Docker {
        op: &'static str,
        target: String,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {container}: no cgroup v2 directory (a cgroup v2 or hybrid hierarchy is needed for {what})")]
    NoCgroup {
        container: String,
        what: &'static str,
    },
    #[error("process {pid}: {message}")]
    Process { pid: u32, message: String },
    #[error("{}: {message}", path.display())]
    State { path: PathBuf, message: String },
}

impl RespondError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RespondError::Io {
            path: path.into(),
            source,
        }
    }
}
