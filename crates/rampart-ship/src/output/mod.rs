//! Outputs: where queued records go.
//!
//! Every output implements [`Output`]: deliver a batch, say whether it got there. The shipper
//! reads each output's records from the durable queue, calls [`Output::send`], acknowledges
//! the batch on success and retries it with backoff on failure; an output therefore never needs
//! its own buffering or retry logic, and a record is acknowledged only once the output said it
//! was delivered (for a file: written and fsynced; for the server: committed to its store).
//!
//! Every output takes a `filter:` ([`OutputFilter`]), applied by the shipper before
//! [`Output::send`]; the notifier outputs (`webhook`, `email`) are in [`crate::notify`].

pub mod direct;
mod file;
pub mod filter;
mod http;
mod server;
mod stdout;
mod syslog;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;

pub use direct::{shorthand, DirectOutputs, DirectStats};
pub use file::FileOutput;
pub use filter::OutputFilter;
pub use http::{HttpFormat, HttpOutput};
pub use server::ServerOutput;
pub use stdout::StdoutOutput;
pub use syslog::{SyslogOutput, SyslogTransport};

use crate::notify::{EmailConfig, NotifyCounters, NotifyOutput, WebhookConfig};
use crate::queue::Entry;

/// A boxed future, as [`Output::send`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where records go. Implementations deliver a whole batch or report failure; each sender is
/// called for one batch at a time, in order (see [`Output::fork`] for more at once).
pub trait Output: Send {
    /// The output's name: its queue cursor and its `output` label in metrics.
    fn name(&self) -> &str;

    /// Delivers `batch` (records in queue order, payloads are JSON). `Ok` means delivered as
    /// durably as this output can tell, and the queue may forget the batch; `Err` means it must
    /// be sent again.
    fn send<'a>(&'a mut self, batch: &'a [Entry]) -> BoxFuture<'a, Result<Delivered, OutputError>>;

    /// Another sender to the same destination, so that several batches can be in flight at
    /// once (`batch.in_flight`); the shipper still acknowledges them in queue order. Outputs
    /// whose receiver takes batches independently (the server output: one connection each)
    /// return one; the default `None` keeps delivery to one batch at a time.
    fn fork(&self) -> Option<Box<dyn Output>> {
        None
    }

    /// Called by the shipper before each [`send`](Output::send) (and again before a retry):
    /// where the batch sits in the queue. The server output passes it on to the server.
    /// Default: ignored.
    fn prepare(&mut self, _dispatch: Dispatch) {}

    /// A notifier's counters, for the shipper's metrics (`rampart_notify_*`). Default: none.
    fn notify_counters(&self) -> Option<Arc<NotifyCounters>> {
        None
    }
}

/// What the shipper tells an output about the batch it is about to send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dispatch {
    /// The queue sequence number of the last record of the batch dispatched just before this
    /// one (`None` for the first batch since the output started). A receiver that commits
    /// batches independently uses it to commit one sender's batches in queue order
    /// ([`crate::protocol::BATCH_AFTER_HEADER`]).
    pub after: Option<u64>,
    /// True when no record of the batch was ever sent before: all were appended since the
    /// queue was opened and this is the batch's first attempt. A receiver may then skip
    /// looking for them among what it stored ([`crate::protocol::BATCH_UNSENT_HEADER`]).
    pub unsent: bool,
}

/// What a successful [`Output::send`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Bytes put on the wire or on disk.
    pub bytes: u64,
    /// Records the receiver refused as malformed (not retried).
    pub rejected: u64,
    /// Records the receiver already had (a retry or replay).
    pub duplicates: u64,
}

/// A failed delivery; the batch is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("output {output}: {message}")]
pub struct OutputError {
    pub output: String,
    pub message: String,
}

impl OutputError {
    pub fn new(output: &str, message: impl Into<String>) -> OutputError {
        OutputError {
            output: output.to_string(),
            message: message.into(),
        }
    }
}

/// How a `stdout` or `file` output gets its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Through the durable queue, acknowledged once written (a file: fsynced), retried until
    /// then (the default).
    #[default]
    Queued,
    /// Written by the agent's loop without the queue: buffered, not fsynced, not retried; a
    /// failed write is a counted drop ([`direct`]). The agent's `outputs:` shorthand
    /// (`stdout`, `jsonl:PATH`) is this.
    Direct,
}

/// One entry of `outputs:` in the agent configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputConfig {
    /// JSON lines on standard output.
    Stdout {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        filter: OutputFilter,
        #[serde(default)]
        delivery: Delivery,
    },
    /// JSON lines appended to a file (0600); each batch is fsynced before it is acknowledged.
    /// A file moved away by logrotate is noticed and a new one created.
    File {
        path: PathBuf,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        filter: OutputFilter,
        #[serde(default)]
        delivery: Delivery,
    },
    /// RFC 5424 syslog over `udp://host:port`, `tcp://host:port` (octet-counted framing,
    /// RFC 6587) or `unix:///dev/log`.
    Syslog {
        address: String,
        /// Facility name (`local0` .. `local7`, `auth`, `authpriv`, `daemon`, `user`); default
        /// `local0`.
        #[serde(default)]
        facility: Option<String>,
        /// APP-NAME field; default `rampart`.
        #[serde(default)]
        app_name: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        filter: OutputFilter,
    },
    /// HTTP(S) POST of each batch as JSON lines (`format: ndjson`, default) or a JSON array
    /// (`format: json_array`); any 2xx answer is delivery.
    Http {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        format: HttpFormat,
        /// CA bundle for https (default: the system bundle).
        #[serde(default)]
        ca_file: Option<PathBuf>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        filter: OutputFilter,
    },
    /// The Rampart server: zstd-compressed batches over HTTPS with mutual TLS, credentials from
    /// `rampart enroll` (`tls_dir` holds `ca.crt`, `agent.crt`, `agent.key`).
    Server {
        url: String,
        tls_dir: PathBuf,
        /// zstd level (1..=19, default 3).
        #[serde(default)]
        compression_level: Option<i32>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        filter: OutputFilter,
    },
    /// Chat notifications for people: Slack, Mattermost or Microsoft Teams webhooks, with
    /// grouping and rate limits (see [`crate::notify`]). Alerts only.
    Webhook(WebhookConfig),
    /// Mail notifications over SMTP (STARTTLS), with grouping and rate limits. Alerts only.
    Email(EmailConfig),
}

