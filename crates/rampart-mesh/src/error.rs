/// Mesh failures, naming the place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// A SPIFFE ID that is not valid, or a certificate without one.
    #[error("identity {0}")]
    Identity(String),
    /// The CA refused or could not be reached.
    #[error("certificate issuance for {id}: {reason}")]
    Issue { id: String, reason: String },
    /// A policy rule that does not parse.
    #[error("{place}: {rule}: {message}")]
    Policy {
        place: String,
        rule: String,
        message: String,
    },
    /// A configuration value that makes no sense.
    #[error("{place}: {message}")]
    Config { place: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Transparent redirection could not be installed or removed in the kernel.
    #[error("{place}: transparent redirection: {message}")]
    Redirect { place: String, message: String },
}
