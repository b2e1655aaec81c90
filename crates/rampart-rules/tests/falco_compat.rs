//! Falco's rule-file format and condition language, construct by construct, as Falco's own rule
//! files use them (the files themselves are checked by `tests/falco_files.rs` when available).

mod support;

use std::sync::Arc;

use rampart_event::{EventKind, PrivilegeInfo};
use rampart_rules::{Engine, Error, Loader, Need, Options, RuleMatching, RuleSet};
use support::{fired, names, B};

const FALCO_STYLE: &str = r#"
- required_engine_version: 0.57.0

- required_plugin_versions:
    - name: container
      version: 0.4.0

- macro: spawned_process
  condition: (evt.type in (execve, execveat) and evt.dir=<)

- condition: (container.id != host)
  macro: container

- macro: never_true
  condition: (evt.num=0)

- macro: open_write
  condition: (evt.type in (open,openat,openat2) and evt.is_open_write=true and fd.typechar='f' and fd.num>=0)

- list: shell_binaries
  items: [ash, bash, sh]

- list: login_binaries
  items: [
    login, '"(systemd)"', su
    ]

- list: runtime_parents
  items: ["runc:[0:PARENT]", "runc:[1:CHILD]", containerd-shim]

- list: more_binaries
  items: [shell_binaries, login_binaries, perl]

- list: empty_list
  items: []

- list: rfc_1918_addresses
  items: ['"10.0.0.0/8"', '"172.16.0.0/12"', '"192.168.0.0/16"']

- list: odd_ports
  items: [4444, "8443"]

- rule: Shell under runtime
  desc: a shell whose parent is the container runtime
  condition: >
    spawned_process and container and proc.name in (more_binaries)
    and proc.pname in (runtime_parents)
    and not proc.name in (empty_list)
    and not never_true
  output: shell %proc.name parent=%proc.pname gparent=%proc.aname[2] flags=%evt.arg.flags %container.info
  priority:
    WARNING
  tags: [container, mitre_execution, T1059]

- rule: Orphan shell
  desc: no parent
  condition: spawned_process and proc.name in (shell_binaries) and not proc.pname exists
  output: orphan %proc.name
  priority: NOTICE

- rule: Truncating write
  desc: flags rendered like Falco
  condition: open_write and evt.arg.flags contains "O_TRUNC" and fd.name startswith /var/log
  output: truncated %fd.name (%evt.arg.flags)
  priority: NOTICE
  exceptions:
    - name: rotators
      fields: [proc.name, fd.directory]
      comps: [=, in]
      values:
        - [logrotate, [/var/log, /var/log/nginx]]
    - name: by_image
      fields: container.image.repository
      values: [[registry.example/rotator]]

- rule: Public connection
  desc: Falco's outbound shape
  condition: >
    (((evt.type = connect and evt.dir=<) or
      (evt.type in (sendto,sendmsg) and evt.dir=< and
       fd.l4proto != tcp and fd.connected=false and fd.name_changed=true)) and
     (fd.typechar = 4 or fd.typechar = 6) and
     (fd.ip != "0.0.0.0" and fd.net != "127.0.0.0/8" and not fd.snet in (rfc_1918_addresses)) and
     (evt.rawres >= 0 or evt.res = EINPROGRESS))
    and fd.sport in (odd_ports)
  output: connection %fd.name lport=%fd.lport rport=%fd.rport fd_proto=fd.l4proto
  priority: NOTICE

- rule: Module with caps
  desc: thread.cap_effective icontains
  condition: evt.type in (init_module, finit_module) and thread.cap_effective icontains sys_module
  output: module %evt.arg.name
  priority: WARNING

- rule: Ptrace enter
  desc: Falco uses the enter event for ptrace
  condition: evt.type=ptrace and evt.dir=> and evt.arg.request contains PTRACE_ATTACH
  output: ptrace %evt.arg.request
  priority: WARNING

- rule: Backslash arg
  desc: a bare backslash before a closing parenthesis
  condition: spawned_process and (proc.args contains "\ " or proc.args endswith \)
  output: backslash %proc.args
  priority: INFO

- rule: Mounts
  desc: uses a field Rampart lacks, with a glob argument
  condition: spawned_process and not container.mount.dest[/proc*] in ("<NA>","N/A")
  output: mounts %container.mounts
  priority: INFO

- rule: Needs k8s
  desc: only k8s
  condition: spawned_process and k8s.ns.name = kube-system
  output: k8s
  priority: INFO

