#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

use std::sync::Mutex as StdMutex;

use super::*;

/// A sink that records what it was given.
struct Record(Arc<StdMutex<Vec<Notice>>>);

impl Sink for Record {
    fn deliver<'a>(&'a mut self, n: &'a Notice) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.0.lock().unwrap().push(n.clone());
            Ok(())
        })
    }
}

fn info(rule: &str, host: &str, priority: Priority, text: &str) -> AlertInfo {
    AlertInfo {
        id: "id".into(),
        time_ns: 1_700_000_000_000_000_000,
        rule: rule.into(),
        priority,
        text: text.into(),
        host: host.into(),
        container: String::new(),
        image: String::new(),
        tags: vec![],
        incident: None,
    }
}

async fn wait_for(got: &Arc<StdMutex<Vec<Notice>>>, n: usize) {
    for _ in 0..500 {
        if got.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_storm_is_at_most_max_messages_plus_one_summary_and_every_alert_is_counted() {
    let got = Arc::new(StdMutex::new(Vec::new()));
    let group = GroupConfig {
        window: "1h".into(),
        max_messages: 3,
        ..GroupConfig::default()
    };
    let n = Notifier::start(
        "t".into(),
        Box::new(Record(got.clone())),
        &group,
        &DeliveryConfig::default(),
        Some("https://rampart.example.com:8443/"),
    )
    .unwrap();
    // 1000 alerts over five (rule, host) groups.
    for i in 0..1000u32 {
        let rule = format!("rule {}", i % 5);
        n.submit(info(&rule, "vps1", Priority::Warning, "x"));
    }
    n.flush();
    wait_for(&got, 4).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 4, "3 messages and one summary: {got:#?}");
    let total: u64 = got.iter().map(|m| m.count).sum();
    assert_eq!(
        total, 1000,
        "every alert is in a message or a summary count"
    );
    let summary = &got[3];
    assert_eq!(summary.count, 997);
    assert!(
        summary
            .text
            .contains("and 200 more alerts of rule rule 3 on host vps1"),
        "{}",
        summary.text
    );
    assert!(
        summary
            .text
            .contains("and 199 more alerts of rule rule 0 on host vps1"),
        "{}",
        summary.text
    );
    assert_eq!(
        got[0].link.as_deref(),
        Some("https://rampart.example.com:8443/ui/#/search?kind=alert&rule=rule%200&host=vps1")
    );
    let c = n.counters();
    assert_eq!(c.grouped.load(Ordering::Relaxed), 997);
    assert_eq!(c.sent.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_never_blocks() {
    struct Hang;
    impl Sink for Hang {
        fn deliver<'a>(&'a mut self, _n: &'a Notice) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(std::future::pending())
        }
    }
    let group = GroupConfig {
        by: vec![GroupKey::Rule],
        window: "1h".into(),
        max_messages: 1000,
    };
    let delivery = DeliveryConfig {
        queue: 5,
        timeout: "1h".into(),
        ..DeliveryConfig::default()
    };
    let n = Notifier::start("t".into(), Box::new(Hang), &group, &delivery, None).unwrap();
    let started = Instant::now();
    for i in 0..100 {
        n.submit(info(&format!("r{i}"), "h", Priority::Critical, "x"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "submit never waits"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = n.counters();
    // One taken by the hanging delivery, five queued, the rest dropped and counted.
    let full = c.queue_full.load(Ordering::Relaxed);
    assert!((94..=95).contains(&full), "{full}");
    assert_eq!(c.alerts_lost.load(Ordering::Relaxed), full);
    let mut w = PromWriter::new();
    write_metrics(&mut w, &[c.snapshot("t")]);
    let text = w.finish();
    assert!(
        text.contains(&format!(
            "rampart_notify_dropped_total{{notifier=\"t\",reason=\"queue_full\"}} {full}"
        )),
        "{text}"
    );
}

#[test]
fn slack_payload_escapes_mentions_and_links() {
    let a = info(
        "Terminal shell",
        "web-1",
        Priority::Critical,
        "sh -c 'echo <!channel> <https://evil.example|click> & ```break```'",
    );
    let n = a.notice(Some("https://r.example.com"));
    let v = n.slack();
    let all = v.to_string();
    assert!(!all.contains("<!channel>"), "{all}");
    assert!(!all.contains("<https://evil"), "{all}");
    assert!(all.contains("&lt;!channel&gt;"), "{all}");
    let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(section.starts_with("```") && section.ends_with("```"));
    assert_eq!(
        section.matches("```").count(),
        2,
        "the code block cannot be closed early: {section}"
    );
    assert_eq!(v["text"], "Critical: Terminal shell on web-1");
    let ctx = v["blocks"][3]["elements"][0]["text"].as_str().unwrap();
    assert!(ctx.starts_with("<https://r.example.com/ui/#/search?kind=alert&amp;rule=Terminal%20shell&amp;host=web-1|"), "{ctx}");
}

#[test]
fn mattermost_payload_cannot_mention_or_break_its_code_fence() {
    let a = info(
        "r",
        "h",
        Priority::Warning,
        "@channel ````\n[x](https://evil) @all",
    );
    let v = a.notice(None).mattermost();
    let t = v["text"].as_str().unwrap();
    assert!(!t.contains("@channel") && !t.contains("@all"), "{t}");
    // The fence is longer than the longest backtick run inside.
    assert!(t.contains("`````\n"), "{t}");
    assert!(v.get("blocks").is_none());
}

#[test]
fn teams_payload_is_an_adaptive_card() {
    let mut a = info(
        "Miner",
        "vps1",
        Priority::Critical,
        "xmrig [x](https://evil)",
    );
    a.incident = Some("INC-1/2".into());
    let v = a.notice(Some("https://r.example.com")).teams();
    assert_eq!(v["type"], "message");
    let att = &v["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(
        att["content"]["actions"][0]["url"],
        "https://r.example.com/ui/#/incidents/INC-1%2F2"
    );
    let text = att["content"]["body"][1]["text"].as_str().unwrap();
    assert!(text.contains("\\[x\\]\\(https://evil\\)"), "{text}");
}

#[test]
fn mail_subject_cannot_carry_a_header() {
    let a = info("r\r\nBcc: victim@example.com", "h\n", Priority::Error, "x");
    let s = a.notice(None).email_subject("[Rampart]");
    assert!(!s.contains('\r') && !s.contains('\n'), "{s:?}");
    assert!(s.starts_with("[Rampart] Error: r  Bcc"), "{s:?}");
}

#[test]
fn secrets_must_be_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("url");
    std::fs::write(&p, "https://hooks.example.com/secret\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = read_secret("o", "url", Some(&p), None).unwrap_err();
    assert!(e.message.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        read_secret("o", "url", Some(&p), None).unwrap(),
        "https://hooks.example.com/secret"
    );
    assert!(read_secret("o", "url", None, None).is_err());
    assert!(read_secret("o", "url", Some(&p), Some("X")).is_err());
}

/// Made-up group names (a compromised agent can invent any number of hosts) cannot grow a
/// window without bound: past MAX_GROUPS they are counted together, and still counted.
#[tokio::test]
async fn endless_new_groups_are_bounded_and_still_counted() {
    let got = Arc::new(StdMutex::new(Vec::new()));
    let group = GroupConfig {
        window: "1h".into(),
        max_messages: 1,
        ..GroupConfig::default()
    };
    let n = Notifier::start(
        "t".into(),
        Box::new(Record(got.clone())),
        &group,
        &DeliveryConfig::default(),
        None,
    )
    .unwrap();
    let total = MAX_GROUPS as u64 + 5_000;
    let long = "h".repeat(100_000);
    for i in 0..total {
        n.submit(info("r", &format!("{i}-{long}"), Priority::Warning, "x"));
    }
    {
        let st = n.shared.state.lock().unwrap();
        assert_eq!(st.groups.len(), MAX_GROUPS);
        assert!(st.groups.values().all(|g| g.host.len() <= MAX_NAME));
        assert_eq!(st.other, 5_000);
    }
    n.flush();
    wait_for(&got, 2).await;
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].count + got[1].count, total);
    assert!(
        got[1]
            .text
            .contains("and 5000 more alerts of further groups"),
        "{}",
        &got[1].text[got[1].text.len().saturating_sub(300)..]
    );
}

#[test]
fn huge_alert_text_makes_bounded_messages() {
    let mut a = info(
        "r",
        &"h".repeat(100_000),
        Priority::Critical,
        &"<&>`@".repeat(200_000),
    );
    a.image = "i".repeat(100_000);
    let n = a.notice(Some("https://r.example.com"));
    let slack = n.slack();
    assert!(
        slack["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 3000
    );
    assert!(n.mattermost().to_string().len() < 50_000);
    assert!(n.teams().to_string().len() < 50_000);
    assert!(n.email_body().len() < 50_000);
}
