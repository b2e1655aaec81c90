//! Fleet rules over synthetic events of several hosts, incidents with their deadlines, the
//! incidents database, and the drafts (Markdown, PDF read back by an independent PDF reader).

mod support;

use std::sync::Arc;

use rampart_event::{Alert, Device, EventId, Priority};
use rampart_fleet::deadline::format_utc;
use rampart_fleet::{report, Category, Correlator, DeadlineState, FleetConfig};
use support::*;

fn correlator(db: Option<std::path::PathBuf>) -> Correlator {
    Correlator::new(FleetConfig::new(db)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn password_guessing_across_three_hosts_is_one_incident_in_three_jurisdictions() {
    let mut c = correlator(None);
    let t0 = at("2026-03-06T10:00:00Z");
    let hosts = [
        device("web-1", "eu-de"),
        device("web-2", "in"),
        device("web-3", "us-ca"),
    ];
    let mut out = Vec::new();
    // Two hosts see failures from 203.0.113.9: not yet a campaign.
    c.process_event(&login(&hosts[0], 1, t0, false, "203.0.113.9"), &mut out);
    c.process_event(
        &login(&hosts[1], 2, t0 + 60_000_000_000, false, "203.0.113.9"),
        &mut out,
    );
    // Another source on the third host does not count for this one.
    c.process_event(
        &login(&hosts[2], 3, t0 + 61_000_000_000, false, "198.51.100.7"),
        &mut out,
    );
    assert!(
        out.is_empty(),
        "fired early: {:?}",
        out.first().map(|a| &a.output)
    );
    c.process_event(
        &login(&hosts[2], 4, t0 + 120_000_000_000, false, "203.0.113.9"),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let a = &out[0];
    assert_eq!(a.rule, "Fleet password guessing across hosts");
    assert!(
        a.output.contains("3 hosts") && a.output.contains("203.0.113.9"),
        "{}",
        a.output
    );
    let inc = &c.incidents()[0];
    assert_eq!(inc.category, Category::Intrusion);
    assert_eq!(
        inc.jurisdictions().into_iter().collect::<Vec<_>>(),
        vec!["eu-de", "in", "us-ca"]
    );
    assert_eq!(inc.hosts().len(), 3);
    // Not a personal-data breach: only CERT-In (any cyber incident in India) applies, 6 h
    // from the first alert.
    let now = t0 + 3_600_000_000_000;
    let d = inc.deadlines(c.regulations(), c.roles(), now);
    let keys: Vec<&str> = d.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, vec!["in-cert-in/report"]);
    assert_eq!(d[0].hosts, vec!["web-2".to_string()]);
    assert_eq!(d[0].due_ns, Some(a.time_ns + 6 * 3_600_000_000_000));
}

#[test]
fn brute_force_then_connections_to_other_hosts() {
    let mut c = correlator(None);
    let a = device("bastion", "sg");
    let t0 = at("2026-03-06T22:00:00Z");
    let s = 1_000_000_000u64;
    let mut out = Vec::new();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    for i in 0..5 {
        c.process_event(
            &login(&a, next(), t0 + i * s, false, "203.0.113.50"),
            &mut out,
        );
    }
    // Connections before the successful login do not complete the sequence.
    c.process_event(
        &connect(&a, next(), t0 + 6 * s, "10.0.0.21", 22, None),
        &mut out,
    );
    c.process_event(
        &login(&a, next(), t0 + 10 * s, true, "203.0.113.50"),
        &mut out,
    );
    // A public address is not a fleet host; port 443 is not a remote-service port.
    c.process_event(
        &connect(&a, next(), t0 + 20 * s, "93.184.216.34", 22, None),
        &mut out,
    );
    c.process_event(
        &connect(&a, next(), t0 + 21 * s, "10.0.0.22", 443, None),
        &mut out,
    );
    c.process_event(
        &connect(&a, next(), t0 + 30 * s, "10.0.0.21", 22, None),
        &mut out,
    );
    assert!(
        out.is_empty(),
        "fired early: {:?}",
        out.first().map(|a| &a.output)
    );
    c.process_event(
        &connect(&a, next(), t0 + 31 * s, "10.0.0.22", 22, None),
        &mut out,
    );
    assert_eq!(
        out.len(),
        1,
        "{:?}",
        out.iter().map(|a| &a.rule).collect::<Vec<_>>()
    );
    assert_eq!(
        out[0].rule,
        "Fleet brute force then connections to other hosts"
    );
    assert!(out[0].output.contains("from bastion"), "{}", out[0].output);
    assert_eq!(out[0].priority, Priority::Critical);
    let inc = &c.incidents()[0];
    assert!(inc
        .timeline
        .iter()
        .any(|e| e.summary.contains("10.0.0.22:22")));
}

#[test]
fn same_miner_on_two_hosts_and_a_new_country() {
    let mut cfg = FleetConfig::new(None);
    cfg.country_learning_ns = 3_600_000_000_000;
    let mut c = Correlator::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    let t0 = at("2026-03-02T08:00:00Z");
    let (h1, h2) = (device("node-a", "cn"), device("node-b", "hk"));
    let mut out = Vec::new();
    c.process_event(
        &connect(&h1, 1, t0, "198.51.100.1", 443, Some("DE")),
        &mut out,
    );
    c.process_event(&miner(&h1, 2, t0 + 10_000_000_000, "sha256:aaaa"), &mut out);
    // A different image digest is a different miner.
    c.process_event(&miner(&h2, 3, t0 + 20_000_000_000, "sha256:bbbb"), &mut out);
    assert!(out.is_empty());
    c.process_event(&miner(&h2, 4, t0 + 30_000_000_000, "sha256:aaaa"), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rule, "Fleet same crypto miner on several hosts");
    assert!(out[0].output.contains("sha256:aaaa"), "{}", out[0].output);
    // With executable hashes: the same binary under another name in another image is the
    // same miner; the same name with another hash is not.
    let hashed = |dev: &Arc<Device>, seq: u64, t: u64, name: &str, digest: &str, sha: &str| {
        let mut e = miner(dev, seq, t, digest);
        let mut p = e.process.as_deref().cloned().expect("process");
        p.name = name.into();
        p.exe_sha256 = Some(sha.into());
        e.process = Some(Arc::new(p));
        e
    };
    let (h3, h4) = (device("node-c", "sg"), device("node-d", "sg"));
    let t1 = t0 + 40_000_000_000;
    c.process_event(
        &hashed(&h3, 20, t1, "xmrig", "sha256:cccc", "ab12"),
        &mut out,
    );
    c.process_event(
        &hashed(&h4, 21, t1 + 1, "xmrig", "sha256:cccc", "cd34"),
        &mut out,
    );
    assert_eq!(out.len(), 1, "different executables are different miners");
    c.process_event(
        &hashed(&h4, 22, t1 + 2, "minerd", "sha256:dddd", "ab12"),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[1].rule,
        "Fleet same crypto miner executable on several hosts"
    );
    assert!(out[1].output.contains("sha256=ab12"), "{}", out[1].output);
    out.truncate(1);
    // A country first seen during learning raises nothing; one first seen after does, once.
    c.process_event(
        &connect(&h2, 5, t0 + 60_000_000_000, "198.51.100.2", 443, Some("US")),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let later = t0 + 2 * 3_600_000_000_000;
    c.process_event(
        &connect(&h1, 6, later, "192.0.2.77", 8443, Some("KP")),
        &mut out,
    );
    c.process_event(
        &connect(&h2, 7, later + 1, "192.0.2.78", 8443, Some("KP")),
        &mut out,
    );
    c.process_event(
        &connect(&h2, 8, later + 2, "198.51.100.3", 443, Some("DE")),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].rule, "Fleet new outbound country");
    assert!(out[1].output.contains("KP") && out[1].output.contains("node-a"));
    let mining = c
        .incidents()
        .iter()
        .find(|i| i.category == Category::CryptoMining)
        .expect("mining incident");
    assert_eq!(
        mining.hosts().into_iter().collect::<Vec<_>>(),
        vec!["node-a", "node-b"]
    );
    // Not serious enough for China's reporting measures unless Critical: the miner alert is
    // Critical, so the 4-hour report applies to the China host; HK needs the CI-operator role.
    let d = mining.deadlines(c.regulations(), c.roles(), later);
    let keys: Vec<&str> = d.iter().map(|d| d.key.as_str()).collect();
    assert!(
        keys.contains(&"cn-incident-reporting/operator-report"),
        "{keys:?}"
    );
    assert!(
        !keys.contains(&"cn-incident-reporting/ciio-report"),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.starts_with("hk-")), "{keys:?}");
}

fn breach_alert(host: &str, region: &str, seq: u64, t: u64) -> Alert {
    Alert {
        id: EventId::new(0xb0, seq),
        time_ns: t,
        rule: "Sensitive data sent out".into(),
        description: "exfiltration".into(),
        priority: Priority::Critical,
        tags: vec!["mitre_exfiltration".into(), "T1048".into()].into(),
        output: "customer table copied to 192.0.2.10".into(),
        output_fields: Default::default(),
        source: "syscall".into(),
        device: device(host, region),
        container: None,
        process: None,
        events: Vec::new(),
    }
}

#[test]
fn personal_data_breach_deadlines_and_alerts_over_a_weekend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("incidents.db");
    let mut c = correlator(Some(db.clone()));
    // Friday 2026-03-06 16:00 UTC: a breach on a host in Brazil and one in Germany.
    let t0 = at("2026-03-06T16:00:00Z");
    c.process_alert(&breach_alert("db-br", "br", 1, t0));
    c.process_alert(&breach_alert("db-br", "br", 2, t0 + 600_000_000_000));
    c.process_alert(&breach_alert("db-de", "eu-de", 3, t0 + 60_000_000_000));
    assert_eq!(
        c.incidents().len(),
        2,
        "different hosts, different incidents"
    );
    let br = c
        .incidents()
        .iter()
        .find(|i| i.hosts().contains("db-br"))
        .expect("br")
        .clone();
    assert_eq!(br.category, Category::DataBreach);
    assert!(br.personal_data_breach, "data-breach incidents are flagged");
    assert_eq!(br.alert_ids.len(), 2);
    let d = br.deadlines(c.regulations(), c.roles(), t0);
    let due = |key: &str| {
        d.iter()
            .find(|x| x.key == key)
            .unwrap_or_else(|| panic!("{key} missing"))
            .due_ns
    };
    // 3 business days from Friday 16:00: Mon, Tue, Wed -> Wednesday 2026-03-11 16:00.
    assert_eq!(due("br-lgpd/anpd"), Some(at("2026-03-11T16:00:00Z")));
    assert_eq!(
        due("br-lgpd/data-subjects"),
        Some(at("2026-03-11T16:00:00Z"))
    );
    // 20 business days from that: 2026-04-08 16:00.
    assert_eq!(due("br-lgpd/complement"), Some(at("2026-04-08T16:00:00Z")));
    assert!(
        d.iter().all(|x| !x.regime.starts_with("eu-")),
        "GDPR is for the German host's incident"
    );
    let de = c
        .incidents()
        .iter()
        .find(|i| i.hosts().contains("db-de"))
        .expect("de");
    let dd = de.deadlines(c.regulations(), c.roles(), t0);
    let gdpr = dd
        .iter()
        .find(|x| x.key == "eu-gdpr/authority")
        .expect("gdpr 72h");
    assert_eq!(gdpr.due_ns, Some(at("2026-03-09T16:01:00Z")));
    assert!(
        !dd.iter().any(|x| x.regime == "eu-nis2"),
        "NIS2 needs the nis2-entity role"
    );

    // Saturday 10:00: nothing near due yet (the GDPR 72 h is near due in its last 18 h).
    assert!(c.check_deadlines(at("2026-03-07T10:00:00Z")).is_empty());
    // Sunday 23:00: GDPR near due (17 h left).
    let a = c.check_deadlines(at("2026-03-08T23:00:00Z"));
    let rules: Vec<(&str, &str)> = a
        .iter()
        .map(|x| (x.rule.as_str(), &x.output_fields["deadline"]))
        .collect();
    assert_eq!(rules, vec![("Notification deadline near due", "authority")]);
    assert!(
        a[0].output.contains("2026-03-09 16:01 UTC"),
        "{}",
        a[0].output
    );
    // Raised once.
    assert!(c.check_deadlines(at("2026-03-08T23:30:00Z")).is_empty());
    // Monday 17:00: GDPR overdue; Wednesday 12:00: LGPD near due (span 5 days, last quarter).
    let a = c.check_deadlines(at("2026-03-09T17:00:00Z"));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule, "Notification deadline overdue");
    assert_eq!(a[0].priority, Priority::Critical);
    let a = c.check_deadlines(at("2026-03-11T12:00:00Z"));
    let mut got: Vec<&str> = a.iter().map(|x| &x.output_fields["deadline"]).collect();
    got.sort();
    assert_eq!(got, vec!["anpd", "data-subjects"]);
    c.flush().unwrap_or_else(|e| panic!("{e}"));
    drop(c);

    // The database has both incidents with their timelines; a new correlator carries on.
    let reopened = correlator(Some(db.clone()));
    assert_eq!(reopened.incidents().len(), 2);
    let br2 = reopened
        .incidents()
        .iter()
        .find(|i| i.id == br.id)
        .expect("br stored");
    assert_eq!(br2.alert_ids, br.alert_ids);
    assert!(br2.timeline.iter().any(|e| e
        .summary
        .contains("Notification deadline near due: br-lgpd anpd")));

    // The draft: Markdown with the regime's facts and dates; the PDF read back by lopdf.
    let now = at("2026-03-07T09:00:00Z");
    let dl = br2.deadlines(reopened.regulations(), reopened.roles(), now);
    let md = report::markdown(br2, &dl, now);
    assert!(
        md.contains("Autoridade Nacional") || md.contains("ANPD"),
        "{md}"
    );
    assert!(
        md.contains("Due: 2026-03-11 16:00 UTC (4d 07h 00m left)"),
        "{md}"
    );
    assert!(
        md.contains("- [ ] number of data subjects affected"),
        "{md}"
    );
    assert!(
        md.contains("Jurisdictions of the hosts involved: br"),
        "{md}"
    );
    assert!(md.contains("https://www.planalto.gov.br/"), "{md}");
    let pdf = report::pdf(&md);
    let doc = lopdf::Document::load_mem(&pdf).unwrap_or_else(|e| panic!("PDF unreadable: {e}"));
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    assert!(!pages.is_empty());
    let text = doc.extract_text(&pages).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains(&format!("Draft incident notification: {}", br.id)),
        "{text}"
    );
    assert!(text.contains("2026-03-11 16:00 UTC"), "{text}");
    assert!(text.contains(&format_utc(br.first_ns)), "{text}");
}