- rule: Audit rule
  desc: another event source, with its own fields
  condition: ka.verb=create and ka.target.resource=pods
  output: pod created %ka.user.name
  priority: NOTICE
  source: k8s_audit

- rule: Sockets
  desc: a syscall Rampart does not capture
  condition: evt.type=dup2 and evt.arg[0] contains 3
  output: dup2 %evt.args
  priority: NOTICE

- rule: Future field
  desc: skipped, not an error
  condition: spawned_process and proc.some_future_field = 1
  output: x
  priority: INFO
  skip-if-unknown-filter: true

- rule: Same parent name
  desc: val() and transformers
  condition: spawned_process and proc.name = val(proc.pname) and toupper(proc.name) = BASH and len(proc.name) = 4
  output: nested %proc.name
  priority: INFO
"#;

const LOCAL: &str = r#"
- list: shell_binaries
  items: [zsh]
  append: true

- macro: container
  condition: and not container.image.repository = trusted/image
  append: true

- rule: Orphan shell
  enabled: false

- rule: Shell under runtime
  condition: and proc.name != dash
  override:
    condition: append
    priority: replace
  priority: CRITICAL

- rule: Truncating write
  exceptions:
    - name: rotators
      values:
        - [newsyslog, [/var/log]]
  append: true
"#;

