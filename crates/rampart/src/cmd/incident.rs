//! `rampart incident`: the incidents the fleet correlator recorded (the server's
//! `incidents.db`, or with `control_store:` the fleet's shared control store), their
//! notification deadlines, and draft notifications.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rampart_fleet::args::{IncidentOptions, MarkArgs, SettingsError};
use rampart_fleet::{report, Incident, IncidentDb, IncidentSettings, IncidentSource};

use super::BadInput;

#[derive(Debug, Args)]
pub struct IncidentArgs {
    #[command(flatten)]
    common: IncidentOptions,
    #[command(subcommand)]
    command: IncidentCommand,
}

/// The options, else the server configuration, else defaults.
fn settings(c: &IncidentOptions) -> anyhow::Result<IncidentSettings> {
    let default = std::path::Path::new(crate::cmd::server::DEFAULT_CONFIG);
    c.settings(default).map_err(|e| match e {
        SettingsError::Config(e) => e.into(),
        e if e.is_bad_input() => BadInput(e.to_string()).into(),
        e => e.into(),
    })
}

#[derive(Debug, Subcommand)]
enum IncidentCommand {
    /// Incidents, newest first, with their next notification deadline.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One incident: hosts, jurisdictions, deadlines with countdowns, timeline.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Record decisions about an incident: personal-data breach or not, when you became aware,
    /// notifications submitted. Deadlines and alerts follow from then on (also in a running
    /// server).
    Mark(MarkArgs),
    /// Write a draft notification for an incident as ID.md and ID.pdf.
    Report {
        id: String,
        /// Directory to write into (created when missing).
        #[arg(short = 'o', long = "output", default_value = ".")]
        output: PathBuf,
    },
}

use rampart_event::now_ns;

/// The fleet's shared incidents with `control_store:` in the configuration, else the data
/// directory's incidents.db.
fn open(c: &IncidentSettings) -> anyhow::Result<IncidentSource> {
    if let Some(cs) = &c.control_store {
        return Ok(IncidentSource::open_shared(cs)?);
    }
    let path = rampart_fleet::db_path(&c.data_dir);
    if !path.exists() {
        return Err(BadInput(format!(
            "{}: no incidents database (is this the server's data directory? see --data-dir)",
            path.display()
        ))
        .into());
    }
    Ok(IncidentSource::Local(IncidentDb::open(&path)?))
}

fn find(db: &IncidentSource, id: &str) -> anyhow::Result<Incident> {
    db.get(id)?
        .ok_or_else(|| BadInput(format!("no incident {id:?} (see rampart incident list)")).into())
}

pub fn run(args: IncidentArgs) -> anyhow::Result<ExitCode> {
    let c = &settings(&args.common)?;
    let regs = &c.regulations;
    let mut db = open(c)?;
    let now = now_ns();
    match args.command {
        IncidentCommand::List { json } => {
            let mut all = db.all()?;
            all.reverse();
            if !json {
                println!("{}", rampart_fleet::list_header());
            }
            for inc in &all {
                let d = inc.deadlines(regs, &c.roles, now);
                if json {
                    println!("{}", inc.list_json(&d));
                } else {
                    println!("{}", inc.list_line(&d, now));
                }
            }
        }
        IncidentCommand::Show { id, json } => {
            let inc = find(&db, &id)?;
            let d = inc.deadlines(regs, &c.roles, now);
            if json {
                let v = serde_json::json!({"incident": inc, "deadlines": d});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", inc.show_text(&d, now));
            }
        }
        IncidentCommand::Mark(m) => {
            let inc = find(&db, &m.id)?;
            let marks = rampart_fleet::marks_now(&m.request(), regs)
                .map_err(|e| BadInput(e.to_string()))?;
            db.set_marks(&inc.id, &marks, now)?;
            let inc = find(&db, &m.id)?;
            for x in inc.deadlines(regs, &c.roles, now) {
                println!("{}", x.line(now));
            }
        }
        IncidentCommand::Report { id, output } => {
            let inc = find(&db, &id)?;
            let d = inc.deadlines(regs, &c.roles, now);
            let md = report::markdown(&inc, &d, now);
            let (md_path, pdf_path) = report::write_files(&output, &id, &md)?;
            println!("{}\n{}", md_path.display(), pdf_path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
