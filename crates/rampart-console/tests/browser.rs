//! The dashboard end to end in headless Chromium (Debian's chromium, driven through
//! chromedriver over WebDriver): login, an alert shipped by an enrolled agent appearing live,
//! an attacker-chosen process argument shown as text, and an incident's deadline counting
//! down.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use support::*;

/// Long enough for a loaded 2-core CI box; the tests normally take a few seconds.
const WAIT: Duration = Duration::from_secs(20);

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
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
            let v = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            if v == serde_json::Value::Bool(true) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
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
            .goto(&format!("{base}/ui/"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let form = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("login-form"))
            .await
            .unwrap_or_else(|e| panic!("the dashboard sends a stranger to the login page: {e}"));
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
    b.close().await;
    h.shutdown().await;
}