fn compile(files: &[(&str, &str)]) -> RuleSet {
    let mut loader = Loader::new();
    for (n, t) in files {
        loader.add_str(n, t).unwrap_or_else(|e| panic!("{e}"));
    }
    loader
        .compile(Options {
            rule_matching: RuleMatching::All,
            ..Options::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
}

fn run(rules: &RuleSet, events: &[rampart_event::Event]) -> Vec<String> {
    let mut engine = Engine::new(Arc::new(compile_again(rules)));
    names(&fired(&mut engine, events))
}

fn compile_again(_: &RuleSet) -> RuleSet {
    compile(&[("falco_style.yaml", FALCO_STYLE), ("local.yaml", LOCAL)])
}

fn in_runtime(b: B, parent: &str) -> B {
    let parent = parent.to_string();
    b.proc(move |p| {
        p.ancestors = vec![
            support::ancestor(10, &parent, &[&parent]),
            support::ancestor(1, "systemd", &["systemd"]),
        ]
    })
}

#[test]
fn falco_constructs_load_and_cannot_fire_is_reported_once() {
    let rules = compile(&[("falco_style.yaml", FALCO_STYLE), ("local.yaml", LOCAL)]);
    let report = rules.report();
    let cannot: Vec<(&str, &Vec<Need>)> = report
        .cannot_fire
        .iter()
        .map(|c| (c.rule.as_str(), &c.needs))
        .collect();
    assert_eq!(cannot.len(), 4, "{cannot:?}");
    assert!(cannot.contains(&("Mounts", &vec![Need::Field("container.mount.dest".into())])));
    assert!(cannot.contains(&("Needs k8s", &vec![Need::Field("k8s.ns.name".into())])));
    assert!(cannot.contains(&("Audit rule", &vec![Need::Source("k8s_audit".into())])));
    assert!(cannot.contains(&("Sockets", &vec![Need::EventTypes(vec!["dup2".into()])])));
    assert!(report
        .warnings
        .iter()
        .any(|w| w.message.contains("skip-if-unknown-filter")
            && w.message.contains("proc.some_future_field")));
    assert!(report
        .warnings
        .iter()
        .any(|w| w.message.contains("Public connection") && w.message.contains("fd.connected")));
    let shell = rules
        .rules()
        .find(|r| r.name() == "Shell under runtime")
        .expect("rule");
    assert_eq!(shell.priority(), rampart_event::Priority::Critical);
    assert!(!rules
        .rules()
        .find(|r| r.name() == "Orphan shell")
        .expect("rule")
        .enabled());
}

#[test]
fn lists_macros_appends_and_overrides_evaluate_like_falco() {
    let rules = compile(&[]);
    // Quoted list items, bare items with brackets, lists of lists, appended list items.
    for (name, parent) in [
        ("bash", "runc:[0:PARENT]"),
        ("(systemd)", "runc:[1:CHILD]"),
        ("perl", "containerd-shim"),
        ("zsh", "containerd-shim"),
    ] {
        let got = run(
            &rules,
            &[in_runtime(B::exec(name, &[name]), parent).build()],
        );
        assert!(
            got.contains(&"Shell under runtime".to_string()),
            "{name}: {got:?}"
        );
    }
    // The appended macro condition and the appended rule condition.
    let trusted =
        in_runtime(B::exec("bash", &["bash"]), "containerd-shim").image("trusted/image:1");
    assert!(!run(&rules, &[trusted.build()]).contains(&"Shell under runtime".to_string()));
    let host = in_runtime(B::exec("bash", &["bash"]), "containerd-shim").host();
    assert!(!run(&rules, &[host.build()]).contains(&"Shell under runtime".to_string()));
    // The disabled rule stays quiet.
    let orphan = B::exec("sh", &["sh"]).proc(|p| p.ancestors.clear());
    assert!(!run(&rules, &[orphan.build()]).contains(&"Orphan shell".to_string()));
}

#[test]
fn output_renders_falco_fields() {
    let rules = compile(&[("falco_style.yaml", FALCO_STYLE), ("local.yaml", LOCAL)]);
    let mut engine = Engine::new(Arc::new(rules));
    let d = fired(
        &mut engine,
        &[in_runtime(B::exec("bash", &["bash", "-i"]), "containerd-shim").build()],
    );
    let a = &d
        .iter()
        .find(|d| d.alert.rule == "Shell under runtime")
        .expect("fired")
        .alert;
    assert!(
        a.output.starts_with("shell bash parent=containerd-shim gparent=systemd flags=0 container_id=c0ffeec0ffee container_name=web container_image_repository=nginx container_image_tag=1.25"),
        "{}",
        a.output
    );
    assert_eq!(&a.output_fields["proc.aname[2]"], "systemd");
}

#[test]
fn exceptions_flags_and_network_semantics() {
    let rules = compile(&[]);
    let write = |path: &str, name: &str| {
        let name = name.to_string();
        B::write(path).proc(move |p| p.name = name)
    };
    assert!(run(&rules, &[write("/var/log/app.log", "app").build()])
        .contains(&"Truncating write".into()));
    // Exception rows (including the appended one) and the single-field exception.
    assert!(run(
        &rules,
        &[write("/var/log/nginx/a.log", "logrotate").build()]
    )
    .is_empty());
    assert!(run(&rules, &[write("/var/log/a.log", "newsyslog").build()]).is_empty());
    assert!(run(
        &rules,
        &[write("/var/log/a.log", "app")
            .image("registry.example/rotator:2")
            .build()]
    )
    .is_empty());
    // O_APPEND without O_TRUNC.
    assert!(run(&rules, &[B::open("/var/log/app.log", 0o2101).build()]).is_empty());

    let public = |ip: &str, port: u16| B::connect(ip, port).build();
    assert_eq!(
        run(&rules, &[public("203.0.113.7", 4444)]),
        ["Public connection"]
    );
    assert_eq!(
        run(&rules, &[public("203.0.113.7", 8443)]),
        ["Public connection"]
    );
    assert!(run(&rules, &[public("10.1.2.3", 4444)]).is_empty());
    assert!(run(&rules, &[public("127.0.0.1", 4444)]).is_empty());
    assert!(run(&rules, &[public("203.0.113.7", 443)]).is_empty());
    // In progress still counts; refused does not.
    assert_eq!(
        run(
            &rules,
            &[B::connect("203.0.113.7", 4444).result(-115).build()]
        ),
        ["Public connection"]
    );
    assert!(run(
        &rules,
        &[B::connect("203.0.113.7", 4444).result(-111).build()]
    )
    .is_empty());
}

#[test]
fn capabilities_directions_backslashes_and_transformers() {
    let rules = compile(&[]);
    let module = |caps: u64| {
        B::privilege(
            EventKind::PrivModuleLoad,
            "finit_module",
            PrivilegeInfo::default(),
        )
        .proc(move |p| p.cap_effective = caps)
        .build()
    };
    assert_eq!(run(&rules, &[module(1 << 16)]), ["Module with caps"]);
    assert!(run(&rules, &[module(1 << 21)]).is_empty());
    let ptrace = B::privilege(
        EventKind::PrivPtrace,
        "ptrace",
        PrivilegeInfo {
            request_name: Some("PTRACE_ATTACH".into()),
            ..PrivilegeInfo::default()
        },
    );
    assert_eq!(run(&rules, &[ptrace.build()]), ["Ptrace enter"]);
    let backslash = B::exec("sudoedit", &["sudoedit", "-s", "\\"]);
    assert!(run(&rules, &[backslash.build()]).contains(&"Backslash arg".to_string()));
    let nested = B::exec("bash", &["bash"])
        .proc(|p| p.ancestors = vec![support::ancestor(3, "bash", &["bash"])]);
    assert!(run(&rules, &[nested.build()]).contains(&"Same parent name".to_string()));
    let other = B::exec("bash", &["bash"]);
    assert!(!run(&rules, &[other.build()]).contains(&"Same parent name".to_string()));
}

fn error(files: &[(&str, &str)]) -> Error {
    let mut loader = Loader::new();
    for (n, t) in files {
        if let Err(e) = loader.add_str(n, t) {
            return e;
        }
    }
    match loader.compile(Options::default()) {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn errors_name_file_line_column_and_token() {
    let rule = |cond: &str| {
        format!("- rule: r\n  desc: d\n  condition: >\n    spawned_process and\n    {cond}\n  output: o\n  priority: INFO\n- macro: spawned_process\n  condition: evt.type = execve\n")
    };
    let e = error(&[("a.yaml", &rule("proc.name = bash bash"))]);
    assert_eq!(
        e.to_string(),
        "a.yaml:5:22: syntax error at \"bash\": unexpected text after the end of the expression"
    );
    let e = error(&[("a.yaml", &rule("proc.pid = abc"))]);
    assert!(
        e.to_string()
            .starts_with("a.yaml:5:16: proc.pid = \"abc\": not a valid number value"),
        "{e}"
    );
    let e = error(&[("a.yaml", &rule("proc.name contains"))]);
    assert_eq!(
        e.to_string(),
        "a.yaml:5:22: syntax error at \"\": expected a value"
    );
    let e = error(&[("a.yaml", &rule("not undefined_macro"))]);
    assert_eq!(
        e.to_string(),
        "a.yaml:5:9: undefined macro \"undefined_macro\""
    );
    let e = error(&[("a.yaml", &rule("proc.name regex \"(\""))]);
    assert!(e.to_string().contains("invalid regex"), "{e}");
    let e = error(&[("a.yaml", "- macro: a\n  condition: b\n- macro: b\n  condition: a\n- rule: r\n  desc: d\n  condition: a\n  output: o\n  priority: INFO\n")]);
    assert!(e.to_string().contains("refers to itself"), "{e}");
    let e = error(&[(
        "a.yaml",
        "- rule: r\n  desc: d\n  condition: evt.type=execve\n  output: o\n  priority: LOUD\n",
    )]);
    assert!(
        e.to_string().starts_with("a.yaml:5:13: unknown priority"),
        "{e}"
    );
    let e = error(&[("a.yaml", "- rule: r\n  desc: d\n  condition: [evt.type\n")]);
    assert!(matches!(e, Error::Yaml { .. }), "{e}");
    assert_eq!(e.location().map(|l| l.file.as_ref()), Some("a.yaml"));
    let e = error(&[("a.yaml", "- list: x\n  items: [a]\n  append: true\n")]);
    assert!(
        e.to_string()
            .starts_with("a.yaml:1:3: list \"x\" has append/override"),
        "{e}"
    );
    // A failed file leaves the loader as it was.
    let mut loader = Loader::new();
    loader
        .add_str("good.yaml", "- list: l\n  items: [a]\n")
        .expect("good");
    assert!(loader
        .add_str(
            "bad.yaml",
            "- list: l\n  items: [b]\n  append: true\n- rule: x\n"
        )
        .is_err());
    assert!(loader.compile(Options::default()).is_ok());
}

/// The alert of a rule whose output has blanks around it, a field named twice, a field the
/// event lacks and a literal `%%`: Falco trims the output, prints `<NA>`, and the output fields
/// hold each field once. The id is the event's id and the FNV-1a hash of the rule's name.
#[test]
fn alert_output_fields_and_id() {
    let text = "- rule: Twice\n  desc: d\n  condition: evt.type = execve and proc.name = curl\n  \
        output: '  got %proc.name (%proc.name) file=%fd.name 100%% %user.uid  '\n  priority: WARNING\n";
    let rules = compile(&[("r.yaml", text)]);
    let mut engine = Engine::new(Arc::new(rules));
    let ev = B::exec("curl", &["curl", "-s"]).build();
    let d = fired(&mut engine, std::slice::from_ref(&ev));
    let a = &d.first().expect("fired").alert;
    assert_eq!(a.output, "got curl (curl) file=<NA> 100% 0");
    let fields: Vec<(&str, &str)> = a.output_fields.iter().collect();
    assert_eq!(
        fields,
        [
            ("fd.name", "<NA>"),
            ("proc.name", "curl"),
            ("user.uid", "0")
        ]
    );
    // FNV-1a 64 of "Twice", written as 16 hex digits.
    let hash = "Twice".bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    assert_eq!(a.id.as_str(), format!("{}-{hash:016x}", ev.id));
}
