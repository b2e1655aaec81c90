//! The central view with the real server (loopback, no root): agents enrolled as vps1, vps2 and
//! vps3; vps1's and vps2's proxies get their identities from the server, carry an allowed pair
//! and refuse another, and ship their refusals and `mesh.report`s through their own queue with
//! the agent's enrollment; `GET /api/v1/mesh` (analyst) lists vps2's service, the allowed edge
//! with its last use and the refusal with both identities. A host (vps3) that reports edges and
//! refusals on vps2's identities is attributed to itself by its certificate and left out.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{Device, Event, EventId, EventKind, MeshEdge, MeshReport, PolicyInfo};
use rampart_mesh::{forward, server_shipper, ForwardStats, Mesh, ServerIssuer};
use rampart_server::client::{QueryClient, QueryError};
use serde_json::Value;
use support::{config, RunningProxy};

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn client(url: &str, data: &Path, token: &str) -> QueryClient {
    QueryClient::new(url, &data.join("ca/ca.crt"), token).expect("client")
}

fn admin(url: &str, data: &Path) -> QueryClient {
    let token = std::fs::read_to_string(data.join("admin.token")).expect("admin token");
    client(url, data, token.trim())
}

async fn enroll(url: &str, data: &Path, hostname: &str, dir: &Path) {
    let v = admin(url, data)
        .post_json(
            "/api/v1/enroll-tokens",
            &serde_json::json!({"region": "eu-de", "uses": 1, "ttl": "10m"}),
        )
        .await
        .expect("token");
    let token = v["token"].as_str().expect("token").to_string();
    rampart_ship::enroll::enroll(url, &token, hostname, dir, false)
        .await
        .expect("enroll");
}

async fn api_token(url: &str, data: &Path, name: &str, role: &str) -> String {
    let v = admin(url, data)
        .post_json(
            "/api/v1/tokens",
            &serde_json::json!({"name": name, "role": role}),
        )
        .await
        .expect("api token");
    v["token"].as_str().expect("token").to_string()
}

fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    a
}

/// Connects from `from` (a loopback address: the workload's identity at vps1) to `to`.
async fn request(from: &str, to: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{from}:0").parse().expect("addr"))?;
    let mut s = tokio::time::timeout(Duration::from_secs(5), sock.connect(to)).await??;
    s.write_all(msg).await?;
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got)).await??;
    Ok(got)
}

