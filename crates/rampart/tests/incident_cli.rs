//! `rampart incident list|show|mark|report` on a real incidents database written by the fleet
//! correlator.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use rampart_event::{Alert, Device, EventId, Priority};
use rampart_fleet::{Correlator, FleetConfig};

fn rampart(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("incident")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running rampart: {e}"))
}

mod support;
use support::text;

#[test]
fn list_show_mark_and_report_an_incident() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    // Friday 2026-03-06 16:00 UTC: data sent out from a host in Brazil.
    let t0 = 1_772_812_800_000_000_000u64;
    {
        let mut c = Correlator::new(FleetConfig::new(Some(rampart_fleet::db_path(data))))
            .unwrap_or_else(|e| panic!("{e}"));
        c.process_alert(&Alert {
            id: EventId::new(0xb0, 1),
            time_ns: t0,
            rule: "Sensitive data sent out".into(),
            description: String::new(),
            priority: Priority::Critical,
            tags: vec!["mitre_exfiltration".into()].into(),
            output: "customer table copied to 192.0.2.10".into(),
            output_fields: Default::default(),
            source: "syscall".into(),
            device: Arc::new(Device {
                hostname: "db-br".into(),
                region: Some("br".into()),
            }),
            container: None,
            process: None,
            events: Vec::new(),
        });
        c.flush().unwrap_or_else(|e| panic!("{e}"));
    }
    let id = {
        let o = rampart(data, &["list", "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
        assert_eq!(v["category"], "data-breach");
        assert_eq!(v["jurisdictions"][0], "br");
        v["id"].as_str().expect("id").to_string()
    };
    let o = rampart(data, &["list"]);
    assert!(
        text(&o).contains(&id) && text(&o).contains("data-breach"),
        "{}",
        text(&o)
    );

    let o = rampart(data, &["show", &id]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("OVERDUE    br-lgpd/anpd") && t.contains("2026-03-11 16:00 UTC"),
        "{t}"
    );

    let o = rampart(
        data,
        &[
            "mark",
            &id,
            "--submitted",
            "br-lgpd/anpd@2026-03-09T10:00:00Z",
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("done       br-lgpd/anpd"), "{t}");
    // The complement counts 20 business days from the recorded submission: 2026-04-06 10:00.
    assert!(
        t.contains("br-lgpd/complement") && t.contains("2026-04-06 10:00 UTC"),
        "{t}"
    );

    let o = rampart(data, &["mark", &id, "--submitted", "br-lgpd/nonsense"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no such REGIME/DEADLINE"), "{}", text(&o));
    let o = rampart(data, &["show", "INC-nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let out = dir.path().join("drafts");
    let o = rampart(data, &["report", &id, "-o", out.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(out.join(format!("{id}.md"))).expect("markdown");
    assert!(md.contains("Submitted: 2026-03-09 10:00 UTC"), "{md}");
    let pdf = std::fs::read(out.join(format!("{id}.pdf"))).expect("pdf");
    assert!(pdf.starts_with(b"%PDF-"));

    // With --config instead of --data-dir: the server's data directory and its fleet
    // regulations directory are used; a broken regulation file there is named.
    let regs = dir.path().join("regs");
    std::fs::create_dir_all(&regs).expect("regs dir");
    std::fs::write(regs.join("broken.yaml"), "regime: [unclosed\n").expect("write");
    let config = dir.path().join("server.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nfleet:\n  regulations_dir: {}\n",
            data.display(),
            regs.display()
        ),
    )
    .expect("config");
    let with_config = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["incident", "--config"])
            .arg(&config)
            .args(args)
            .env_remove("RAMPART_SERVER_DATA")
            .output()
            .unwrap_or_else(|e| panic!("running rampart: {e}"))
    };
    let o = with_config(&["list"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("broken.yaml"), "{}", text(&o));
    std::fs::remove_file(regs.join("broken.yaml")).expect("rm");
    for f in std::fs::read_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/../../regulations")
        .expect("shipped regulations")
    {
        let f = f.expect("entry").path();
        if f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("br"))
        {
            std::fs::copy(&f, regs.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let o = with_config(&["show", &id]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("br-lgpd/anpd"), "{}", text(&o));
}

#[test]
fn rampart_server_runs_the_fleet_correlator() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("server.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\nregions:\n  in:\n    retention_days: 90\n  eu-de:\n    retention_days: 30\n",
            data.display()
        ),
    )
    .expect("config");
    let log = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["server", "--config", config.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn rampart server");
    let stdout = child.stdout.take().expect("stdout");
    let started = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("listening "));
    let db_exists = rampart_fleet::db_path(&data).exists();
    let list = rampart(&data, &["list"]);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(
        started,
        "server did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(db_exists, "the server opened no incidents database");
    // CERT-In's 180 days of logs: the 90-day policy for India is reported, Germany's is not.
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains(
            "regions.in.retention_days is 90 days, shorter than the 180 days in-cert-in requires"
        ),
        "{log_text}"
    );
    assert!(!log_text.contains("regions.eu-de"), "{log_text}");
    assert!(list.status.success(), "{}", text(&list));
    assert!(text(&list).starts_with("ID "), "{}", text(&list));
}
