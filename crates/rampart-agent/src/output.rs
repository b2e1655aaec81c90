//! The agent's outputs, all of them rampart-ship outputs: the `outputs:` shorthand (`stdout`,
//! `jsonl:PATH`) and `ship.outputs` entries with `delivery: direct` are written directly from
//! the loop ([`rampart_ship::DirectOutputs`]: buffered, no fsync, failed writes counted as
//! drops), the other `ship.outputs` through the durable queue (see `ship.rs`). Both apply the
//! outputs' `filter:` and report the same `rampart_ship_*` counters. Beside them, `console` is
//! the terminal view (alerts and a periodic summary, see `console.rs`): a rendering for a
//! person at a terminal, not a delivery of records, so it has no filter and a failed write to
//! the terminal stops the agent as it did before.

use std::io::{BufWriter, Stdout, Write};

use rampart_event::{Alert, Event};
use rampart_ship::{DirectOutputs, DirectStats, OutputConfig};
use serde::Serialize;

use crate::console::Console;
use crate::error::{AgentError, Context, Result};

/// What the outputs write: an event or an alert (the console renders them differently).
pub trait Record: Serialize {
    /// The event, or the alert.
    fn record(&self) -> Either<'_>;
}

/// An event or an alert.
pub enum Either<'a> {
    Event(&'a Event),
    Alert(&'a Alert),
}

impl Record for Event {
    fn record(&self) -> Either<'_> {
        Either::Event(self)
    }
}

impl Record for Alert {
    fn record(&self) -> Either<'_> {
        Either::Alert(self)
    }
}

/// Every configured output; a record goes to all of them (each filter permitting).
pub struct Outputs {
    direct: DirectOutputs,
    /// The terminal view, when `console` is among the `outputs:`.
    console: Option<(Console, BufWriter<Stdout>)>,
    /// The `ship:` section's durable queue, when configured (see `ship.rs`).
    ship: Option<crate::ship::AgentShip>,
    /// The record being written, reused: a fresh `Vec` per record grew by doubling through a
    /// 2 KiB event, and the reallocations' copies were a tenth of the agent's CPU under a storm.
    buf: Vec<u8>,
}

/// The ship outputs `specs` (the `outputs:` shorthand) stand for, then `direct` (the
/// `delivery: direct` entries of `ship.outputs`).
pub fn direct_configs(specs: &[String], direct: &[OutputConfig]) -> Result<Vec<OutputConfig>> {
    let mut out = Vec::with_capacity(specs.len() + direct.len());
    for spec in specs.iter().filter(|s| s.as_str() != "console") {
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
        let console = specs
            .iter()
            .any(|s| s == "console")
            .then(|| (Console::new(), BufWriter::new(std::io::stdout())));
        Ok(Outputs {
            direct,
            console,
            ship: None,
            buf: Vec::with_capacity(8 << 10),
        })
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
    pub fn write<T: Record>(&mut self, record: &T) -> Result<()> {
        if let Some((c, w)) = &mut self.console {
            let line = match record.record() {
                Either::Alert(a) => Some(c.alert(a)),
                Either::Event(e) => c.event(e),
            };
            if let Some(line) = line {
                writeln!(w, "{line}").context("writing the console view to stdout")?;
            }
        }
        if self.direct.is_empty() && self.ship.is_none() {
            return Ok(());
        }
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, record).context("serialising a record")?;
        self.direct.write_json(&self.buf);
        if let Some(s) = &mut self.ship {
            s.push_json(self.buf.clone());
        }
        // One very large record (an inventory) does not keep its buffer for the agent's life.
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::with_capacity(8 << 10);
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
        if self.console.is_some() {
            n.push("console".into());
        }
        if let Some(s) = &self.ship {
            n.push(format!("the queue ({})", s.outputs.join(", ")));
        }
        n
    }

    /// Writes what the direct outputs buffered and appends the batch to the queue. A direct
    /// output's failed write is a counted drop, not an error.
    pub fn flush(&mut self) -> Result<()> {
        self.direct.flush();
        if let Some((_, w)) = &mut self.console {
            w.flush().context("writing the console view to stdout")?;
        }
        if let Some(s) = &mut self.ship {
            s.flush()?;
        }
        Ok(())
    }
}
