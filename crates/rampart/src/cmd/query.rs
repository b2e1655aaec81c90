//! `rampart query`: events and alerts from the server's query API, as a table or JSON.

use std::process::ExitCode;

use anyhow::Context;
use rampart_server::client::{QueryClient, QueryError};

pub use rampart_server::client::QueryArgs;

use crate::cmd::BadInput;

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
    let rt = super::runtime()?;
    let mut client = QueryClient::new(&args.server, &args.ca, &token)
        .with_context(|| format!("connecting to {}", args.server))?;
    if args.count {
        let n = rt
            .block_on(client.count(&args.params(false)))
            .map_err(api_error)?;
        println!("{n}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut records = rt
        .block_on(client.records(args.alerts, &args.params(true)))
        .map_err(api_error)?;
    args.grep(&mut records);
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
