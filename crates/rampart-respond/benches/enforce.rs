//! Prevention benchmarks (`cargo bench -p rampart-respond --bench enforce`), each printed as a
//! ratio against a baseline measured in the same run:
//!
//! 1. Connect storm: 50,000 TCP connects (connect + close with RST) from a client container to
//!    a server container on a network of the benchmark's own, with no policy, then with a
//!    100-rule policy on the client (egress, cgroup/connect4), then on both (plus cgroup_skb
//!    ingress on the server). Rounds alternate; medians are reported.
//! 2. Exec to kill: fork + exec + wait of a binary an exec policy denies (killed at exec) in a
//!    container, against the same for an allowed one; and the cost of the global exec hook for
//!    containers no policy selects.
//! 3. Alert to isolated: a detection handed to the Responder with an `isolate` playbook, until
//!    the action is recorded, checked by a refused connect.
//!
//! The binary is also the in-container client and server: `enforce --client IP PORT N`,
//! `enforce --server PORT`, `enforce --exec N PATH` (run in the locally built Debian test
//! image, which has the host's glibc).
#![allow(clippy::unwrap_used, reason = "benchmark")]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{Alert, Container, ContainerRuntime, EventId, Priority};
use rampart_respond::facts;
use rampart_respond::{
    EnforceConfig, Policy, PolicyEnforcer, Responder, ResponderConfig, RuleActions,
};
use testkit::{docker, docker_ok, unique, TestContainer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--client") {
        return client(
            &args[i + 1],
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
    }
    if let Some(i) = args.iter().position(|a| a == "--server") {
        return server(args[i + 1].parse().unwrap());
    }
    if let Some(i) = args.iter().position(|a| a == "--exec") {
        return exec_storm(args[i + 1].parse().unwrap(), &args[i + 2]);
    }
    let connects: usize = args
        .iter()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(50_000);
    if unsafe { libc::geteuid() } != 0
        || !testkit::available(&[testkit::Need::Docker], "enforce bench")
    {
        eprintln!("the enforcement benchmark needs root and Docker");
        return;
    }
    let b = Bench::new();
    b.connect_storm(connects);
    b.exec_to_kill();
    b.alert_to_isolated();
}

/// Connects `n` times to ip:port, closing each with RST (SO_LINGER 0: no TIME_WAIT, so the
/// ephemeral ports never run out); prints the seconds taken.
fn client(ip: &str, port: u16, n: usize) {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let start = Instant::now();
    let mut failed = 0;
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as u32,
                );
            },
            Err(_) => failed += 1,
        }
    }
    println!("{} {failed}", start.elapsed().as_secs_f64());
}

fn server(port: u16) {
    let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
    for s in l.incoming() {
        drop(s);
    }
}

