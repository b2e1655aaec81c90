//! One module per subcommand group.

pub mod agent;
pub mod audit;
pub mod authz;
pub mod completions;
pub mod config;
pub mod db;
pub mod dockerfile;
pub mod doctor;
pub mod enroll;
pub mod forensics;
pub mod harden;
pub mod harden_host;
pub mod image;
pub mod incident;
pub mod key;
pub mod logging;
pub mod mesh;
pub mod policy;
pub mod profile;
pub mod query;
pub mod respond;
pub mod rules;
pub mod server;
pub mod trust;
pub mod up;
pub mod version;

/// The single-threaded runtime the commands that talk to Docker or a server block on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    anyhow::Context::context(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        "starting the async runtime",
    )
}

/// Completes at SIGINT (Ctrl-C) or SIGTERM: how a command that keeps running is stopped.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Exit code for an error: 2 for bad input (usage, configuration, rule or policy files), 1 for
/// everything else. Commands with a verdict (`--fail-on`, `verify`) return their own codes.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let bad = |e: &(dyn std::error::Error + 'static)| {
        e.downcast_ref::<BadInput>().is_some()
            || e.downcast_ref::<rampart_agent::AgentError>()
                .is_some_and(rampart_agent::AgentError::is_bad_input)
            || e.downcast_ref::<rampart_fleet::admin::AdminError>()
                .is_some_and(rampart_fleet::admin::AdminError::is_bad_input)
    };
    if err.chain().any(bad) {
        2
    } else {
        1
    }
}

/// The error and its causes on one line, `a: b: c`, leaving out a cause whose text the line
/// already holds (library errors often print their source in their own message, and anyhow's
/// `{:#}` would repeat it once per level).
pub fn error_text(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Marks an error as the user's input being wrong (exit code 2).
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}
