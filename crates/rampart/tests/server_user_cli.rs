//! `rampart server user add|list|remove`: dashboard users in the server's control database.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rampart_server::{Role, ServerConfig};

fn rampart(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("server")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running rampart: {e}"));
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("writing stdin");
        }
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for rampart: {e}"))
}

mod support;
use support::text;

#[test]
fn add_list_and_remove_dashboard_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let config = dir.path().join("server.yaml");
    std::fs::write(&config, format!("data_dir: {}\n", data.display())).expect("config");
    let pw = dir.path().join("ann.pw");
    std::fs::write(&pw, "correct horse battery staple\n").expect("password file");

    let o = rampart(
        &config,
        &["user", "add", "ann", "--role", "analyst", "--password-file"],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "--password-file needs a value: {}",
        text(&o)
    );
    let pw_arg = pw.to_str().expect("utf-8 path");
    let o = rampart(
        &config,
        &[
            "user",
            "add",
            "ann",
            "--role",
            "analyst",
            "--password-file",
            pw_arg,
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    // From standard input.
    let o = rampart(
        &config,
        &["user", "add", "bob", "--role", "read-only"],
        Some("another long password\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = rampart(
        &config,
        &[
            "user",
            "add",
            "carl",
            "--role",
            "boss",
            "--password-file",
            pw_arg,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--role \"boss\""), "{}", text(&o));
    let o = rampart(
        &config,
        &["user", "add", "dora", "--role", "admin"],
        Some("short\n"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("shorter than 12"), "{}", text(&o));

    let list = text(&rampart(&config, &["user", "list"], None));
    assert!(list.contains("ann") && list.contains("analyst"), "{list}");
    assert!(list.contains("bob") && list.contains("read-only"), "{list}");
    assert!(!list.contains("carl") && !list.contains("dora"), "{list}");

    // The stored hash checks the password from the file (its first line).
    let (control, _) = rampart_server::open_control(&ServerConfig::with_data_dir(&data))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        control
            .check_password("ann", "correct horse battery staple")
            .unwrap_or_else(|e| panic!("{e}")),
        Some(Role::Analyst)
    );

    assert!(rampart(&config, &["user", "remove", "ann"], None)
        .status
        .success());
    let o = rampart(&config, &["user", "remove", "ann"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&rampart(&config, &["user", "list"], None)).contains("ann"));
}

/// Issue 16: the packaged server runs as user `rampart`, which owns its data directory. An
/// admin command run as root on that directory takes the owner's identity first, so that the
/// files it creates (the database's -wal and -shm, a new CRL) stay the service's.
#[test]
fn admin_commands_run_as_root_act_as_the_data_directorys_owner() {
    testkit::require!(Root);
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let config = dir.path().join("server.yaml");
    std::fs::write(&config, format!("data_dir: {}\n", data.display())).expect("config");
    // First use as root creates the directory (0700) and the control database (0600).
    let o = rampart(&config, &["user", "list"], None);
    assert!(o.status.success(), "{}", text(&o));
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("control.db")), 0o600);
    // Hand it to another user (nobody, 65534), as the package does to `rampart`. The temp
    // directory above it must be traversable by that user.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .expect("chmod");
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&data)
        .output()
        .expect("chown");
    assert!(chown.status.success());
    // A control database created anew by the next command must be the owner's too.
    for f in ["control.db", "control.db-wal", "control.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let o = rampart(
        &config,
        &["user", "add", "carol", "--role", "analyst"],
        Some("a long enough password\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = rampart(&config, &["enroll-token", "--region", "eu-de"], None);
    assert!(o.status.success(), "{}", text(&o));
    for entry in walk(&data) {
        let m = std::fs::metadata(&entry).expect("stat");
        assert_eq!(
            (m.uid(), m.gid()),
            (65534, 65534),
            "{} is the owner's",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