#[test]
fn response_actions_join_the_timeline_and_replays_are_ignored() {
    let mut c = correlator(None);
    let t0 = at("2026-03-02T08:00:00Z");
    let h = device("node-a", "jp");
    let mut out = Vec::new();
    let ev = miner(&h, 1, t0, "sha256:aaaa");
    c.process_event(&ev, &mut out);
    // An agent's own alert for that miner opens the incident.
    let alert = Alert {
        id: EventId::new(0xaa, 1),
        time_ns: t0,
        rule: "Crypto miner launched".into(),
        description: String::new(),
        priority: Priority::Critical,
        tags: vec!["mitre_impact".into(), "T1496".into()].into(),
        output: "xmrig".into(),
        output_fields: Default::default(),
        source: "syscall".into(),
        device: h.clone(),
        container: ev.container.clone(),
        process: ev.process.clone(),
        events: vec![ev.clone()],
    };
    let mut rec = rampart_fleet::alert_record(&alert, t0);
    rec.agent_id = "agt-1".into();
    c.process_records(&[rec.clone(), rec]);
    assert_eq!(c.stats().duplicates, 1);
    assert_eq!(c.stats().alerts_in, 1);
    let mut kill = rampart_event::Event::new(
        EventId::new(0xdd, 1),
        t0 + 2_000_000_000,
        rampart_event::EventKind::ResponseAction,
        h.clone(),
    );
    kill.container = ev.container.clone();
    kill.response = Some(rampart_event::ResponseInfo {
        action: "kill".into(),
        outcome: "done".into(),
        detail: Some("pid 4242".into()),
        playbook: None,
        incident: None,
        alert_id: Some(alert.id.clone()),
        rule: Some(alert.rule.clone()),
        ..Default::default()
    });
    c.process_event(&kill, &mut out);
    let inc = &c.incidents()[0];
    assert_eq!(inc.category, Category::CryptoMining);
    let kinds: Vec<String> = inc
        .timeline
        .iter()
        .map(|e| format!("{:?}", e.kind))
        .collect();
    assert_eq!(kinds, vec!["Event", "Alert", "Response"]);
    assert!(inc.timeline[2].summary.contains("kill -> done (pid 4242)"));
    // Japan (APPI) applies only to personal-data breaches; flag it and the wrongful-purpose
    // final report (60 days) applies, not the 30-day one.
    let mut flagged = inc.clone();
    flagged.personal_data_breach = true;
    let d = flagged.deadlines(c.regulations(), c.roles(), t0);
    let keys: Vec<&str> = d.iter().map(|x| x.key.as_str()).collect();
    assert!(
        keys.contains(&"jp-appi/final-wrongful") && !keys.contains(&"jp-appi/final"),
        "{keys:?}"
    );
    assert_eq!(
        d.iter()
            .find(|x| x.key == "jp-appi/preliminary")
            .map(|x| x.state),
        Some(DeadlineState::Pending)
    );
    let _ = Arc::strong_count(&h);
}

