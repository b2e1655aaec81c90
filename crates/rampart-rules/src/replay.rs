//! `rampart rules test`: recorded events (JSON lines, as `rampart agent --record` writes them)
//! replayed through an [`Engine`], the alerts written as JSON lines. Deterministic: alerts
//! depend on event time only.

use std::io::{BufRead, Write};

use rampart_event::Event;

use crate::Engine;

/// How many events a replay read and how many alerts it wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    pub events: u64,
    pub alerts: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The input could not be read.
    #[error("reading {name}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A line is not an event (the input is wrong); `line` is 1-based.
    #[error("{name}:{line}: not an event: {message}")]
    NotAnEvent {
        name: String,
        line: usize,
        message: String,
    },
    /// The alerts could not be written.
    #[error(transparent)]
    Write(#[from] std::io::Error),
}

impl Engine {
    /// Replays the events of `input` (JSON lines; blank lines are skipped) and writes every
    /// alert as one JSON line to `out`. `name` is how errors name the input.
    pub fn replay(
        &mut self,
        input: impl BufRead,
        name: &str,
        mut out: impl Write,
    ) -> Result<ReplayCounts, ReplayError> {
        let mut detections = Vec::new();
        let mut counts = ReplayCounts::default();
        for (n, line) in input.lines().enumerate() {
            let line = line.map_err(|source| ReplayError::Read {
                name: name.to_string(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let event: Event =
                serde_json::from_str(&line).map_err(|e| ReplayError::NotAnEvent {
                    name: name.to_string(),
                    line: n + 1,
                    message: e.to_string(),
                })?;
            counts.events += 1;
            detections.clear();
            self.process(&event, &mut detections);
            for d in &detections {
                counts.alerts += 1;
                serde_json::to_writer(&mut out, &d.alert).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
        }
        out.flush()?;
        Ok(counts)
    }
}
