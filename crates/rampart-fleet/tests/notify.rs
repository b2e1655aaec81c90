//! Server-side notifications through the real server (SQLite store, the fleet layer): an
//! incident opened by three agents' events sends one "incident opened" message, the overdue
//! deadline one more, to a webhook receiver on loopback started by the test; the filter keeps
//! everything else out, counted.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rampart_fleet::FleetConfig;
use rampart_server::ServerConfig;
use rampart_ship::output::Output;
use rampart_ship::queue::Entry;
use serde_json::Value;
use support::*;

/// A webhook receiver on a loopback port recording every JSON body it is posted.
async fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let g = g.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let v = body
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or(Value::Null);
                        g.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

fn texts(got: &Arc<Mutex<Vec<Value>>>) -> Vec<String> {
    got.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|v| v["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_opened_and_its_overdue_deadline_each_send_one_notification() {
    let (addr, got) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServerConfig::with_data_dir(dir.path());
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    // As server.yaml spells it (fleet.notifications).
    let fleet_yaml = format!(
        "notifications:\n  - type: webhook\n    name: ops-chat\n    format: slack\n    url: http://{addr}/hooks/ops\n    dashboard_url: https://rampart.example.com\n    filter: {{tags: [incident_opened, notification_deadline]}}\n"
    );
    cfg.fleet = serde_yaml::from_str(&fleet_yaml).unwrap_or_else(|e| panic!("{e}"));
    let mut fleet_cfg = FleetConfig::new(Some(rampart_fleet::db_path(dir.path())));
    fleet_cfg.notifications = cfg.fleet.notifications.clone();
    let (layer, slot) = rampart_fleet::server_layer(fleet_cfg).unwrap_or_else(|e| panic!("{e}"));
    let server = rampart_server::start_with(cfg, layer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fleet = slot.get().expect("fleet store").clone();
    let t0 = at("2026-03-06T10:00:00Z");
    for (n, (host, region)) in [("web-1", "eu-de"), ("web-2", "in"), ("web-3", "us-ca")]
        .into_iter()
        .enumerate()
    {
        let mut out = server.local_output("fleet-test", &format!("agt-{n}"), region);
        let ev = login(
            &device(host, "xx"),
            n as u64,
            t0 + n as u64 * 1_000_000_000,
            false,
            "203.0.113.9",
        );
        let batch = vec![Entry {
            seq: 1,
            written_ms: 0,
            payload: serde_json::to_vec(&ev).expect("json"),
        }];
        out.send(&batch).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while texts(&got).is_empty() {
        assert!(Instant::now() < deadline, "no notification");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = texts(&got);
    assert_eq!(t.len(), 1, "one notification for the incident: {t:?}");
    let c = fleet.correlator();
    let incident_id = {
        let c = c.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(c.incidents().len(), 1);
        c.incidents()[0].id.clone()
    };
    assert!(
        t[0].starts_with("Critical: Incident opened on web-"),
        "{t:?}"
    );
    let msg = got.lock().unwrap_or_else(|p| p.into_inner())[0].clone();
    let body = msg["blocks"][1]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        body.contains(&format!("Incident {incident_id} opened")),
        "{body}"
    );
    let link = msg["blocks"][3]["elements"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        link.starts_with(&format!(
            "<https://rampart.example.com/ui/#/incidents/{incident_id}|"
        )),
        "{link}"
    );
    // Seven hours on, CERT-In's 6 hours for the host in India are over: one more message.
    let now = t0 + 7 * 3_600_000_000_000;
    assert_eq!(
        fleet
            .check_deadlines(now)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        1
    );
    // Checking again raises nothing new.
    assert_eq!(
        fleet
            .check_deadlines(now + 60_000_000_000)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        0
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while texts(&got).len() < 2 {
        assert!(Instant::now() < deadline, "no deadline notification");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = texts(&got);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(
        t[1].starts_with("Critical: Notification deadline overdue on web-2"),
        "{t:?}"
    );
    let stats = {
        let c = c.lock().unwrap_or_else(|p| p.into_inner());
        c.notifier().map(|n| n.stats()).unwrap_or_default()
    };
    assert_eq!(stats.len(), 1);
    // The fleet correlation alert itself did not pass the tag filter.
    assert_eq!(
        (stats[0].alerts, stats[0].filtered, stats[0].sent),
        (2, 1, 2),
        "{stats:?}"
    );
    server.shutdown().await;
}

#[test]
fn only_notifier_kinds_are_accepted() {
    let mut cfg = FleetConfig::new(None);
    cfg.notifications =
        vec![serde_yaml::from_str("{type: file, path: /tmp/x}").unwrap_or_else(|e| panic!("{e}"))];
    let e = rampart_fleet::Correlator::new(cfg)
        .map(|_| ())
        .expect_err("a file output is not a notifier")
        .to_string();
    assert!(
        e.contains("only `webhook` and `email` notify people"),
        "{e}"
    );
}