/// fork + exec + wait of `path` `n` times; prints mean and p99 microseconds and how many were
/// killed by a signal.
fn exec_storm(n: usize, path: &str) {
    let mut times = Vec::with_capacity(n);
    let mut killed = 0;
    for _ in 0..n {
        let t = Instant::now();
        let st = std::process::Command::new(path)
            .stdout(std::process::Stdio::null())
            .status();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if let Ok(st) = st {
            use std::os::unix::process::ExitStatusExt;
            if st.signal() == Some(libc::SIGKILL) {
                killed += 1;
            }
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let mean = times.iter().sum::<f64>() / n as f64;
    println!("{mean} {} {killed}", times[n * 99 / 100]);
}

struct Bench {
    exe: PathBuf,
    image: String,
    rt: tokio::runtime::Runtime,
    docker: rampart_container::DockerClient,
    cfg: EnforceConfig,
    _state: tempfile::TempDir,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = rampart_kernel::enforce::Enforcer::remove_all(&self.cfg.pin_dir);
    }
}

struct Net(String);
impl Drop for Net {
    fn drop(&mut self) {
        let _ = docker(["network", "rm", &self.0]);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Bench {
    fn new() -> Bench {
        let exe = std::env::current_exe().unwrap();
        let image = testkit::debian_image();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let docker = rt
            .block_on(rampart_container::DockerClient::connect(Path::new(
                rampart_container::DEFAULT_SOCKET,
            )))
            .unwrap();
        let state = tempfile::tempdir().unwrap();
        let cfg = EnforceConfig {
            pin_dir: PathBuf::from("/sys/fs/bpf/rampart-bench").join(unique("enforce")),
            state_dir: state.path().to_path_buf(),
            ..EnforceConfig::default()
        };
        Bench {
            exe,
            image,
            rt,
            docker,
            cfg,
            _state: state,
        }
    }

    fn run(&self, prefix: &str, net: &str, cmd: &[&str]) -> TestContainer {
        let mount = format!("{}:/bench:ro", self.exe.display());
        let mut args = vec![
            "--network",
            net,
            "-v",
            &mount,
            "--entrypoint",
            "/bench",
            self.image.as_str(),
        ];
        args.extend_from_slice(cmd);
        TestContainer::run(prefix, &args)
    }

    fn connect_storm(&self, n: usize) {
        let net = Net(unique("rp-bench"));
        docker_ok(["network", "create", "--internal", &net.0]);
        let server = self.run("bench-server", &net.0, &["--server", "8080"]);
        let client = self.run("bench-client", &net.0, &["--server", "9"]);
        let ip = server.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
        std::thread::sleep(Duration::from_millis(300));
        // 99 rules that do not match the server, then the one that does. `server_too`: the
        // server's selector also matches (ingress default deny: every SYN is checked).
        let policy = |server_too: bool| {
            let mut text = format!(
                "name: bench\nselectors:\n  client:\n    name: {}\n    default: {{egress: deny}}\n  server:\n    name: {}\n",
                client.name,
                if server_too { server.name.as_str() } else { "no-container-has-this-name" }
            );
            if server_too {
                text.push_str("    default: {ingress: deny}\n");
            }
            text.push_str("network:\n");
            for i in 0..99 {
                text.push_str(&format!(
                    "  - client -> 10.{}.{}.0/24 tcp/{} allow\n",
                    i / 10,
                    i % 10,
                    1000 + i
                ));
            }
            if server_too {
                text.push_str("  - client -> server tcp/8080 allow\n");
            } else {
                text.push_str(&format!("  - client -> {ip} tcp/8080 allow\n"));
            }
            Policy::parse(Path::new("bench.yaml"), &text).unwrap()
        };
        let (client_only, both) = (policy(false), policy(true));
        let facts = vec![
            self.rt
                .block_on(facts::inspect(&self.docker, &client.id))
                .unwrap(),
            self.rt
                .block_on(facts::inspect(&self.docker, &server.id))
                .unwrap(),
        ];
        let mut e = PolicyEnforcer::open(self.cfg.clone()).unwrap();
        let storm = |label: &str| -> f64 {
            let out = client.exec(&["/bench", "--client", &ip, "8080", &n.to_string()]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let mut it = text.split_whitespace();
            let secs: f64 = it
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{label}: {out:?}"));
            let failed: usize = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            // A SYN the server's accept queue dropped now and then is the network's, not the
            // policy's; reported, and bounded.
            assert!(failed * 1000 <= n, "{label}: {failed} connects failed");
            if failed > 0 {
                println!("  ({label}: {failed} connects timed out)");
            }
            secs
        };
        // Warm-up (ARP, caches).
        storm("warm-up");
        let (mut none, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            e.reset().unwrap();
            none.push(storm("no policy"));
            e.apply(&client_only, &facts).unwrap();
            one.push(storm("client policy"));
            e.apply(&both, &facts).unwrap();
            two.push(storm("both policies"));
        }
        let stats = e.kernel().stats();
        e.remove_everything().unwrap();
        let (m0, m1, m2) = (
            median(none.clone()),
            median(one.clone()),
            median(two.clone()),
        );
        println!("connect storm: {n} connects, 5 alternating rounds, median");
        println!(
            "  no policy                              {:.3} s  {:.1} µs/connect  1.000x",
            m0,
            m0 / n as f64 * 1e6
        );
        println!(
            "  100-rule policy on the client (egress) {:.3} s  {:.1} µs/connect  {:.3}x",
            m1,
            m1 / n as f64 * 1e6,
            m1 / m0
        );
        println!(
            "  + 100-rule ingress policy on server    {:.3} s  {:.1} µs/connect  {:.3}x",
            m2,
            m2 / n as f64 * 1e6,
            m2 / m0
        );
        println!("  rounds: none {none:.3?}, client {one:.3?}, both {two:.3?}");
        println!(
            "  kernel: {} connects checked, {} denied",
            stats.net_checked, stats.net_denied
        );
    }

    fn exec_to_kill(&self) {
        let net = Net(unique("rp-bench"));
        docker_ok(["network", "create", "--internal", &net.0]);
        let target = self.run("bench-exec", &net.0, &["--server", "9"]);
        let bystander = self.run("bench-exec-other", &net.0, &["--server", "9"]);
        for c in [&target, &bystander] {
            assert!(c.exec(&["cp", "/bin/true", "/tmp/xmrig"]).status.success());
        }
        let n = 2000;
        let storm = |c: &TestContainer, path: &str| -> (f64, f64, usize) {
            let out = c.exec(&["/bench", "--exec", &n.to_string(), path]);
            let t = String::from_utf8_lossy(&out.stdout).to_string();
            let v: Vec<f64> = t
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect();
            (v[0], v[1], v[2] as usize)
        };
        // The exec hook's cost for a container no policy selects: without and with the hook.
        let (base_mean, base_p99, _) = storm(&bystander, "/bin/true");
        let policy = Policy::parse(
            Path::new("exec.yaml"),
            &format!(
                "selectors:\n  t: {{name: {}}}\nexec:\n  - t deny name xmrig\n",
                target.name
            ),
        )
        .unwrap();
        let facts = vec![self
            .rt
            .block_on(facts::inspect(&self.docker, &target.id))
            .unwrap()];
        let mut e = PolicyEnforcer::open(self.cfg.clone()).unwrap();
        e.apply(&policy, &facts).unwrap();
        let (hook_mean, hook_p99, _) = storm(&bystander, "/bin/true");
        let (allowed_mean, allowed_p99, _) = storm(&target, "/bin/true");
        let (killed_mean, killed_p99, killed) = storm(&target, "/tmp/xmrig");
        assert_eq!(killed, n, "every denied exec was killed");
        e.remove_everything().unwrap();
        println!("exec to kill: {n} fork+exec+wait each, mean / p99 µs");
        println!("  unselected container, no exec hook     {base_mean:.0} / {base_p99:.0}  1.000x");
        println!(
            "  unselected container, exec hook on     {hook_mean:.0} / {hook_p99:.0}  {:.3}x",
            hook_mean / base_mean
        );
        println!(
            "  selected container, allowed /bin/true  {allowed_mean:.0} / {allowed_p99:.0}  {:.3}x",
            allowed_mean / base_mean
        );
        println!("  selected container, denied (killed)    {killed_mean:.0} / {killed_p99:.0}  {:.3}x  ({killed}/{n} killed)", killed_mean / base_mean);
    }

    fn alert_to_isolated(&self) {
        let net = Net(unique("rp-bench"));
        docker_ok(["network", "create", "--internal", &net.0]);
        let victim = self.run("bench-victim", &net.0, &["--server", "8080"]);
        let peer = self.run("bench-peer", &net.0, &["--server", "9"]);
        let ip = victim.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
        std::thread::sleep(Duration::from_millis(300));
        let dir = tempfile::tempdir().unwrap();
        let playbooks = rampart_respond::playbook::parse_playbooks(
            Path::new("pb.yaml"),
            "playbooks:\n  - name: isolate\n    match: {rules: [\"bench\"]}\n    actions: [isolate]\n",
        )
        .unwrap();
        let responder = Responder::start(
            ResponderConfig {
                playbooks,
                enforce: self.cfg.clone(),
                rule_actions: RuleActions::Off,
                forensics_dir: dir.path().to_path_buf(),
                ..ResponderConfig::default()
            },
            None,
        )
        .unwrap();
        let mut ct = Container::unnamed(victim.id.clone(), ContainerRuntime::Docker);
        ct.name = victim.name.clone();
        let mut e = PolicyEnforcer::open(self.cfg.clone()).unwrap();
        let mut times = Vec::new();
        let rounds = 20;
        for i in 0..rounds {
            let d = rampart_rules::Detection {
                alert: Alert {
                    id: EventId::new(9, i),
                    time_ns: 0,
                    rule: "bench".into(),
                    description: String::new(),
                    priority: Priority::Critical,
                    tags: Default::default(),
                    output: String::new(),
                    output_fields: Default::default(),
                    source: "syscall".into(),
                    device: Arc::new(Default::default()),
                    container: Some(Arc::new(ct.clone())),
                    process: None,
                    events: vec![],
                },
                actions: vec![],
                rule_index: 0,
            };
            let t = Instant::now();
            responder.handle(&d);
            let mut out = Vec::new();
            while responder.drain(&mut out) == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
            let r = out[0].response.as_ref().unwrap();
            assert_eq!(r.outcome, "ok", "{r:?}");
            let probe = peer.exec(&["/bench", "--client", &ip, "8080", "1"]);
            let failed = String::from_utf8_lossy(&probe.stdout)
                .split_whitespace()
                .nth(1)
                == Some("1");
            assert!(failed, "isolated: the connect fails");
            e.release(&victim.id, false).unwrap();
        }
        responder.shutdown();
        let _ = e.remove_everything();
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "alert to isolated: {rounds} detections through the Responder (playbook [isolate]), median {:.1} ms, max {:.1} ms (includes the Docker inspect of the container)",
            times[times.len() / 2],
            times[times.len() - 1]
        );
        let _ = std::io::stdout().flush();
    }
}
