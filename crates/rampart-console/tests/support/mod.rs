//! What the dashboard tests share: a real server (SQLite store, fleet layer, dashboard) on a
//! loopback port, an HTTPS client that trusts its CA, enrolled agents shipping over mutual
//! TLS, and the records agents send.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use rampart_console::Console;
use rampart_event::{Alert, Container, ContainerRuntime, Device, Event, EventId, EventKind};
use rampart_event::{AuthInfo, AuthOutcome, Priority, Process};
use rampart_event::{ContainerInventory, HostInventory, Protection, SignatureState, VulnCounts};
use rampart_fleet::FleetConfig;
use rampart_server::{ServerConfig, ServerExtras, ServerHandle};
use rampart_ship::client::{HttpClient, HttpResponse};
use rampart_ship::output::Output;
use rampart_ship::output::ServerOutput;
use rampart_ship::queue::Entry;

pub const PASSWORD: &str = "a long enough password";

/// A server with the fleet layer and the dashboard, as `rampart server` wires them.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub server: ServerHandle,
    pub console: Arc<Console>,
}

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = ServerConfig::with_data_dir(dir.path());
        cfg.listen = "127.0.0.1:0".parse().expect("addr");
        let (fleet_layer, slot) =
            rampart_fleet::server_layer(FleetConfig::new(Some(rampart_fleet::db_path(dir.path()))))
                .unwrap_or_else(|e| panic!("{e}"));
        let console = Console::new(Some(slot));
        let live = console.store_layer();
        let server = rampart_server::start_extras(
            cfg,
            ServerExtras {
                store_layer: Some(Box::new(move |s| fleet_layer(live(s)))),
                routes: vec![console.routes()],
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        Harness {
            dir,
            server,
            console,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The password of the `admin` user the server created on first start.
    pub fn admin_password(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.password"))
            .expect("admin.password")
            .trim()
            .to_string()
    }

    /// An HTTPS client trusting the server's CA.
    pub fn client(&self) -> Https {
        let roots = rampart_ship::tls::load_roots(&self.data_dir().join("ca/ca.crt"))
            .unwrap_or_else(|e| panic!("{e}"));
        let tls = rampart_ship::tls::client_config(roots, None).unwrap_or_else(|e| panic!("{e}"));
        Https(HttpClient::new(&self.server.url(), Some(tls)).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Enrolls an agent for `host` in `region` and returns its mTLS output to the server.
    pub async fn agent(&self, host: &str, region: &str) -> ServerOutput {
        let token = self
            .server
            .create_enroll_token(region, 1, Duration::from_secs(600))
            .unwrap_or_else(|e| panic!("{e}"));
        let tls_dir = self.data_dir().join(format!("agent-{host}"));
        let url = self.server.url();
        rampart_ship::enroll::enroll(&url, &token, host, &tls_dir, false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let tls =
            rampart_ship::tls::agent_client_config(&tls_dir).unwrap_or_else(|e| panic!("{e}"));
        ServerOutput::new(format!("agent-{host}"), &url, tls).unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Ships `records` (JSON values) as one batch through the agent's real output.
pub async fn ship(out: &mut ServerOutput, records: &[serde_json::Value]) {
    let batch: Vec<Entry> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Entry {
            seq: i as u64 + 1,
            written_ms: 0,
            payload: serde_json::to_vec(r).expect("json"),
        })
        .collect();
    out.send(&batch).await.unwrap_or_else(|e| panic!("{e}"));
}

/// An HTTPS client of the dashboard.
pub struct Https(pub HttpClient);

impl Https {
    pub async fn get(&mut self, path: &str, cookie: Option<&str>) -> HttpResponse {
        let mut headers = vec![];
        let c;
        if let Some(v) = cookie {
            c = format!("__Host-rampart_session={v}");
            headers.push(("cookie", c.as_str()));
        }
        self.0
            .request(Method::GET, path, &headers, Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn get_json(&mut self, path: &str, cookie: &str) -> (u16, serde_json::Value) {
        let r = self.get(path, Some(cookie)).await;
        let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, v)
    }

    pub async fn login_raw(&mut self, user: &str, password: &str) -> HttpResponse {
        let body = serde_json::json!({ "username": user, "password": password }).to_string();
        self.0
            .request(
                Method::POST,
                "/ui/api/login",
                &[("content-type", "application/json")],
                Bytes::from(body),
            )
            .await
            .unwrap_or_else(|e| panic!("login: {e}"))
    }

    /// Logs in; returns the session token from the cookie.
    pub async fn login(&mut self, user: &str, password: &str) -> String {
        let r = self.login_raw(user, password).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        session_of(&r).expect("a session cookie")
    }
}

/// The session token a login answer sets.
pub fn session_of(r: &HttpResponse) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-rampart_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .expect("clock after 1970")
}

pub fn device(host: &str) -> Arc<Device> {
    Arc::new(Device {
        hostname: host.into(),
        region: None,
    })
}

pub fn container(id: &str, name: &str, image: &str) -> Arc<Container> {
    let mut c = Container::unnamed(id, ContainerRuntime::Docker);
    c.name = name.into();
    c.image = image.into();
    Arc::new(c)
}

/// An agent's alert on `host`, with `args` as the process arguments and in the output.
pub fn alert(id: &str, host: &str, rule: &str, args: &[&str]) -> serde_json::Value {
    let process = Process {
        pid: 4242,
        name: "sh".into(),
        exe: "/bin/sh".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Process::default()
    };
    let a = Alert {
        id: EventId(id.into()),
        time_ns: now_ns(),
        rule: rule.into(),
        description: "test alert".into(),
        priority: Priority::Critical,
        tags: vec!["container".into(), "T1059".into()].into(),
        output: format!("Shell in container (cmdline={})", args.join(" ")),
        output_fields: rampart_event::OutputFields::from([(
            "proc.cmdline".to_string(),
            args.join(" "),
        )]),
        source: "syscall".into(),
        device: device(host),
        container: Some(container(&"c".repeat(64), "web", "nginx:1.25")),
        process: Some(Arc::new(process)),
        events: Vec::new(),
    };
    serde_json::to_value(&a).expect("alert json")
}

/// An `inventory.host` event of `host`.
pub fn host_inventory(id: &str, host: &str, version: &str) -> serde_json::Value {
    let mut e = Event::new(
        EventId(id.into()),
        now_ns(),
        EventKind::InventoryHost,
        device(host),
    );
    e.host_inventory = Some(Box::new(HostInventory {
        agent_version: version.into(),
        kernel: "6.12.0".into(),
        os: "Debian GNU/Linux 13".into(),
        sensor: "ebpf".into(),
        audit_score: Some(81),
        protections: vec![
            Protection {
                name: "bpf_lsm".into(),
                available: false,
                detail: "lsm=bpf not active".into(),
            },
            Protection {
                name: "seccomp".into(),
                available: true,
                detail: String::new(),
            },
        ],
        containers_running: 1,
        containers: Vec::new(),
    }));
    serde_json::to_value(&e).expect("event json")
}

/// An `inventory.container` event of a container on `host`.
pub fn container_inventory(id: &str, host: &str, cid: &str, name: &str) -> serde_json::Value {
    let mut e = Event::new(
        EventId(id.into()),
        now_ns(),
        EventKind::InventoryContainer,
        device(host),
    );
    e.container = Some(container(cid, name, "registry.example/app:1.4"));
    e.container_inventory = Some(Box::new(ContainerInventory {
        image: "registry.example/app:1.4".into(),
        image_id: format!("sha256:{}", "ab".repeat(32)),
        repo_digest: None,
        signature: SignatureState::Invalid,
        signer: None,
        vulnerabilities: VulnCounts {
            critical: 2,
            high: 5,
            medium: 7,
            low: 1,
            unknown: 0,
        },
        db_version: "2026-11-28".into(),
        compliance_score: Some(64),
        compliance_failed: 4,
        addresses: Vec::new(),
    }));
    serde_json::to_value(&e).expect("event json")
}

/// A failed SSH login on `host` from `src` (what the fleet's cross-host rules watch).
pub fn failed_login(id: &str, host: &str, src: &str) -> serde_json::Value {
    let mut e = Event::new(
        EventId(id.into()),
        now_ns(),
        EventKind::AuthLogin,
        device(host),
    );
    e.auth = Some(AuthInfo {
        outcome: AuthOutcome::Failure,
        user: "root".into(),
        method: Some("password".into()),
        src_ip: src.parse().ok(),
        src_port: Some(40_000),
        service: "sshd".into(),
        log_source: "journal".into(),
        message: String::new(),
    });
    serde_json::to_value(&e).expect("event json")
}

/// One HTTPS request over a connection whose source address is `source` (a loopback address
/// such as 127.0.0.2, so that the server sees another client address); `Connection: close`.
/// Returns the status code and the body.
pub async fn request_from(
    source: std::net::IpAddr,
    server: std::net::SocketAddr,
    ca_file: &Path,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(std::net::SocketAddr::new(source, 0))
        .unwrap_or_else(|e| panic!("binding {source}: {e}"));
    let tcp = sock.connect(server).await.expect("connect");
    let roots = rampart_ship::tls::load_roots(ca_file).unwrap_or_else(|e| panic!("{e}"));
    let tls = rampart_ship::tls::client_config(roots, None).unwrap_or_else(|e| panic!("{e}"));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