#[test]
fn marks_recorded_by_a_person_change_deadlines_in_a_running_correlator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("incidents.db");
    let mut c = correlator(Some(db.clone()));
    let t0 = at("2026-03-02T09:00:00Z");
    let mut a = breach_alert("db-uk", "uk", 1, t0);
    // An intrusion alert: not flagged as a personal-data breach, so UK GDPR does not apply.
    a.tags = vec!["mitre_persistence".into()].into();
    c.process_alert(&a);
    c.flush().unwrap_or_else(|e| panic!("{e}"));
    let id = c.incidents()[0].id.clone();
    assert!(c.check_deadlines(at("2026-03-06T00:00:00Z")).is_empty());

    // Someone else (the CLI) records that personal data was breached, awareness an hour after
    // the alert, and the ICO notification submitted in time.
    let mut other = rampart_fleet::IncidentDb::open(&db).unwrap_or_else(|e| panic!("{e}"));
    let set = |db: &mut rampart_fleet::IncidentDb, m| {
        db.set_mark(&id, &m, t0).unwrap_or_else(|e| panic!("{e}"))
    };
    set(&mut other, rampart_fleet::Mark::PersonalDataBreach(true));
    set(
        &mut other,
        rampart_fleet::Mark::AwareAt(t0 + 3_600_000_000_000),
    );
    let stored = other
        .get(&id)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("stored");
    assert!(stored.personal_data_breach);
    let d = stored.deadlines(c.regulations(), c.roles(), t0);
    let ico = d
        .iter()
        .find(|x| x.key == "uk-gdpr/authority")
        .expect("ICO deadline");
    assert_eq!(
        ico.due_ns,
        Some(at("2026-03-05T10:00:00Z")),
        "72 h from the recorded awareness"
    );

    // The running correlator sees the flag at its next check: overdue now.
    let alerts = c.check_deadlines(at("2026-03-05T11:00:00Z"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(&alerts[0].output_fields["regime"], "uk-gdpr");
    // A second incident's submission recorded in time: no alert for it.
    let mut b = breach_alert("db-uk2", "uk", 2, t0);
    b.tags = vec!["mitre_exfiltration".into()].into();
    c.process_alert(&b);
    c.flush().unwrap_or_else(|e| panic!("{e}"));
    let id2 = c.incidents()[1].id.clone();
    other
        .set_mark(
            &id2,
            &rampart_fleet::Mark::Submitted("uk-gdpr/authority".into(), t0 + 1),
            t0,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let later = c.check_deadlines(at("2026-03-06T11:00:00Z"));
    assert!(
        later.is_empty(),
        "{:?}",
        later.iter().map(|a| &a.output).collect::<Vec<_>>()
    );
    let done = other
        .get(&id2)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("stored");
    let st = done.deadlines(c.regulations(), c.roles(), at("2026-03-06T11:00:00Z"));
    assert_eq!(
        st.iter()
            .find(|x| x.key == "uk-gdpr/authority")
            .map(|x| x.state),
        Some(DeadlineState::Done)
    );
}

/// An alert of `rule` at `priority` on `host` (the breach alert's shape with another rule,
/// priority and tags, so it is grouped as an intrusion).
fn alert_of(host: &str, region: &str, seq: u64, t: u64, rule: &str, priority: Priority) -> Alert {
    let mut a = breach_alert(host, region, seq, t);
    a.id = EventId::new(0xc0, seq);
    a.rule = rule.into();
    a.priority = priority;
    a.tags = vec!["container".into(), "T1059.004".into()].into();
    a.output = format!("{rule} on {host}");
    a
}

/// Issue: any alert opened an incident and started legal clocks (one WARNING on an India host
/// started CERT-In's 6 hours). A WARNING opens nothing; an ERROR opens a provisional incident
/// whose deadlines run only once a person or a high-confidence alert confirms it, from that
/// awareness; every incident says why it was opened and confirmed.
#[test]
fn only_policy_alerts_open_incidents_and_deadlines_wait_for_confirmation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("incidents.db");
    let mut c = correlator(Some(db_path.clone()));
    let t0 = at("2026-03-06T10:00:00Z");
    let hour = 3_600_000_000_000u64;

    c.process_alert(&alert_of(
        "web-in",
        "in",
        1,
        t0,
        "Shell spawned in container",
        Priority::Warning,
    ));
    assert!(c.incidents().is_empty(), "a WARNING is not an incident");

    c.process_alert(&alert_of(
        "web-in",
        "in",
        2,
        t0,
        "Unexpected outbound connection",
        Priority::Error,
    ));
    assert_eq!(c.incidents().len(), 1);
    let inc = c.incidents()[0].clone();
    assert!(inc.is_provisional());
    assert!(
        inc.opened_because
            .contains("Unexpected outbound connection")
            && inc.opened_because.contains("ERROR"),
        "{}",
        inc.opened_because
    );
    let d = inc.deadlines(c.regulations(), c.roles(), t0 + 7 * hour);
    let cert_in = d
        .iter()
        .find(|x| x.key == "in-cert-in/report")
        .expect("CERT-In applies to the India host");
    assert_eq!(cert_in.state, DeadlineState::Provisional);
    assert!(
        c.check_deadlines(t0 + 7 * hour).is_empty(),
        "a provisional incident raises no deadline alert"
    );
    // The WARNING of the same host later joins the open incident as evidence.
    c.process_alert(&alert_of(
        "web-in",
        "in",
        3,
        t0 + hour,
        "Shell spawned in container",
        Priority::Warning,
    ));
    assert_eq!(c.incidents().len(), 1);
    assert_eq!(c.incidents()[0].alert_ids.len(), 2);

    // A person confirms two hours in: CERT-In's six hours run from then.
    let confirmed = t0 + 2 * hour;
    let mut db = rampart_fleet::IncidentDb::open(&db_path).expect("db");
    db.set_mark(
        &inc.id,
        &rampart_fleet::Mark::ConfirmedAt(confirmed),
        confirmed,
    )
    .expect("mark");
    assert!(
        c.check_deadlines(confirmed + hour).is_empty(),
        "not near due yet"
    );
    let inc = c.incidents()[0].clone();
    assert!(!inc.is_provisional());
    assert!(inc
        .confirmed_by
        .as_deref()
        .is_some_and(|b| b.contains("person")));
    let d = inc.deadlines(c.regulations(), c.roles(), confirmed);
    let cert_in = d.iter().find(|x| x.key == "in-cert-in/report").expect("d");
    assert_eq!(cert_in.from_ns, confirmed, "the clock starts at awareness");
    assert_eq!(cert_in.due_ns, Some(confirmed + 6 * hour));
    let overdue = c.check_deadlines(confirmed + 7 * hour);
    assert!(
        overdue
            .iter()
            .any(|a| a.output.contains("in-cert-in report")),
        "{:?}",
        overdue.iter().map(|a| &a.output).collect::<Vec<_>>()
    );

    // A CRITICAL alert on another host opens an incident confirmed by that alert.
    c.process_alert(&alert_of(
        "miner-in",
        "in",
        4,
        t0,
        "Crypto miner launched",
        Priority::Critical,
    ));
    let mine = c
        .incidents()
        .iter()
        .find(|i| i.hosts().contains("miner-in"))
        .expect("incident");
    assert!(!mine.is_provisional());
    assert_eq!(mine.confirmed_ns, Some(t0));
    assert!(
        mine.confirmed_by
            .as_deref()
            .is_some_and(|b| b.contains("CRITICAL")),
        "{:?}",
        mine.confirmed_by
    );
}
