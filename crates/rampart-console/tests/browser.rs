//! The dashboard end to end in headless Chromium (Debian's chromium, driven through
//! chromedriver over WebDriver): login, an alert shipped by an enrolled agent appearing live
//! (and the fleet's own correlation alert), an attacker-chosen process argument shown as text,
//! an incident's deadline counting down, and the pages over an agent's inventory.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use support::*;

/// Long enough for a loaded 2-core CI box; the tests normally take a few seconds.
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver in its own process group; dropping it kills the group, so the Chromium it
/// started goes too, also when a test fails before closing its session.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // killpg(2) directly: procps-ng 4.0.2's kill(1) here killed far more than the group
        // with `kill -KILL -PGID` (the test runner, dockerd and the shell went too).
        if let Ok(pgid) = i32::try_from(self.0.id()) {
            if pgid > 1 {
                // SAFETY: killpg(2) on the process group this test created for chromedriver.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Chromium under chromedriver, with a fresh profile.
struct Browser {
    client: Client,
    _driver: KillOnDrop,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = KillOnDrop(
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting chromedriver"),
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let caps = caps.as_object().cloned().expect("object");
        let deadline = std::time::Instant::now() + WAIT;
        let client = loop {
            let conn = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(conn)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver on port {port}: {e}"),
            }
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// Waits until `script` (a function body) returns true.
    async fn until(&self, what: &str, script: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            // An error while a page loads (no document yet) counts as "not yet".
            let v = self.client.execute(script, vec![]).await;
            if matches!(v, Ok(serde_json::Value::Bool(true))) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: {what} (last answer {v:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn js(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Logs in through the login page.
    async fn login(&self, base: &str, user: &str, password: &str) {
        self.client
            .goto(&format!("{base}/ui/login"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let form = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("login-form"))
            .await
            .unwrap_or_else(|e| panic!("the login form: {e}"));
        for (id, value) in [("username", user), ("password", password)] {
            let input = form
                .find(Locator::Id(id))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            input.clear().await.unwrap_or_else(|e| panic!("{e}"));
            input
                .send_keys(value)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        form.find(Locator::Id("login-button"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// With `RAMPART_SCREENSHOT_DIR` set, saves a screenshot of the page as `name.png` there
    /// (to look at the pages; the tests do not need it).
    async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("RAMPART_SCREENSHOT_DIR") else {
            return;
        };
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_a_wrong_password_and_accepts_the_right_one() {
    testkit::require!(Chromium);
    let h = Harness::start().await;
    let base = h.server.url();
    let b = Browser::start().await;

    // A stranger opening the dashboard is sent to the login page.
    b.client
        .goto(&format!("{base}/"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until(
        "redirected to the login page",
        "return location.pathname === '/ui/login' && !!document.getElementById('login-form')",
    )
    .await;
    b.login(&base, "admin", "not the password").await;
    b.until(
        "the login error is shown",
        "return document.getElementById('login-error').textContent.length > 0",
    )
    .await;
    let error = b.text("#login-error").await;
    assert!(error.contains("wrong user name or password"), "{error}");
    let url = b
        .client
        .current_url()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(url.path(), "/ui/login");

    b.login(&base, "admin", &h.admin_password()).await;
    let hosts = b.text("#hosts-table").await;
    assert!(hosts.contains("Protections available"), "{hosts}");
    assert!(b.text("#user").await.contains("admin (admin)"));
    // The session cookie is HttpOnly: page scripts cannot read it.
    let cookies = b.js("return document.cookie").await;
    assert!(
        !cookies
            .as_str()
            .unwrap_or_default()
            .contains("rampart_session"),
        "{cookies}"
    );
    b.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_an_agents_inventory_and_search_results() {
    testkit::require!(Chromium);
    let h = Harness::start().await;
    let base = h.server.url();
    let mut agent = h.agent("web-1", "eu-de").await;
    ship(
        &mut agent,
        &[
            host_inventory("inv-h", "web-1", "0.9.1"),
            container_inventory("inv-c", "web-1", &"e".repeat(64), "shop"),
            alert(
                "al-1",
                "web-1",
                "Terminal shell in container",
                &["sh", "-c", "id"],
            ),
        ],
    )
    .await;
    let b = Browser::start().await;
    b.login(&base, "admin", &h.admin_password()).await;
    b.until(
        "the overview lists the host",
        "const t = document.getElementById('hosts-table'); return !!t && t.textContent.includes('web-1')",
    )
    .await;
    let row = b.text("#hosts-table tr[data-host='web-1']").await;
    for want in ["eu-de", "0.9.1", "bpf_lsm", "seccomp", "6.12.0 / ebpf"] {
        assert!(row.contains(want), "{want} in {row}");
    }
    assert_eq!(b.text("#stat-incidents").await, "1");
    b.screenshot("overview").await;

    b.client
        .goto(&format!("{base}/ui/#/containers"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let containers = b.text("#containers-table").await;
    for want in ["shop", "registry.example/app:1.4", "invalid", "64"] {
        assert!(containers.contains(want), "{want} in {containers}");
    }
    b.screenshot("containers").await;
    let main = b
        .js("return document.getElementById('main').textContent")
        .await;
    let main = main.as_str().unwrap_or_default();
    assert!(
        !main.contains("null") && !main.contains("undefined"),
        "missing values are not printed as null: {main}"
    );

    b.client
        .goto(&format!("{base}/ui/#/search?host=web-1&kind=alert"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let found = b.text("#search-table tr[data-id='al-1']").await;
    assert!(
        found.contains("Shell in container (cmdline=sh -c id)"),
        "{found}"
    );
    b.screenshot("search").await;
    b.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_arrives_live_and_its_hostile_fields_stay_text() {
    testkit::require!(Chromium);
    let h = Harness::start().await;
    let base = h.server.url();
    let mut agent = h.agent("web-7", "eu-de").await;
    let b = Browser::start().await;
    b.login(&base, "admin", &h.admin_password()).await;
    b.text("#hosts-table").await;
    b.client
        .goto(&format!("{base}/ui/#/alerts"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until(
        "the live stream is open",
        "const s = document.getElementById('live-status'); return !!s && s.textContent === 'live'",
    )
    .await;

    // Shipped by an enrolled agent over mutual TLS after the page loaded.
    let payload = r#"<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>"#;
    ship(
        &mut agent,
        &[alert(
            "xss-1",
            "web-7",
            "Terminal shell in container",
            &["sh", "-c", payload],
        )],
    )
    .await;
    let row = b.text("#alerts-table tr[data-id='xss-1']").await;
    assert!(row.contains("web-7"), "{row}");
    assert!(
        row.contains(payload),
        "the payload is shown as the text it is: {row}"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#alerts-table img, #alerts-table script').length")
            .await,
        serde_json::json!(0),
        "no element was made from the payload"
    );
    assert_eq!(
        b.js("return typeof window.__xss").await,
        serde_json::json!("undefined")
    );
    b.screenshot("alerts").await;
    // The fleet's own correlation alerts reach the live view too: failed logins from one
    // address on three hosts, each shipped by its own host's agent (a record is stored under
    // the host its agent enrolled as).
    ship(&mut agent, &[failed_login("fl-1", "web-7", "203.0.113.9")]).await;
    for (id, host) in [("fl-2", "web-8"), ("fl-3", "web-9")] {
        let mut other = h.agent(host, "eu-de").await;
        ship(&mut other, &[failed_login(id, host, "203.0.113.9")]).await;
    }
    b.until(
        "the fleet's alert appears live",
        "return document.getElementById('alerts-table').textContent.includes('Fleet password guessing across hosts')",
    )
    .await;
    // The host drill-down renders the same fields as text too.
    b.client
        .goto(&format!("{base}/ui/#/hosts/web-7"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let alerts = b.text("#host-alerts").await;
    assert!(alerts.contains(payload), "{alerts}");
    assert_eq!(
        b.js("return document.querySelectorAll('main img, main script').length")
            .await,
        serde_json::json!(0)
    );
    b.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_shows_its_notification_deadline_counting_down() {
    testkit::require!(Chromium);
    let h = Harness::start().await;
    let base = h.server.url();
    // A host in India: CERT-In's 6 hours apply to any cyber incident there.
    let mut agent = h.agent("mumbai-1", "in").await;
    ship(
        &mut agent,
        &[alert(
            "in-1",
            "mumbai-1",
            "Terminal shell in container",
            &["sh"],
        )],
    )
    .await;
    let b = Browser::start().await;
    b.login(&base, "admin", &h.admin_password()).await;
    b.text("#hosts-table").await;
    b.client
        .goto(&format!("{base}/ui/#/incidents"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let list = b.text("#incidents-table").await;
    assert!(list.contains("mumbai-1"), "{list}");
    let id = b
        .js("return document.querySelector('#incidents-table tbody tr').getAttribute('data-id')")
        .await;
    let id = id.as_str().expect("an incident id").to_string();
    b.client
        .goto(&format!("{base}/ui/#/incidents/{id}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let css = "tr.deadline[data-key^='in-cert-in'] .countdown";
    let first = b.text(css).await;
    assert!(
        first.starts_with("05h 59m") && first.ends_with("left"),
        "six hours from the alert, counting down: {first}"
    );
    b.until(
        "the countdown ticks in the browser",
        &format!(
            "return document.querySelector(\"{}\").textContent !== {}",
            css.replace('"', "\\\""),
            serde_json::json!(first)
        ),
    )
    .await;
    let timeline = b.text("#timeline").await;
    assert!(
        timeline.contains("Terminal shell in container"),
        "{timeline}"
    );
    b.screenshot("incident").await;
    let main = b
        .js("return document.getElementById('main').textContent")
        .await;
    let main = main.as_str().unwrap_or_default();
    assert!(
        !main.contains("null") && !main.contains("undefined"),
        "missing values are not printed as null: {main}"
    );
    b.close().await;
    h.shutdown().await;
}

/// Issue 16: guesses at `admin`'s password from one address (127.0.0.2) get that address
/// delayed and then refused, but never lock `admin` out: the real admin logs in through the
/// browser from another address (127.0.0.1) right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_partys_guesses_do_not_lock_the_admin_out() {
    testkit::require!(Chromium);
    let h = Harness::start().await;
    let base = h.server.url();
    let ca = h.data_dir().join("ca/ca.crt");
    let attacker: std::net::IpAddr = [127, 0, 0, 2].into();
    let guess = serde_json::json!({"username": "admin", "password": "guess guess"}).to_string();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, _) = request_from(
            attacker,
            h.server.local_addr(),
            &ca,
            "POST",
            "/ui/api/login",
            &guess,
        )
        .await;
        statuses.push(status);
    }
    assert!(
        statuses[..5].iter().all(|s| *s == 401),
        "the first guesses are checked: {statuses:?}"
    );
    assert_eq!(
        statuses.last(),
        Some(&429),
        "then the address waits: {statuses:?}"
    );
    // The right password from the attacker's address is refused too while it waits...
    let right = serde_json::json!({"username": "admin", "password": h.admin_password()});
    let (status, _) = request_from(
        attacker,
        h.server.local_addr(),
        &ca,
        "POST",
        "/ui/api/login",
        &right.to_string(),
    )
    .await;
    assert_eq!(status, 429);

    // ... but the admin, from another address, logs in through the page.
    let b = Browser::start().await;
    b.login(&base, "admin", &h.admin_password()).await;
    let hosts = b.text("#hosts-table").await;
    assert!(hosts.contains("Protections available"), "{hosts}");
    assert!(b.text("#user").await.contains("admin (admin)"));
    b.close().await;
    h.shutdown().await;
}

/// A `mesh.report` of `host`: `services` and edges (source, destination, allowed, denied,
/// seconds ago).
fn mesh_report(
    id: &str,
    host: &str,
    services: &[(&str, u16)],
    edges: &[(&str, &str, u64, u64, u64)],
) -> serde_json::Value {
    let mut e = rampart_event::Event::new(
        rampart_event::EventId(id.into()),
        now_ns(),
        rampart_event::EventKind::MeshReport,
        device(host),
    );
    e.mesh = Some(Box::new(rampart_event::MeshReport {
        services: services
            .iter()
            .map(|(n, p)| rampart_event::MeshService {
                name: n.to_string(),
                port: *p,
            })
            .collect(),
        edges: edges
            .iter()
            .map(|(s, d, a, n, ago)| rampart_event::MeshEdge {
                source_identity: s.to_string(),
                destination_identity: d.to_string(),
                port: 5432,
                allowed: *a,
                denied: *n,
                last_ns: now_ns() - ago * 1_000_000_000,
            })
            .collect(),
    }));
    serde_json::to_value(&e).expect("event json")
}

/// The refusal a mesh proxy on `host` reports.
fn mesh_denial(id: &str, host: &str, src: &str, dst: &str, rule: &str) -> serde_json::Value {
    let mut e = rampart_event::Event::new(
        rampart_event::EventId(id.into()),
        now_ns(),
        rampart_event::EventKind::PolicyNetDenied,
        device(host),
    );
    e.policy = Some(rampart_event::PolicyInfo {
        policy: "mesh".into(),
        rule: rule.into(),
        action: "deny".into(),
        mechanism: "rampart mesh (inbound)".into(),
        reason: "rule".into(),
        source_identity: Some(src.into()),
        destination_identity: Some(dst.into()),
        ..Default::default()
    });
    serde_json::to_value(&e).expect("event json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_page_lists_services_edges_with_last_use_and_denials() {
    testkit::require!(Chromium);
    let h = Harness::start().await;
    let base = h.server.url();
    h.server
        .context()
        .control()
        .add_user("viewer", rampart_server::Role::ReadOnly, PASSWORD)
        .unwrap_or_else(|e| panic!("{e}"));
    h.server
        .context()
        .control()
        .add_user("ann", rampart_server::Role::Analyst, PASSWORD)
        .unwrap_or_else(|e| panic!("{e}"));
    let (front, rogue, backend) = (
        "spiffe://acme/vps1/frontend",
        "spiffe://acme/vps1/rogue",
        "spiffe://acme/vps2/backend",
    );
    let payload = r#"<img src=x onerror="window.__xss=1">"#;
    let mut vps2 = h.agent("vps2", "eu-de").await;
    ship(
        &mut vps2,
        &[
            mesh_report(
                "mr-1",
                "vps2",
                &[("backend", 5432)],
                &[(front, backend, 2, 0, 90), (rogue, backend, 0, 1, 30)],
            ),
            mesh_report(
                "mr-2",
                "vps2",
                &[("backend", 5432)],
                &[(front, backend, 1, 0, 5)],
            ),
            mesh_denial("md-1", "vps2", rogue, backend, payload),
        ],
    )
    .await;
    // vps2's backend container reports its address; vps1's frontend reached it in plaintext.
    let mut inv = container_inventory("inv-be", "vps2", &"b".repeat(64), "backend");
    inv["container_inventory"]["addresses"] = serde_json::json!(["10.231.2.2"]);
    let mut vps1 = h.agent("vps1", "eu-de").await;
    // vps1 also has a container at that address: the remote side is never the alert's own host.
    let mut own = container_inventory("inv-own", "vps1", &"c".repeat(64), "local-twin");
    own["container_inventory"]["addresses"] = serde_json::json!(["10.231.2.2"]);
    let mut ew = alert("ew-1", "vps1", "Plaintext east-west connection", &["nc"]);
    ew["output_fields"] = serde_json::json!({"fd.sip": "10.231.2.2", "fd.sport": "5432"});
    ship(&mut vps2, &[inv]).await;
    ship(&mut vps1, &[own, ew]).await;
    // vps3 paints traffic on vps2's service: attributed to vps3 by its certificate, left out.
    let mut vps3 = h.agent("vps3", "eu-de").await;
    ship(
        &mut vps3,
        &[
            mesh_report(
                "mr-forged",
                "vps2",
                &[],
                &[("spiffe://acme/vps3/intruder", backend, 500, 0, 1)],
            ),
            mesh_denial("md-forged", "vps2", front, backend, "forged"),
        ],
    )
    .await;

    // The route: no session 401, read-only 403, analyst 200.
    let mut c = h.client();
    assert_eq!(c.get("/ui/api/mesh", None).await.status, 401);
    let viewer = c.login("viewer", PASSWORD).await;
    assert_eq!(c.get_json("/ui/api/mesh", &viewer).await.0, 403);
    let ann = c.login("ann", PASSWORD).await;
    let (status, v) = c.get_json("/ui/api/mesh", &ann).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["claims_refused"], 2, "{v:#}");
    assert_eq!(v["edges"].as_array().map(Vec::len), Some(2), "{v:#}");

    let b = Browser::start().await;
    b.login(&base, "ann", PASSWORD).await;
    b.text("#hosts-table").await;
    b.client
        .goto(&format!("{base}/ui/#/mesh"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let services = b.text("#mesh-services").await;
    assert!(
        services.contains("vps2") && services.contains("backend") && services.contains("5432"),
        "{services}"
    );
    let ok = b
        .text(&format!("#mesh-edges tr[data-source='{front}']"))
        .await;
    assert!(ok.contains(backend), "{ok}");
    // Three allowed over two reports, last used 5 s ago (the newest report's).
    let cells: Vec<&str> = ok.split_whitespace().collect();
    assert!(cells.contains(&"3") && cells.contains(&"0"), "{ok}");
    assert!(ok.contains("s ago"), "{ok}");
    let denied = b
        .text(&format!("#mesh-edges tr[data-source='{rogue}']"))
        .await;
    assert!(denied.contains("never"), "never allowed: {denied}");
    let denials = b.text("#mesh-denials").await;
    assert!(
        denials.contains(rogue) && denials.contains(backend) && denials.contains(payload),
        "the refusal names both identities, its rule as text: {denials}"
    );
    assert!(!denials.contains("forged"), "{denials}");
    let page = b
        .js("return document.getElementById('main').textContent")
        .await;
    assert!(
        !page.as_str().unwrap_or_default().contains("intruder"),
        "{page}"
    );
    assert!(b.text("#mesh-claims").await.contains('2'));
    assert_eq!(
        b.js("return window.__xss === undefined").await,
        serde_json::Value::Bool(true)
    );
    let plain = b.text("#mesh-plaintext tr[data-id='ew-1']").await;
    assert!(
        plain.contains("10.231.2.2:5432") && plain.contains("backend on vps2"),
        "the remote container is named from vps2's inventory: {plain}"
    );
    assert!(!plain.contains("local-twin"), "{plain}");
    b.screenshot("mesh").await;
    b.close().await;
    h.shutdown().await;
}
