//! `rampart incident`: the incidents the fleet correlator recorded (the server's
//! `incidents.db`, or with `control_store:` the fleet's shared control store), their
//! notification deadlines, and draft notifications.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rampart_fleet::{
    report, Incident, IncidentDb, IncidentSettings, IncidentSource, Mark, Regulation,
};

use super::BadInput;

#[derive(Debug, Args)]
pub struct IncidentArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: IncidentCommand,
}

#[derive(Debug, Args)]
struct Common {
    /// The server configuration: its `data_dir` and `fleet:` roles and regulations are used
    /// unless the options below are given (default /etc/rampart/server.yaml when it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The server's data directory (holds incidents.db; default: the configuration's, else
    /// /var/lib/rampart/server).
    #[arg(long, global = true, env = "RAMPART_SERVER_DATA")]
    data_dir: Option<PathBuf>,
    /// Regulation files to use instead of the configuration's or the ones shipped with Rampart.
    #[arg(long, global = true)]
    regulations: Option<PathBuf>,
    /// A role your organisation has (nis2-entity, cn-ciio, hk-ci-operator); repeatable.
    /// Default: `fleet.roles` of the configuration.
    #[arg(long = "role", global = true)]
    roles: Vec<String>,
}

/// The options, else the server configuration, else defaults.
fn settings(c: &Common) -> anyhow::Result<IncidentSettings> {
    let default = std::path::Path::new(crate::cmd::server::DEFAULT_CONFIG);
    let cfg = match &c.config {
        Some(p) => Some(crate::cmd::server::load_config(p)?),
        None if default.exists() => Some(crate::cmd::server::load_config(default)?),
        None => None,
    };
    let (dir, regs) = (c.data_dir.clone(), c.regulations.clone());
    // A regulations directory is the user's input; the built-in set cannot be wrong.
    let from_dir = regs.is_some()
        || cfg
            .as_ref()
            .is_some_and(|s| s.fleet.regulations_dir.is_some());
    IncidentSettings::resolve(cfg, dir, regs, c.roles.clone()).map_err(|e| match e {
        e if from_dir => BadInput(e.to_string()).into(),
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

#[derive(Debug, Args)]
struct MarkArgs {
    id: String,
    /// Whether personal data was breached (yes or no).
    #[arg(long, value_parser = ["yes", "no"])]
    personal_data_breach: Option<String>,
    /// Whether an attack caused it (yes or no).
    #[arg(long, value_parser = ["yes", "no"])]
    malicious: Option<String>,
    /// When your organisation became aware (2026-03-06T16:00:00Z, or `now`).
    #[arg(long)]
    aware_at: Option<String>,
    /// When the breach was determined to be notifiable (Singapore, Australia).
    #[arg(long)]
    determined_at: Option<String>,
    /// Confirm the incident (2026-03-06T16:00:00Z, or `now`): its deadlines stop being
    /// provisional and count from awareness (the confirmation unless --aware-at says otherwise).
    #[arg(long)]
    confirm: Option<String>,
    /// A notification was submitted: REGIME/DEADLINE, optionally @TIME (default now); repeatable.
    #[arg(long)]
    submitted: Vec<String>,
    /// Close the incident (it takes no more alerts).
    #[arg(long)]
    close: bool,
}

fn marks(args: &MarkArgs, regs: &[Regulation]) -> anyhow::Result<Vec<Mark>> {
    let req = rampart_fleet::MarkRequest {
        personal_data_breach: args.personal_data_breach.as_ref().map(|v| v == "yes"),
        malicious: args.malicious.as_ref().map(|v| v == "yes"),
        aware_at: args.aware_at.clone(),
        determined_at: args.determined_at.clone(),
        confirm: args.confirm.clone(),
        submitted: args.submitted.clone(),
        close: args.close,
    };
    rampart_fleet::marks_now(&req, regs).map_err(|e| BadInput(e.to_string()).into())
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
            db.set_marks(&inc.id, &marks(&m, regs)?, now)?;
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
