//! The agent's errors. [`AgentError::Config`] is the user's input being wrong (a key of
//! agent.yaml, a rule, policy or playbook file): the binary maps it to exit code 2.

/// Why the agent could not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// agent.yaml, a rule, policy, playbook or output specification is wrong; the message
    /// names the file (with line and column where known) or the key.
    #[error("{0}")]
    Config(String),
    /// The kernel refused the sensor (not root, no BPF).
    #[error(transparent)]
    Kernel(#[from] rampart_kernel::KernelError),
    /// The vulnerability-database bundle failed its signature, size or digest check.
    #[error(transparent)]
    Bundle(#[from] rampart_server::vulndb::BundleError),
    /// A step of start-up, output or shutdown failed; `context` says which.
    #[error("{context}: {source}")]
    Step {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A refusal that is not the user's input (a bundle older than the installed one, a
    /// server answering with an error status).
    #[error("{0}")]
    Refused(String),
}

impl AgentError {
    /// Whether the error is the user's input being wrong (exit code 2 in the binary).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, AgentError::Config(_))
    }
}

/// Adds the step that failed to a lower error (the agent's counterpart of anyhow's
/// `Context`, producing [`AgentError::Step`]).
pub(crate) trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T, AgentError>;
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, AgentError>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> Context<T> for Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T, AgentError> {
        self.map_err(|e| AgentError::Step {
            context: context.into(),
            source: e.into(),
        })
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, AgentError> {
        self.map_err(|e| AgentError::Step {
            context: f().into(),
            source: e.into(),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T, AgentError> {
        self.ok_or_else(|| AgentError::Refused(context.into()))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, AgentError> {
        self.ok_or_else(|| AgentError::Refused(f().into()))
    }
}

/// `Result` with [`AgentError`].
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
