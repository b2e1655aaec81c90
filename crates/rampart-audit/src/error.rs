//! Errors of the audit, the learning and the profile handling.

use std::path::PathBuf;

/// Why an audit, a recording or a profile operation failed. Each variant names the thing that
/// failed (a file with its line, a container, a Docker call) and keeps the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A Docker Engine API call failed.
    #[error("docker {op} {target}: {}", source.message())]
    Docker {
        op: &'static str,
        target: String,
        #[source]
        source: Box<rampart_container::ContainerError>,
    },
    /// Connecting to dockerd failed.
    #[error(transparent)]
    Connect(#[from] rampart_container::ContainerError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is malformed (daemon.json, a seccomp profile, a recording).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A seccomp profile is valid JSON but not one this tool can merge or use.
    #[error("{}: {reason}", path.display())]
    Profile { path: PathBuf, reason: String },
    /// The container cannot be recorded as it is configured.
    #[error("container {container}: {reason}")]
    Container { container: String, reason: String },
    /// A line of a JSON-lines file of events is not an event.
    #[error("{}:{line}: not an event: {message}", path.display())]
    Event {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The syscall recorder failed.
    #[error("syscall recorder: {0}")]
    Recorder(#[from] rampart_kernel::RecorderError),
    /// The event sensor could not start.
    #[error("sensor: {0}")]
    Sensor(#[from] rampart_kernel::KernelError),
    /// An option's value is outside what it accepts (`--headroom 20`).
    #[error("{option} {value} {reason}")]
    Option {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl AuditError {
    pub(crate) fn docker(
        op: &'static str,
        target: impl Into<String>,
        source: rampart_container::ContainerError,
    ) -> Self {
        AuditError::Docker {
            op,
            target: target.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, e: &serde_json::Error) -> Self {
        AuditError::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }

    /// True when the error is the user's input being wrong (a malformed file, a container that
    /// cannot be recorded as configured), as opposed to the system failing.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            AuditError::Json { .. }
                | AuditError::Event { .. }
                | AuditError::Profile { .. }
                | AuditError::Container { .. }
                | AuditError::Option { .. }
        )
    }
}
