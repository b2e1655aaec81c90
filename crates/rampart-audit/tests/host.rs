//! The host audit against this machine: every fact it reports is compared with an independent
//! reading (a file, `docker info`, `docker network inspect`), securityfs is left as it was
//! found, and the daemon configuration checks are exercised with daemon.json fixtures.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_status, assert_valid_sarif};
use rampart_audit::host::daemon::{self, DaemonConfig, DaemonFacts};
use rampart_audit::host::HostOptions;
use rampart_event::ComplianceStatus::{Fail, NotApplicable, Pass};
use rampart_event::ResourceKind;

fn securityfs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.contains(" - securityfs "))
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_audit_reports_measured_facts() {
    testkit::require!(Root, Docker, Bpf);
    let before = securityfs_mounted();
    let d = common::docker().await;
    let report = rampart_audit::audit_host(Some(&d), &HostOptions::default())
        .await
        .expect("audit");
    assert_eq!(securityfs_mounted(), before, "securityfs is left as it was");
    let host = report.host.as_ref().expect("host report");
    let f = &host.facts;
    if before {
        assert_eq!(f.securityfs, "mounted");
    } else {
        assert!(
            f.securityfs.contains("mounted read-only"),
            "{}",
            f.securityfs
        );
        assert!(
            report.notes.iter().any(|n| n.contains("securityfs")),
            "{:?}",
            report.notes
        );
    }
    // With securityfs readable for the audit, the LSM list and lockdown are known.
    assert!(
        f.lsms.is_some() && f.lockdown.is_some(),
        "{:?} {:?}",
        f.lsms,
        f.lockdown
    );
    assert_eq!(
        f.kernel,
        read("/proc/sys/kernel/osrelease").expect("osrelease")
    );
    for (name, value) in &f.sysctls {
        assert_eq!(
            *value,
            read(&format!("/proc/sys/{}", name.replace('.', "/"))),
            "{name}"
        );
    }
    assert_eq!(f.cgroup_mode, rampart_kernel::cgroup_layout().mode());
    assert_eq!(f.btf, Path::new("/sys/kernel/btf/vmlinux").exists());
    assert_eq!(
        f.seccomp.filter,
        Path::new("/proc/sys/kernel/seccomp/actions_avail").exists()
    );
    assert!(f.bpf.contains_key("raw tracepoint") && f.bpf.contains_key("BPF-LSM program"));
    // The recorder was loaded for real: it works here iff raw tracepoints do.
    assert_eq!(f.syscall_recorder.is_ok(), f.bpf["raw tracepoint"] == "yes");
    let max_userns: Option<u64> =
        read("/proc/sys/user/max_user_namespaces").and_then(|v| v.parse().ok());
    assert_eq!(f.user_namespaces.max, max_userns);

    let s = &report.subjects[0];
    assert_eq!(s.resource.kind, ResourceKind::Host);
    // Kernel checks and daemon checks are both there; daemon ones name the daemon.
    let tls = common::finding(s, "2.7");
    assert_eq!(tls.resource.kind, ResourceKind::DockerDaemon);
    // Daemon facts agree with what docker itself says.
    let live = testkit::docker_ok(["info", "--format", "{{.LiveRestoreEnabled}}"]);
    assert_status(s, "2.15", if live == "true" { Pass } else { Fail });
    let secopts = testkit::docker_ok(["info", "--format", "{{json .SecurityOptions}}"]);
    assert_status(
        s,
        "2.9",
        if secopts.contains("name=userns") {
            Pass
        } else {
            Fail
        },
    );
    assert_status(
        s,
        "2.17",
        if secopts.contains("name=seccomp") && !secopts.contains("unconfined") {
            Pass
        } else {
            Fail
        },
    );
    let icc = testkit::docker_ok([
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{index .Options \"com.docker.network.bridge.enable_icc\"}}",
    ]);
    assert_status(s, "2.2", if icc == "false" { Pass } else { Fail });
    let driver = testkit::docker_ok(["info", "--format", "{{.LoggingDriver}}"]);
    assert_status(
        s,
        "2.13",
        if driver == "json-file" || driver == "local" {
            Fail
        } else {
            Pass
        },
    );
    // Files CIS 3.x looks at.
    use std::os::unix::fs::PermissionsExt;
    let sock_mode =
        std::fs::metadata("/var/run/docker.sock").map(|m| m.permissions().mode() & 0o7777);
    assert_status(
        s,
        "3.16",
        match sock_mode {
            Ok(m) if m & !0o660 == 0 => Pass,
            Ok(_) => Fail,
            Err(_) => NotApplicable,
        },
    );
    assert_status(s, "RAMPART-H-BTF", if f.btf { Pass } else { Fail });
    let kptr: i64 = read("/proc/sys/kernel/kptr_restrict")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert_status(s, "RAMPART-H-KPTR", if kptr >= 1 { Pass } else { Fail });

    // The matrix ends the report and names what to change for each missing protection.
    let table = report.table(rampart_audit::Detail::Problems);
    assert!(table.contains("Protections on this host"), "{table}");
    for p in &host.matrix {
        assert_eq!(p.change.is_some(), !p.available, "{}", p.name);
        assert!(table.contains(p.name));
    }
    let lsm = host
        .matrix
        .iter()
        .find(|p| p.name == "BPF-LSM enforcement")
        .expect("row");
    let lsm_loads = f.bpf["BPF-LSM program"] == "yes";
    if !lsm_loads {
        assert!(!lsm.available);
    }
    assert_valid_sarif(&report.sarif());
    let json = report.json();
    assert_eq!(json["host"]["facts"]["kernel"], f.kernel);
}

#[tokio::test]
async fn host_audit_without_docker_skips_the_daemon_checks() {
    testkit::require!(Root);
    let opts = HostOptions {
        probe_bpf: false,
        daemon_json: PathBuf::from("/nonexistent/daemon.json"),
        ..HostOptions::default()
    };
    let report = rampart_audit::audit_host(None, &opts).await.expect("audit");
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("no Docker daemon answered")));
    let s = &report.subjects[0];
    assert!(s.finding("RAMPART-H-SECCOMP").is_some());
    // dockerd runs on this machine, so its pid is found: section 1-3 checks still come from
    // the files and the command line.
    let host = report.host.as_ref().expect("host");
    assert!(host.facts.bpf.is_empty(), "--no-bpf loads nothing");
    assert!(host.facts.syscall_recorder.is_err());
}

