//! The agent's outputs, all of them rampart-ship outputs: the `outputs:` shorthand (`stdout`,
//! `jsonl:PATH`) and `ship.outputs` entries with `delivery: direct` are written directly from
//! the loop ([`rampart_ship::DirectOutputs`]: buffered, no fsync, failed writes counted as
//! drops), the other `ship.outputs` through the durable queue (see `ship.rs`). Both apply the
//! outputs' `filter:` and report the same `rampart_ship_*` counters.

use rampart_ship::{DirectOutputs, DirectStats, OutputConfig};
use serde::Serialize;

use crate::error::{AgentError, Context, Result};

/// Every configured output; a record goes to all of them (each filter permitting).
pub struct Outputs {
    direct: DirectOutputs,
    /// The `ship:` section's durable queue, when configured (see `ship.rs`).
    ship: Option<crate::ship::AgentShip>,
}

/// The ship outputs `specs` (the `outputs:` shorthand) stand for, then `direct` (the
/// `delivery: direct` entries of `ship.outputs`).
pub fn direct_configs(specs: &[String], direct: &[OutputConfig]) -> Result<Vec<OutputConfig>> {
    let mut out = Vec::with_capacity(specs.len() + direct.len());
    for spec in specs {
        out.push(
            rampart_ship::output::shorthand(spec)
                .map_err(|e| AgentError::Config(format!("outputs: {}", e.message)))?,
        );
    }
    out.extend(direct.iter().filter(|o| o.is_direct()).cloned());
    Ok(out)
}

impl Outputs {
    /// Opens the `outputs:` shorthand `specs` and the `delivery: direct` outputs of `ship`
    /// (files are appended to, created 0600).
    pub fn open(specs: &[String], ship: &[OutputConfig]) -> Result<Outputs> {
        let direct = DirectOutputs::open(&direct_configs(specs, ship)?).map_err(|e| {
            let msg = format!("output {}: {}", e.output, e.message);
            if e.message.starts_with("opening ") {
                AgentError::Step {
                    context: msg,
                    source: Box::new(e),
                }
            } else {
                AgentError::Config(msg)
            }
        })?;
        Ok(Outputs { direct, ship: None })
    }

    /// Also sends every record through `ship` (the durable queue and its outputs).
    pub fn with_ship(mut self, ship: Option<crate::ship::AgentShip>) -> Outputs {
        self.ship = ship;
        self
    }

    /// Stops shipping: queues what is pending and lets the outputs deliver for a few seconds.
    pub fn close_ship(&mut self, runtime: &tokio::runtime::Runtime) -> Result<()> {
        match self.ship.take() {
            Some(s) => s.shutdown(runtime),
            None => Ok(()),
        }
    }

    /// Sends one record to every output: serialised once, buffered for the direct outputs and
    /// the queue until [`flush`](Outputs::flush).
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let json = serde_json::to_vec(record).context("serialising a record")?;
        self.direct.write_json(&json);
        if let Some(s) = &mut self.ship {
            s.push_json(json);
        }
        Ok(())
    }

    /// Records the durable queue refused since start.
    pub fn queue_dropped(&self) -> u64 {
        self.ship.as_ref().map_or(0, |s| s.dropped)
    }

    /// The direct outputs' counters.
    pub fn direct_stats(&self) -> Vec<DirectStats> {
        self.direct.stats()
    }

    /// The outputs' names, for the start-up log.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.direct.names().iter().map(|s| s.to_string()).collect();
        if let Some(s) = &self.ship {
            n.push(format!("the queue ({})", s.outputs.join(", ")));
        }
        n
    }

    /// Writes what the direct outputs buffered and appends the batch to the queue. A direct
    /// output's failed write is a counted drop, not an error.
    pub fn flush(&mut self) -> Result<()> {
        self.direct.flush();
        if let Some(s) = &mut self.ship {
            s.flush()?;
        }
        Ok(())
    }
}
