//! The agent's local outputs: JSON lines on stdout or appended to a file, or the terminal view
//! (`console`: alerts and a periodic summary, see `console.rs`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Stdout, Write};
use std::path::PathBuf;

use rampart_event::{Alert, Event};
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

enum Sink {
    Stdout(BufWriter<Stdout>),
    Console(Console, BufWriter<Stdout>),
    File { path: PathBuf, w: BufWriter<File> },
}

/// Every configured output; a record goes to all of them.
pub struct Outputs {
    sinks: Vec<Sink>,
    /// The `ship:` section's durable queue, when configured (see `ship.rs`).
    ship: Option<crate::ship::AgentShip>,
}

impl Outputs {
    /// Opens `stdout`, `console` and `jsonl:PATH` outputs (files are appended to, created 0600).
    pub fn open(specs: &[String]) -> Result<Outputs> {
        let mut sinks = Vec::new();
        for spec in specs {
            if spec == "stdout" {
                sinks.push(Sink::Stdout(BufWriter::new(std::io::stdout())));
            } else if spec == "console" {
                sinks.push(Sink::Console(
                    Console::new(),
                    BufWriter::new(std::io::stdout()),
                ));
            } else if let Some(p) = spec.strip_prefix("jsonl:") {
                let path = PathBuf::from(p);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode_0600()
                    .open(&path)
                    .with_context(|| format!("opening output {}", path.display()))?;
                sinks.push(Sink::File {
                    path,
                    w: BufWriter::with_capacity(256 << 10, f),
                });
            } else {
                return Err(AgentError::Config(format!(
                    "output {spec:?}: expected `stdout`, `console` or `jsonl:PATH`"
                )));
            }
        }
        Ok(Outputs { sinks, ship: None })
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

    /// Writes one record to every output (a JSON line; the console renders it).
    pub fn write<T: Record>(&mut self, record: &T) -> Result<()> {
        if let Some(s) = &mut self.ship {
            s.push(record)?;
        }
        for s in &mut self.sinks {
            match s {
                Sink::Stdout(w) => {
                    serde_json::to_writer(&mut *w, record)
                        .and_then(|()| w.write_all(b"\n").map_err(serde_json::Error::io))
                        .context("writing stdout")?;
                }
                Sink::Console(c, w) => {
                    let line = match record.record() {
                        Either::Alert(a) => Some(c.alert(a)),
                        Either::Event(e) => c.event(e),
                    };
                    if let Some(line) = line {
                        writeln!(w, "{line}").context("writing stdout")?;
                    }
                }
                Sink::File { path, w } => {
                    serde_json::to_writer(&mut *w, record)
                        .and_then(|()| w.write_all(b"\n").map_err(serde_json::Error::io))
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Records the durable queue refused since start.
    pub fn queue_dropped(&self) -> u64 {
        self.ship.as_ref().map_or(0, |s| s.dropped)
    }

    pub fn flush(&mut self) -> Result<()> {
        if let Some(s) = &mut self.ship {
            s.flush()?;
        }
        for s in &mut self.sinks {
            match s {
                Sink::Stdout(w) | Sink::Console(_, w) => w.flush().context("writing stdout")?,
                Sink::File { path, w } => w
                    .flush()
                    .with_context(|| format!("writing {}", path.display()))?,
            }
        }
        Ok(())
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}