#[tokio::test]
async fn malformed_daemon_json_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("daemon.json");
    std::fs::write(
        &p,
        "{\n  \"icc\": false,\n  \"userns-remap\" \"default\"\n}\n",
    )
    .expect("write");
    let opts = HostOptions {
        probe_bpf: false,
        daemon_json: p.clone(),
        ..HostOptions::default()
    };
    let err = rampart_audit::audit_host(None, &opts)
        .await
        .expect_err("malformed");
    assert!(err.is_bad_input());
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}:3:", p.display())), "{text}");
}

/// userns-remap (CIS 2.9) from daemon.json fixtures, with and without a running daemon's
/// answer; the live daemon case is covered by tests/userns.rs with a second dockerd.
#[test]
fn userns_remap_check_from_daemon_json_fixtures() {
    let dir = tempfile::tempdir().expect("tmp");
    let with = dir.path().join("with.json");
    let without = dir.path().join("without.json");
    std::fs::write(
        &with,
        r#"{"userns-remap": "default", "live-restore": true}"#,
    )
    .expect("w");
    std::fs::write(&without, r#"{"live-restore": true}"#).expect("w");
    let fake_proc = dir.path().join("proc");
    std::fs::create_dir(&fake_proc).expect("mkdir");
    let cfg_with = DaemonConfig::load(&with, &fake_proc).expect("load");
    let cfg_without = DaemonConfig::load(&without, &fake_proc).expect("load");
    let unknown = DaemonFacts::default();
    assert_eq!(daemon::userns_check(&cfg_with, &unknown).status, Pass);
    assert_eq!(daemon::userns_check(&cfg_without, &unknown).status, Fail);
    // Configured but not in effect: the running daemon decides, and the evidence says why.
    let running_without = DaemonFacts {
        info: Some(rampart_container::models::SystemInfo {
            security_options: Some(vec!["name=seccomp,profile=default".into()]),
            ..Default::default()
        }),
        ..DaemonFacts::default()
    };
    let o = daemon::userns_check(&cfg_with, &running_without);
    assert_eq!(o.status, Fail);
    assert!(o.evidence.contains("restart dockerd"), "{}", o.evidence);
    let running_with = DaemonFacts {
        info: Some(rampart_container::models::SystemInfo {
            security_options: Some(vec![
                "name=seccomp,profile=default".into(),
                "name=userns".into(),
            ]),
            ..Default::default()
        }),
        ..DaemonFacts::default()
    };
    assert_eq!(daemon::userns_check(&cfg_with, &running_with).status, Pass);
    // The other daemon.json keys of the fixture are read as well.
    let all = daemon::checks(&cfg_with, &unknown);
    let nnp = all.iter().find(|o| o.def.id == "2.14").expect("2.14");
    assert_eq!(nnp.status, Fail);
}
