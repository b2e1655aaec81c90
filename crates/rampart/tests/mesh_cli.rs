//! `rampart mesh` end to end on loopback: `rampart server`, two agents enrolled as vps1 and
//! vps2 with `rampart enroll`, a `rampart mesh` proxy for each with certificates from the
//! server; a client reaches the backend through both proxies; a refused connection is printed
//! by vps2 as `policy.net_denied` naming both identities and reaches the server with vps2's
//! `mesh.report` through the proxy's queue; `--check` names a bad file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;
use support::server::{echo_server, free_port as port, two_enrolled_hosts};
use support::{rampart, rampart_ok, spawn, text};

fn exchange(to: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(to)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn mesh_proxies_from_the_command_line_carry_allowed_traffic_and_print_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (_server, url, server_cfg, t1, t2) = two_enrolled_hosts(d);

    let target = echo_server();
    let (inbound, out_ok, out_denied) = (port(), port(), port());
    let policy = "policy: ['frontend@vps1 -> backend@vps2:5432']\n";
    let m1 = d.join("mesh1.yaml");
    std::fs::write(
        &m1,
        format!(
            "fleet: acme\nhost: vps1\nca: {}\n{policy}peers: {{vps2: '127.0.0.1:{inbound}'}}\n\
             workloads: {{frontend: [127.0.0.1]}}\noutbound:\n\
             \x20 - {{listen: '127.0.0.1:{out_ok}', to: backend@vps2:5432}}\n\
             \x20 - {{listen: '127.0.0.1:{out_denied}', to: backend@vps2:6000}}\n",
            t1.join("ca.crt").display()
        ),
    )
    .expect("mesh1");
    let m2 = d.join("mesh2.yaml");
    std::fs::write(
        &m2,
        format!(
            "fleet: acme\nhost: vps2\nca: {}\ncrl: {}\n{policy}inbound: '127.0.0.1:{inbound}'\n\
             services:\n  - {{name: backend, port: 5432, target: '{target}'}}\n\
             \x20 - {{name: backend, port: 6000, target: '{target}'}}\n",
            t2.join("ca.crt").display(),
            d.join("crl2.pem").display()
        ),
    )
    .expect("mesh2");
    let check = rampart_ok(&["mesh", "--check", "--config", m2.to_str().expect("utf-8")]);
    assert!(check.contains("ok (host vps2, 2 services"), "{check}");

    let events = d.join("vps2-events.jsonl");
    let _p2 = spawn(
        &[
            "mesh",
            "--config",
            m2.to_str().expect("utf-8"),
            "--server",
            &url,
            "--tls-dir",
            t2.to_str().expect("utf-8"),
            "--queue",
            d.join("queue2").to_str().expect("utf-8"),
            "--report-secs",
            "1",
        ],
        Stdio::from(std::fs::File::create(&events).expect("events file")),
        &d.join("mesh2.log"),
    );
    let _p1 = spawn(
        &[
            "mesh",
            "--config",
            m1.to_str().expect("utf-8"),
            "--server",
            &url,
            "--tls-dir",
            t1.to_str().expect("utf-8"),
            "--queue",
            d.join("queue1").to_str().expect("utf-8"),
            "--report-secs",
            "1",
        ],
        Stdio::null(),
        &d.join("mesh1.log"),
    );
    let ok: SocketAddr = format!("127.0.0.1:{out_ok}").parse().expect("addr");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match exchange(ok, b"hello through rampart mesh") {
            Ok(v) => {
                assert_eq!(v, b"hello through rampart mesh");
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < end,
                    "no exchange through the mesh: {e}\nvps1: {}\nvps2: {}",
                    std::fs::read_to_string(d.join("mesh1.log")).unwrap_or_default(),
                    std::fs::read_to_string(d.join("mesh2.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    // frontend@vps1 -> backend@vps2:6000 is no rule: vps2 refuses and prints it.
    let denied: SocketAddr = format!("127.0.0.1:{out_denied}").parse().expect("addr");
    assert!(exchange(denied, b"x").is_err());
    let end = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("policy.net_denied")) {
            break l.to_string();
        }
        assert!(Instant::now() < end, "no refusal printed: {text:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(
        v["policy"]["source_identity"],
        "spiffe://acme/vps1/frontend"
    );
    assert_eq!(
        v["policy"]["destination_identity"],
        "spiffe://acme/vps2/backend"
    );
    assert_eq!(v["device"]["hostname"], "vps2");

    // The same refusal and vps2's report of the edge reach the server through vps2's queue
    // (the agent's enrollment as credential), without any other shipper.
    let analyst = rampart_ok(&[
        "server",
        "token",
        "create",
        "--config",
        &server_cfg,
        "--name",
        "ann",
        "--role",
        "analyst",
    ]);
    let ca = d.join("data/ca/ca.crt");
    let end = Instant::now() + Duration::from_secs(30);
    for kind in ["policy.net_denied", "mesh.report"] {
        loop {
            let out = rampart(&[
                "query",
                "--server",
                &url,
                "--ca",
                ca.to_str().expect("utf-8"),
                "--token",
                analyst.trim(),
                "--type",
                kind,
                "--host",
                "vps2",
                "--json",
            ]);
            let text = text(&out);
            if text.contains("\"source_identity\":\"spiffe://acme/vps1/frontend\"") {
                break;
            }
            assert!(
                Instant::now() < end,
                "no {kind} from vps2 at the server: {text}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    // A bad file is named, exit code 2.
    let bad = d.join("bad.yaml");
    std::fs::write(
        &bad,
        "fleet: acme\nhost: vps1\nca: /x\npolicy: ['frontend -> backend@vps2:1']\n",
    )
    .expect("bad");
    let out = rampart(&["mesh", "--check", "--config", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("bad.yaml: policy: rule 1"),
        "{}",
        text(&out)
    );
}
