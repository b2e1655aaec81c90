//! Notifier outputs against real receivers on loopback: a webhook receiver started by the test
//! (hyper) for Slack, Teams and Mattermost payloads, and Debian's aiosmtpd with STARTTLS and
//! AUTH for mail. Everything goes through the shipper as the agent runs it (config parsed from
//! YAML, records queued with `Shipper::send`).

#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rampart_event::{
    Alert, Container, ContainerRuntime, Device, Event, EventId, EventKind, Priority,
};
use rampart_ship::{ShipConfig, Shipper};
use serde_json::Value;

/// What the receiver answers each request (`None`: never answers).
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    Hang,
}

struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

/// A webhook receiver on a loopback port: records (path, JSON body) of every POST and answers
/// from `script`, then 200.
async fn receiver(script: Vec<Answer>) -> Receiver {
    receiver_tls(script, None).await
}

/// As [`receiver`], over TLS with `tls` when given.
async fn receiver_tls(script: Vec<Answer>, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let g = g.clone();
            let script = script.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let g = g.clone();
                    let script = script.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        g.lock().unwrap().push((path, v));
                        let answer = script
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or(Answer::Status(200));
                        let status = match answer {
                            Answer::Status(s) => s,
                            Answer::Hang => {
                                std::future::pending::<()>().await;
                                500
                            }
                        };
                        let resp = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                match acceptor {
                    Some(a) => {
                        // A client that refuses our certificate ends here.
                        let Ok(tls) = a.accept(stream).await else {
                            return;
                        };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    }
                    None => {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                }
            });
        }
    });
    Receiver { addr, got }
}

fn device() -> Arc<Device> {
    Arc::new(Device {
        hostname: "vps1".into(),
        region: None,
    })
}

fn alert(n: u64, rule: &str, priority: Priority, output: &str) -> Alert {
    let mut c = Container::unnamed("c0ffee", ContainerRuntime::Docker);
    c.name = "web".into();
    c.image = "nginx:1.25".into();
    Alert {
        id: EventId::new(7, n),
        time_ns: 1_765_000_000_000_000_000 + n,
        rule: rule.into(),
        description: String::new(),
        priority,
        tags: vec!["mitre_execution".into()].into(),
        output: output.into(),
        output_fields: Default::default(),
        source: "syscall".into(),
        device: device(),
        container: Some(Arc::new(c)),
        process: None,
        events: vec![],
    }
}

