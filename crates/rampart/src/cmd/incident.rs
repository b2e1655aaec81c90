//! `rampart incident`: the incidents the fleet correlator recorded (the server's
//! `incidents.db`), their notification deadlines, and draft notifications.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_fleet::deadline::{countdown, format_utc};
use rampart_fleet::{report, AppliedDeadline, Incident, IncidentDb, Mark, Regulation};

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

/// What the command works with: the options, else the server configuration, else defaults.
struct Settings {
    data_dir: PathBuf,
    regulations: Vec<Regulation>,
    roles: Vec<String>,
}

impl Settings {
    fn resolve(c: &Common) -> anyhow::Result<Settings> {
        let default = std::path::Path::new(crate::cmd::server::DEFAULT_CONFIG);
        let cfg = match &c.config {
            Some(p) => Some(crate::cmd::server::load_config(p)?),
            None if default.exists() => Some(crate::cmd::server::load_config(default)?),
            None => None,
        };
        let data_dir = c
            .data_dir
            .clone()
            .or_else(|| cfg.as_ref().map(|s| s.data_dir.clone()))
            .unwrap_or_else(|| PathBuf::from("/var/lib/rampart/server"));
        let regs_dir = c.regulations.clone().or_else(|| {
            cfg.as_ref()
                .and_then(|s| s.fleet.regulations_dir.as_ref().map(|d| s.resolve(d)))
        });
        let regulations = match regs_dir {
            Some(dir) => rampart_fleet::regulation::load_dir(&dir)
                .map_err(|e| anyhow::Error::new(BadInput(e.to_string())))?,
            None => rampart_fleet::regulation::builtin()?,
        };
        let roles = if c.roles.is_empty() {
            cfg.map(|s| s.fleet.roles).unwrap_or_default()
        } else {
            c.roles.clone()
        };
        Ok(Settings {
            data_dir,
            regulations,
            roles,
        })
    }
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

fn parse_when(s: &str, what: &str) -> anyhow::Result<u64> {
    if s == "now" {
        return Ok(now_ns());
    }
    rampart_fleet::deadline::parse_rfc3339(s).ok_or_else(|| {
        BadInput(format!(
            "{what} {s:?}: expected YYYY-MM-DDTHH:MM:SSZ (UTC) or now"
        ))
        .into()
    })
}

fn marks(args: &MarkArgs, regs: &[Regulation]) -> anyhow::Result<Vec<Mark>> {
    let mut out = Vec::new();
    if let Some(v) = &args.personal_data_breach {
        out.push(Mark::PersonalDataBreach(v == "yes"));
    }
    if let Some(v) = &args.malicious {
        out.push(Mark::Malicious(v == "yes"));
    }
    if let Some(t) = &args.aware_at {
        out.push(Mark::AwareAt(parse_when(t, "--aware-at")?));
    }
    if let Some(t) = &args.determined_at {
        out.push(Mark::DeterminedAt(parse_when(t, "--determined-at")?));
    }
    if let Some(t) = &args.confirm {
        out.push(Mark::ConfirmedAt(parse_when(t, "--confirm")?));
    }
    for s in &args.submitted {
        let (key, when) = match s.split_once('@') {
            Some((k, t)) => (k, parse_when(t, "--submitted")?),
            None => (s.as_str(), now_ns()),
        };
        let known = key.split_once('/').is_some_and(|(r, d)| {
            regs.iter()
                .any(|x| x.regime == r && x.deadlines.iter().any(|y| y.id == d))
        });
        if !known {
            return Err(BadInput(format!(
                "--submitted {key:?}: no such REGIME/DEADLINE (see rampart incident show)"
            ))
            .into());
        }
        out.push(Mark::Submitted(key.to_string(), when));
    }
    if args.close {
        out.push(Mark::Closed(true));
    }
    if out.is_empty() {
        return Err(BadInput("nothing to record: give at least one option".into()).into());
    }
    Ok(out)
}

use rampart_event::now_ns;

fn open(c: &Settings) -> anyhow::Result<IncidentDb> {
    let path = rampart_fleet::db_path(&c.data_dir);
    if !path.exists() {
        return Err(BadInput(format!(
            "{}: no incidents database (is this the server's data directory? see --data-dir)",
            path.display()
        ))
        .into());
    }
    Ok(IncidentDb::open(&path)?)
}

fn find(db: &IncidentDb, id: &str) -> anyhow::Result<Incident> {
    db.get(id)?
        .ok_or_else(|| BadInput(format!("no incident {id:?} (see rampart incident list)")).into())
}

fn deadline_line(d: &AppliedDeadline, now: u64) -> String {
    let due = match d.due_ns {
        Some(t) => format!("{} ({})", format_utc(t), countdown(t, now)),
        None => "without undue delay".into(),
    };
    format!(
        "{:<10} {:<44} {} [{}]",
        d.state.as_str(),
        format!("{}/{}", d.regime, d.deadline),
        due,
        d.period
    )
}

pub fn run(args: IncidentArgs) -> anyhow::Result<ExitCode> {
    let c = &Settings::resolve(&args.common)?;
    let regs = &c.regulations;
    let mut db = open(c)?;
    let now = now_ns();
    match args.command {
        IncidentCommand::List { json } => {
            let mut all = db.all()?;
            all.reverse();
            if !json {
                println!(
                    "{:<24} {:<18} {:<9} {:<20} {:<6} {:<16} NEXT DEADLINE",
                    "ID", "CATEGORY", "PRIORITY", "FIRST SEEN", "HOSTS", "JURISDICTIONS"
                );
            }
            for inc in &all {
                let d = inc.deadlines(regs, &c.roles, now);
                let next = d
                    .iter()
                    .find(|x| x.due_ns.is_some() && x.state != rampart_fleet::DeadlineState::Done);
                if json {
                    let v = serde_json::json!({
                        "id": inc.id, "category": inc.category, "priority": inc.priority,
                        "first_ns": inc.first_ns, "last_ns": inc.last_ns,
                        "hosts": inc.hosts(), "jurisdictions": inc.jurisdictions(),
                        "personal_data_breach": inc.personal_data_breach,
                        "provisional": inc.is_provisional(),
                        "opened_because": inc.opened_because,
                        "confirmed_by": inc.confirmed_by,
                        "deadlines": d,
                    });
                    println!("{v}");
                } else {
                    println!(
                        "{:<24} {:<18} {:<9} {:<20} {:<6} {:<16} {}",
                        inc.id,
                        inc.category.as_str(),
                        inc.priority.as_str(),
                        format_utc(inc.first_ns),
                        inc.hosts().len(),
                        inc.jurisdictions()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(","),
                        next.map(|n| format!(
                            "{} {}",
                            n.key,
                            countdown(n.due_ns.unwrap_or(now), now)
                        ))
                        .unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        IncidentCommand::Show { id, json } => {
            let inc = find(&db, &id)?;
            let d = inc.deadlines(regs, &c.roles, now);
            if json {
                let v = serde_json::json!({"incident": inc, "deadlines": d});
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}  {}  {}", inc.id, inc.category.as_str(), inc.priority);
            println!("title:        {}", inc.title);
            println!(
                "seen:         {} .. {}",
                format_utc(inc.first_ns),
                format_utc(inc.last_ns)
            );
            for s in &inc.subjects {
                let region = inc.regions.get(&s.host).map(String::as_str).unwrap_or("");
                if s.container.is_empty() {
                    println!("host:         {} ({region})", s.host);
                } else {
                    println!("container:    {} on {} ({region})", s.container, s.host);
                }
            }
            println!(
                "rules:        {}",
                inc.rules.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            println!("opened:       {}", inc.opened_because);
            match (&inc.confirmed_ns, &inc.confirmed_by) {
                (Some(t), by) => println!(
                    "confirmed:    {} by {}",
                    format_utc(*t),
                    by.as_deref().unwrap_or("-")
                ),
                (None, _) => println!(
                    "confirmed:    no (provisional: deadlines do not run until a person confirms it, rampart incident mark {} --confirm now, or a high-confidence alert does)",
                    inc.id
                ),
            }
            println!(
                "personal-data breach: {}",
                if inc.personal_data_breach {
                    "yes"
                } else {
                    "no"
                }
            );
            println!("\ndeadlines:");
            if d.is_empty() {
                println!("  none apply");
            }
            for x in &d {
                println!("  {}", deadline_line(x, now));
            }
            println!("\ntimeline:");
            for e in &inc.timeline {
                println!(
                    "  {} {:<8} {:<12} {}",
                    format_utc(e.time_ns),
                    format!("{:?}", e.kind).to_lowercase(),
                    e.host,
                    e.summary
                );
            }
        }
        IncidentCommand::Mark(m) => {
            let inc = find(&db, &m.id)?;
            for mark in marks(&m, regs)? {
                db.set_mark(&inc.id, &mark, now)?;
            }
            let inc = find(&db, &m.id)?;
            for x in inc.deadlines(regs, &c.roles, now) {
                println!("{}", deadline_line(&x, now));
            }
        }
        IncidentCommand::Report { id, output } => {
            let inc = find(&db, &id)?;
            let d = inc.deadlines(regs, &c.roles, now);
            let md = report::markdown(&inc, &d, now);
            std::fs::create_dir_all(&output)
                .with_context(|| format!("creating {}", output.display()))?;
            let md_path = output.join(format!("{id}.md"));
            let pdf_path = output.join(format!("{id}.pdf"));
            std::fs::write(&md_path, &md)
                .with_context(|| format!("writing {}", md_path.display()))?;
            std::fs::write(&pdf_path, report::pdf(&md))
                .with_context(|| format!("writing {}", pdf_path.display()))?;
            println!("{}\n{}", md_path.display(), pdf_path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
