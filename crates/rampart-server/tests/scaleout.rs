//! Issue 22: several servers sharing one PostgreSQL control store behave as one server. A real
//! PostgreSQL cluster on a loopback port (started by the test as the `postgres` user), two
//! control stores or two servers on it, and what a fleet needs of them: a one-use enrollment
//! token spent once however many servers race for it, one CA, revocations and sessions seen
//! everywhere, one holder of the fleet job lease.
//!
//! The same with two `rampart server` processes behind HAProxy, the dashboard and a SIGKILL:
//! crates/rampart/tests/scaleout_cli.rs.
#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_server::control::{AgentRecord, Control};
use rampart_server::{ControlStoreConfig, Role, ServerConfig};
use rampart_ship::output::{Output, ServerOutput};
use rampart_ship::queue::Entry;

fn open(pg: &testkit::Postgres) -> Arc<Control> {
    Arc::new(Control::open_postgres(&pg.url(), None).unwrap())
}

/// Runs `f(i, control)` on `n` threads at once (released together by a barrier), alternating
/// between the two control stores; the results in thread order.
fn race<T: Send + 'static>(
    stores: [&Arc<Control>; 2],
    n: usize,
    f: impl Fn(usize, &Control) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let c = stores[i % 2].clone();
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(i, &c)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn two_control_stores_on_one_postgres_decide_in_transactions() {
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let (a, b) = (open(&pg), open(&pg));
    assert!(a.is_shared() && b.is_shared());

    // A one-use token raced for by 16 enrollments on two servers: exactly one gets it, every
    // other hears "used up", and the database holds 0 uses, not -15.
    for round in 0..5 {
        let secret = a
            .create_enroll_token("eu-de", 1, Duration::from_secs(60), "")
            .unwrap();
        let s = secret.clone();
        let results = race([&a, &b], 16, move |_, c| c.redeem_enroll_token(&s));
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {ok} enrollments spent one use");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(r.to_string().contains("used up"), "{r}");
        }
        let left = pg.psql(&format!(
            "SELECT uses_left FROM enroll_tokens WHERE sha256 = '{}'",
            rampart_server::control::token_hash(&secret)
        ));
        assert_eq!(left, "0");
    }
    // Three uses, twelve racers: three.
    let secret = b
        .create_enroll_token("sg", 3, Duration::from_secs(60), "")
        .unwrap();
    let results = race([&a, &b], 12, move |_, c| c.redeem_enroll_token(&secret));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    // Expired and unknown tokens are refused with their reason.
    let expired = a.create_enroll_token("sg", 5, Duration::ZERO, "").unwrap();
    std::thread::sleep(Duration::from_millis(2));
    assert!(b
        .redeem_enroll_token(&expired)
        .unwrap_err()
        .to_string()
        .contains("expired"));
    assert!(b
        .redeem_enroll_token("00")
        .unwrap_err()
        .to_string()
        .contains("unknown"));

    // One host name, eight enrollments on two servers at once: one agent holds it.
    let results = race([&a, &b], 8, |i, c| {
        c.add_agent_unique(&AgentRecord {
            agent_id: format!("agent-{i}"),
            hostname: if i % 2 == 0 {
                "Web-1".into()
            } else {
                "web-1.".into()
            },
            region: "eu-de".into(),
            serial: format!("{i:02x}aa"),
            enrolled_ns: 1,
            not_after: 0,
            revoked_ns: None,
            last_seen_ns: None,
        })
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(a.agents().unwrap().len(), 1);
    let holder = b.agents().unwrap()[0].agent_id.clone();
    assert_eq!(
        a.agent_enrollment(&holder).unwrap().map(|e| e.0),
        Some(b.agents().unwrap()[0].hostname.clone())
    );
    // A revocation on one is in the other's revocation list.
    assert!(a.revoke_agent(&holder).unwrap());
    assert!(!b.revoke_agent(&holder).unwrap(), "revoked once");
    assert_eq!(b.revoked_serials().unwrap().len(), 1);
    // CRL numbers from both, concurrently: all different.
    let numbers = race([&a, &b], 20, |_, c| c.next_crl_number().unwrap());
    assert_eq!(numbers.iter().collect::<HashSet<_>>().len(), 20);

    // Users, sessions and API tokens made on one work on the other; ended on one, ended on both.
    a.add_user("ann", Role::Analyst, "correct horse battery")
        .unwrap();
    assert!(b
        .add_user("ann", Role::Admin, "another long password")
        .is_err());
    assert_eq!(
        b.check_password("ann", "correct horse battery").unwrap(),
        Some(Role::Analyst)
    );
    let session = a.create_session("ann", Duration::from_secs(60)).unwrap();
    assert_eq!(b.session(&session).unwrap().unwrap().username, "ann");
    b.end_session(&session).unwrap();
    assert_eq!(a.session(&session).unwrap(), None);
    let session = b.create_session("ann", Duration::from_secs(60)).unwrap();
    assert!(a.remove_user("ann").unwrap());
    assert_eq!(
        b.session(&session).unwrap(),
        None,
        "removed users lose sessions"
    );
    let token = a.create_api_token("ci", Role::ReadOnly).unwrap();
    assert_eq!(
        b.api_token_role(&token).unwrap(),
        Some(("ci".into(), Role::ReadOnly))
    );
    assert!(b.create_api_token("ci", Role::Admin).is_err());
    assert!(b.revoke_api_token("ci").unwrap());
    assert_eq!(a.api_token_role(&token).unwrap(), None);

    // One CA: the first store keeps its own, the second gets the first's without making one.
    let first = a
        .fleet_ca(|| Ok(("crt".into(), "key".into(), "meta".into())))
        .unwrap();
    let second = b
        .fleet_ca(|| Err("the second server must not make a CA".into()))
        .unwrap();
    assert_eq!(first, second);

    // The fleet job lease: one holder; renewals keep it; unrenewed, it passes on.
    let ttl = Duration::from_millis(600);
    assert!(a.lease("job", "a", ttl).unwrap());
    assert!(!b.lease("job", "b", ttl).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert!(a.lease("job", "a", ttl).unwrap(), "renewed");
    std::thread::sleep(Duration::from_millis(400));
    assert!(!b.lease("job", "b", ttl).unwrap(), "the renewal counts");
    std::thread::sleep(Duration::from_millis(700));
    assert!(b.lease("job", "b", ttl).unwrap(), "expired: taken over");
    assert!(!a.lease("job", "a", ttl).unwrap());
    b.release("job", "b").unwrap();
    assert!(a.lease("job", "a", ttl).unwrap(), "released: free at once");
    // Many racing for a free lease: one wins.
    let won = race([&a, &b], 10, |i, c| {
        c.lease("race", &format!("s{i}"), Duration::from_secs(60))
            .unwrap()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1);

    // A value only the lease holder saves (the fleet correlator's position): a server that
    // lost the lease cannot overwrite its successor's, even with its old holder name.
    let ttl = Duration::from_millis(600);
    assert!(a.lease("pos", "a", ttl).unwrap());
    assert!(a.put_leased("k", "1 a", "pos", "a").unwrap());
    assert!(
        !b.put_leased("k", "9 b", "pos", "b").unwrap(),
        "not the holder"
    );
    assert_eq!(b.leased_value("k").unwrap().as_deref(), Some("1 a"));
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        !a.put_leased("k", "2 a", "pos", "a").unwrap(),
        "an expired lease saves nothing"
    );
    assert!(b.lease("pos", "b", ttl).unwrap());
    assert!(!a.put_leased("k", "3 a", "pos", "a").unwrap());
    assert!(b.put_leased("k", "4 b", "pos", "b").unwrap());
    assert_eq!(a.leased_value("k").unwrap().as_deref(), Some("4 b"));
    assert_eq!(a.leased_value("absent").unwrap(), None);

    // Shared documents (the fleet's incidents): written on one, read on the other, replaced
    // by id, kinds apart; an id with quotes is a value.
    a.put_docs(
        "incident",
        vec![
            ("inc-1".into(), "{\"v\":1}".into()),
            ("it's".into(), "{}".into()),
        ],
    )
    .unwrap();
    b.put_docs("incident", vec![("inc-1".into(), "{\"v\":2}".into())])
        .unwrap();
    b.put_docs("other", vec![("inc-1".into(), "x".into())])
        .unwrap();
    assert_eq!(
        a.docs("incident").unwrap(),
        vec![
            ("inc-1".to_string(), "{\"v\":2}".to_string()),
            ("it's".to_string(), "{}".to_string())
        ]
    );
}

#[test]
fn a_control_store_survives_a_database_restart() {
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let c = open(&pg);
    // Use every pooled connection once, so that each holds a connection the restart cuts.
    let _ = race([&c, &c], 8, |_, c| c.users().unwrap());
    c.add_user("ann", Role::Analyst, "correct horse battery")
        .unwrap();
    pg.stop();
    let err = c.users().unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{}", pg.port)), "{err}");
    pg.start_again();
    // Every connection, idle for a second, is checked before use, notices it was cut and
    // reconnects; nothing was lost (committed rows).
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..16 {
        assert_eq!(c.users().unwrap().len(), 1);
    }
}

#[test]
fn a_wrong_postgres_url_or_a_foreign_ca_is_refused_with_the_reason() {
    testkit::require!(Root);
    let err = Control::open_postgres("postgres://rampart:s3cret@127.0.0.1:1/x", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("postgres://rampart@127.0.0.1:1/x"), "{err}");
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    // A server whose data directory has its own CA may not join a fleet with another one.
    let dir = tempfile::tempdir().unwrap();
    let cfg_of = |name: &str| {
        let mut cfg = ServerConfig::with_data_dir(dir.path().join(name));
        cfg.control_store = Some(ControlStoreConfig {
            postgres: pg.url(),
            password_file: None,
        });
        cfg
    };
    let (_, ca_a) = rampart_server::open_control(&cfg_of("a")).unwrap();
    rampart_server::ca::Ca::load_or_create(&dir.path().join("b/ca")).unwrap();
    let err = rampart_server::open_control(&cfg_of("b"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not the fleet's CA"), "{err}");
    assert!(err.contains(&hex::encode(ca_a.fingerprint())), "{err}");
    // A fresh data directory adopts the fleet's CA.
    let (_, ca_c) = rampart_server::open_control(&cfg_of("c")).unwrap();
    assert_eq!(ca_c.fingerprint(), ca_a.fingerprint());
    let key = dir.path().join("c/ca/ca.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

async fn server(pg: &testkit::Postgres, dir: &std::path::Path) -> rampart_server::ServerHandle {
    let mut cfg = ServerConfig::with_data_dir(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.control_store = Some(ControlStoreConfig {
        postgres: pg.url(),
        password_file: None,
    });
    rampart_server::start(cfg).await.unwrap()
}

fn batch(seq: u64, host: &str) -> Vec<Entry> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let ev = rampart_event::Event::new(
        rampart_event::EventId::new(7, seq),
        now,
        rampart_event::EventKind::NetConnect,
        Arc::new(rampart_event::Device {
            hostname: host.into(),
            region: None,
        }),
    );
    vec![Entry {
        seq,
        written_ms: 0,
        payload: serde_json::to_vec(&ev).unwrap(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolled_on_one_server_ships_to_the_other_until_revoked_there() {
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = server(&pg, &dir.path().join("a")).await;
    let b = server(&pg, &dir.path().join("b")).await;
    assert_eq!(a.ca_fingerprint(), b.ca_fingerprint(), "one CA");
    assert_ne!(
        a.leads_fleet(),
        b.leads_fleet(),
        "exactly one runs the fleet jobs"
    );

    // Enrolled on A (token made on B), ships to B.
    let token = b
        .create_enroll_token("eu-de", 1, Duration::from_secs(60))
        .unwrap();
    let tls = dir.path().join("agent");
    let e = rampart_ship::enroll::enroll(&a.url(), &token, "web-1", &tls, false)
        .await
        .unwrap();
    let mut out = ServerOutput::new(
        "b",
        &b.url(),
        rampart_ship::tls::agent_client_config(&tls).unwrap(),
    )
    .unwrap();
    let r = out.send(&batch(1, "web-1")).await.unwrap();
    assert_eq!((r.rejected, r.duplicates), (0, 0), "stored by B");
    // The token's one use is spent for both servers.
    let err =
        rampart_ship::enroll::enroll(&b.url(), &token, "web-2", &dir.path().join("t2"), false)
            .await
            .unwrap_err();
    assert!(err.to_string().contains("used up"), "{err}");

    // Revoked on A: B refuses it within 5 s (new connections and the kept-alive one).
    assert!(a.revoke_agent(&e.agent_id).unwrap());
    let revoked_at = Instant::now();
    let mut seq = 2;
    loop {
        let mut fresh = ServerOutput::new(
            "b2",
            &b.url(),
            rampart_ship::tls::agent_client_config(&tls).unwrap(),
        )
        .unwrap();
        let fresh_refused = fresh.send(&batch(seq, "web-1")).await.is_err();
        let kept_refused = out.send(&batch(seq + 1, "web-1")).await.is_err();
        seq += 2;
        if fresh_refused && kept_refused {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "B still accepts an agent revoked on A after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "revocation on A refused by B after {:?}",
        revoked_at.elapsed()
    );

    // The lease passes on when its holder stops.
    let (leader, other) = if a.leads_fleet() { (a, b) } else { (b, a) };
    leader.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !other.leads_fleet() {
        assert!(
            Instant::now() < deadline,
            "the fleet jobs were not handed over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    other.shutdown().await;
}

/// A fleet configuration published through server A (`rampart server config publish` on A's
/// host) is what an agent shipping to server B receives: the same newest version, a bundle
/// that verifies against the fleet CA and opens to the files published; a second publish
/// through B is then A's newest too, and a manifest in the shared store that the fleet CA did
/// not sign is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_published_through_one_server_is_served_by_the_other() {
    use rampart_server::fleetconfig;
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = server(&pg, &dir_a).await;
    let b = server(&pg, &dir_b).await;
    let token = a
        .create_enroll_token("eu-de", 1, Duration::from_secs(60))
        .unwrap();
    let tls = dir.path().join("agent");
    rampart_ship::enroll::enroll(&a.url(), &token, "web-1", &tls, false)
        .await
        .unwrap();
    let ca_dir = dir_a.join("ca");
    let agent = |url: String| {
        let tls = tls.clone();
        let ca_dir = ca_dir.clone();
        async move {
            let mut c = rampart_ship::client::HttpClient::new(
                &url,
                Some(rampart_ship::tls::agent_client_config(&tls).unwrap()),
            )
            .unwrap();
            let r = c
                .request(
                    hyper::Method::GET,
                    "/api/v1/config/manifest",
                    &[],
                    bytes::Bytes::new(),
                )
                .await
                .unwrap();
            if r.status == 404 {
                return None;
            }
            assert_eq!(r.status, 200, "{}", r.body_text());
            let signed: rampart_server::vulndb::SignedManifest =
                serde_json::from_slice(&r.body).unwrap();
            let ca = rampart_server::ca::Ca::load_or_create(&ca_dir).unwrap();
            let m = fleetconfig::verify_manifest(ca.cert(), &signed).unwrap();
            let r = c
                .request(
                    hyper::Method::GET,
                    &format!("/api/v1/config/bundle/{}", m.sha256),
                    &[],
                    bytes::Bytes::new(),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.body_text());
            let files = fleetconfig::open_payload(&m, &r.body).unwrap();
            Some((m.version, files))
        }
    };
    assert!(agent(b.url()).await.is_none(), "nothing published yet");

    // Published on A's host, with A's data directory and the shared control store.
    let publish = |data: &std::path::Path, rule: &str| {
        let control = Control::open_postgres(&pg.url(), None).unwrap();
        let ca = rampart_server::ca::Ca::load_or_create(&data.join("ca")).unwrap();
        let files = std::collections::BTreeMap::from([(
            "rules/site.yaml".to_string(),
            format!("- rule: {rule}\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: NOTICE\n").into_bytes(),
        )]);
        fleetconfig::publish(data, &ca, &control, &files, None).unwrap()
    };
    let m1 = publish(&dir_a, "From A");
    let (v, files) = agent(b.url()).await.expect("B serves A's configuration");
    assert_eq!(v, m1.version);
    assert!(String::from_utf8_lossy(&files["rules/site.yaml"]).contains("From A"));

    // Published through B: A serves B's, a higher version.
    let m2 = publish(&dir_b, "From B");
    assert!(m2.version > m1.version);
    let (v, files) = agent(a.url()).await.unwrap();
    assert_eq!(v, m2.version);
    assert!(String::from_utf8_lossy(&files["rules/site.yaml"]).contains("From B"));
    let st =
        fleetconfig::status(&dir_a, &Control::open_postgres(&pg.url(), None).unwrap()).unwrap();
    assert_eq!(st.published.map(|p| p.version), Some(m2.version));

    // A forged newer manifest in the shared store (someone with database access but not the
    // CA key) is refused: the servers keep serving version 2.
    let control = Control::open_postgres(&pg.url(), None).unwrap();
    let (_, text) = control
        .last_doc(fleetconfig::SHARED_MANIFESTS)
        .unwrap()
        .unwrap();
    let forged = text.replace(
        &format!("\\\"version\\\":{}", m2.version),
        "\\\"version\\\":99",
    );
    assert_ne!(forged, text, "the manifest names its version");
    control
        .put_docs(
            fleetconfig::SHARED_MANIFESTS,
            vec![(format!("{:020}", 99), forged)],
        )
        .unwrap();
    let (v, _) = agent(b.url()).await.unwrap();
    assert_eq!(v, m2.version);
    let (v, _) = agent(a.url()).await.unwrap();
    assert_eq!(v, m2.version);
    a.shutdown().await;
    b.shutdown().await;
}

/// A mesh certificate issued by server B to an agent enrolled on A is recorded fleet-wide:
/// revoking the agent on A puts that certificate on both servers' CRLs within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_certificate_issued_by_one_server_is_revoked_on_every_server() {
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = server(&pg, &dir_a).await;
    let b = server(&pg, &dir_b).await;
    let token = a
        .create_enroll_token("eu-de", 1, Duration::from_secs(60))
        .unwrap();
    let tls = dir.path().join("agent");
    let e = rampart_ship::enroll::enroll(&a.url(), &token, "vps1", &tls, false)
        .await
        .unwrap();
    let mut agent = rampart_ship::client::HttpClient::new(
        &b.url(),
        Some(rampart_ship::tls::agent_client_config(&tls).unwrap()),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let body = serde_json::json!({
        "fleet": "acme", "workload": "frontend",
        "public_key": hex::encode(key.public_key_raw()), "ttl_secs": 600
    });
    let r = agent
        .request(
            hyper::Method::POST,
            "/api/v1/mesh/certificate",
            &[("content-type", "application/json")],
            bytes::Bytes::from(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "issued by B: {}", r.body_text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let serial = hex::decode(v["serial"].as_str().unwrap()).unwrap();

    assert!(a.revoke_agent(&e.agent_id).unwrap());
    let revoked_at = Instant::now();
    let on_crl = |data: &std::path::Path| {
        let Ok(der) = rampart_server::ca::Ca::read_crl(&data.join("ca")) else {
            return false;
        };
        let crl = webpki::OwnedCertRevocationList::from_der(&der).unwrap();
        let crl = webpki::CertRevocationList::from(crl);
        crl.find_serial(&serial).unwrap().is_some()
    };
    while !(on_crl(&dir_a) && on_crl(&dir_b)) {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "the mesh certificate B issued is not on both CRLs after {:?} (A: {}, B: {})",
            revoked_at.elapsed(),
            on_crl(&dir_a),
            on_crl(&dir_b)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "mesh certificate on both CRLs {:?} after the revocation",
        revoked_at.elapsed()
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A forensic bundle an agent uploads to server A is listed by server B (its record is in the
/// shared control store), counted against the agent's quota on both, and B's download names
/// the server that holds the bytes; A serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forensic_bundle_stored_by_one_server_is_listed_by_the_other() {
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = server(&pg, &dir_a).await;
    let b = server(&pg, &dir_b).await;
    let token = a
        .create_enroll_token("eu-de", 1, Duration::from_secs(60))
        .unwrap();
    let tls = dir.path().join("agent");
    let e = rampart_ship::enroll::enroll(&a.url(), &token, "vps1", &tls, false)
        .await
        .unwrap();
    let bundle = dir.path().join("bundle.tar.zst");
    std::fs::write(&bundle, b"forensic bytes of vps1".repeat(100)).unwrap();
    let meta = rampart_ship::evidence::EvidenceMeta {
        name: "web".into(),
        container: "c0ffee".into(),
        incident: "kill@alert-1".into(),
        alert_id: "alert-1".into(),
    };
    let up = rampart_ship::evidence::upload_evidence(
        &a.url(),
        &tls,
        &bundle,
        &meta,
        &rampart_ship::evidence::UploadOptions::default(),
    )
    .await
    .unwrap();
    let token = a
        .create_api_token("analyst", rampart_server::Role::Analyst)
        .unwrap();
    let get = |url: String, path: String| {
        let (token, ca) = (token.clone(), dir_a.join("ca/ca.crt"));
        async move {
            let roots = rampart_ship::tls::load_roots(&ca).unwrap();
            let tls = rampart_ship::tls::client_config(roots, None).unwrap();
            let mut c = rampart_ship::client::HttpClient::new(&url, Some(tls)).unwrap();
            let auth = format!("Bearer {token}");
            c.request(
                hyper::Method::GET,
                &path,
                &[("authorization", &auth)],
                bytes::Bytes::new(),
            )
            .await
            .unwrap()
        }
    };
    let r = get(b.url(), format!("/api/v1/evidence?agent={}", e.agent_id)).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let listed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let text = listed.to_string();
    assert!(text.contains(&up.sha256), "B lists A's bundle: {text}");
    assert!(text.contains("vps1"), "{text}");
    let control = Control::open_postgres(&pg.url(), None).unwrap();
    assert_eq!(control.evidence_bytes(&e.agent_id).unwrap(), 2200);

    // The same bundle again, through B: one record (the agent's retry after a failover).
    let again = rampart_ship::evidence::upload_evidence(
        &b.url(),
        &tls,
        &bundle,
        &meta,
        &rampart_ship::evidence::UploadOptions::default(),
    )
    .await
    .unwrap();
    assert!(again.receipt.duplicate, "{again:?}");
    assert_eq!(control.evidence_bytes(&e.agent_id).unwrap(), 2200);

    // Downloads: B has the bytes of the retry; a bundle only A holds is named on B.
    let r = get(a.url(), format!("/api/v1/evidence/{}", up.sha256)).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.body.len(), 2200);
    let other = dir.path().join("other.tar.zst");
    std::fs::write(&other, b"only on A".repeat(10)).unwrap();
    let only_a = rampart_ship::evidence::upload_evidence(
        &a.url(),
        &tls,
        &other,
        &meta,
        &rampart_ship::evidence::UploadOptions::default(),
    )
    .await
    .unwrap();
    let r = get(b.url(), format!("/api/v1/evidence/{}", only_a.sha256)).await;
    assert_eq!(r.status, 404, "{}", r.body_text());
    assert!(
        r.body_text().contains("stored by server"),
        "{}",
        r.body_text()
    );
    a.shutdown().await;
    b.shutdown().await;
}
