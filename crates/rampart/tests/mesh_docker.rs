//! `rampart mesh` with `docker:` (root, Docker): vps1's workloads come from the running
//! containers, started after the proxy (the container events keep it current). A container
//! named in the policy reaches vps2's backend through the mesh; a container that labels itself
//! with that container's identity and service gets neither: it is named by its own Docker name
//! and refused at vps2, and the proxy reports the labels it ignored.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::TestContainer;

mod support;
use support::server::{echo_server, free_port, two_enrolled_hosts};
use support::spawn;

/// `echo MSG | nc ADDR` inside the container, for at most 3 s; returns what came back.
fn nc(c: &TestContainer, addr: &str, msg: &str) -> String {
    let out = c.exec(&["sh", "-c", &format!("echo {msg} | timeout 3 nc {addr}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn workloads_come_from_docker_names_and_labels_cannot_claim_an_identity() {
    testkit::require!(Root, Docker);
    let gateway = testkit::docker_ok([
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (_server, url, _, t1, t2) = two_enrolled_hosts(d);

    // vps2's backend: an echo server on loopback, offered through vps2's configuration.
    let target = echo_server();
    let fe_name = testkit::unique("meshfe");
    let (inbound, out) = (free_port(), free_port());
    let policy = format!("policy: ['{fe_name}@vps1 -> backend@vps2:5432']\n");
    let m1 = d.join("mesh1.yaml");
    std::fs::write(
        &m1,
        format!(
            "fleet: acme\nhost: vps1\nca: {}\n{policy}peers: {{vps2: '127.0.0.1:{inbound}'}}\n\
             docker: /var/run/docker.sock\n\
             outbound: [{{listen: '{gateway}:{out}', to: backend@vps2:5432}}]\n",
            t1.join("ca.crt").display()
        ),
    )
    .expect("mesh1");
    let m2 = d.join("mesh2.yaml");
    std::fs::write(
        &m2,
        format!(
            "fleet: acme\nhost: vps2\nca: {}\n{policy}inbound: '127.0.0.1:{inbound}'\n\
             services: [{{name: backend, port: 5432, target: '{target}'}}]\n",
            t2.join("ca.crt").display()
        ),
    )
    .expect("mesh2");
    let events = d.join("vps2-events.jsonl");
    let proxy = |cfg: &Path, tls: &Path, queue: &str, out: Stdio, log: &str| {
        spawn(
            &[
                "mesh",
                "--config",
                cfg.to_str().expect("utf-8"),
                "--server",
                &url,
                "--tls-dir",
                tls.to_str().expect("utf-8"),
                "--queue",
                d.join(queue).to_str().expect("utf-8"),
            ],
            out,
            &d.join(log),
        )
    };
    let _p2 = proxy(
        &m2,
        &t2,
        "q2",
        Stdio::from(std::fs::File::create(&events).expect("events")),
        "mesh2.log",
    );
    let _p1 = proxy(&m1, &t1, "q1", Stdio::null(), "mesh1.log");
    let logs = || {
        format!(
            "vps1: {}\nvps2: {}",
            std::fs::read_to_string(d.join("mesh1.log")).unwrap_or_default(),
            std::fs::read_to_string(d.join("mesh2.log")).unwrap_or_default()
        )
    };

    // Started after the proxies: only the container events tell vps1 about them.
    let img = testkit::busybox_image();
    let fe = TestContainer {
        id: testkit::docker_ok(["run", "-d", "--name", &fe_name, &img, "sleep", "600"]),
        name: fe_name.clone(),
    };
    let claim_id = format!("rampart.mesh.identity=spiffe://acme/vps1/{fe_name}");
    let claim_service = format!("rampart.mesh.service={fe_name}:5432");
    let evil = TestContainer::run(
        "mesh-evil",
        &[
            "--label",
            &claim_id,
            "--label",
            &claim_service,
            &img,
            "sleep",
            "600",
        ],
    );
    let to = format!("{gateway} {out}");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if nc(&fe, &to, "through-the-mesh").contains("through-the-mesh") {
            break;
        }
        assert!(
            Instant::now() < end,
            "frontend never got through\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The impostor's bytes never come back, and vps2 names it by its own container name.
    assert_eq!(nc(&evil, &to, "impostor"), "", "{}", logs());
    let want = format!("\"source_identity\":\"spiffe://acme/vps1/{}\"", evil.name);
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if text.contains(&want) {
            assert!(
                !text.contains(&format!("spiffe://acme/vps1/{fe_name}\"")),
                "the frontend was never refused: {text}"
            );
            break;
        }
        assert!(
            Instant::now() < end,
            "no refusal naming {}: {text}\n{}",
            evil.name,
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log1 = std::fs::read_to_string(d.join("mesh1.log")).unwrap_or_default();
    assert!(
        log1.contains(&format!(
            "\\\"{}\\\": label rampart.mesh.identity",
            evil.name
        )) || log1.contains(&format!("\"{}\": label rampart.mesh.identity", evil.name)),
        "{log1}"
    );
    assert!(
        log1.contains("offers services under its own name only"),
        "{log1}"
    );
    drop((fe, evil));
}
