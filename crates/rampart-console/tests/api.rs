//! The dashboard's HTTP side against a real server: login, sessions, roles, the failed-login
//! limit, and the data pages over records shipped by an enrolled agent through mutual TLS.

mod support;

use rampart_server::Role;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sessions_roles_and_the_failed_login_limit() {
    let h = Harness::start().await;
    let mut c = h.client();

    // Pages are public, data is not.
    let page = c.get("/ui/", None).await;
    assert_eq!(page.status, 200);
    let csp = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(c.get("/", None).await.status, 303, "/ redirects to /ui/");
    assert_eq!(c.get("/ui/assets/app.js", None).await.status, 200);
    for path in [
        "/ui/api/overview",
        "/ui/api/alerts",
        "/ui/api/search",
        "/ui/api/incidents",
        "/ui/api/containers",
        "/ui/api/alerts/stream",
    ] {
        assert_eq!(c.get(path, None).await.status, 401, "{path}");
        assert_eq!(
            c.get(path, Some("rmps_forged")).await.status,
            401,
            "{path} with a forged cookie"
        );
    }

    // A wrong password is refused without a cookie; the right one gets a hardened cookie.
    let wrong = c.login_raw("admin", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert!(session_of(&wrong).is_none());
    let ok = c.login_raw("admin", &h.admin_password()).await;
    assert_eq!(ok.status, 200);
    let cookie = ok
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let admin = session_of(&ok).expect("session");
    let (status, me) = c.get_json("/ui/api/me", &admin).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("admin")));

    // Read-only users see alerts, not raw events.
    h.server
        .context()
        .control()
        .add_user("viewer", Role::ReadOnly, PASSWORD)
        .unwrap_or_else(|e| panic!("{e}"));
    let viewer = c.login("viewer", PASSWORD).await;
    let (status, r) = c.get_json("/ui/api/search?host=x", &viewer).await;
    assert_eq!(status, 200);
    assert_eq!(r["restricted_to_alerts"], true);
    let (status, _) = c.get_json("/ui/api/search?kind=event", &viewer).await;
    assert_eq!(status, 403);
    let (status, r) = c.get_json("/ui/api/search?kind=event", &admin).await;
    assert_eq!(
        (status, &r["restricted_to_alerts"]),
        (200, &serde_json::json!(false))
    );

    // Logout ends the session server-side.
    let out =
        c.0.request(
            hyper::Method::POST,
            "/ui/api/logout",
            &[("cookie", &format!("__Host-rampart_session={viewer}"))],
            bytes::Bytes::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status, 200);
    assert_eq!(c.get("/ui/api/me", Some(&viewer)).await.status, 401);

    // Five failures for a user name block it, even with the right password next.
    for _ in 0..5 {
        assert_eq!(c.login_raw("viewer", "guess guess guess").await.status, 401);
    }
    let blocked = c.login_raw("viewer", PASSWORD).await;
    assert_eq!(blocked.status, 429);
    assert!(blocked.headers.contains_key("retry-after"));
    // Removing a user ends their sessions.
    let admin2 = c.login("admin", &h.admin_password()).await;
    assert!(h
        .server
        .context()
        .control()
        .remove_user("admin")
        .unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(c.get("/ui/api/me", Some(&admin2)).await.status, 401);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_what_an_enrolled_agent_shipped() {
    let h = Harness::start().await;
    let mut agent = h.agent("web-1", "eu-de").await;
    let cid = "d".repeat(64);
    ship(
        &mut agent,
        &[
            host_inventory("inv-h-1", "web-1", "0.1.0"),
            container_inventory("inv-c-1", "web-1", &cid, "shop"),
            alert(
                "al-1",
                "web-1",
                "Terminal shell in container",
                &["sh", "-c", "id"],
            ),
        ],
    )
    .await;
    // A newer host inventory replaces the older one.
    ship(&mut agent, &[host_inventory("inv-h-2", "web-1", "0.2.0")]).await;
    let mut c = h.client();
    let s = c.login("admin", &h.admin_password()).await;

    let (status, o) = c.get_json("/ui/api/overview", &s).await;
    assert_eq!(status, 200, "{o}");
    let hosts = o["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1, "{o}");
    let web = &hosts[0];
    assert_eq!(web["host"], "web-1");
    assert_eq!(
        web["region"], "eu-de",
        "the region of the agent's enrollment"
    );
    assert_eq!(web["enrolled"], true);
    assert_eq!(web["inventory"]["agent_version"], "0.2.0");
    assert_eq!(web["inventory"]["protections"][0]["name"], "bpf_lsm");
    assert_eq!(web["inventory"]["protections"][0]["available"], false);
    assert_eq!(web["alerts_24h"], 1);
    assert!(web["last_seen_ns"].as_u64().is_some());
    assert_eq!(o["recent_alerts"][0]["id"], "al-1");
    assert_eq!(
        o["recent_alerts"][0]["summary"], "Shell in container (cmdline=sh -c id)",
        "an alert's summary is its output"
    );
    assert_eq!(o["open_incidents"], 1, "the fleet grouped the alert");
    // No vulnerability database on this server: the overview says so (null), not "fresh".
    assert!(
        o.as_object().expect("object").contains_key("vulndb") && o["vulndb"].is_null(),
        "{o}"
    );

    let (_, r) = c.get_json("/ui/api/containers", &s).await;
    let cs = r["containers"].as_array().expect("containers");
    assert_eq!(cs.len(), 1, "{r}");
    assert_eq!(cs[0]["container_name"], "shop");
    assert_eq!(cs[0]["signature"], "invalid");
    assert_eq!(cs[0]["vulnerabilities"]["critical"], 2);
    assert_eq!(cs[0]["compliance_score"], 64);

    let (status, d) = c.get_json("/ui/api/hosts/web-1", &s).await;
    assert_eq!(status, 200);
    assert_eq!(d["containers"][0]["container_id"], cid.as_str());
    assert_eq!(d["alerts"][0]["rule"], "Terminal shell in container");
    assert_eq!(d["incidents"].as_array().map(Vec::len), Some(1));
    assert_eq!(c.get_json("/ui/api/hosts/nope", &s).await.0, 404);

    // Search pages through everything, each record once, even when times collide.
    let evs: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            let mut v = host_inventory(&format!("p-{i}"), "web-1", "0.2.0");
            v["type"] = "process.exec".into();
            v["time_ns"] = 1_800_000_000_000_000_000u64.into();
            v
        })
        .collect();
    ship(&mut agent, &evs).await;
    let mut seen = Vec::new();
    let mut url = "/ui/api/search?host=web-1&type=process.exec&limit=2".to_string();
    for _ in 0..5 {
        let (status, r) = c.get_json(&url, &s).await;
        assert_eq!(status, 200, "{r}");
        for rec in r["records"].as_array().expect("records") {
            seen.push(rec["id"].as_str().expect("id").to_string());
            assert!(rec["record"].is_object(), "admins get the raw record");
        }
        match r["next"].as_object() {
            Some(n) => {
                url = format!(
                    "/ui/api/search?host=web-1&type=process.exec&limit=2&until={}&skip={}",
                    n["until"].as_str().expect("until"),
                    n["skip"]
                );
            }
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["p-0", "p-1", "p-2", "p-3", "p-4"]);
    // A rule filter searches alerts.
    let (_, r) = c
        .get_json("/ui/api/search?rule=Terminal%20shell%20in%20container", &s)
        .await;
    let ids: Vec<&str> = r["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    assert_eq!(ids, ["al-1"], "{r}");
    let (status, r) = c.get_json("/ui/api/search?since=yesterday", &s).await;
    assert_eq!(status, 400, "{r}");
    h.shutdown().await;
}

/// Issue 16: guesses sent in parallel are counted before their passwords are checked, so at
/// most the free failures pass the check; a login flood from many addresses gets 503 past the
/// fixed pool of password checks instead of running hundreds of 19 MiB Argon2 checks at once;
/// and `admin` is never locked out for a third party's guesses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_are_counted_before_the_check_and_the_pool_is_fixed() {
    let h = Harness::start().await;
    let ca = h.data_dir().join("ca/ca.crt");
    let addr = h.server.local_addr();
    let guess = serde_json::json!({"username": "admin", "password": "guess guess"}).to_string();
    // 20 guesses at once from one address.
    let source: std::net::IpAddr = [127, 0, 0, 3].into();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (ca, guess) = (ca.clone(), guess.clone());
            tokio::spawn(async move {
                request_from(source, addr, &ca, "POST", "/ui/api/login", &guess)
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 5,
        "at most 5 guesses reach the check: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    // 60 logins at once from 60 addresses: 2 checks run, 16 wait, the rest are told to retry.
    let tasks: Vec<_> = (0..60u8)
        .map(|i| {
            let (ca, guess) = (ca.clone(), guess.clone());
            let source: std::net::IpAddr = [127, 0, 1, i + 1].into();
            tokio::spawn(async move {
                request_from(source, addr, &ca, "POST", "/ui/api/login", &guess)
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    assert!(
        statuses.contains(&503),
        "past the pool, logins are refused at once: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    // The admin, from yet another address, logs in.
    let mut c = h.client();
    c.login("admin", &h.admin_password()).await;
    h.shutdown().await;
}

/// Issue 19: a forensic bundle an agent uploaded for an alert is listed with that alert's
/// incident (metadata only); a bundle of another alert is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_lists_the_forensic_bundles_of_its_alerts() {
    let h = Harness::start().await;
    let mut agent = h.agent("web-1", "eu-de").await;
    ship(
        &mut agent,
        &[alert(
            "al-ev-1",
            "web-1",
            "Crypto miner launched",
            &["xmrig", "--donate-level", "1"],
        )],
    )
    .await;
    let tls_dir = h.data_dir().join("agent-web-1");
    let files = tempfile::tempdir().expect("tmp");
    let upload = |name: &str, alert_id: &str, data: &[u8]| {
        let path = files.path().join(name);
        std::fs::write(&path, data).expect("bundle");
        let meta = rampart_ship::evidence::EvidenceMeta {
            name: name.into(),
            container: "web".into(),
            incident: format!("crypto-miner@{alert_id}"),
            alert_id: alert_id.into(),
        };
        let url = h.server.url();
        let tls_dir = tls_dir.clone();
        async move {
            rampart_ship::evidence::upload_evidence(
                &url,
                &tls_dir,
                &path,
                &meta,
                &rampart_ship::evidence::UploadOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .receipt
            .sha256
        }
    };
    let mine = upload("web-1.tar.zst", "al-ev-1", b"bundle of the miner").await;
    let other = upload("other.tar.zst", "al-other", b"bundle of something else").await;
    let mut c = h.client();
    let s = c.login("admin", &h.admin_password()).await;
    let (_, list) = c.get_json("/ui/api/incidents", &s).await;
    let id = list["incidents"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an incident: {list}"))
        .to_string();
    let (status, d) = c.get_json(&format!("/ui/api/incidents/{id}"), &s).await;
    assert_eq!(status, 200);
    let ev = d["evidence"].as_array().expect("evidence");
    assert_eq!(ev.len(), 1, "{d}");
    assert_eq!(ev[0]["sha256"], mine.as_str());
    assert_eq!(ev[0]["hostname"], "web-1");
    assert_ne!(ev[0]["sha256"], other.as_str());
    h.shutdown().await;
}

/// Issue 20 item 3: the hosts of the overview and a host's page show the fleet configuration
/// version the agent reported running (through its real poll of the manifest route), when it
/// applied it, whether it is the published one, and its last refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_show_the_configuration_version_their_agent_runs() {
    let h = Harness::start().await;
    let mut agent = h.agent("web-1", "eu-de").await;
    ship(&mut agent, &[host_inventory("inv-h-1", "web-1", "0.1.0")]).await;
    let mut c = h.client();
    let s = c.login("admin", &h.admin_password()).await;
    // Before any report: no configuration shown.
    let (_, o) = c.get_json("/ui/api/overview", &s).await;
    assert!(o["hosts"][0]["config"].is_null(), "{o}");
    assert!(o["config_published"].is_null(), "{o}");

    // Two versions published; the agent reports running the first and refusing the second.
    let (control, ca) =
        rampart_server::open_control(&rampart_server::ServerConfig::with_data_dir(h.data_dir()))
            .unwrap_or_else(|e| panic!("{e}"));
    let files = std::collections::BTreeMap::from([(
        "rules/a.yaml".to_string(),
        b"- list: x\n  items: [a]\n".to_vec(),
    )]);
    for _ in 0..2 {
        rampart_server::fleetconfig::publish(h.data_dir(), &ca, &control, &files, None)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let tls = rampart_ship::tls::agent_client_config(&h.data_dir().join("agent-web-1"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut poll = rampart_ship::client::HttpClient::new(&h.server.url(), Some(tls))
        .unwrap_or_else(|e| panic!("{e}"));
    let applied = now_ns() - 60_000_000_000;
    let applied_s = applied.to_string();
    let r = poll
        .request(
            hyper::Method::GET,
            "/api/v1/config/manifest",
            &[
                ("x-rampart-config-version", "1"),
                ("x-rampart-config-applied", &applied_s),
                ("x-rampart-config-refused", "version 2: rules: <b>boom</b>"),
            ],
            bytes::Bytes::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200, "{}", r.body_text());

    let (_, o) = c.get_json("/ui/api/overview", &s).await;
    assert_eq!(o["config_published"]["version"], 2, "{o}");
    let cfg = &o["hosts"][0]["config"];
    assert_eq!(cfg["version"], 1, "{o}");
    assert_eq!(cfg["applied_ns"], applied, "{o}");
    assert_eq!(cfg["current"], false, "{o}");
    assert_eq!(cfg["published_version"], 2, "{o}");
    // The refusal is data, shown as text by the page.
    assert_eq!(cfg["refused"], "version 2: rules: <b>boom</b>", "{o}");
    let (status, d) = c.get_json("/ui/api/hosts/web-1", &s).await;
    assert_eq!(status, 200);
    assert_eq!(d["config"]["version"], 1, "{d}");
    assert_eq!(d["config"]["current"], false, "{d}");

    // Once it reports the published version it is current.
    let r = poll
        .request(
            hyper::Method::GET,
            "/api/v1/config/manifest",
            &[
                ("x-rampart-config-version", "2"),
                ("x-rampart-config-applied", &now_ns().to_string()),
            ],
            bytes::Bytes::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200);
    let (_, o) = c.get_json("/ui/api/overview", &s).await;
    assert_eq!(o["hosts"][0]["config"]["current"], true, "{o}");
    assert!(o["hosts"][0]["config"]["refused"].is_null(), "{o}");
    h.shutdown().await;
}
