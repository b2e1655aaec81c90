//! `rampart query`: events and alerts from the server's query API, as a table or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rampart_server::client::{QueryClient, QueryError};

use crate::cmd::BadInput;

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The server, `https://host:port`.
    #[arg(long, env = "RAMPART_SERVER", default_value = "https://127.0.0.1:8443")]
    server: String,
    /// An API token (`rampart server token create`); analyst or admin for events, any role
    /// for `--alerts`.
    #[arg(long, env = "RAMPART_TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the API token (default on the server host: its `admin.token`).
    #[arg(long, default_value = "/var/lib/rampart/server/admin.token")]
    token_file: PathBuf,
    /// The server's CA certificate (the server's `<data_dir>/ca/ca.crt`, or an agent's
    /// `tls/ca.crt`).
    #[arg(
        long,
        env = "RAMPART_CA",
        default_value = "/var/lib/rampart/server/ca/ca.crt"
    )]
    ca: PathBuf,
    /// Only records at or after this time: RFC 3339, Unix nanoseconds, or a duration ago
    /// (`15m`, `2h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Only records before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Host name.
    #[arg(long)]
    host: Option<String>,
    /// Container: id prefix or name.
    #[arg(long)]
    container: Option<String>,
    /// Alerts of this rule.
    #[arg(long)]
    rule: Option<String>,
    /// Record type: an event kind (`process.exec`, `net.connect`, ...) or `alert`.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// `event` or `alert`.
    #[arg(long, value_parser = ["event", "alert"])]
    kind: Option<String>,
    /// Only alerts (works with a read-only token).
    #[arg(long)]
    alerts: bool,
    /// Jurisdiction tag of the host.
    #[arg(long)]
    region: Option<String>,
    /// Agent id.
    #[arg(long)]
    agent: Option<String>,
    /// One record by id.
    #[arg(long)]
    id: Option<String>,
    /// Only records whose JSON contains this text (applied to the records the server
    /// returned, after --limit).
    #[arg(long)]
    grep: Option<String>,
    /// At most this many records (newest first; the server caps it at 10000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print how many records match instead of the records.
    #[arg(long)]
    count: bool,
    /// JSON lines (one record per line) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(&args.token_file)
            .with_context(|| {
                format!(
                    "reading the API token from {} (give --token or --token-file)",
                    args.token_file.display()
                )
            })?
            .trim()
            .to_string(),
    };
    let mut params: Vec<(&str, String)> = Vec::new();
    let mut add = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            params.push((k, v.clone()));
        }
    };
    add("since", &args.since);
    add("until", &args.until);
    add("host", &args.host);
    add("container", &args.container);
    add("rule", &args.rule);
    add("type", &args.event_type);
    add("kind", &args.kind);
    add("region", &args.region);
    add("agent", &args.agent);
    add("id", &args.id);
    let rt = super::runtime()?;
    let mut client = QueryClient::new(&args.server, &args.ca, &token)
        .with_context(|| format!("connecting to {}", args.server))?;
    if args.count {
        let n = rt.block_on(client.count(&params)).map_err(api_error)?;
        println!("{n}");
        return Ok(ExitCode::SUCCESS);
    }
    params.push(("limit", args.limit.to_string()));
    let mut records = rt
        .block_on(client.records(args.alerts, &params))
        .map_err(api_error)?;
    if let Some(text) = &args.grep {
        records.retain(|r| r.to_string().contains(text.as_str()));
    }
    if args.json {
        for r in &records {
            println!("{r}");
        }
    } else {
        print!("{}", rampart_server::client::table(&records));
    }
    Ok(ExitCode::SUCCESS)
}

/// A 400 from the server is the user's filter being wrong.
fn api_error(e: QueryError) -> anyhow::Error {
    match e {
        QueryError::Status {
            status: 400,
            message,
        } => anyhow::Error::new(BadInput(message)),
        other => anyhow::Error::new(other),
    }
}
