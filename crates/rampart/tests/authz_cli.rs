//! `rampart authz` against a real dockerd (issue 15): a second dockerd started by the test with
//! `--authorization-plugin`, raw HTTP requests over its unix socket (not only the docker CLI),
//! every spelling of a grant the issue lists plus a generated set (random case, Kelvin sign and
//! long s, every API version prefix, percent-encoded and absolute request targets). The
//! verdict is read from what dockerd created (`docker inspect`), not from the plugin's answer:
//! no container may be privileged, share a host (or another container's) namespace, see a
//! device or bind a sensitive host path, and no exec may be privileged or root. The harmless
//! controls (a limited, non-root create; a non-root exec) stay allowed.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;
use support::dockerd::{dockerd_argv, spawn_logged, wait_for, NetNs};
use testkit::load_images;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// One HTTP/1.1 request over the daemon's unix socket, written by hand so the request target
/// and body are exactly what the test says (absolute form, escapes, duplicate keys).
fn http(sock: &Path, method: &str, target: &str, body: Option<&str>) -> (u16, String) {
    http_with(sock, method, target, body, "")
}

/// [`http`] with extra header lines (`"Name: value\r\n"`).
fn http_with(
    sock: &Path,
    method: &str,
    target: &str,
    body: Option<&str>,
    headers: &str,
) -> (u16, String) {
    let mut s = UnixStream::connect(sock).expect("connect dockerd");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut r = rest;
        while let Some((len, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            r = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

/// xorshift64*: a reproducible generator (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// `key` in a random case as Go matches it: ASCII letters flipped, `k` as U+212A KELVIN SIGN
/// and `s` as U+017F LATIN SMALL LETTER LONG S now and then.
fn spell(rng: &mut Rng, key: &str) -> String {
    key.chars()
        .map(|c| {
            let r = rng.next() % 6;
            match (c.to_ascii_lowercase(), r) {
                ('k', 0) => '\u{212A}',
                ('s', 0) => '\u{017F}',
                (_, 1 | 2) => c.to_ascii_uppercase(),
                (_, 3 | 4) => c.to_ascii_lowercase(),
                _ => c,
            }
        })
        .collect()
}

/// A request target for `path` (`/containers/create`): a random version prefix, escapes and
/// form, all of which dockerd routes to the same handler.
fn target(rng: &mut Rng, path: &str) -> String {
    let versions: Vec<String> = std::iter::once(String::new())
        .chain((12..=41).map(|m| format!("/v1.{m}")))
        .collect();
    let v = rng.pick(&versions).clone();
    let escaped: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphabetic() && rng.next().is_multiple_of(4) {
                format!("%{:02X}", c as u32)
            } else if c == '/' && rng.next().is_multiple_of(8) {
                "%2F".to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    // Keep the leading slash literal (a request target starts with `/`).
    let escaped = format!(
        "/{}",
        escaped.trim_start_matches('/').trim_start_matches("%2F")
    );
    match rng.next() % 4 {
        0 => format!("http://localhost{v}{escaped}"),
        1 => format!("HTTP://docker:2375{v}{escaped}"),
        _ => format!("{v}{escaped}"),
    }
}

/// Host paths whose bind, or a bind of a parent of them, exposes the host.
const SENSITIVE: &[&str] = &[
    "/",
    "/etc",
    "/root",
    "/home",
    "/usr",
    "/lib",
    "/bin",
    "/sbin",
    "/boot",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/log",
];

fn sensitive(p: &str, extra: &[String]) -> bool {
    let p = p.trim_end_matches('/');
    let p = if p.is_empty() { "/" } else { p };
    SENSITIVE
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
        .any(|s| {
            p == s
                || (s != "/" && p.starts_with(&format!("{s}/")))
                || s.starts_with(&format!("{}/", p.trim_end_matches('/')))
        })
}

/// What dockerd created, judged: every container, every exec. Returns the names of the
/// containers and the problems found.
/// `shareable`: the containers whose namespaces and mounts a container may share (the harmless
/// control); `preexisting`: containers made before the plugin ran (not judged here).
fn audit(
    dk: &[&str],
    data_root: &str,
    default_cgroupns: &Value,
    shareable: &[String],
    preexisting: &[&str],
) -> (Vec<String>, Vec<String>) {
    let mut all = dk.to_vec();
    all.extend(["ps", "-aq", "--no-trunc"]);
    let o = testkit::docker(&all);
    assert!(o.status.success(), "{:?}", text(&o));
    let ids: Vec<String> = text(&o).0.lines().map(str::to_string).collect();
    let mut names = Vec::new();
    let mut problems = Vec::new();
    let extra = vec![data_root.to_string()];
    for id in ids {
        let mut a = dk.to_vec();
        a.extend(["inspect", id.as_str()]);
        let o = testkit::docker(&a);
        let v: Value = serde_json::from_str(&text(&o).0).expect("inspect json");
        let c = &v[0];
        let name = c["Name"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        if preexisting.contains(&name.as_str()) {
            continue;
        }
        let hc = &c["HostConfig"];
        let mut bad = |what: String| problems.push(format!("{name}: {what}"));
        if hc["Privileged"].as_bool() == Some(true) {
            bad("privileged".into());
        }
        for f in ["PidMode", "IpcMode", "UTSMode", "UsernsMode", "NetworkMode"] {
            let m = hc[f].as_str().unwrap_or_default();
            let shared_ok = m
                .strip_prefix("container:")
                .is_some_and(|t| shareable.iter().any(|s| s == t) && f != "UsernsMode");
            if m == "host" || (m.starts_with("container:") && !shared_ok) {
                bad(format!("{f}={m}"));
            }
        }
        for v in hc["VolumesFrom"].as_array().into_iter().flatten() {
            let t = v
                .as_str()
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default();
            if !shareable.iter().any(|s| s == t) {
                bad(format!("VolumesFrom {t}"));
            }
        }
        // The cgroup namespace: the daemon's default (host on cgroup v1) is what every
        // container gets; a request must not choose another.
        if hc["CgroupnsMode"] != *default_cgroupns {
            bad(format!(
                "CgroupnsMode={} (daemon default {default_cgroupns})",
                hc["CgroupnsMode"]
            ));
        }
        for f in ["Devices", "DeviceCgroupRules", "DeviceRequests", "CapAdd"] {
            if hc[f].as_array().is_some_and(|a| !a.is_empty()) {
                bad(format!("{f}={}", hc[f]));
            }
        }
        for o in hc["SecurityOpt"].as_array().into_iter().flatten() {
            let o = o.as_str().unwrap_or_default();
            if o.contains("unconfined") || o.contains("disable") || o.contains("=false") {
                bad(format!("SecurityOpt {o}"));
            }
        }
        for f in ["MaskedPaths", "ReadonlyPaths"] {
            if hc[f].as_array().is_some_and(|a| a.is_empty()) {
                bad(format!("{f}=[]"));
            }
        }
        if hc["Sysctls"].as_object().is_some_and(|m| !m.is_empty()) {
            bad(format!("Sysctls {}", hc["Sysctls"]));
        }
        for m in c["Mounts"].as_array().into_iter().flatten() {
            let src = m["Source"].as_str().unwrap_or_default();
            if m["Type"] == "bind" && sensitive(src, &extra) {
                bad(format!("bind of {src}"));
            }
            let prop = m["Propagation"].as_str().unwrap_or_default();
            if prop.contains("shared") {
                bad(format!("propagation {prop}"));
            }
        }
        for b in hc["Binds"].as_array().into_iter().flatten() {
            let src = b
                .as_str()
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default();
            if src.starts_with('/') && sensitive(src, &extra) {
                bad(format!("bind of {src}"));
            }
        }
        let user = c["Config"]["User"].as_str().unwrap_or_default();
        let uid = user.split(':').next().unwrap_or_default();
        if uid.is_empty()
            || uid == "root"
            || uid
                .trim_start_matches(['+', '-'])
                .trim_start_matches('0')
                .is_empty()
        {
            bad(format!("user {user:?}"));
        }
        if hc["PidsLimit"].as_i64().unwrap_or(0) <= 0 || hc["Memory"].as_i64().unwrap_or(0) <= 0 {
            bad(format!(
                "limits lifted: pids {} memory {}",
                hc["PidsLimit"], hc["Memory"]
            ));
        }
        names.push(name);
    }
    (names, problems)
}

/// The execs dockerd created in `container`, read over the Engine API.
fn execs(sock: &Path, container: &str) -> Vec<Value> {
    let (st, body) = http(sock, "GET", &format!("/containers/{container}/json"), None);
    assert_eq!(st, 200, "{body}");
    let c: Value = serde_json::from_str(&body).expect("json");
    c["ExecIDs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|id| {
            let (st, body) = http(
                sock,
                "GET",
                &format!("/exec/{}/json", id.as_str().unwrap_or_default()),
                None,
            );
            assert_eq!(st, 200, "{body}");
            serde_json::from_str(&body).expect("exec json")
        })
        .collect()
}

#[test]
fn authz_plugin_judges_what_dockerd_will_do() {
    testkit::require!(Root, Docker);
    let ns = NetNs::new("authz2");
    let dir = tempfile::Builder::new()
        .prefix("rampart-authz2-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let d = dir.path();
    let exec = ns.exec();

    // fail: open, to show that rule violations deny whatever the fail mode.
    std::fs::write(
        d.join("admission.yaml"),
        "fail: open\nrules: [privileged, host-namespaces, sensitive-mounts, non-root, limits, seccomp, capabilities, devices, confinement]\n",
    )
    .expect("policy");
    let plugin = format!("rampart-test2-{}", std::process::id());
    let plugin_sock = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let docker_sock = d.join("docker.sock");
    let events = d.join("events.jsonl");
    let _ = std::fs::remove_file(&plugin_sock);
    let mut argv = exec.clone();
    argv.extend(
        [
            env!("CARGO_BIN_EXE_rampart"),
            "authz",
            "--policy",
            &d.join("admission.yaml").display().to_string(),
            "--socket",
            &plugin_sock.display().to_string(),
            "--docker-socket",
            &docker_sock.display().to_string(),
            "--events",
            &events.display().to_string(),
            "--ship",
            &d.join("ship.yaml").display().to_string(),
            "--hostname",
            "authz-test-host",
        ]
        .map(String::from),
    );
    // Decisions are shipped as events through a durable queue (here to a file output).
    let shipped = d.join("shipped.jsonl");
    std::fs::write(
        d.join("ship.yaml"),
        format!(
            "queue: {{dir: {}, fsync: batch}}\noutputs: [{{type: file, path: {}}}]\n",
            d.join("queue").display(),
            shipped.display()
        ),
    )
    .expect("ship config");
    let plog = d.join("plugin.log");
    let mut plugin_proc = spawn_logged(&argv, &plog);
    wait_for("the plugin", &plog, || plugin_sock.exists());

    let data_root = d.join("data").display().to_string();
    let cgroup_parent = format!("/rampart-authz2-{}", std::process::id());
    let argv = dockerd_argv(
        &ns,
        d,
        "authz2",
        &[format!("unix://{}", docker_sock.display())],
        &["--authorization-plugin".to_string(), plugin.clone()],
    );
    let h = format!("unix://{}", docker_sock.display());
    let dk: Vec<&str> = vec!["-H", &h];
    let image = testkit::busybox_image();
    // First without the plugin: the image, and a bind volume of `/` made before the plugin
    // was installed (mounting it by name later must be judged by what it is).
    let without: Vec<String> = {
        let at = argv
            .iter()
            .position(|a| a == "--authorization-plugin")
            .expect("flag");
        let mut v = argv.clone();
        v.drain(at..at + 2);
        v
    };
    let dlog0 = d.join("dockerd-without-plugin.log");
    {
        let mut daemon = spawn_logged(&without, &dlog0);
        wait_for("the second dockerd", &dlog0, || {
            testkit::docker(["-H", h.as_str(), "version"])
                .status
                .success()
        });
        load_images(&h, &[image.as_str()]);
        let o = testkit::docker([
            "-H",
            &h,
            "volume",
            "create",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            "device=/",
            "hostroot",
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        // Containers made before the plugin: sharing their namespaces or mounts must be judged
        // by what they are.
        for args in [
            vec!["--privileged"],
            vec!["--pid", "host"],
            vec!["-v", "/:/host"],
        ] {
            let name = match args[0] {
                "--privileged" => "priv",
                "--pid" => "hostpid",
                _ => "rootbind",
            };
            let mut a = vec![
                "-H",
                h.as_str(),
                "create",
                "--name",
                name,
                "--network",
                "none",
            ];
            a.extend(args);
            a.extend([image.as_str(), "sleep", "1000"]);
            let o = testkit::docker(&a);
            assert!(o.status.success(), "{:?}", text(&o));
        }
        daemon.stop();
    }
    let dlog = d.join("dockerd.log");
    let mut daemon = spawn_logged(&argv, &dlog);
    wait_for("the second dockerd", &dlog, || {
        testkit::docker(["-H", h.as_str(), "version"])
            .status
            .success()
    });
    let sock = docker_sock.as_path();

    // Controls: the docker CLI's own create (every HostConfig field it sends must be known),
    // limited and non-root, started; and a non-root exec in it.
    let ctl = "ctl";
    let o = testkit::docker([
        "-H",
        &h,
        "create",
        "--name",
        ctl,
        "--user",
        "1000",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "64",
        "--network",
        "none",
        &image,
        "sleep",
        "1000",
    ]);
    assert!(
        o.status.success(),
        "the harmless control was refused: {:?}",
        text(&o)
    );
    let o = testkit::docker(["-H", &h, "start", ctl]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = testkit::docker(["-H", &h, "exec", "--user", "1000", ctl, "true"]);
    assert!(
        o.status.success(),
        "the non-root exec was refused: {:?}",
        text(&o)
    );
    let o = testkit::docker([
        "-H",
        &h,
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "64",
        &image,
        "true",
    ]);
    assert!(
        !o.status.success(),
        "root (the image's user) must be refused"
    );
    assert!(text(&o).1.contains("[non-root]"), "{:?}", text(&o));

    let base = json!({"Image": image, "User": "1000", "Cmd": ["true"],
        "HostConfig": {"Memory": 67108864, "NanoCpus": 500000000, "PidsLimit": 64, "NetworkMode": "none"}});
    let mut allowed_names = vec![ctl.to_string()];
    // The control body over raw HTTP, in every request-target form dockerd routes: allowed.
    let mut rng = Rng(0x5eed_1500_u64 ^ u64::from(std::process::id()));
    eprintln!("seed {:#x}", rng.0);
    for (i, t) in [
        "/containers/create".to_string(),
        "/v1.41/containers/create".to_string(),
        "/v1.24/%63ontainers/create".to_string(),
        "http://localhost/v1.41/containers%2Fcreate".to_string(),
        "/v1.41/%63%6F%6E%74%61%69%6E%65%72%73/create".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("ok{i}");
        let sep = if t.contains('?') { '&' } else { '?' };
        let (st, body) = http(
            sock,
            "POST",
            &format!("{t}{sep}name={name}"),
            Some(&base.to_string()),
        );
        assert_eq!(st, 201, "control via {t}: {body}");
        allowed_names.push(name);
    }

    // Sharing the harmless control's namespaces and mounts is judged by what it is: allowed.
    for (i, extra) in [
        json!({"PidMode": format!("container:{ctl}"), "NetworkMode": format!("container:{ctl}")}),
        json!({"IpcMode": format!("container:{ctl}"), "VolumesFrom": [ctl]}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = base.clone();
        b["HostConfig"]["NetworkMode"] = json!("none");
        for (k, v) in extra.as_object().expect("object") {
            b["HostConfig"][k] = v.clone();
        }
        let name = format!("share{i}");
        let (st, body) = http(
            sock,
            "POST",
            &format!("/v1.41/containers/create?name={name}"),
            Some(&b.to_string()),
        );
        assert_eq!(st, 201, "sharing with the control: {body}");
        allowed_names.push(name);
    }

    // Attacks: the control body plus one grant, spelled as the issue lists.
    let with_hc = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            b["HostConfig"][k] = v.clone();
        }
        b.to_string()
    };
    let ctl_id = text(&testkit::docker([
        "-H", &h, "inspect", "--format", "{{.Id}}", ctl,
    ]))
    .0
    .trim()
    .to_string();
    let l = r#""Memory":67108864,"NanoCpus":500000000,"PidsLimit":64"#;
    let mut attacks: Vec<(String, String, String)> = Vec::new();
    let create = |body: String| {
        (
            "POST".to_string(),
            "/v1.41/containers/create".to_string(),
            body,
        )
    };
    for raw in [
        format!(r#"{{"Image":"{image}","User":"1000","HostConfig":{{{l},"privileged":true}}}}"#),
        format!(r#"{{"Image":"{image}","User":"1000","HostConfig":{{{l},"binds":["/:/host"]}}}}"#),
        format!(r#"{{"Image":"{image}","User":"1000","HostConfig":{{{l},"pidmode":"host"}}}}"#),
        format!(r#"{{"Image":"{image}","User":"1000","hostconfig":{{{l},"Privileged":true}}}}"#),
        format!(r#"{{"Image":"{image}","User":"1000","HostConfig":{{{l}}},"hostconfig":{{{l},"Privileged":true}}}}"#),
        format!(r#"{{"Image":"{image}","User":"1000","HostConfig":{{{l},"Privileged":false,"privileged":true}}}}"#),
        format!("{{\"Image\":\"{image}\",\"User\":\"1000\",\"HostConfig\":{{{l},\"Bind\u{17F}\":[\"/:/host\"]}}}}"),
        format!("{{\"Image\":\"{image}\",\"User\":\"1000\",\"HostConfig\":{{{l},\"Networ\u{212A}Mode\":\"host\"}}}}"),
        format!(r#"{{"Image":"{image}","image":"{image}","User":"1000","HostConfig":{{{l}}}}}"#),
        format!(r#"{{"Image":"{image}","User":"1000","Privileged":true,"Binds":["/:/host"],"PidMode":"host"}}"#),
        format!(r#"{{"Image":"{image}","User":"1000","Privileged":true,"HostConfig":{{{l}}}}}"#),
        format!(r#"{{"Image":"{image}","user":"1000","User":"0","HostConfig":{{{l}}}}}"#),
    ] {
        attacks.push(create(raw));
    }
    for extra in [
        json!({"Devices": [{"PathOnHost": "/dev/mem", "PathInContainer": "/dev/mem", "CgroupPermissions": "rwm"}]}),
        json!({"DeviceCgroupRules": ["c *:* rwm"]}),
        json!({"VolumesFrom": ["priv"]}),
        json!({"VolumesFrom": ["rootbind:ro"]}),
        json!({"PidMode": "container:priv"}),
        json!({"PidMode": "container:hostpid"}),
        json!({"NetworkMode": "container:priv"}),
        json!({"IpcMode": "container:priv"}),
        json!({"UTSMode": "container:priv"}),
        json!({"CgroupnsMode": "host"}),
        json!({"UsernsMode": "host"}),
        json!({"UTSMode": "host"}),
        json!({"SecurityOpt": ["apparmor=unconfined"]}),
        json!({"SecurityOpt": ["label=disable"]}),
        json!({"SecurityOpt": ["label:disable"]}),
        json!({"SecurityOpt": ["systempaths=unconfined"]}),
        json!({"SecurityOpt": ["seccomp=unconfined"]}),
        json!({"SecurityOpt": ["no-new-privileges=false"]}),
        json!({"SecurityOpt": [r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#]}),
        json!({"MaskedPaths": []}),
        json!({"ReadonlyPaths": []}),
        json!({"Sysctls": {"kernel.shm_rmid_forced": "1"}}),
        json!({"CapAdd": "sys_admin"}),
        json!({"CapAdd": ["cap_\u{17F}ys_admin"]}),
        json!({"Binds": ["/var:/host"]}),
        json!({"Binds": ["/run:/host"]}),
        json!({"Binds": ["/usr:/host"]}),
        json!({"Binds": ["/home:/host"]}),
        json!({"Binds": ["/etc/../:/host"]}),
        json!({"Binds": [format!("{data_root}:/host")]}),
        json!({"Binds": ["/var/tmp:/host:rshared"]}),
        json!({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}),
        json!({"Mounts": [{"Type": "bind", "Source": "/var/tmp", "Target": "/host", "BindOptions": {"Propagation": "rshared"}}]}),
        json!({"Mounts": [{"Type": "volume", "Target": "/host", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}}]}),
        json!({"PidsLimit": -1}),
        json!({"CgroupParent": "/"}),
        json!({"Frobnicate": true}),
    ] {
        attacks.push(create(with_hc(extra)));
    }
    for user in ["0", "00", "+0", "root", "0:0", "root:1000", "nosuchuser"] {
        let mut b = base.clone();
        b["User"] = json!(user);
        attacks.push(create(b.to_string()));
    }
    // Volumes: a bind volume of `/`, refused; mounted by name if it had been created.
    attacks.push(("POST".into(), "/v1.41/volumes/create".into(),
        r#"{"Name":"hostroot2","Driver":"local","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#.into()));
    attacks.push((
        "POST".into(),
        "/v1.41/volumes/create".into(),
        r#"{"Name":"hostroot2","driveropts":{"type":"none","o":"bind","device":"/"}}"#.into(),
    ));
    attacks.push(create(with_hc(json!({"Binds": ["hostroot:/host"]}))));
    // Exec: privileged, root, every spelling.
    for body in [
        r#"{"Cmd":["true"],"Privileged":true}"#,
        r#"{"Cmd":["true"],"privileged":true}"#,
        r#"{"Cmd":["true"],"User":"0"}"#,
        r#"{"Cmd":["true"],"user":"root"}"#,
        r#"{"Cmd":["true"],"User":"1000","USER":"0"}"#,
    ] {
        attacks.push((
            "POST".into(),
            format!("/v1.41/containers/{ctl}/exec"),
            body.into(),
        ));
        attacks.push((
            "POST".into(),
            format!("/v1.41/%63ontainers/{ctl}/exec"),
            body.into(),
        ));
    }
    // Update: lifting limits, adding devices.
    for body in [
        r#"{"PidsLimit":-1}"#,
        r#"{"pidslimit":0}"#,
        r#"{"Devices":[{"PathOnHost":"/dev/mem","PathInContainer":"/dev/mem","CgroupPermissions":"rwm"}]}"#,
        r#"{"CgroupParent":"/"}"#,
    ] {
        attacks.push((
            "POST".into(),
            format!("/v1.41/containers/{ctl}/update"),
            body.into(),
        ));
    }
    // Start with a HostConfig body on an old API version (dockerd < 25 applies it).
    attacks.push((
        "POST".into(),
        "/v1.23/containers/ok0/start".into(),
        r#"{"Privileged":true,"Binds":["/:/host"],"PidMode":"host"}"#.into(),
    ));
    attacks.push((
        "POST".into(),
        "/v1.23/containers/ok1/start".into(),
        r#"{"HostConfig":{"Privileged":true}}"#.into(),
    ));
    // Swarm and plugins: gated.
    attacks.push((
        "POST".into(),
        "/v1.41/swarm/init".into(),
        r#"{"ListenAddr":"127.0.0.1:2377","AdvertiseAddr":"127.0.0.1"}"#.into(),
    ));
    attacks.push((
        "POST".into(),
        "/v1.41/plugins/pull?remote=example.invalid/p:1".into(),
        r#"[{"Name":"network","Value":["host"]}]"#.into(),
    ));
    attacks.push((
        "POST".into(),
        "/v1.41/containers/create/../create".into(),
        with_hc(json!({"Privileged": true})),
    ));

    // Generated: every HostConfig grant in random spellings, under random targets.
    let grants: Vec<(&str, Value)> = vec![
        ("Privileged", json!(true)),
        ("PidMode", json!("host")),
        ("IpcMode", json!("host")),
        ("UTSMode", json!("host")),
        ("UsernsMode", json!("host")),
        ("NetworkMode", json!("host")),
        ("CgroupnsMode", json!("host")),
        ("Cgroup", json!(format!("container:{ctl_id}"))),
        ("CgroupParent", json!("/")),
        ("Binds", json!(["/:/host"])),
        (
            "Mounts",
            json!([{"Type": "bind", "Source": "/", "Target": "/host"}]),
        ),
        ("CapAdd", json!(["SYS_ADMIN"])),
        (
            "SecurityOpt",
            json!(["seccomp=unconfined", "apparmor=unconfined"]),
        ),
        (
            "Devices",
            json!([{"PathOnHost": "/dev/mem", "PathInContainer": "/dev/mem", "CgroupPermissions": "rwm"}]),
        ),
        ("DeviceCgroupRules", json!(["c *:* rwm"])),
        ("VolumesFrom", json!(["priv"])),
        ("PidMode", json!("container:priv")),
        ("MaskedPaths", json!([])),
        ("ReadonlyPaths", json!([])),
        ("Runtime", json!("io.containerd.runc.v1")),
    ];
    for (field, value) in &grants {
        for _ in 0..3 {
            let mut hc = serde_json::Map::new();
            for (k, v) in base["HostConfig"].as_object().expect("hc") {
                hc.insert(k.clone(), v.clone());
            }
            hc.insert(spell(&mut rng, field), value.clone());
            let mut top = serde_json::Map::new();
            top.insert(spell(&mut rng, "Image"), json!(image));
            top.insert(spell(&mut rng, "User"), json!("1000"));
            top.insert(spell(&mut rng, "HostConfig"), Value::Object(hc));
            let t = target(&mut rng, "/containers/create");
            attacks.push(("POST".into(), t, Value::Object(top).to_string()));
        }
    }
    for (field, value) in [("Privileged", json!(true)), ("User", json!("0"))] {
        for _ in 0..4 {
            let mut b = serde_json::Map::new();
            b.insert(spell(&mut rng, "Cmd"), json!(["true"]));
            b.insert(spell(&mut rng, field), value.clone());
            let t = target(&mut rng, &format!("/containers/{ctl}/exec"));
            attacks.push(("POST".into(), t, Value::Object(b).to_string()));
        }
    }

    let mut answers = Vec::new();
    for (i, (method, t, body)) in attacks.iter().enumerate() {
        let sep = if t.contains('?') { '&' } else { '?' };
        let t = if t.ends_with("/create") && t.contains("containers") {
            format!("{t}{sep}name=atk{i}")
        } else {
            t.clone()
        };
        let (st, resp) = http(sock, method, &t, Some(body));
        answers.push((st, t, body.clone(), resp));
    }

    // The verdict, from what dockerd created.
    let ctl_inspect: Value =
        serde_json::from_str(&http(sock, "GET", &format!("/containers/{ctl}/json"), None).1)
            .expect("json");
    let shareable = vec![ctl.to_string(), ctl_id.clone()];
    let (names, problems) = audit(
        &dk,
        &data_root,
        &ctl_inspect["HostConfig"]["CgroupnsMode"],
        &shareable,
        &["priv", "hostpid", "rootbind"],
    );
    let mut sorted = names.clone();
    sorted.sort();
    let mut want = allowed_names.clone();
    want.sort();
    let report: Vec<String> = answers
        .iter()
        .filter(|(st, ..)| *st < 300)
        .map(|(st, t, b, r)| format!("{st} {t} {b} -> {r}"))
        .collect();
    assert!(
        problems.is_empty(),
        "dockerd created: {problems:#?}\nallowed attacks: {report:#?}"
    );
    assert_eq!(
        sorted, want,
        "containers other than the controls exist; allowed attacks: {report:#?}"
    );
    for e in execs(sock, ctl) {
        let pc = &e["ProcessConfig"];
        let user = pc["user"].as_str().unwrap_or_default();
        assert!(
            pc["privileged"] != json!(true) && user == "1000",
            "exec created: {e}\nallowed attacks: {report:#?}"
        );
    }
    let c: Value =
        serde_json::from_str(&http(sock, "GET", &format!("/containers/{ctl}/json"), None).1)
            .expect("json");
    assert_eq!(
        c["HostConfig"]["PidsLimit"],
        json!(64),
        "update lifted the limit"
    );
    assert_eq!(
        c["HostConfig"]["Devices"].as_array().map_or(0, |a| a.len()),
        0
    );
    let (_, vols) = http(sock, "GET", "/volumes", None);
    assert!(
        !vols.contains("hostroot2"),
        "a bind volume of / was created: {vols}"
    );
    let (_, info) = http(sock, "GET", "/info", None);
    let info: Value = serde_json::from_str(&info).expect("info");
    assert_eq!(info["Swarm"]["LocalNodeState"], json!("inactive"));
    assert_eq!(info["Plugins"]["Authorization"], json!([plugin]));
    let (_, plugins) = http(sock, "GET", "/plugins", None);
    assert_eq!(plugins.trim(), "[]");

    // The plugin says why: ambiguity, unknown fields, gates.
    let said = |needle: &str| {
        assert!(
            answers.iter().any(|(_, _, _, r)| r.contains(needle)),
            "no answer says {needle:?}"
        );
    };
    said("both set the field Privileged");
    said("Frobnicate is not a field this plugin judges");
    said("is gated (swarm)");
    said("a body on container start");
    said("[privileged]");
    said("[non-root]");

    // Every write decision was recorded.
    let log = std::fs::read_to_string(&events).expect("events");
    let n = log
        .lines()
        .filter(|l| l.contains("\"admission.decision\""))
        .count();
    let mut statuses = std::collections::BTreeMap::new();
    for (st, ..) in &answers {
        *statuses.entry(*st).or_insert(0usize) += 1;
    }
    eprintln!(
        "dockerd's answers to {} attacks: {statuses:?}",
        answers.len()
    );
    // 403 is the plugin's deny; anything dockerd routed reached the plugin first.
    let reached = answers.iter().filter(|(st, ..)| *st == 403).count();
    assert!(
        reached * 10 >= answers.len() * 9,
        "most attacks must reach the plugin (not be turned away by the router): {statuses:?}"
    );
    assert!(
        n >= reached + allowed_names.len(),
        "{n} decisions recorded for {reached} denials and {} controls",
        allowed_names.len()
    );

    let _ = testkit::docker(["-H", &h, "rm", "-f", ctl]);
    daemon.stop();
    plugin_proc.stop();
    // Shipped: one admission.decision event per recorded decision, with the facets.
    let shipped: Vec<Value> = std::fs::read_to_string(&shipped)
        .expect("shipped events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    let recorded = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .count();
    assert!(recorded > n);
    assert_eq!(shipped.len(), recorded, "every decision shipped once");
    assert!(shipped.iter().all(|e| e["type"] == "admission.decision"
        && e["device"]["hostname"] == "authz-test-host"
        && e["policy"]["mechanism"] == "docker authz plugin"));
    assert!(shipped.iter().any(|e| e["policy"]["action"] == "deny"
        && e["policy"]["rule"]
            .as_str()
            .is_some_and(|r| r.contains("privileged"))
        && e["auth"]["outcome"] == "failure"));
    assert!(shipped
        .iter()
        .any(|e| e["policy"]["action"] == "allow" && e["container"]["name"] == "ok0"));
    let rel = cgroup_parent.trim_start_matches('/');
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
}

/// Standard base64 (the AuthZReq body encoding); written out because the binary crate has no
/// base64 dependency.
fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The children of `pid` whose command line contains `needle`.
fn children_with(pid: u32, needle: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            let p = e.path();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let cmd = std::fs::read(p.join("cmdline")).unwrap_or_default();
            ppid == Some(pid)
                && String::from_utf8_lossy(&cmd)
                    .replace('\0', " ")
                    .contains(needle)
        })
        .count()
}

/// Issue 15: scans on demand are bounded and cancelled at their timeout. The plugin scans out
/// of process (`rampart image scan` children); at `scan_timeout` the decision falls to the fail
/// mode and the child is killed, leaving no inventory; with time enough the same scan fills
/// the cache and the decision is made.
#[test]
fn scans_on_demand_are_cancelled_at_their_timeout() {
    testkit::require!(Root, Docker);
    let image = testkit::debian_image();
    let id = text(&testkit::docker([
        "image", "inspect", "--format", "{{.Id}}", &image,
    ]))
    .0
    .trim()
    .to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    rampart_scan::VulnDb::open_or_create(&d.join("vulns.db")).expect("db");
    let sock = d.join("plugin.sock");
    let start = |timeout: &str| {
        std::fs::write(
            d.join("admission.yaml"),
            format!("fail: closed\nrules: [scanned]\nscan_timeout: {timeout}\n"),
        )
        .expect("policy");
        let _ = std::fs::remove_file(&sock);
        let argv: Vec<String> = [
            env!("CARGO_BIN_EXE_rampart"),
            "authz",
            "--policy",
            &d.join("admission.yaml").display().to_string(),
            "--socket",
            &sock.display().to_string(),
            "--docker-socket",
            "/var/run/docker.sock",
            "--db",
            &d.join("vulns.db").display().to_string(),
            "--cache-dir",
            &d.join("cache").display().to_string(),
            "--events",
            &d.join("events.jsonl").display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let log = d.join(format!("plugin-{timeout}.log"));
        let p = spawn_logged(&argv, &log);
        wait_for("the plugin", &log, || sock.exists());
        p
    };
    let body = json!({"Image": image, "User": "1000"}).to_string();
    let req = json!({"User": "", "RequestMethod": "POST", "RequestUri": "/v1.41/containers/create",
        "RequestBody": b64(body.as_bytes())})
    .to_string();
    let cached = d
        .join("cache")
        .join(format!("{}.json", id.trim_start_matches("sha256:")));

    let mut plugin = start("1s");
    let pid = plugin.0.id();
    let (s2, r2) = (sock.clone(), req.clone());
    let asked = std::thread::spawn(move || http(&s2, "POST", "/AuthZPlugin.AuthZReq", Some(&r2)));
    let mut seen = false;
    while !asked.is_finished() {
        seen |= children_with(pid, "image scan docker:") > 0;
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st, answer) = asked.join().expect("request");
    assert_eq!(st, 200, "{answer}");
    let v: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(v["Allow"], json!(false), "{answer}");
    assert!(
        v["Msg"]
            .as_str()
            .is_some_and(|m| m.contains("fail: closed")),
        "{answer}"
    );
    assert!(seen, "no scanner child was seen while the decision waited");
    let end = Instant::now() + Duration::from_secs(5);
    while children_with(pid, "image scan docker:") > 0 {
        assert!(
            Instant::now() < end,
            "the scan was not cancelled at its timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!cached.exists(), "a cancelled scan wrote its inventory");
    plugin.stop();

    let mut plugin = start("300s");
    let (st, answer) = http(&sock, "POST", "/AuthZPlugin.AuthZReq", Some(&req));
    assert_eq!(st, 200, "{answer}");
    assert!(answer.contains("\"Allow\":true"), "{answer}");
    assert!(cached.exists(), "the scan on demand fills the cache");
    plugin.stop();
}

fn openssl(args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o).1);
}

/// Issue 15: exceptions and break glass match the user dockerd authenticated, i.e. the common
/// name of the TLS client certificate it forwards as `User`; a label or a name the requester
/// writes widens nothing. A second dockerd listens with `--tlsverify` on 127.0.0.1 of its own
/// network namespace; the docker CLI connects with one client certificate per user.
#[test]
fn exceptions_and_break_glass_follow_the_tls_client_certificate() {
    testkit::require!(Root, Docker);
    let ns = NetNs::new("authztls");
    let dir = tempfile::Builder::new()
        .prefix("rampart-authztls-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let d = dir.path();
    let f = |n: &str| d.join(n).display().to_string();
    // PKI: a CA, the daemon's certificate for 127.0.0.1, a client certificate per user.
    std::fs::write(
        d.join("x.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n\
         [server]\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n[client]\nextendedKeyUsage=clientAuth\n",
    )
    .expect("cnf");
    let cnf = f("x.cnf");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &f("ca.key"),
        "-out",
        &f("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=rampart test CA",
        "-config",
        &cnf,
        "-extensions",
        "ca",
    ]);
    for (who, ext) in [
        ("server", "server"),
        ("ci", "client"),
        ("bob", "client"),
        ("alice", "client"),
    ] {
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &f(&format!("{who}.key")),
            "-out",
            &f(&format!("{who}.csr")),
            "-subj",
            &format!("/CN={who}"),
            "-config",
            &cnf,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &f(&format!("{who}.csr")),
            "-CA",
            &f("ca.pem"),
            "-CAkey",
            &f("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &cnf,
            "-extensions",
            ext,
            "-out",
            &f(&format!("{who}.pem")),
        ]);
    }
    std::fs::write(
        d.join("admission.yaml"),
        "fail: closed\nrules: [privileged, limits, non-root]\nbreak_glass: [alice]\nexceptions:\n  - user: ci\n    skip: [limits]\n",
    )
    .expect("policy");
    let plugin = format!("rampart-tls-{}", std::process::id());
    let plugin_sock = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let docker_sock = d.join("docker.sock");
    let events = d.join("events.jsonl");
    let _ = std::fs::remove_file(&plugin_sock);
    let argv: Vec<String> = [
        env!("CARGO_BIN_EXE_rampart"),
        "authz",
        "--policy",
        &f("admission.yaml"),
        "--socket",
        &plugin_sock.display().to_string(),
        "--docker-socket",
        &docker_sock.display().to_string(),
        "--events",
        &events.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let plog = d.join("plugin.log");
    let mut plugin_proc = spawn_logged(&argv, &plog);
    wait_for("the plugin", &plog, || plugin_sock.exists());

    let cgroup_parent = format!("/rampart-authztls-{}", std::process::id());
    let argv = dockerd_argv(
        &ns,
        d,
        "authztls",
        &[
            format!("unix://{}", docker_sock.display()),
            "tcp://127.0.0.1:2376".to_string(),
        ],
        &[
            "--tlsverify".to_string(),
            "--tlscacert".to_string(),
            f("ca.pem"),
            "--tlscert".to_string(),
            f("server.pem"),
            "--tlskey".to_string(),
            f("server.key"),
            "--authorization-plugin".to_string(),
            plugin.clone(),
        ],
    );
    let dlog = d.join("dockerd.log");
    let mut daemon = spawn_logged(&argv, &dlog);
    let h = format!("unix://{}", docker_sock.display());
    wait_for("the TLS dockerd", &dlog, || {
        testkit::docker(["-H", h.as_str(), "version"])
            .status
            .success()
    });
    let image = testkit::busybox_image();
    load_images(&h, &[image.as_str()]);

    // `docker` as `who` (TLS), or over the unix socket (no authenticated user) for "".
    let as_user = |who: &str, args: &[&str]| -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", ns.0)).arg("docker");
        if who.is_empty() {
            c.args(["-H", h.as_str()]);
        } else {
            c.args([
                "-H",
                "tcp://127.0.0.1:2376",
                "--tlsverify",
                "--tlscacert",
                &f("ca.pem"),
            ])
            .args([
                "--tlscert",
                &f(&format!("{who}.pem")),
                "--tlskey",
                &f(&format!("{who}.key")),
            ]);
        }
        c.args(args).output().expect("docker")
    };
    let limits = ["--memory", "64m", "--cpus", "0.5", "--pids-limit", "64"];
    let create = |who: &str, name: &str, extra: &[&str]| -> Output {
        let mut a = vec![
            "create",
            "--name",
            name,
            "--user",
            "1000",
            "--network",
            "none",
        ];
        a.extend_from_slice(extra);
        a.extend([image.as_str(), "true"]);
        as_user(who, &a)
    };
    // The exception for ci: no limits needed. Not for bob, nor over the unix socket.
    let o = create("ci", "by-ci", &[]);
    assert!(o.status.success(), "ci: {:?}", text(&o));
    for (who, name) in [("bob", "by-bob"), ("", "by-nobody")] {
        let o = create(who, name, &[]);
        assert!(
            !o.status.success() && text(&o).1.contains("[limits]"),
            "{who}: {:?}",
            text(&o)
        );
    }
    // Break glass: alice's label allows a privileged create (audited); bob's does not.
    let mut glass = vec!["--privileged", "--label", "rampart.break-glass=INC-7"];
    glass.extend(limits);
    let o = create("alice", "by-alice", &glass);
    assert!(o.status.success(), "alice: {:?}", text(&o));
    let o = create("bob", "by-bob-glass", &glass);
    assert!(
        !o.status.success() && text(&o).1.contains("[privileged]"),
        "bob: {:?}",
        text(&o)
    );

    // What dockerd created.
    let inspect = |name: &str| -> Option<Value> {
        let o = testkit::docker(["-H", h.as_str(), "inspect", name]);
        o.status
            .success()
            .then(|| serde_json::from_str::<Value>(&text(&o).0).expect("json")[0].clone())
    };
    assert_eq!(
        inspect("by-ci").expect("ci's container")["HostConfig"]["Memory"],
        json!(0)
    );
    assert_eq!(
        inspect("by-alice").expect("alice's container")["HostConfig"]["Privileged"],
        json!(true)
    );
    for name in ["by-bob", "by-nobody", "by-bob-glass"] {
        assert!(inspect(name).is_none(), "{name} was created");
    }
    let log = std::fs::read_to_string(&events).expect("events");
    let glass: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .filter(|v| v["outcome"] == "break_glass")
        .collect();
    assert_eq!(glass.len(), 1, "{log}");
    assert_eq!(glass[0]["user"], json!("alice"));

    for name in ["by-ci", "by-alice"] {
        let _ = testkit::docker(["-H", h.as_str(), "rm", "-f", name]);
    }
    daemon.stop();
    plugin_proc.stop();
    let _ = std::fs::remove_dir(
        Path::new("/sys/fs/cgroup").join(cgroup_parent.trim_start_matches('/')),
    );
}

/// The services dockerd holds: name -> spec.
fn services(sock: &Path) -> Vec<(String, Value)> {
    let (st, body) = http(sock, "GET", "/services", None);
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("services json");
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["Spec"]["Name"].as_str().unwrap_or_default().to_string(),
                s["Spec"].clone(),
            )
        })
        .collect()
}

/// Swarm services (issue 15, item 1): a second dockerd in swarm mode with the plugin (`allow:
/// [swarm]`, services judged by their spec). The docker CLI's own bodies and raw ones in any
/// key case (Kelvin sign, long s), on every route spelling, must leave no service whose tasks
/// get a sensitive bind, the host network, added capabilities, sysctls, weakened confinement,
/// root or no limits, checked on what dockerd holds (`GET /services`) and on the task
/// containers it started; a rollback to a hostile previous spec (made before the plugin) is
/// refused; the harmless controls run.
#[test]
fn swarm_services_are_judged_by_what_their_tasks_get() {
    testkit::require!(Root, Docker);
    let ns = NetNs::new("authzsw");
    let dir = tempfile::Builder::new()
        .prefix("rampart-authzsw-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("admission.yaml"),
        "fail: open\nrules: [privileged, host-namespaces, sensitive-mounts, non-root, limits, seccomp, capabilities, devices, confinement]\nallow: [swarm]\n",
    )
    .expect("policy");
    let plugin = format!("rampart-testsw-{}", std::process::id());
    let plugin_sock = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let docker_sock = d.join("docker.sock");
    let events = d.join("events.jsonl");
    let h = format!("unix://{}", docker_sock.display());
    let sock = docker_sock.as_path();
    let image = testkit::busybox_image();
    let argv = dockerd_argv(
        &ns,
        d,
        "authzsw",
        std::slice::from_ref(&h),
        &["--authorization-plugin".to_string(), plugin.clone()],
    );
    let without: Vec<String> = argv[..argv.len() - 2].to_vec();
    let dk = |args: &[&str]| {
        let mut a = vec!["-H", h.as_str()];
        a.extend_from_slice(args);
        testkit::docker(&a)
    };
    // Before the plugin: the image, the swarm, and a service whose spec binds `/` (no task:
    // 0 replicas), later made harmless, so that its previous spec is the hostile one.
    let dlog0 = d.join("dockerd-without-plugin.log");
    {
        let mut daemon = spawn_logged(&without, &dlog0);
        wait_for("the second dockerd", &dlog0, || {
            dk(&["version"]).status.success()
        });
        load_images(&h, &[image.as_str()]);
        let o = dk(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        assert!(o.status.success(), "{:?}", text(&o));
        let o = dk(&[
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            "old",
            "--replicas",
            "0",
            "--mount",
            "type=bind,src=/,dst=/host",
            "--cap-add",
            "SYS_ADMIN",
            &image,
            "sleep",
            "1000",
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        daemon.stop();
    }
    let mut pargv = ns.exec();
    pargv.extend(
        [
            env!("CARGO_BIN_EXE_rampart"),
            "authz",
            "--policy",
            &d.join("admission.yaml").display().to_string(),
            "--socket",
            &plugin_sock.display().to_string(),
            "--docker-socket",
            &docker_sock.display().to_string(),
            "--events",
            &events.display().to_string(),
        ]
        .map(String::from),
    );
    let plog = d.join("plugin.log");
    let mut plugin_proc = spawn_logged(&pargv, &plog);
    wait_for("the plugin", &plog, || plugin_sock.exists());
    let dlog = d.join("dockerd.log");
    let mut daemon = spawn_logged(&argv, &dlog);
    wait_for("the second dockerd in swarm mode", &dlog, || {
        let o = dk(&["info", "--format", "{{.Swarm.ControlAvailable}}"]);
        text(&o).0.trim() == "true"
    });
    let (_, host_net) = http(sock, "GET", "/networks/host", None);
    let host_net: Value = serde_json::from_str(&host_net).expect("network json");
    let host_id = host_net["Id"]
        .as_str()
        .expect("host network id")
        .to_string();

    // Controls: the CLI's limited, non-root service, and a raw one in other key cases.
    let limits = [
        "--limit-memory",
        "64m",
        "--limit-cpu",
        "0.5",
        "--limit-pids",
        "64",
    ];
    let mut ok = vec![
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "ok",
        "--user",
        "1000",
        "--publish",
        "mode=host,published=18080,target=80",
    ];
    ok.extend(limits);
    ok.extend([image.as_str(), "sleep", "1000"]);
    let o = dk(&ok);
    assert!(o.status.success(), "the harmless service: {:?}", text(&o));
    let raw_ok = format!(
        r#"{{"name":"ok2","TASKTEMPLATE":{{"containerspec":{{"image":"{image}","user":"1001","args":["sleep","1000"]}},"Re\u017Fources":{{"limits":{{"nanocpus":500000000,"memorybytes":67108864,"pids":64}}}}}},"mode":{{"replicated":{{"replicas":1}}}}}}"#
    );
    let (st, body) = http(sock, "POST", "/v1.41/%73ervices/create", Some(&raw_ok));
    assert_eq!(st, 201, "the harmless raw service: {body}");

    // The CLI's hostile services: each adds one grant to the harmless one.
    let cli_attacks: Vec<Vec<&str>> = vec![
        vec!["--mount", "type=bind,src=/etc,dst=/h"],
        vec!["--mount", "type=bind,src=/var,dst=/h,readonly"],
        vec!["--mount", "type=volume,src=hv,dst=/h,volume-driver=local,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/"],
        vec!["--cap-add", "SYS_ADMIN"],
        vec!["--cap-add", "ALL"],
        vec!["--network", "host"],
        vec!["--sysctl", "net.ipv4.ip_forward=1"],
        vec!["--user", "0"],
        vec!["--user", "root"],
        vec!["--log-driver", "syslog", "--log-opt", "syslog-address=unix:///var/run/docker.sock"],
    ];
    for (i, extra) in cli_attacks.iter().enumerate() {
        let name = format!("cli{i}");
        let mut a = vec![
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            &name,
        ];
        a.extend(limits);
        if !extra.contains(&"--user") {
            a.extend(["--user", "1000"]);
        }
        a.extend(extra.iter().copied());
        a.extend([image.as_str(), "sleep", "1000"]);
        let o = dk(&a);
        assert!(
            !o.status.success() && text(&o).1.contains("authorization denied"),
            "{extra:?} was not denied: {:?}",
            text(&o)
        );
    }
    // Without limits.
    let o = dk(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "nolimits",
        "--user",
        "1000",
        &image,
        "sleep",
        "1000",
    ]);
    assert!(!o.status.success(), "{:?}", text(&o));

    // Raw hostile specs, each key in a random case, on a random route spelling.
    let seed = std::process::id() as u64 * 0x9E37_79B9 + 7;
    eprintln!("swarm attack seed {seed}");
    let mut rng = Rng(seed);
    let cs_ok = |rng: &mut Rng, extra: &str| {
        format!(
            r#"{{"{}":"{image}","{}":"1000","{}":["sleep","1000"]{extra}}}"#,
            spell(rng, "Image"),
            spell(rng, "User"),
            spell(rng, "Args")
        )
    };
    let grants: Vec<String> = vec![
        r#","Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]"#.into(),
        r#","mounts":[{"type":"bind","source":"/run","target":"/h"}]"#.into(),
        ",\"Mount\u{17F}\":[{\"Type\":\"bind\",\"Source\":\"/usr\",\"Target\":\"/h\"}]".into(),
        r#","Mounts":[{"Type":"volume","Source":"hv2","Target":"/h","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"bind","device":"/etc"}}}}]"#.into(),
        r#","Mounts":[{"Type":"bind","Source":"/srv","Target":"/h","BindOptions":{"Propagation":"rshared"}}]"#.into(),
        r#","CapabilityAdd":["CAP_SYS_ADMIN"]"#.into(),
        r#","capabilityadd":["sys_ptrace"]"#.into(),
        r#","Sysctls":{"net.ipv4.ip_forward":"1"}"#.into(),
        r#","Privileges":{"SELinuxContext":{"Disable":true}}"#.into(),
        r#","Privileges":{"Seccomp":{"Mode":"unconfined"}}"#.into(),
        r#","privileges":{"apparmor":{"mode":"disabled"}}"#.into(),
        r#","Mounts":[],"mounts":[{"Type":"bind","Source":"/","Target":"/h"}]"#.into(),
        r#","User":"0""#.into(),
    ];
    let resources =
        r#""Resources":{"Limits":{"NanoCPUs":500000000,"MemoryBytes":67108864,"Pids":64}}"#;
    let mut raw: Vec<String> = Vec::new();
    for (i, g) in grants.iter().enumerate() {
        let cs = cs_ok(&mut rng, g);
        raw.push(format!(
            r#"{{"{}":"raw{i}","{}":{{"{}":{cs},{resources}}}}}"#,
            spell(&mut rng, "Name"),
            spell(&mut rng, "TaskTemplate"),
            spell(&mut rng, "ContainerSpec"),
        ));
    }
    let cs = cs_ok(&mut rng, "");
    for (i, nets) in [
        format!(r#""Networks":[{{"Target":"{host_id}"}}]"#),
        r#""networks":[{"target":"host"}]"#.to_string(),
    ]
    .iter()
    .enumerate()
    {
        // In the task template and at the top level (deprecated, still read).
        raw.push(format!(
            r#"{{"Name":"rawnet{i}","TaskTemplate":{{"ContainerSpec":{cs},{resources},{nets}}}}}"#
        ));
        raw.push(format!(
            r#"{{"Name":"rawtop{i}",{nets},"TaskTemplate":{{"ContainerSpec":{cs},{resources}}}}}"#
        ));
    }
    raw.push(format!(
        r#"{{"Name":"rawdup","TaskTemplate":{{"ContainerSpec":{cs},{resources}}},"taskTemplate":{{"ContainerSpec":{{"Image":"{image}","Mounts":[{{"Type":"bind","Source":"/","Target":"/h"}}]}}}}}}"#
    ));
    raw.push(
        r#"{"Name":"rawplugin","Mode":{"Global":{}},"TaskTemplate":{"Runtime":"plugin","PluginSpec":{"Name":"p","Remote":"127.0.0.1:5000/p:1","Privileges":[{"Name":"network","Value":["host"]}]}}}"#
            .to_string(),
    );
    let mut statuses = Vec::new();
    for body in &raw {
        let t = target(&mut rng, "/services/create");
        let (st, answer) = http(sock, "POST", &t, Some(body));
        statuses.push(st);
        assert_ne!(st, 201, "{t} {body}: created: {answer}");
        assert!(
            answer.contains("authorization denied"),
            "{t} {body}: {st} {answer}"
        );
    }

    // Updates of the control: raw (the whole spec again, with one grant), and the CLI's.
    let spec_of = |name: &str| {
        services(sock)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("no service {name}"))
    };
    let before = spec_of("ok");
    let (_, inspect) = http(sock, "GET", "/services/ok", None);
    let inspect: Value = serde_json::from_str(&inspect).expect("json");
    let version = inspect["Version"]["Index"].as_u64().expect("version");
    let mut hostile = before.clone();
    hostile["TaskTemplate"]["ContainerSpec"]["Mounts"] =
        json!([{"Type": "bind", "Source": "/", "Target": "/h"}]);
    let (st, answer) = http(
        sock,
        "POST",
        &format!("/v1.41/services/ok/update?version={version}"),
        Some(&hostile.to_string()),
    );
    assert!(
        st != 200 && answer.contains("authorization denied"),
        "{st} {answer}"
    );
    for extra in [
        vec!["--mount-add", "type=bind,src=/,dst=/h"],
        vec!["--cap-add", "NET_ADMIN"],
        vec!["--network-add", "host"],
        vec!["--limit-pids", "0"],
    ] {
        let mut a = vec!["service", "update", "-d", "--no-resolve-image"];
        a.extend(extra.iter().copied());
        a.push("ok");
        let o = dk(&a);
        assert!(
            !o.status.success(),
            "update {extra:?} allowed: {:?}",
            text(&o)
        );
    }
    // A harmless update is allowed.
    let o = dk(&[
        "service",
        "update",
        "-d",
        "--no-resolve-image",
        "--env-add",
        "A=1",
        "ok",
    ]);
    assert!(o.status.success(), "a harmless update: {:?}", text(&o));

    // The service made before the plugin: made harmless (allowed), then rolled back to its
    // hostile previous spec (refused: the plugin judges the spec dockerd returns to).
    let mut a = vec![
        "service",
        "update",
        "-d",
        "--no-resolve-image",
        "--mount-rm",
        "/host",
        "--cap-drop",
        "SYS_ADMIN",
        "--user",
        "1000",
    ];
    a.extend(limits);
    a.push("old");
    let o = dk(&a);
    assert!(o.status.success(), "making old harmless: {:?}", text(&o));
    let o = dk(&["service", "rollback", "-d", "old"]);
    assert!(
        !o.status.success() && text(&o).1.contains("previous spec"),
        "rollback to a bind of /: {:?}",
        text(&o)
    );

    // What dockerd holds: the two controls and the harmless `old`, nothing else.
    let held = services(sock);
    let mut names: Vec<&str> = held.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["ok", "ok2", "old"], "services dockerd holds");
    for (name, spec) in &held {
        let cs = &spec["TaskTemplate"]["ContainerSpec"];
        assert!(
            cs["Mounts"].as_array().is_none_or(|m| m.is_empty()),
            "{name}: mounts {}",
            cs["Mounts"]
        );
        assert!(
            cs["CapabilityAdd"].as_array().is_none_or(|m| m.is_empty()),
            "{name}: caps {}",
            cs["CapabilityAdd"]
        );
        assert!(spec["TaskTemplate"]["Networks"].is_null(), "{name}: {spec}");
        assert_eq!(
            spec["TaskTemplate"]["Resources"]["Limits"]["Pids"],
            json!(64),
            "{name}"
        );
    }
    // The tasks dockerd started: the controls' containers, judged as any container.
    let mut running = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let o = dk(&["ps", "--format", "{{.Names}}"]);
        running = text(&o).0.lines().map(str::to_string).collect();
        if running.iter().any(|n| n.starts_with("ok.1."))
            && running.iter().any(|n| n.starts_with("ok2.1."))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        running.iter().any(|n| n.starts_with("ok.1."))
            && running.iter().any(|n| n.starts_with("ok2.1.")),
        "the controls' tasks run: {running:?}\n{}",
        String::from_utf8_lossy(&dk(&["service", "ps", "--no-trunc", "ok", "ok2"]).stdout)
    );
    let ok2 = running
        .iter()
        .find(|n| n.starts_with("ok2.1."))
        .cloned()
        .unwrap_or_default();
    let (_, c) = http(sock, "GET", &format!("/containers/{ok2}/json"), None);
    let c: Value = serde_json::from_str(&c).expect("json");
    assert_eq!(
        c["Config"]["User"],
        json!("1001"),
        "the raw spec in other key cases is what ran"
    );
    assert_eq!(c["HostConfig"]["PidsLimit"], json!(64));
    let default_cgroupns = c["HostConfig"]["CgroupnsMode"].clone();
    let data_root = d.join("data").display().to_string();
    let dkv: Vec<&str> = vec!["-H", &h];
    let (names, problems) = audit(&dkv, &data_root, &default_cgroupns, &[], &[]);
    assert!(problems.is_empty(), "task containers: {problems:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("ok.") || n.starts_with("ok2.")),
        "{names:?}"
    );

    // Registry credentials (X-Registry-Auth) are never recorded.
    let auth = b64(br#"{"username":"u","password":"pw-marker-7d1f"}"#);
    let (st, _) = http_with(
        sock,
        "POST",
        "/v1.41/services/create",
        Some(&raw[0]),
        &format!("X-Registry-Auth: {auth}\r\n"),
    );
    assert_ne!(st, 201);
    let log = std::fs::read_to_string(&events).expect("events");
    assert!(
        !log.contains("pw-marker") && !log.contains(&auth),
        "credentials recorded"
    );
    assert!(log.contains("\"service.create\"") && log.contains("\"service.update\""));
    let plog_text = std::fs::read_to_string(&plog).unwrap_or_default();
    assert!(!plog_text.contains(&auth));

    let _ = dk(&["service", "rm", "ok", "ok2", "old"]);
    let _ = dk(&["swarm", "leave", "--force"]);
    daemon.stop();
    plugin_proc.stop();
    let rel = format!("rampart-authzsw-{}", std::process::id());
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
}

/// Managed plugins (issue 15, item 1): with `allow: [plugins]`, installing one is judged by the
/// privileges it gets (the `POST /plugins/pull` body, which dockerd requires to equal what the
/// plugin's config asks for) and enabling one by what its config and settings grant (a `set`
/// may point a mount at `/`). Plugins pushed to a registry in the test's namespace; what is
/// installed and enabled is read from dockerd. Builds (item 2): the classic builder's query
/// options that reach its `RUN` containers (`networkmode`, `securityopt`) are judged; the
/// images built are read from dockerd. User names (item 3): resolved against the image's
/// `/etc/passwd` as runc resolves them (first entry, a uid that is not a number is 0, a mount
/// over /etc replaces the file); the uid the allowed containers run as is read from the kernel.
#[test]
fn plugins_builds_and_user_names_are_judged_by_what_they_get() {
    testkit::require!(Root, Docker);
    let ns = NetNs::new("authzpl");
    let dir = tempfile::Builder::new()
        .prefix("rampart-authzpl-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("admission.yaml"),
        "rules: [privileged, host-namespaces, sensitive-mounts, non-root, limits, seccomp, capabilities, devices, confinement]\nallow: [plugins]\n",
    )
    .expect("policy");
    std::fs::write(
        d.join("registry.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
            d.join("registry").display()
        ),
    )
    .expect("registry config");
    let mut rargv = ns.exec();
    rargv.extend([
        "/usr/bin/docker-registry".to_string(),
        "serve".into(),
        d.join("registry.yml").display().to_string(),
    ]);
    let rlog = d.join("registry.log");
    let _registry = spawn_logged(&rargv, &rlog);
    let plugin = format!("rampart-testpl-{}", std::process::id());
    let plugin_sock = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let docker_sock = d.join("docker.sock");
    let h = format!("unix://{}", docker_sock.display());
    let sock = docker_sock.as_path();
    let mut pargv = ns.exec();
    pargv.extend(
        [
            env!("CARGO_BIN_EXE_rampart"),
            "authz",
            "--policy",
            &d.join("admission.yaml").display().to_string(),
            "--socket",
            &plugin_sock.display().to_string(),
            "--docker-socket",
            &docker_sock.display().to_string(),
            "--events",
            &d.join("events.jsonl").display().to_string(),
        ]
        .map(String::from),
    );
    let plog = d.join("plugin.log");
    let mut plugin_proc = spawn_logged(&pargv, &plog);
    wait_for("the plugin", &plog, || plugin_sock.exists());
    let argv = dockerd_argv(
        &ns,
        d,
        "authzpl",
        std::slice::from_ref(&h),
        &["--authorization-plugin".to_string(), plugin.clone()],
    );
    let dlog = d.join("dockerd.log");
    let mut daemon = spawn_logged(&argv, &dlog);
    let dk = |args: &[&str]| {
        let mut a = vec!["-H", h.as_str()];
        a.extend_from_slice(args);
        testkit::docker(&a)
    };
    wait_for("the second dockerd", &dlog, || {
        dk(&["version"]).status.success()
    });

    // Plugin roots: busybox's filesystem and a config each.
    let image = testkit::busybox_image();
    let o = testkit::docker(["create", &image, "true"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let cid = text(&o).0.trim().to_string();
    let tar = d.join("rootfs.tar");
    let o = testkit::docker(["export", "-o", &tar.display().to_string(), &cid]);
    assert!(o.status.success(), "{:?}", text(&o));
    let _ = testkit::docker(["rm", &cid]);
    let configs = [
        ("good", r#"{"network":{"type":"none"}}"#),
        (
            "evil",
            r#"{"network":{"type":"host"},"mounts":[{"source":"/","destination":"/host","type":"bind","options":["rbind"]}],"linux":{"capabilities":["CAP_SYS_ADMIN"]}}"#,
        ),
        (
            "settable",
            r#"{"network":{"type":"none"},"mounts":[{"name":"data","source":"/srv","destination":"/data","type":"bind","options":["rbind"],"settable":["source"]}]}"#,
        ),
    ];
    let reg = "127.0.0.1:5000";
    for (name, extra) in configs {
        let root = d.join(name);
        std::fs::create_dir_all(root.join("rootfs")).expect("dir");
        let o = Command::new("tar")
            .args(["-xf", &tar.display().to_string(), "-C"])
            .arg(root.join("rootfs"))
            .output()
            .expect("tar");
        assert!(o.status.success(), "{:?}", text(&o));
        let mut cfg: Value = serde_json::from_str(extra).expect("config");
        cfg["description"] = json!(name);
        cfg["documentation"] = json!("https://example.invalid");
        cfg["entrypoint"] = json!(["/bin/sleep", "1000"]);
        cfg["interface"] = json!({"types": ["docker.volumedriver/1.0"], "socket": "p.sock"});
        std::fs::write(root.join("config.json"), cfg.to_string()).expect("config");
        let r = format!("{reg}/{name}:1");
        // Made here (plugins/create: gated, allowed by this policy), pushed, removed.
        let o = dk(&["plugin", "create", &r, &root.display().to_string()]);
        assert!(o.status.success(), "plugin create {name}: {:?}", text(&o));
        if name == "evil" {
            // Enabling what create made is judged by what it grants.
            let o = dk(&["plugin", "enable", &r]);
            assert!(
                !o.status.success() && text(&o).1.contains("authorization denied"),
                "enable {name}: {:?}",
                text(&o)
            );
        }
        let mut pushed = false;
        for _ in 0..50 {
            if dk(&["plugin", "push", &r]).status.success() {
                pushed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            pushed,
            "{}",
            std::fs::read_to_string(&rlog).unwrap_or_default()
        );
        let o = dk(&["plugin", "rm", "-f", &r]);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    // Installing: the CLI (which sends the privileges it was shown) and raw bodies.
    let o = dk(&[
        "plugin",
        "install",
        "--grant-all-permissions",
        "--disable",
        &format!("{reg}/evil:1"),
    ]);
    assert!(
        !o.status.success() && text(&o).1.contains("authorization denied"),
        "{:?}",
        text(&o)
    );
    for body in [
        r#"[{"name":"network","value":["host"]},{"NAME":"mount","VALUE":["/"]},{"Name":"capabilities","Value":["CAP_SYS_ADMIN"]}]"#,
        r#"[{"Name":"network","Value":["host"]},{"Name":"mount","Value":["/"]},{"Name":"capabilities","Value":["CAP_SYS_ADMIN"]},{"Name":"mount","name":"x","Value":[]}]"#,
    ] {
        let (st, answer) = http(
            sock,
            "POST",
            &format!("/v1.41/plugins/pull?remote={reg}/evil:1&name=evilraw"),
            Some(body),
        );
        assert!(
            st == 403 && answer.contains("authorization denied"),
            "{st} {answer}"
        );
    }
    // An empty list passes the plugin (it grants nothing) and dockerd refuses it (not what
    // the plugin asks for): the body is what the plugin gets.
    let (st, answer) = http(
        sock,
        "POST",
        &format!("/v1.41/plugins/pull?remote={reg}/evil:1&name=evilempty"),
        Some("[]"),
    );
    assert!(!answer.contains("authorization denied"), "{st} {answer}");
    let o = dk(&[
        "plugin",
        "install",
        "--grant-all-permissions",
        "--disable",
        &format!("{reg}/good:1"),
    ]);
    assert!(o.status.success(), "the harmless plugin: {:?}", text(&o));
    let o = dk(&[
        "plugin",
        "install",
        "--grant-all-permissions",
        "--disable",
        &format!("{reg}/settable:1"),
    ]);
    assert!(o.status.success(), "the settable plugin: {:?}", text(&o));
    let o = dk(&[
        "plugin",
        "set",
        &format!("{reg}/settable:1"),
        "data.source=/",
    ]);
    assert!(o.status.success(), "set (gated, allowed): {:?}", text(&o));
    let o = dk(&["plugin", "enable", &format!("{reg}/settable:1")]);
    assert!(
        !o.status.success() && text(&o).1.contains("host path /"),
        "enabling a plugin set to mount /: {:?}",
        text(&o)
    );

    // What dockerd holds: good and settable, disabled; no evil one.
    let (st, body) = http(sock, "GET", "/plugins", None);
    assert_eq!(st, 200, "{body}");
    let plugins: Value = serde_json::from_str(&body).expect("plugins");
    let mut held: Vec<(String, bool)> = plugins
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["Name"].as_str().unwrap_or_default().to_string(),
                p["Enabled"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    held.sort();
    assert_eq!(
        held,
        vec![
            (format!("{reg}/good:1"), false),
            (format!("{reg}/settable:1"), false)
        ],
        "plugins dockerd holds"
    );
    for (name, _) in &held {
        let _ = dk(&["plugin", "rm", "-f", name]);
    }

    // Builds: a context whose RUN step the options would reach.
    load_images(&h, &[image.as_str()]);
    let ctx = d.join("build");
    std::fs::create_dir_all(&ctx).expect("dir");
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {image}\nRUN true\n")).expect("df");
    let o = Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(&ctx)
        .arg("Dockerfile")
        .output()
        .expect("tar");
    assert!(o.status.success());
    let context = String::from_utf8(o.stdout).expect("an ASCII tar");
    for q in [
        "t=bhost&networkmode=host",
        "t=bhost2&networkmode=none&networkmode=host&networkmode=ho%73t",
        "t=bsec&securityopt=seccomp%3Dunconfined",
        "t=bsec2&securityopt=no-new-privileges&securityopt=apparmor%3Dunconfined",
        "t=bsec3&securityopt=label:disable",
        "t=bcg&cgroupparent=%2F",
    ] {
        let (st, answer) = http(sock, "POST", &format!("/v1.41/build?{q}"), Some(&context));
        if q.starts_with("t=bhost2") {
            // FormValue reads the first networkmode: none, allowed, built without host.
            assert_eq!(st, 200, "{q}: {answer}");
            continue;
        }
        assert!(
            st == 403 && answer.contains("authorization denied"),
            "{q}: {st} {answer}"
        );
    }
    let (st, answer) = http(sock, "POST", "/v1.41/build?t=bok", Some(&context));
    assert_eq!(st, 200, "the harmless build: {answer}");
    let (_, images) = http(sock, "GET", "/images/json", None);
    let images: Value = serde_json::from_str(&images).expect("images");
    let mut tags: Vec<String> = images
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["RepoTags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_string))
        .filter(|t| t.starts_with('b') && t.ends_with(":latest"))
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["bhost2:latest", "bok:latest"], "images built");

    // User names, resolved against the image's /etc/passwd as runc resolves them.
    let uctx = d.join("users");
    std::fs::create_dir_all(&uctx).expect("dir");
    std::fs::write(
        uctx.join("Dockerfile"),
        format!("FROM {image}\nCOPY passwd /etc/passwd\n"),
    )
    .expect("df");
    std::fs::write(
        uctx.join("passwd"),
        "app:x:1000:1000::/:/bin/sh\ntoor:x:0:0::/:/bin/sh\nodd:x:1e3:0::/:/bin/sh\napp:x:0:0::/:/bin/sh\n",
    )
    .expect("passwd");
    let o = Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(&uctx)
        .args(["Dockerfile", "passwd"])
        .output()
        .expect("tar");
    let context = String::from_utf8(o.stdout).expect("an ASCII tar");
    let (st, answer) = http(sock, "POST", "/v1.41/build?t=users", Some(&context));
    assert_eq!(st, 200, "{answer}");
    std::fs::write(uctx.join("Dockerfile"), "FROM users\nUSER app\n").expect("df");
    let o = Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(&uctx)
        .arg("Dockerfile")
        .output()
        .expect("tar");
    let context = String::from_utf8(o.stdout).expect("an ASCII tar");
    let (st, answer) = http(sock, "POST", "/v1.41/build?t=users-app", Some(&context));
    assert_eq!(st, 200, "{answer}");
    let limited = [
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "64",
        "--network",
        "none",
    ];
    let create = |name: &str, extra: &[&str], img: &str| {
        let mut a = vec!["create", "--name", name];
        a.extend(limited);
        a.extend_from_slice(extra);
        a.extend([img, "sleep", "1000"]);
        dk(&a)
    };
    for (name, extra) in [
        ("u-toor", vec!["--user", "toor"]),
        ("u-odd", vec!["--user", "odd"]),
        ("u-nobody", vec!["--user", "nobody"]),
        ("u-tmpfs", vec!["--user", "app", "--tmpfs", "/etc"]),
        ("u-group", vec!["--user", "toor:1000"]),
    ] {
        let o = create(name, &extra, "users");
        assert!(
            !o.status.success() && text(&o).1.contains("[non-root]"),
            "{extra:?}: {:?}",
            text(&o)
        );
    }
    // Allowed: the name and the image's USER; what runc made of them is read from the kernel.
    for (name, extra, img) in [
        ("u-app", vec!["--user", "app"], "users"),
        ("u-image", vec![], "users-app"),
    ] {
        let o = create(name, &extra, img);
        assert!(o.status.success(), "{name}: {:?}", text(&o));
        let o = dk(&["start", name]);
        assert!(o.status.success(), "{name}: {:?}", text(&o));
        let o = dk(&["inspect", "--format", "{{.State.Pid}}", name]);
        let pid = text(&o).0.trim().to_string();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        assert_eq!(uid, "1000", "{name} runs as uid {uid}");
        // Copying a new /etc/passwd in would remap the name at the next start: refused.
        let evil = d.join("evil-passwd");
        std::fs::write(&evil, "app:x:0:0::/:/bin/sh\n").expect("w");
        let o = dk(&[
            "cp",
            &evil.display().to_string(),
            &format!("{name}:/etc/passwd"),
        ]);
        assert!(
            !o.status.success() && text(&o).1.contains("remap"),
            "{name}: {:?}",
            text(&o)
        );
        let _ = dk(&["restart", "-t", "0", name]);
        let o = dk(&["inspect", "--format", "{{.State.Pid}}", name]);
        let pid = text(&o).0.trim().to_string();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert!(
            status.lines().any(|l| l.starts_with("Uid:\t1000")),
            "{name} after a restart: {status}"
        );
        let _ = dk(&["rm", "-f", name]);
    }
    // A numeric user: copying in is allowed.
    let o = create("u-num", &["--user", "1000"], "users");
    assert!(o.status.success(), "{:?}", text(&o));
    let o = dk(&[
        "cp",
        &uctx.join("passwd").display().to_string(),
        "u-num:/tmp/passwd",
    ]);
    assert!(
        o.status.success(),
        "copy into a numeric-user container: {:?}",
        text(&o)
    );
    let _ = dk(&["rm", "-f", "u-num"]);
    daemon.stop();
    plugin_proc.stop();
    let rel = format!("rampart-authzpl-{}", std::process::id());
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
}

/// The block device of the host's first disk (`/dev/vda`, `/dev/sda`, `/dev/nvme0n1`): what
/// an IO limit names.
fn first_disk() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| ["vd", "sd", "nvme", "xvd"].iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    format!("/dev/{}", names.first().expect("a disk in /sys/block"))
}

/// The optional `disk-io` rule (issue 19, item 3) against a real dockerd: a create without an
/// IO throttle dockerd would apply is refused in every shape dockerd's Go decoder accepts
/// (other key cases, Rate 0, empty Path, null and [] lists, a null entry, a weight only, two
/// keys for one list where Go keeps the last); an update cannot lift a throttle; a swarm
/// service (its spec has no IO limit) is refused on create and update. The verdict is read
/// from what dockerd created (`docker inspect`: every container it holds has a throttle with
/// a path and a rate above 0) and, for the control, from the container's blkio cgroup.
#[test]
fn disk_io_rule_refuses_what_dockerd_would_run_unthrottled() {
    testkit::require!(Root, Docker);
    let ns = NetNs::new("authzio");
    let dir = tempfile::Builder::new()
        .prefix("rampart-authzio-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("admission.yaml"),
        "fail: open\nrules: [limits, disk-io]\nallow: [swarm]\n",
    )
    .expect("policy");
    let plugin = format!("rampart-testio-{}", std::process::id());
    let plugin_sock = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let docker_sock = d.join("docker.sock");
    let events = d.join("events.jsonl");
    let h = format!("unix://{}", docker_sock.display());
    let sock = docker_sock.as_path();
    let image = testkit::busybox_image();
    let disk = first_disk();
    let argv = dockerd_argv(
        &ns,
        d,
        "authzio",
        std::slice::from_ref(&h),
        &["--authorization-plugin".to_string(), plugin.clone()],
    );
    let without: Vec<String> = argv[..argv.len() - 2].to_vec();
    let dk = |args: &[&str]| {
        let mut a = vec!["-H", h.as_str()];
        a.extend_from_slice(args);
        testkit::docker(&a)
    };
    let inspect = |name: &str| -> Value {
        let (st, body) = http(sock, "GET", &format!("/containers/{name}/json"), None);
        assert_eq!(st, 200, "{name}: {body}");
        serde_json::from_str(&body).expect("inspect json")
    };
    let limits = ["--memory", "64m", "--cpus", "0.5", "--pids-limit", "64"];
    let wbps = format!("{disk}:1mb");

    // Before the plugin: the image, a swarm with a service, and what dockerd 20.10+ does with
    // an update that sends throttle lists (the rule's update check is written against it).
    let dlog0 = d.join("dockerd-without-plugin.log");
    {
        let mut daemon = spawn_logged(&without, &dlog0);
        wait_for("the second dockerd", &dlog0, || {
            dk(&["version"]).status.success()
        });
        load_images(&h, &[image.as_str()]);
        let o = dk(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        assert!(o.status.success(), "{:?}", text(&o));
        let o = dk(&[
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            "old",
            "--replicas",
            "0",
            "--limit-memory",
            "64m",
            "--limit-cpu",
            "0.5",
            "--limit-pids",
            "64",
            &image,
            "sleep",
            "1000",
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        let mut a = vec!["create", "--name", "probe", "--network", "none"];
        a.extend(limits);
        a.extend(["--device-write-bps", wbps.as_str(), &image, "true"]);
        let o = dk(&a);
        assert!(o.status.success(), "{:?}", text(&o));
        let (st, body) = http(
            sock,
            "POST",
            "/v1.41/containers/probe/update",
            Some(r#"{"BlkioDeviceWriteBps":[],"BlkioDeviceReadBps":[{"Path":"","Rate":0}]}"#),
        );
        assert_eq!(st, 200, "{body}");
        let c = inspect("probe");
        assert_eq!(
            c["HostConfig"]["BlkioDeviceWriteBps"],
            json!([{"Path": disk, "Rate": 1048576}]),
            "dockerd's update leaves the throttle lists alone (as the rule's doc says)"
        );
        let o = dk(&["rm", "probe"]);
        assert!(o.status.success(), "{:?}", text(&o));
        daemon.stop();
    }
    let mut pargv = ns.exec();
    pargv.extend(
        [
            env!("CARGO_BIN_EXE_rampart"),
            "authz",
            "--policy",
            &d.join("admission.yaml").display().to_string(),
            "--socket",
            &plugin_sock.display().to_string(),
            "--docker-socket",
            &docker_sock.display().to_string(),
            "--events",
            &events.display().to_string(),
        ]
        .map(String::from),
    );
    let plog = d.join("plugin.log");
    let mut plugin_proc = spawn_logged(&pargv, &plog);
    wait_for("the plugin", &plog, || plugin_sock.exists());
    let dlog = d.join("dockerd.log");
    let mut daemon = spawn_logged(&argv, &dlog);
    wait_for("the second dockerd in swarm mode", &dlog, || {
        let o = dk(&["info", "--format", "{{.Swarm.ControlAvailable}}"]);
        text(&o).0.trim() == "true"
    });

    // Control: the CLI's create with a write throttle, started; the kernel holds the limit.
    let mut a = vec![
        "run",
        "-d",
        "--name",
        "ok",
        "--network",
        "none",
        "--user",
        "1000",
    ];
    a.extend(limits);
    a.extend(["--device-write-bps", wbps.as_str(), &image, "sleep", "1000"]);
    let o = dk(&a);
    assert!(o.status.success(), "the throttled control: {:?}", text(&o));
    let c = inspect("ok");
    assert_eq!(
        c["HostConfig"]["BlkioDeviceWriteBps"],
        json!([{"Path": disk, "Rate": 1048576}])
    );
    let pid = c["State"]["Pid"].as_i64().expect("pid");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let rdev = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&disk).expect("disk").rdev()
    };
    let want = format!("{}:{} 1048576", libc::major(rdev), libc::minor(rdev));
    let blkio = cg.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
        ctl.split(',')
            .any(|c| c == "blkio")
            .then(|| path.to_string())
    });
    match blkio {
        Some(path) => {
            let f = format!("/sys/fs/cgroup/blkio{path}/blkio.throttle.write_bps_device");
            let got = std::fs::read_to_string(&f).expect("blkio throttle file");
            assert!(
                got.lines().any(|l| l.trim() == want),
                "{f}: {got:?}, want {want}"
            );
        }
        None => {
            // cgroup v2: io.max of the container's cgroup.
            let path = cg
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("cgroup v2 path");
            let f = format!("/sys/fs/cgroup{path}/io.max");
            let got = std::fs::read_to_string(&f).expect("io.max");
            let (mm, _) = want.split_once(' ').expect("mm");
            assert!(
                got.contains(&format!("{mm} rbps=max wbps=1048576")),
                "{f}: {got:?}"
            );
        }
    }
    // Control: a raw create in other key cases, read by dockerd as by the plugin.
    let hc = |io: &str| {
        format!(
            r#"{{"Image":"{image}","User":"1000","Cmd":["true"],"HostConfig":{{"NetworkMode":"none","Memory":67108864,"NanoCpus":500000000,"PidsLimit":64{io}}}}}"#
        )
    };
    let raw_ok = hc(&format!(
        r#","blkiodevicereadiops":[{{"path":"{disk}","rate":100}}],"BLKIODEVICEWRITEBP\u017F":[{{"PATH":"{disk}","RATE":0}}]"#
    ));
    let (st, body) = http(
        sock,
        "POST",
        "/v1.41/containers/create?name=ok2",
        Some(&raw_ok),
    );
    assert_eq!(st, 201, "the raw control: {body}");
    let c = inspect("ok2");
    assert_eq!(
        c["HostConfig"]["BlkioDeviceReadIOps"],
        json!([{"Path": disk, "Rate": 100}]),
        "dockerd read the keys the plugin read"
    );

    // The CLI's create without a throttle: refused, saying why.
    let mut a = vec!["create", "--name", "cli-none", "--user", "1000"];
    a.extend(limits);
    a.extend([image.as_str(), "true"]);
    let o = dk(&a);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "a create without an IO limit ran");
    assert!(
        err.contains("[disk-io] disk IO limits required: at least one of --device-read-bps"),
        "{err}"
    );
    // Only a weight: a share, not a cap.
    let mut a = vec![
        "create",
        "--name",
        "cli-weight",
        "--user",
        "1000",
        "--blkio-weight",
        "500",
    ];
    a.extend(limits);
    a.extend([image.as_str(), "true"]);
    let o = dk(&a);
    assert!(
        !o.status.success(),
        "a weight is not a limit: {:?}",
        text(&o)
    );

    // Raw bodies that set no limit dockerd applies.
    let hostile = [
        hc(""),
        hc(r#","BlkioDeviceReadBps":null"#),
        hc(
            r#","BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[]"#,
        ),
        hc(r#","BlkioDeviceReadBps":[null]"#),
        hc(&format!(
            r#","BlkioDeviceReadBps":[{{"Path":"{disk}","Rate":0}}]"#
        )),
        hc(&format!(r#","blkiodevicewriteiops":[{{"path":"{disk}"}}]"#)),
        hc(r#","BlkioDeviceWriteBps":[{"Path":"","Rate":1048576}]"#),
        hc(&format!(
            r#","BlkioWeight":500,"BlkioWeightDevice":[{{"Path":"{disk}","Weight":500}}]"#
        )),
        // Go keeps the last of two keys for one field: here the empty list.
        hc(&format!(
            r#","BlkioDeviceWriteBps":[{{"Path":"{disk}","Rate":1048576}}],"blkiodevicewritebps":[]"#
        )),
        hc(&format!(
            r#","BlkioDeviceWriteBps":[{{"Path":"{disk}","Rate":1048576,"rate":0}}]"#
        )),
        // The top-level copy dockerd applies when HostConfig is absent.
        format!(
            r#"{{"Image":"{image}","User":"1000","Cmd":["true"],"Memory":67108864,"NanoCpus":500000000,"PidsLimit":64,"BlkioDeviceWriteBps":[{{"Path":"{disk}","Rate":1048576}}]}}"#
        ),
        format!(r#"{{"Image":"{image}","User":"1000","Cmd":["true"]}}"#),
    ];
    for (i, body) in hostile.iter().enumerate() {
        let (st, resp) = http(
            sock,
            "POST",
            &format!("/v1.41/containers/create?name=bad{i}"),
            Some(body),
        );
        assert_ne!(st, 201, "created: {body}");
        assert!(
            resp.contains("authorization denied by plugin"),
            "{body}: {resp}"
        );
    }

    // Updates: what `docker update` can change leaves the throttle; lifting it is refused.
    let o = dk(&["update", "--memory", "128m", "--memory-swap", "256m", "ok"]);
    assert!(o.status.success(), "{:?}", text(&o));
    for body in [
        r#"{"BlkioDeviceWriteBps":[]}"#.to_string(),
        format!(r#"{{"blkiodevicewritebps":[{{"Path":"{disk}","Rate":0}}]}}"#),
        r#"{"BlkioDeviceWriteBps":[{"Path":"","Rate":1}]}"#.to_string(),
        format!(
            r#"{{"BlkioDeviceReadBps":[{{"Path":"{disk}","Rate":2}}],"BlkioDeviceWriteBps":[]}}"#
        ),
    ] {
        let (st, resp) = http(sock, "POST", "/v1.41/containers/ok/update", Some(&body));
        assert_ne!(st, 200, "update allowed: {body}");
        assert!(
            resp.contains("lifting the disk IO limits"),
            "{body}: {resp}"
        );
    }
    let c = inspect("ok");
    assert_eq!(
        c["HostConfig"]["Memory"],
        json!(134217728),
        "the allowed update ran"
    );
    assert_eq!(
        c["HostConfig"]["BlkioDeviceWriteBps"],
        json!([{"Path": disk, "Rate": 1048576}])
    );

    // Services: no IO limit in a service spec, so neither a new one nor an update.
    let o = dk(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "svc",
        "--user",
        "1000",
        "--limit-memory",
        "64m",
        "--limit-cpu",
        "0.5",
        "--limit-pids",
        "64",
        &image,
        "sleep",
        "1000",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "a service ran without an IO limit");
    assert!(
        err.contains("[disk-io]") && err.contains("a swarm service cannot set them"),
        "{err}"
    );
    let o = dk(&[
        "service",
        "update",
        "-d",
        "--no-resolve-image",
        "--limit-memory",
        "32m",
        "old",
    ]);
    assert!(
        !o.status.success(),
        "a service update was allowed: {:?}",
        text(&o)
    );
    let o = dk(&["service", "ls", "--format", "{{.Name}}"]);
    assert_eq!(text(&o).0.trim(), "old", "{:?}", text(&o));
    let o = dk(&[
        "service",
        "inspect",
        "old",
        "--format",
        "{{json .Spec.TaskTemplate.Resources.Limits}}",
    ]);
    let lim: Value = serde_json::from_str(text(&o).0.trim()).expect("limits json");
    assert_eq!(
        lim["MemoryBytes"],
        json!(67108864),
        "the old service is unchanged"
    );

    // What dockerd holds: only the controls, each with a throttle it applies.
    let o = dk(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<String> = text(&o).0.lines().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, vec!["ok".to_string(), "ok2".to_string()]);
    for n in &names {
        let hc = &inspect(n)["HostConfig"];
        let limiting = [
            "BlkioDeviceReadBps",
            "BlkioDeviceWriteBps",
            "BlkioDeviceReadIOps",
            "BlkioDeviceWriteIOps",
        ]
        .iter()
        .flat_map(|f| hc[*f].as_array().cloned().unwrap_or_default())
        .filter(|t| {
            t["Path"].as_str().is_some_and(|p| !p.is_empty()) && t["Rate"].as_u64().unwrap_or(0) > 0
        })
        .count();
        assert!(limiting > 0, "{n} has no IO limit: {hc}");
    }
    let log = std::fs::read_to_string(&events).expect("events");
    assert!(
        log.contains("disk IO limits required"),
        "the denials are recorded"
    );

    let _ = dk(&["rm", "-f", "ok", "ok2"]);
    let _ = dk(&["service", "rm", "old"]);
    let _ = dk(&["swarm", "leave", "--force"]);
    daemon.stop();
    plugin_proc.stop();
    let rel = format!("rampart-authzio-{}", std::process::id());
    for ctl in [
        "", "blkio", "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids", "systemd",
    ] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(ctl).join(&rel));
    }
}