fn edge<'a>(view: &'a Value, src: &str, dst: &str) -> Option<&'a Value> {
    view["edges"].as_array()?.iter().find(|e| {
        e["source_identity"] == src && e["destination_identity"] == dst && e["port"] == 5432
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_lists_services_edges_with_last_use_and_denials_from_the_proxies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut cfg = rampart_server::ServerConfig::with_data_dir(data.clone());
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let server = rampart_server::start(cfg).await.expect("server");
    let url = server.url();
    let (t1, t2, t3) = (
        dir.path().join("vps1"),
        dir.path().join("vps2"),
        dir.path().join("vps3"),
    );
    enroll(&url, &data, "vps1", &t1).await;
    enroll(&url, &data, "vps2", &t2).await;
    enroll(&url, &data, "vps3", &t3).await;
    let ca = rustls::pki_types::CertificateDer::from(
        rampart_server::ca::Ca::load_or_create(&data.join("ca"))
            .expect("ca")
            .cert()
            .to_vec(),
    );

    let target = echo();
    let (inbound, outbound) = (port(), port());
    let policy = "policy: ['frontend@vps1 -> backend@vps2:5432']\n";
    let c1 = config(&format!(
        "fleet: acme\nca: /unused\n{policy}host: vps1\npeers: {{vps2: '127.0.0.1:{inbound}'}}\n\
         workloads: {{frontend: [127.0.0.1], rogue: [127.0.0.2]}}\n\
         outbound: [{{listen: '127.0.0.1:{outbound}', to: backend@vps2:5432}}]\n"
    ));
    let c2 = config(&format!(
        "fleet: acme\nca: /unused\n{policy}host: vps2\ninbound: '127.0.0.1:{inbound}'\n\
         services: [{{name: backend, port: 5432, target: '{target}'}}]\n"
    ));
    let rt = tokio::runtime::Handle::current();
    let mut stats = Vec::new();
    let mut proxies = Vec::new();
    for (c, tls, host) in [(c1, &t1, "vps1"), (c2, &t2, "vps2")] {
        let issuer = Arc::new(ServerIssuer::new(&url, tls).expect("issuer"));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mesh = Mesh::new(c, ca.clone(), issuer, Some(tx)).expect("mesh");
        let shipper = server_shipper(
            &url,
            tls,
            &dir.path().join(format!("{host}-queue")),
            host,
            &rt,
        )
        .expect("shipper");
        let s = Arc::new(ForwardStats::default());
        tokio::spawn(forward(
            mesh.clone(),
            rx,
            shipper,
            Duration::from_millis(500),
            false,
            s.clone(),
        ));
        stats.push(s);
        proxies.push(
            tokio::task::spawn_blocking(move || RunningProxy::start(None, mesh))
                .await
                .expect("proxy"),
        );
    }

    let started = rampart_event::now_ns();
    let to: SocketAddr = format!("127.0.0.1:{outbound}").parse().expect("addr");
    let got = request("127.0.0.1", to, b"frontend asks")
        .await
        .expect("exchange");
    assert_eq!(got, b"frontend asks");
    // rogue@vps1 has a certificate but no rule: vps2 refuses it.
    let r = request("127.0.0.2", to, b"rogue asks").await;
    assert!(r.is_err(), "rogue was served: {r:?}");

    // vps3 is enrolled but speaks for vps2: an edge on vps2's backend and a refusal there.
    let mut forged = Event::new(
        EventId("forged-report-1".into()),
        rampart_event::now_ns(),
        EventKind::MeshReport,
        Arc::new(Device {
            hostname: "vps2".into(),
            region: None,
        }),
    );
    forged.mesh = Some(Box::new(MeshReport {
        services: Vec::new(),
        edges: vec![MeshEdge {
            source_identity: "spiffe://acme/vps3/intruder".into(),
            destination_identity: "spiffe://acme/vps2/backend".into(),
            port: 5432,
            allowed: 1000,
            denied: 0,
            last_ns: rampart_event::now_ns(),
        }],
    }));
    let mut forged_denial = Event::new(
        EventId("forged-denial-1".into()),
        rampart_event::now_ns(),
        EventKind::PolicyNetDenied,
        Arc::new(Device {
            hostname: "vps2".into(),
            region: None,
        }),
    );
    forged_denial.policy = Some(PolicyInfo {
        policy: "mesh".into(),
        rule: "default".into(),
        action: "deny".into(),
        mechanism: "rampart mesh (inbound)".into(),
        reason: "default".into(),
        source_identity: Some("spiffe://acme/vps1/frontend".into()),
        destination_identity: Some("spiffe://acme/vps2/backend".into()),
        ..PolicyInfo::default()
    });
    let s3 = server_shipper(&url, &t3, &dir.path().join("vps3-queue"), "vps3", &rt)
        .expect("vps3 shipper");
    let sent = s3.send_all(&[forged, forged_denial]).expect("vps3 queued");
    assert_eq!(sent.accepted, 2);

    // Roles: no token 401, read-only 403, analyst sees the view.
    let reader = api_token(&url, &data, "rob", "read-only").await;
    let analyst = api_token(&url, &data, "ann", "analyst").await;
    for (token, want) in [("", 401), ("not-a-token", 401), (reader.as_str(), 403)] {
        match client(&url, &data, token).get_json("/api/v1/mesh").await {
            Err(QueryError::Status { status, .. }) => assert_eq!(status, want, "{token:?}"),
            other => panic!("{token:?}: want {want}, got {other:?}"),
        }
    }
    let mut ann = client(&url, &data, &analyst);
    let end = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let v = ann.get_json("/api/v1/mesh").await.expect("mesh view");
        let allowed = edge(
            &v,
            "spiffe://acme/vps1/frontend",
            "spiffe://acme/vps2/backend",
        );
        let denied = edge(&v, "spiffe://acme/vps1/rogue", "spiffe://acme/vps2/backend");
        let forged_seen = v["claims_refused"].as_u64().unwrap_or(0) >= 2;
        if allowed.is_some() && denied.is_some() && forged_seen && v["denials_total"] == 1 {
            break v;
        }
        assert!(Instant::now() < end, "the view never filled: {v:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ok = edge(
        &view,
        "spiffe://acme/vps1/frontend",
        "spiffe://acme/vps2/backend",
    )
    .expect("edge");
    assert_eq!(ok["allowed"], 1, "{view:#}");
    assert_eq!(ok["denied"], 0);
    assert_eq!(ok["reported_by"], "vps2");
    let last = ok["last_allowed_ns"].as_u64().expect("last use");
    assert!(
        last >= started && last <= rampart_event::now_ns(),
        "{view:#}"
    );
    let bad = edge(
        &view,
        "spiffe://acme/vps1/rogue",
        "spiffe://acme/vps2/backend",
    )
    .expect("denied edge");
    assert_eq!(
        (bad["allowed"].as_u64(), bad["denied"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(bad["last_allowed_ns"].is_null());
    let d = &view["denials"][0];
    assert_eq!(d["source_identity"], "spiffe://acme/vps1/rogue");
    assert_eq!(d["destination_identity"], "spiffe://acme/vps2/backend");
    assert_eq!(d["reported_by"], "vps2");
    assert_eq!(d["reason"], "default");
    assert_eq!(d["mechanism"], "rampart mesh (inbound)");
    let services = view["services"].as_array().expect("services");
    assert!(
        services
            .iter()
            .any(|s| s["host"] == "vps2" && s["name"] == "backend" && s["port"] == 5432),
        "{view:#}"
    );
    assert!(
        !services.iter().any(|s| s["host"] == "vps1"),
        "vps1 offers nothing: {view:#}"
    );
    // The forged edge is nowhere, and the store holds vps3's records under vps3.
    assert!(
        edge(
            &view,
            "spiffe://acme/vps3/intruder",
            "spiffe://acme/vps2/backend"
        )
        .is_none(),
        "{view:#}"
    );
    let stored = ann
        .records(false, &[("id", "forged-report-1".to_string())])
        .await
        .expect("records");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["device"]["hostname"], "vps3", "{stored:?}");
    assert_eq!(
        stored[0]["device"]["claimed_hostname"], "vps2",
        "{stored:?}"
    );
    for s in &stats {
        assert_eq!(s.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
    drop(proxies);
    server.shutdown().await;
}