impl OutputConfig {
    /// The output's `type:`.
    pub fn kind(&self) -> &'static str {
        match self {
            OutputConfig::Stdout { .. } => "stdout",
            OutputConfig::File { .. } => "file",
            OutputConfig::Syslog { .. } => "syslog",
            OutputConfig::Http { .. } => "http",
            OutputConfig::Server { .. } => "server",
            OutputConfig::Webhook(_) => "webhook",
            OutputConfig::Email(_) => "email",
        }
    }

    /// Whether the output is written directly (`delivery: direct`), not through the queue.
    pub fn is_direct(&self) -> bool {
        matches!(
            self,
            OutputConfig::Stdout {
                delivery: Delivery::Direct,
                ..
            } | OutputConfig::File {
                delivery: Delivery::Direct,
                ..
            }
        )
    }

    /// The output's name: `name:` when set, the type otherwise.
    pub fn name(&self) -> &str {
        let (explicit, kind) = match self {
            OutputConfig::Stdout { name, .. } => (name, "stdout"),
            OutputConfig::File { name, .. } => (name, "file"),
            OutputConfig::Syslog { name, .. } => (name, "syslog"),
            OutputConfig::Http { name, .. } => (name, "http"),
            OutputConfig::Server { name, .. } => (name, "server"),
            OutputConfig::Webhook(c) => (&c.name, "webhook"),
            OutputConfig::Email(c) => (&c.name, "email"),
        };
        explicit.as_deref().unwrap_or(kind)
    }

    /// The output's `filter:` (empty when none was given).
    pub fn filter(&self) -> &OutputFilter {
        match self {
            OutputConfig::Stdout { filter, .. }
            | OutputConfig::File { filter, .. }
            | OutputConfig::Syslog { filter, .. }
            | OutputConfig::Http { filter, .. }
            | OutputConfig::Server { filter, .. } => filter,
            OutputConfig::Webhook(c) => &c.filter,
            OutputConfig::Email(c) => &c.filter,
        }
    }

    /// Whether this is a notifier (`webhook`, `email`): messages for people.
    pub fn is_notifier(&self) -> bool {
        matches!(self, OutputConfig::Webhook(_) | OutputConfig::Email(_))
    }

    /// Starts a notifier output as a [`Notifier`](crate::notify::Notifier) (the server routes
    /// its notifications through these); `None` for the other kinds. Needs a tokio runtime.
    pub fn start_notifier(&self) -> Option<Result<crate::notify::Notifier, OutputError>> {
        match self {
            OutputConfig::Webhook(c) => Some(c.start(self.name())),
            OutputConfig::Email(c) => Some(c.start(self.name())),
            _ => None,
        }
    }

    /// Builds the output; errors name the file or address that is wrong. Notifier outputs start
    /// their delivery task on the current tokio runtime (the shipper enters its runtime for
    /// this).
    pub fn build(&self) -> Result<Box<dyn Output>, OutputError> {
        let name = self.name().to_string();
        if self.is_direct() {
            return Err(OutputError::new(
                &name,
                "`delivery: direct` outputs are written by the agent's loop, not through a queue",
            ));
        }
        Ok(match self {
            OutputConfig::Stdout { .. } => Box::new(StdoutOutput::new(name)),
            OutputConfig::File { path, .. } => Box::new(FileOutput::new(name, path.clone())),
            OutputConfig::Syslog {
                address,
                facility,
                app_name,
                ..
            } => Box::new(SyslogOutput::new(
                name,
                address,
                facility.as_deref().unwrap_or("local0"),
                app_name.as_deref().unwrap_or("rampart"),
            )?),
            OutputConfig::Http {
                url,
                headers,
                format,
                ca_file,
                ..
            } => Box::new(HttpOutput::new(
                name,
                url,
                headers.clone(),
                *format,
                ca_file.as_deref(),
            )?),
            OutputConfig::Server {
                url,
                tls_dir,
                compression_level,
                ..
            } => {
                let tls = crate::tls::agent_client_config(tls_dir)
                    .map_err(|e| OutputError::new(&name, e.to_string()))?;
                Box::new(
                    ServerOutput::new(name, url, tls)?
                        .with_compression_level(compression_level.unwrap_or(3)),
                )
            }
            OutputConfig::Webhook(c) => Box::new(NotifyOutput::new(c.start(&name)?)),
            OutputConfig::Email(c) => Box::new(NotifyOutput::new(c.start(&name)?)),
        })
    }
}