fn shipper(dir: &Path, outputs_yaml: &str) -> Shipper {
    let yaml = format!(
        "queue: {{dir: {}}}\nbatch: {{linger_ms: 5}}\noutputs:\n{outputs_yaml}",
        dir.join("q").display()
    );
    let cfg: ShipConfig = serde_yaml::from_str(&yaml).unwrap();
    rampart_ship::start(
        &cfg,
        device(),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap()
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The count a message stands for: 1, or a summary's "N more alerts held back".
fn slack_count(v: &Value) -> u64 {
    let title = v["text"].as_str().unwrap();
    match title.split_once(" more alert") {
        Some((n, _)) => n.parse().unwrap(),
        None => 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_storm_of_1000_becomes_at_most_the_configured_messages_and_low_priority_is_never_sent(
) {
    let r = receiver(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("slack.url");
    std::fs::write(
        &url_file,
        format!("http://{}/services/T000/B000/SECRET\n", r.addr),
    )
    .unwrap();
    std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = shipper(
        dir.path(),
        &format!(
            "  - type: webhook\n    name: slack\n    format: slack\n    url_file: {}\n    dashboard_url: https://rampart.example.com:8443\n    filter: {{min_priority: warning}}\n    group: {{window: 5s, max_messages: 3}}\n  - type: file\n    path: {}\n",
            url_file.display(),
            dir.path().join("all.jsonl").display()
        ),
    );
    // Ten quiet alerts (NOTICE, below the minimum), then a storm of 1000 CRITICAL ones over
    // five rules on one host.
    let quiet: Vec<Alert> = (0..10)
        .map(|i| alert(i, "Quiet rule", Priority::Notice, "quiet"))
        .collect();
    s.send_all(&quiet).unwrap();
    let storm: Vec<Alert> = (0..1000)
        .map(|i| {
            alert(
                100 + i,
                &format!("Storm rule {}", i % 5),
                Priority::Critical,
                "sh -c 'curl <!channel>'",
            )
        })
        .collect();
    for chunk in storm.chunks(100) {
        s.send_all(chunk).unwrap();
    }
    // Three messages at once, the summary when the 5 s window ends (long enough for a loaded
    // machine to queue the whole storm within it).
    until("four messages", 20, || r.got.lock().unwrap().len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "{got:#?}");
    let total: u64 = got.iter().map(|(_, v)| slack_count(v)).sum();
    assert_eq!(
        total, 1000,
        "every storm alert is in a message or counted in the summary"
    );
    for (path, v) in &got {
        assert_eq!(path, "/services/T000/B000/SECRET");
        let all = v.to_string();
        assert!(
            !all.contains("Quiet rule"),
            "below min_priority, never sent: {all}"
        );
        assert!(!all.contains("<!channel>"), "mention escaped: {all}");
        assert_eq!(v["blocks"][0]["type"], "header");
    }
    let first = &got[0].1;
    assert_eq!(first["text"], "Critical: Storm rule 0 on vps1");
    let link = first["blocks"][3]["elements"][0]["text"].as_str().unwrap();
    assert!(
        link.starts_with("<https://rampart.example.com:8443/ui/#/search?kind=alert&amp;rule=Storm%20rule%200&amp;host=vps1|"),
        "{link}"
    );
    let summary = got[3].1["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        summary.contains("and 199 more alerts of rule Storm rule 0 on host vps1"),
        "{summary}"
    );
    assert!(
        summary.contains("and 200 more alerts of rule Storm rule 4 on host vps1"),
        "{summary}"
    );
    let stats = s.stats();
    let slack = stats.outputs.iter().find(|o| o.name == "slack").unwrap();
    let file = stats.outputs.iter().find(|o| o.name == "file").unwrap();
    assert_eq!((slack.filtered, slack.sent_records), (10, 1000));
    assert_eq!(
        (file.filtered, file.sent_records),
        (0, 1010),
        "the file output has no filter"
    );
    let n = &stats.notifiers[0];
    assert_eq!((n.alerts, n.grouped, n.sent, n.failed), (1000, 997, 4, 0));
    let metrics = s.metrics_text();
    assert!(
        metrics.contains("rampart_ship_filtered_total{output=\"slack\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rampart_notify_grouped_total{notifier=\"slack\"} 997"),
        "{metrics}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_receiver_answering_500_then_200_gets_the_card_on_the_retry() {
    let r = receiver(vec![Answer::Status(500)]).await;
    let dir = tempfile::tempdir().unwrap();
    let s = shipper(
        dir.path(),
        &format!(
            "  - type: webhook\n    name: teams\n    format: teams\n    url: http://{}/workflows/abc\n    dashboard_url: https://rampart.example.com\n    delivery: {{backoff: 100ms}}\n",
            r.addr
        ),
    );
    s.send(&alert(
        1,
        "Crypto miner",
        Priority::Critical,
        "xmrig [x](https://evil)",
    ))
    .unwrap();
    until("the retry", 20, || r.got.lock().unwrap().len() >= 2).await;
    until("the counters", 5, || s.stats().notifiers[0].sent == 1).await;
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, got[1].1, "the same message again");
    let v = &got[1].1;
    assert_eq!(v["type"], "message");
    let card = &v["attachments"][0]["content"];
    assert_eq!(
        v["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["body"][0]["text"], "Critical: Crypto miner on vps1");
    assert_eq!(card["body"][1]["text"], "xmrig \\[x\\]\\(https://evil\\)");
    let facts = card["body"][2]["facts"].as_array().unwrap();
    assert!(
        facts
            .iter()
            .any(|f| f["title"] == "Image" && f["value"] == "nginx:1\\.25"),
        "{facts:?}"
    );
    assert_eq!(
        card["actions"][0]["url"],
        "https://rampart.example.com/ui/#/search?kind=alert&rule=Crypto%20miner&host=vps1"
    );
    let n = &s.stats().notifiers[0];
    assert_eq!((n.send_errors, n.sent, n.failed), (1, 1, 0));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_is_counted_and_blocks_nothing() {
    let r = receiver(vec![Answer::Hang, Answer::Hang, Answer::Hang]).await;
    let dir = tempfile::tempdir().unwrap();
    let s = shipper(
        dir.path(),
        &format!(
            "  - type: webhook\n    name: hook\n    format: mattermost\n    url: http://{}/hooks/x\n    delivery: {{timeout: 300ms, retries: 2, backoff: 50ms}}\n  - type: file\n    path: {}\n",
            r.addr,
            dir.path().join("all.jsonl").display()
        ),
    );
    s.send(&alert(1, "Shell", Priority::Error, "@channel hi"))
        .unwrap();
    // The rest of the pipeline flows while the receiver hangs: 20,000 events reach the file.
    let events: Vec<Event> = (0..20_000)
        .map(|i| Event::new(EventId::new(9, i), 1, EventKind::ProcessExec, device()))
        .collect();
    let started = Instant::now();
    for chunk in events.chunks(1000) {
        s.send_all(chunk).unwrap();
    }
    until("the file output to catch up", 30, || {
        s.stats().outputs.iter().all(|o| o.pending == 0)
    })
    .await;
    let caught_up = started.elapsed();
    until("the notifier to give up", 20, || {
        s.stats().notifiers[0].failed == 1
    })
    .await;
    let n = s.stats().notifiers[0].clone();
    assert_eq!(
        (n.timeouts, n.send_errors, n.failed, n.alerts_lost, n.sent),
        (3, 3, 1, 1, 0)
    );
    assert_eq!(n.ignored, 20_000, "events are not notified");
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "three attempts");
    let text = got[0].1["text"].as_str().unwrap();
    assert!(!text.contains("@channel"), "{text}");
    let metrics = s.metrics_text();
    assert!(
        metrics.contains("rampart_notify_timeouts_total{notifier=\"hook\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rampart_notify_dropped_total{notifier=\"hook\",reason=\"failed\"} 1"),
        "{metrics}"
    );
    eprintln!("file output caught up with 20000 events in {caught_up:?} while the webhook hung");
    s.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn notifier_configs_are_checked_where_they_are_written() {
    let bad = |yaml: &str| {
        let full = format!("queue: {{dir: /tmp/x}}\noutputs:\n{yaml}");
        serde_yaml::from_str::<ShipConfig>(&full)
            .unwrap_err()
            .to_string()
    };
    assert!(bad("  - {type: webhook, formt: slack, url: 'http://h/'}")
        .contains("unknown field `formt`"));
    assert!(
        bad("  - {type: webhook, format: discord, url: 'http://h/'}")
            .contains("unknown variant `discord`")
    );
    assert!(bad(
        "  - {type: email, smtp: {host: h}, from: a@b, to: [c@d], filter: {min_priority: loud}}"
    )
    .contains("unknown priority"));
    assert!(
        bad("  - {type: email, smtp: {host: h, password: x}, from: a@b, to: [c@d]}")
            .contains("unknown field `password`"),
        "no inline password"
    );
}

#[tokio::test]
async fn email_refuses_cleartext_to_a_remote_relay_and_world_readable_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let start = |yaml: &str| {
        let c: rampart_ship::OutputConfig = serde_yaml::from_str(yaml).unwrap();
        c.build().map(|_| ()).unwrap_err().to_string()
    };
    let e = start("{type: email, smtp: {host: smtp.example.com, tls: none}, from: a@b.example, to: [c@d.example]}");
    assert!(e.contains("only allowed to a relay on this host"), "{e}");
    let e = start(&format!(
        "{{type: email, smtp: {{host: 127.0.0.1, tls: none, username: u, password_file: {}}}, from: a@b.example, to: [c@d.example]}}",
        pw.display()
    ));
    assert!(e.contains("chmod 600"), "{e}");
}

/// A CA and a server certificate for 127.0.0.1 and localhost, made for this test:
/// `ca.pem`, `cert.pem`, `key.pem` (0600).
fn test_ca() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rampart test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(certs.path().join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(certs.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(certs.path().join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::set_permissions(
        certs.path().join("key.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    certs
}

/// Debian's aiosmtpd on a loopback port with STARTTLS and AUTH required.
struct SmtpServer {
    child: Child,
    port: u16,
    outdir: tempfile::TempDir,
    ca: std::path::PathBuf,
    _certs: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Closing its stdin stops it; then reap it (never signal a reaped child).
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn smtp_server(user: &str, password: &str) -> Option<SmtpServer> {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        testkit::skip(
            module_path!(),
            "Debian's python3-aiosmtpd (scripts/setup installs it)",
        );
        return None;
    }
    let certs = test_ca();
    let ca = certs.path().join("ca.pem");
    let outdir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(certs.path().join("cert.pem"))
        .arg(certs.path().join("key.pem"))
        .arg(outdir.path())
        .args([user, password])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("smtp server said {line:?}"))
        .parse()
        .unwrap();
    Some(SmtpServer {
        child,
        port,
        outdir,
        ca,
        _certs: certs,
    })
}

fn mails(dir: &Path) -> Vec<Value> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_over_starttls_with_auth_groups_a_storm_into_one_summary() {
    let Some(smtp) = smtp_server("rampart", "s3cret pass") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smtp.password");
    std::fs::write(&pw, "s3cret pass\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = shipper(
        dir.path(),
        &format!(
            "  - type: email\n    name: mail\n    smtp: {{host: 127.0.0.1, port: {}, tls: starttls, ca_file: {}, username: rampart, password_file: {}}}\n    from: 'Rampart <rampart@vps1.example>'\n    to: [ops@example.com, oncall@example.com]\n    dashboard_url: https://rampart.example.com\n    filter: {{min_priority: error}}\n    group: {{window: 5s, max_messages: 2}}\n",
            smtp.port,
            smtp.ca.display(),
            pw.display()
        ),
    );
    // Below ERROR: never mailed.
    s.send(&alert(
        1,
        "Package manager run",
        Priority::Warning,
        "apt-get ran",
    ))
    .unwrap();
    let mut storm: Vec<Alert> = (0..50)
        .map(|i| {
            alert(
                10 + i,
                "Terminal shell in container",
                Priority::Critical,
                "shell sh in web\r\nBcc: x@evil.example",
            )
        })
        .collect();
    storm.push(alert(
        100,
        "Crypto miner",
        Priority::Emergency,
        "xmrig in web",
    ));
    s.send_all(&storm).unwrap();
    until("three mails", 30, || mails(smtp.outdir.path()).len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = mails(smtp.outdir.path());
    assert_eq!(got.len(), 3, "two alerts and one summary: {got:#?}");
    for m in &got {
        assert_eq!(m["tls"], true, "STARTTLS");
        assert_eq!(m["login"], "rampart");
        assert_eq!(m["from"], "rampart@vps1.example");
        assert_eq!(
            m["to"],
            serde_json::json!(["ops@example.com", "oncall@example.com"])
        );
        let data = m["data"].as_str().unwrap();
        assert!(
            data.contains("From: Rampart <rampart@vps1.example>"),
            "{data}"
        );
        assert!(
            data.contains("To: ops@example.com, oncall@example.com"),
            "{data}"
        );
        assert!(
            !data.contains("Package manager run"),
            "below the minimum: {data}"
        );
        let headers = data.split("\r\n\r\n").next().unwrap();
        assert!(
            !headers.to_ascii_lowercase().contains("bcc:"),
            "no injected header: {headers}"
        );
    }
    assert_eq!(
        got[0]["subject"],
        "[Rampart] Critical: Terminal shell in container on vps1"
    );
    let first = got[0]["body"].as_str().unwrap();
    assert!(first.contains("shell sh in web"), "{first}");
    assert!(first.contains("Container: web"), "{first}");
    assert!(
        first.contains("https://rampart.example.com/ui/#/search?kind=alert&rule=Terminal%20shell%20in%20container&host=vps1"),
        "{first}"
    );
    assert_eq!(
        got[1]["subject"],
        "[Rampart] Emergency: Crypto miner on vps1"
    );
    assert_eq!(
        got[2]["subject"],
        "[Rampart] 49 more alerts held back in the last 5s"
    );
    let summary = got[2]["body"].as_str().unwrap();
    assert!(
        summary.contains("and 49 more alerts of rule Terminal shell in container on host vps1"),
        "{summary}"
    );
    let stats = s.stats();
    assert_eq!(stats.outputs[0].filtered, 1);
    let n = &stats.notifiers[0];
    assert_eq!((n.alerts, n.grouped, n.sent, n.send_errors), (51, 49, 3, 0));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_with_a_wrong_password_or_an_untrusted_certificate_fails_counted() {
    let Some(smtp) = smtp_server("rampart", "right") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    // An unrelated CA: the server's certificate must not be accepted.
    let other_ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, other_ca.pem()).unwrap();
    std::env::set_var("RAMPART_TEST_SMTP_PASSWORD", "right");
    let s = shipper(
        dir.path(),
        &format!(
            "  - type: email\n    name: wrongpw\n    smtp: {{host: 127.0.0.1, port: {p}, ca_file: {ca}, username: rampart, password_file: {pw}}}\n    from: r@example.com\n    to: [o@example.com]\n    delivery: {{retries: 1, backoff: 50ms}}\n  - type: email\n    name: badca\n    smtp: {{host: 127.0.0.1, port: {p}, ca_file: {other}, username: rampart, password_env: RAMPART_TEST_SMTP_PASSWORD}}\n    from: r@example.com\n    to: [o@example.com]\n    delivery: {{retries: 1, backoff: 50ms}}\n",
            p = smtp.port,
            ca = smtp.ca.display(),
            pw = pw.display(),
            other = other.display()
        ),
    );
    s.send(&alert(1, "Shell", Priority::Critical, "x")).unwrap();
    until("both to give up", 30, || {
        s.stats().notifiers.iter().all(|n| n.failed == 1)
    })
    .await;
    for n in s.stats().notifiers {
        assert_eq!(
            (n.send_errors, n.failed, n.alerts_lost, n.sent),
            (2, 1, 1, 0),
            "{}",
            n.name
        );
    }
    assert!(mails(smtp.outdir.path()).is_empty());
    s.shutdown(Duration::from_secs(1)).await;
}

/// The filter is the shipper's, not the notifier's: a plain file output honours it too, and a
/// batch the filter empties entirely is acknowledged without being sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_output_honours_its_filter_and_emptied_batches_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let s = shipper(
        dir.path(),
        &format!(
            "  - type: file\n    path: {}\n    filter: {{kinds: [alert], hosts: ['vps*'], exclude_rules: ['Noisy*']}}\n",
            path.display()
        ),
    );
    let events: Vec<Event> = (0..3000)
        .map(|i| Event::new(EventId::new(9, i), 1, EventKind::ProcessExec, device()))
        .collect();
    s.send_all(&events).unwrap();
    until("the events to be acknowledged", 20, || {
        s.stats().outputs[0].pending == 0
    })
    .await;
    s.send(&alert(1, "Noisy rule", Priority::Critical, "noise"))
        .unwrap();
    s.send(&alert(2, "Shell", Priority::Critical, "kept"))
        .unwrap();
    until("the alerts", 20, || s.stats().outputs[0].pending == 0).await;
    let o = s.stats().outputs[0].clone();
    assert_eq!((o.filtered, o.sent_records), (3001, 1));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"kept\""), "{text}");
    s.shutdown(Duration::from_secs(1)).await;
}

/// Every output list in docs/alerting.md parses as the shipper reads it (a documented field
/// that does not exist would be refused here first).
#[test]
fn the_examples_in_the_alerting_doc_parse() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/alerting.md"),
    )
    .unwrap();
    let mut parsed = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let lines: Vec<&str> = block.lines().collect();
        let Some(first) = lines
            .iter()
            .position(|l| l.trim_start().starts_with("- type:"))
        else {
            continue;
        };
        let indent = lines[first].len() - lines[first].trim_start().len();
        let list: String = lines[first..]
            .iter()
            .map(|l| l.get(indent..).unwrap_or("").to_string() + "\n")
            .collect();
        let outputs: Vec<rampart_ship::OutputConfig> =
            serde_yaml::from_str(&list).unwrap_or_else(|e| panic!("{e}\n{list}"));
        parsed += outputs.len();
    }
    assert!(parsed >= 6, "{parsed}");
}

/// An https webhook is checked against `ca_file`: the receiver signed by it gets the message, the
/// same receiver checked against another CA (the system bundle) does not, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_verify_the_receiver_against_ca_file() {
    let certs = test_ca();
    let chain = rampart_ship::tls::load_certs(&certs.path().join("cert.pem")).unwrap();
    let key = rampart_ship::tls::load_key(&certs.path().join("key.pem")).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(rampart_ship::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let r = receiver_tls(vec![], Some(Arc::new(server))).await;
    let dir = tempfile::tempdir().unwrap();
    let s = shipper(
        dir.path(),
        &format!(
            "  - type: webhook\n    name: trusted\n    format: slack\n    url: https://127.0.0.1:{port}/hook\n    ca_file: {ca}\n  - type: webhook\n    name: system-roots\n    format: slack\n    url: https://127.0.0.1:{port}/hook\n    delivery: {{retries: 1, backoff: 50ms}}\n",
            port = r.addr.port(),
            ca = certs.path().join("ca.pem").display()
        ),
    );
    s.send(&alert(1, "Shell", Priority::Critical, "x")).unwrap();
    until("both notifiers", 30, || {
        let st = s.stats();
        st.notifiers
            .iter()
            .any(|n| n.name == "trusted" && n.sent == 1)
            && st
                .notifiers
                .iter()
                .any(|n| n.name == "system-roots" && n.failed == 1)
    })
    .await;
    assert_eq!(
        r.got.lock().unwrap().len(),
        1,
        "only the trusting notifier got through"
    );
    let st = s.stats();
    let refused = st
        .notifiers
        .iter()
        .find(|n| n.name == "system-roots")
        .unwrap();
    assert_eq!(
        (refused.send_errors, refused.sent, refused.alerts_lost),
        (2, 0, 1)
    );
    s.shutdown(Duration::from_secs(1)).await;
}
