//! Falco's rule language, operator by operator and key by key, evaluated on synthetic events.
//!
//! The expectations come from Falco's documentation (falco.org "Condition Syntax", "Rule
//! Exceptions", "Overriding rules") and from libsinsp's filter parser and tests
//! (falcosecurity/libs `userspace/libsinsp/filter/parser.cpp`, `test/filter_transformer.ut.cpp`),
//! not from Rampart's parser: where Falco rejects a file, Rampart must reject it too, and where
//! Falco matches, Rampart must match.

mod support;

use std::sync::Arc;

use rampart_event::Event;
use rampart_rules::{Engine, Error, Evaluation, Loader, Options, RuleMatching, RuleSet};
use support::{fired, names, B};

const PRELUDE: &str = "- macro: spawned_process\n  condition: evt.type in (execve, execveat)\n";

fn load(files: &[&str]) -> Result<Arc<RuleSet>, Error> {
    let mut loader = Loader::new();
    loader.add_str("prelude.yaml", PRELUDE)?;
    for (i, text) in files.iter().enumerate() {
        loader.add_str(&format!("f{i}.yaml"), text)?;
    }
    loader
        .compile(Options {
            rule_matching: RuleMatching::All,
            ..Options::default()
        })
        .map(Arc::new)
}

fn rule(name: &str, cond: &str) -> String {
    format!(
        "- rule: {name}\n  desc: d\n  condition: {}\n  output: o %proc.name\n  priority: WARNING\n",
        yaml_str(cond)
    )
}

/// A YAML double-quoted scalar holding `s`.
fn yaml_str(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r");
    format!("\"{escaped}\"")
}

fn fire(rules: &Arc<RuleSet>, ev: Event) -> Vec<String> {
    let mut engine = Engine::new(Arc::clone(rules));
    names(&fired(&mut engine, &[ev]))
}

/// Whether a rule with condition `cond` fires on `ev`.
fn holds(cond: &str, ev: Event) -> bool {
    let rules = load(&[&rule("r", cond)]).unwrap_or_else(|e| panic!("{cond}: {e}"));
    !fire(&rules, ev).is_empty()
}

fn load_err(files: &[&str]) -> String {
    match load(files) {
        Ok(_) => panic!("expected an error for {files:?}"),
        Err(e) => e.to_string(),
    }
}

/// `curl -sL http://x.example/a.sh` run by bash in a container.
fn curl() -> Event {
    B::exec("curl", &["curl", "-sL", "http://x.example/a.sh"])
        .proc(|p| p.exe = "/usr/bin/curl".into())
        .build()
}

fn open(path: &str) -> Event {
    B::write(path).build()
}

#[test]
fn comparison_operators() {
    let t = |c: &str| holds(c, curl());
    assert!(t("proc.name = curl") && t("proc.name == curl") && t("proc.name=curl"));
    assert!(!t("proc.name = cur") && t("proc.name != wget") && !t("proc.name != curl"));
    // Numbers: decimal and hexadecimal (libsinsp RGX_HEXNUM), the four orders.
    assert!(t("proc.pid = 4242") && t("proc.pid = 0x1092") && t("proc.pid=4242"));
    assert!(t("proc.pid > 4241") && !t("proc.pid > 4242") && t("proc.pid >= 4242"));
    assert!(t("proc.pid < 4243") && !t("proc.pid < 4242") && t("proc.pid <= 4242"));
    assert!(t("proc.pid>4241") && t("proc.pid<=4242"));
    // Substrings.
    assert!(t("proc.cmdline contains x.example") && !t("proc.cmdline contains X.EXAMPLE"));
    assert!(t("proc.cmdline icontains X.EXAMPLE") && t("proc.cmdline icontains 'Curl -SL'"));
    assert!(t("proc.exepath startswith /usr/") && !t("proc.exepath startswith usr/"));
    assert!(t("proc.exepath endswith /curl") && !t("proc.exepath endswith /cur"));
    // Bytes given as hex, either case: "curl" = 6375726c.
    assert!(t("proc.cmdline bcontains 6375726c") && t("proc.cmdline bcontains 6375726C"));
    assert!(t("proc.name bstartswith 6375") && !t("proc.name bstartswith 7572"));
    // `exists`, also right before a closing parenthesis (falco-sandbox_rules.yaml:1282).
    assert!(t("(container.id exists)") && t("proc.pname exists"));
    // On the host Falco's container.id is "host": it exists there too.
    assert!(holds(
        "(container.id exists)",
        B::exec("curl", &["curl"]).host().build()
    ));
    let orphan = || {
        B::exec("curl", &["curl"])
            .proc(|p| p.ancestors.clear())
            .build()
    };
    assert!(!holds("(proc.pname exists)", orphan()));
    assert!(holds("not proc.pname exists", orphan()));
    assert!(!t("not proc.name exists"));
}

#[test]
fn operators_need_the_blank_falco_needs() {
    // `contains` and the other word operators need a blank after them; `in`, `exists` and the
    // symbols do not (libsinsp's lexer).
    assert!(holds("proc.name in(curl, wget)", curl()));
    assert!(holds("proc.name intersects(curl)", curl()));
    let e = load_err(&[&rule("r", "proc.name containscurl")]);
    assert!(e.contains("f0.yaml:3:"), "{e}");
    // An operator Falco does not have.
    let e = load_err(&[&rule("r", "proc.name like curl")]);
    assert!(e.contains("expected an operator"), "{e}");
}

#[test]
fn regex_matches_the_whole_value_like_re2_anchor_both() {
    let t = |c: &str| holds(c, open("/proc/123/cmdline"));
    // Falco's example from the docs.
    assert!(t("fd.name regex '[a-z]*/proc/[0-9]+/cmdline'"));
    // A partial match is not a match: Falco anchors at both ends.
    assert!(!t("fd.name regex 'proc/[0-9]+'"));
    assert!(!t("fd.name regex '[0-9]+'"));
    assert!(t("fd.name regex '.*proc/[0-9]+.*'"));
    // Alternation is anchored as a whole, not only its first and last branch.
    assert!(!t("fd.name regex 'xyz|proc'"));
    assert!(t("fd.name regex 'xyz|/proc/123/cmdline'"));
    // POSIX classes (Falco's RE2 runs in POSIX mode).
    assert!(t("fd.name regex '/proc/[[:digit:]]+/[[:alpha:]]+'"));
    let e = load_err(&[&rule("r", "fd.name regex '(unclosed'")]);
    assert!(
        e.contains("invalid regex") && e.contains("f0.yaml:3:"),
        "{e}"
    );
}

#[test]
fn glob_and_iglob_are_fnmatch_without_pathname() {
    let t = |c: &str, p: &str| holds(c, open(p));
    assert!(t("fd.name glob '/home/*/.ssh/*'", "/home/bob/.ssh/id_rsa"));
    // `*` crosses `/` (no FNM_PATHNAME) and matches a leading dot (no FNM_PERIOD).
    assert!(t("fd.name glob '/home/*'", "/home/bob/.ssh/id_rsa"));
    assert!(t("fd.name glob '/tmp/*'", "/tmp/.hidden"));
    // The whole value must match.
    assert!(!t("fd.name glob '/home/*/.ssh'", "/home/bob/.ssh/id_rsa"));
    // `?`, classes, negated classes, ranges.
    assert!(t("fd.name glob '/tmp/[ab]?.sh'", "/tmp/a1.sh"));
    assert!(!t("fd.name glob '/tmp/[ab]?.sh'", "/tmp/c1.sh"));
    assert!(t("fd.name glob '/tmp/[!ab]?.sh'", "/tmp/c1.sh"));
    assert!(t("fd.name glob '/tmp/[0-9][0-9]'", "/tmp/42"));
    // Escaped specials match themselves; an unclosed `[` is a literal.
    // In a quoted value the backslash itself must be escaped (libsinsp's unescape_str); a bare
    // value keeps it.
    assert!(t(r"fd.name glob '/tmp/a\\*b'", "/tmp/a*b"));
    assert!(!t(r"fd.name glob '/tmp/a\\*b'", "/tmp/axxb"));
    assert!(t(r"fd.name glob /tmp/a\*b", "/tmp/a*b"));
    let e = load_err(&[&rule("r", r"fd.name glob '/tmp/a\*b'")]);
    assert!(e.contains("unsupported string escape"), "{e}");
    assert!(t("fd.name glob '/tmp/[x'", "/tmp/[x"));
    // Case: glob is exact, iglob folds ASCII case.
    assert!(!t("fd.name glob '/TMP/*.SH'", "/tmp/x.sh"));
    assert!(t("fd.name iglob '/TMP/*.SH'", "/tmp/x.sh"));
}

#[test]
fn lists_in_intersects_pmatch() {
    let t = |c: &str| holds(c, curl());
    assert!(t("proc.name in (wget, curl)") && !t("proc.name in (wget, cur)"));
    assert!(t("proc.name in ('curl')") && t("proc.name in (\"curl\")"));
    // Empty lists match nothing, so their negation holds.
    assert!(!t("proc.name in ()") && t("not proc.name in ()"));
    assert!(!t("proc.name intersects ()") && !t("proc.name pmatch ()"));
    assert!(t("proc.name intersects (curl, x)"));
    // Numbers in a list are compared as numbers.
    assert!(t("proc.pid in (1, 4242)") && !t("proc.pid in (424)"));
    // Named lists, nested lists, and a list named on its own after `in`.
    let files = [
        "- list: fetchers\n  items: [wget, curl]\n- list: more\n  items: [fetchers, aria2c]\n- list: nothing\n  items: []\n",
        &rule("a", "proc.name in (more)"),
        &rule("b", "proc.name in more"),
        &rule("c", "proc.name in (nothing)"),
        &rule("d", "proc.name in ('more')"),
    ];
    let rules = load(&files).expect("loads");
    assert_eq!(fire(&rules, curl()), ["a", "b"]);
    // pmatch: component-wise prefixes, with wildcards that stay within a component.
    let p = |c: &str, path: &str| holds(c, open(path));
    assert!(p("fd.name pmatch (/tmp/hello)", "/tmp/hello"));
    assert!(p("fd.name pmatch (/tmp/hello)", "/tmp/hello/world"));
    assert!(!p("fd.name pmatch (/tmp/hello)", "/tmp/hello_world"));
    assert!(p("fd.name pmatch (/var/run, /etc, /boot)", "/etc/shadow"));
    assert!(p("fd.name pmatch (/var/*/*.txt, /etc)", "/var/run/a.txt"));
    assert!(!p(
        "fd.name pmatch (/var/*/*.txt, /etc)",
        "/var/run/sub/a.txt"
    ));
    assert!(p("fd.name pmatch (/var/*)", "/var/run/file.txt"));
    assert!(!p("fd.name glob /var/*/x", "/var/run/file.txt"));
}

#[test]
fn transformers_and_field_comparisons() {
    let t = |c: &str| holds(c, curl());
    assert!(t("toupper(proc.name) = CURL") && t("tolower(toupper(proc.name)) = curl"));
    assert!(!t("proc.name = CURL"));
    // libsinsp maps bytes with toupper/tolower: ASCII only.
    let umlaut = B::exec("Größe", &["Größe"]).build();
    assert!(holds("tolower(proc.name) = 'größe'", umlaut.clone()));
    assert!(!holds("toupper(proc.name) = 'GRÖSSE'", umlaut.clone()));
    assert!(holds("toupper(proc.name) = 'GRößE'", umlaut));
    // basename: the last component, "" after a trailing slash, the value without a slash.
    assert!(t("basename(proc.exepath) = curl") && t("basename(proc.exe) = curl"));
    assert!(holds("basename(fd.name) = ''", open("/usr/bin/")));
    assert!(!holds("basename(fd.name) = bin", open("/usr/bin/")));
    assert!(holds("basename(proc.name) = curl", curl()));
    assert!(holds(
        "basename(fd.name) = file_to_run",
        open("/tmp/file_to_run")
    ));
    assert!(!holds(
        "basename(fd.name) = /tmp/file_to_run",
        open("/tmp/file_to_run")
    ));
    // len: the length in bytes, a number.
    assert!(holds("len(fd.name) = 16", open("/tmp/file_to_run")));
    assert!(holds(
        "len(fd.name) > 15 and len(fd.name) < 17",
        open("/tmp/file_to_run")
    ));
    // b64 decodes (libsinsp's test values).
    let b64 = |arg: &str| B::exec("sh", &["sh", arg]).build();
    assert!(holds("b64(proc.args) = hello", b64("aGVsbG8=")));
    assert!(holds("b64(proc.args) = 'world !'", b64("d29ybGQgIQ==")));
    assert!(holds("b64(proc.args) contains curl", b64("Y3VybCB4fHNo")));
    // val() and transformers on the right-hand side compare two fields.
    let same = B::exec("bash", &["bash"])
        .proc(|p| p.ancestors = vec![support::ancestor(3, "BASH", &["BASH"])])
        .build();
    assert!(!holds("proc.name = val(proc.pname)", same.clone()));
    assert!(holds(
        "tolower(proc.name) = tolower(proc.pname)",
        same.clone()
    ));
    assert!(holds("proc.name = tolower(proc.pname)", same.clone()));
    assert!(holds("proc.name != val(proc.pname)", same.clone()));
    assert!(holds("proc.pid > val(proc.ppid)", same));
    // val() takes a plain field, as in libsinsp; transformers apply to text only.
    let e = load_err(&[&rule("r", "proc.name = val(tolower(proc.pname))")]);
    assert!(e.contains("f0.yaml:3:"), "{e}");
    let e = load_err(&[&rule("r", "tolower(proc.pid) = 1")]);
    assert!(e.contains("tolower() applies to text"), "{e}");
    let e = load_err(&[&rule("r", "len(proc.pid) = 1")]);
    assert!(e.contains("len() applies to text"), "{e}");
}

#[test]
fn quoted_strings_unescape_like_libsinsp() {
    let sudo = |arg: &str| B::exec("sudoedit", &["sudoedit", "-s", arg]).build();
    // Falco's sudoedit rule (CVE-2021-3156) writes `contains "\ "`: libsinsp reads it as a
    // lone backslash, so any backslash in the arguments matches.
    assert!(holds(r#"proc.args contains "\ ""#, sudo(r"x\y")));
    assert!(!holds(r#"proc.args contains "\ ""#, sudo("xy")));
    assert!(holds(r#"proc.args = "-s a\tb""#, sudo("a\tb")));
    assert!(holds(r#"proc.args = '-s it\'s'"#, sudo("it's")));
    assert!(holds(r#"proc.args = "-s \x41\/""#, sudo("A/")));
    for bad in [
        r#"proc.args = "\q""#,
        r#"proc.args = '\"'"#,
        r#"proc.args = "\xzz""#,
    ] {
        let e = load_err(&[&rule("r", bad)]);
        assert!(
            e.contains("f0.yaml:3:") && e.contains("escape"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn boolean_syntax_as_libsinsp_reads_it() {
    let t = |c: &str| holds(c, curl());
    assert!(t("proc.name = curl and(proc.pid = 4242)"));
    assert!(t("proc.name = wget or(proc.pid = 4242)"));
    assert!(t("not(proc.name = wget)") && t("not not proc.name = curl"));
    assert!(t(
        "proc.name = wget or proc.name = curl and proc.pid = 4242"
    ));
    assert!(!t(
        "(proc.name = wget or proc.name = curl) and proc.pid = 1"
    ));
    // Blanks of every kind between tokens (multi-line YAML conditions).
    assert!(t("proc.name\n=\tcurl\nand\r\nproc.pid = 4242"));
    let e = load_err(&[&rule("r", "proc.name = curl and")]);
    assert!(e.contains("f0.yaml:3:"), "{e}");
    let e = load_err(&[&rule("r", "(proc.name = curl")]);
    assert!(e.contains("parenthesis"), "{e}");
    // Keywords and operators are lower case only (libsinsp compares with strncmp).
    for upper in [
        "proc.name = curl AND proc.pid = 4242",
        "proc.name CONTAINS curl",
        "proc.name IN (curl)",
        "NOT proc.name = wget",
    ] {
        assert!(load(&[&rule("r", upper)]).is_err(), "{upper}");
    }
}

#[test]
fn exceptions_single_field_and_tuples() {
    let base = r#"
- list: allowed_dirs
  items: [/var/log, /var/lib/app]
- rule: w
  desc: d
  condition: evt.type in (open, openat) and fd.name startswith /var
  output: o
  priority: WARNING
  exceptions:
    - name: proc_dirs
      fields: [proc.name, fd.directory]
      comps: [=, in]
      values:
        - [logrotate, [allowed_dirs]]
        - [backup, [/var/backups]]
    - name: names
      fields: fd.filename
      values: [keep.me, also.me]
    - name: images_and_prefixes
      fields: [container.image.repository, fd.name]
      comps: [in, pmatch]
      values:
        - [[builder, packer], [/var/cache]]
    - name: later
      fields: [proc.name, fd.name]
      comps: [startswith, endswith]
"#;
    let rules = load(&[base]).expect("loads");
    let w = |path: &str, name: &str, image: &str| {
        let name = name.to_string();
        fire(
            &rules,
            B::write(path)
                .proc(move |p| p.name = name)
                .image(image)
                .build(),
        )
    };
    assert_eq!(w("/var/log/a", "app", "nginx:1"), ["w"]);
    // Tuple with `in` over a named list: both fields must match.
    assert!(w("/var/log/a", "logrotate", "nginx:1").is_empty());
    assert!(w("/var/lib/app/x", "logrotate", "nginx:1").is_empty());
    assert_eq!(w("/var/log/a", "backup", "nginx:1"), ["w"]);
    assert!(w("/var/backups/a", "backup", "nginx:1").is_empty());
    // Single field, comps defaulting to `in`, values a plain list.
    assert!(w("/var/x/keep.me", "app", "nginx:1").is_empty());
    assert!(w("/var/x/also.me", "app", "nginx:1").is_empty());
    assert_eq!(w("/var/x/keep.me.not", "app", "nginx:1"), ["w"]);
    // `in` and `pmatch` in one tuple.
    assert!(w("/var/cache/apt/x", "apt", "packer:2").is_empty());
    assert_eq!(w("/var/cachex", "apt", "packer:2"), ["w"]);
    assert_eq!(w("/var/cache/apt/x", "apt", "nginx:1"), ["w"]);
    // An exception without values excludes nothing until values are appended.
    assert_eq!(w("/var/tmp/x.sock", "mysqld", "nginx:1"), ["w"]);
    let more = "- rule: w\n  exceptions:\n    - name: later\n      values:\n        - [mysql, .sock]\n    - name: names\n      values: [third.one]\n  append: true\n";
    let rules2 = load(&[base, more]).expect("loads");
    let w2 = |path: &str, name: &str| {
        let name = name.to_string();
        fire(&rules2, B::write(path).proc(move |p| p.name = name).build())
    };
    assert!(w2("/var/tmp/x.sock", "mysqld").is_empty());
    assert_eq!(w2("/var/tmp/x.sockx", "mysqld"), ["w"]);
    assert!(w2("/var/x/third.one", "app").is_empty());
    assert!(w2("/var/x/keep.me", "app").is_empty());
    // `override: exceptions: replace` drops the earlier rows and exceptions.
    let replace = "- rule: w\n  exceptions:\n    - name: only\n      fields: proc.name\n      values: [app]\n  override:\n    exceptions: replace\n";
    let rules3 = load(&[base, replace]).expect("loads");
    let w3 = |path: &str, name: &str| {
        let name = name.to_string();
        fire(&rules3, B::write(path).proc(move |p| p.name = name).build())
    };
    assert_eq!(w3("/var/log/a", "logrotate"), ["w"]);
    assert!(w3("/var/log/a", "app").is_empty());
    // Appending values to an exception the rule does not have, without its fields, is an error.
    let e = load_err(&[
        base,
        "- rule: w\n  exceptions:\n    - name: nosuch\n      values:\n        - [a, b]\n  append: true\n",
    ]);
    assert!(
        e.contains("f1.yaml:3:") && e.contains("\"nosuch\" has no `fields`"),
        "{e}"
    );
    // Malformed exceptions are errors naming the place.
    let bad = "- rule: r\n  desc: d\n  condition: spawned_process\n  output: o\n  priority: INFO\n  exceptions:\n    - name: x\n      fields: [proc.name, proc.pname]\n      comps: [=]\n";
    assert!(load_err(&[bad]).contains("2 fields but 1 comps"));
    let bad = "- rule: r\n  desc: d\n  condition: spawned_process\n  output: o\n  priority: INFO\n  exceptions:\n    - name: x\n      fields: [proc.name, proc.pname]\n      values:\n        - [a]\n";
    let e = load_err(&[bad]);
    assert!(
        e.contains("1 values for 2 fields") && e.contains("f0.yaml:10:"),
        "{e}"
    );
    let bad = "- rule: r\n  desc: d\n  condition: spawned_process\n  output: o\n  priority: INFO\n  exceptions:\n    - name: x\n      fields: [proc.name]\n      comps: [like]\n      values:\n        - [a]\n";
    assert!(load_err(&[bad]).contains("invalid comparison operator"));
}

#[test]
fn override_and_append_across_files() {
    let base = "- list: shells\n  items: [bash, sh]\n\
- macro: in_container\n  condition: container.id != host\n\
- rule: shell\n  desc: d\n  condition: spawned_process and proc.name in (shells) and in_container\n  output: o\n  priority: WARNING\n  tags: [a]\n";
    let sh = |name: &str| B::exec(name, &[name]).build();
    let rules = load(&[base]).expect("loads");
    assert_eq!(fire(&rules, sh("bash")), ["shell"]);
    assert!(fire(&rules, sh("zsh")).is_empty());
    // List: append (old key) and override append, then replace.
    for add in [
        "- list: shells\n  items: [zsh]\n  append: true\n",
        "- list: shells\n  items: [zsh]\n  override:\n    items: append\n",
    ] {
        let r = load(&[base, add]).expect("loads");
        assert_eq!(fire(&r, sh("zsh")), ["shell"], "{add}");
        assert_eq!(fire(&r, sh("bash")), ["shell"], "{add}");
    }
    let r = load(&[
        base,
        "- list: shells\n  items: [zsh]\n  override:\n    items: replace\n",
    ])
    .expect("loads");
    assert_eq!(fire(&r, sh("zsh")), ["shell"]);
    assert!(fire(&r, sh("bash")).is_empty());
    // A plain redefinition replaces, for lists, macros and rules alike.
    let r = load(&[base, "- list: shells\n  items: [fish]\n"]).expect("loads");
    assert!(fire(&r, sh("bash")).is_empty());
    assert_eq!(fire(&r, sh("fish")), ["shell"]);
    // Macro: append and replace.
    let r = load(&[
        base,
        "- macro: in_container\n  condition: and proc.pid != 4242\n  override:\n    condition: append\n",
    ])
    .expect("loads");
    assert!(fire(&r, sh("bash")).is_empty());
    let r = load(&[
        base,
        "- macro: in_container\n  condition: container.id = host\n  override:\n    condition: replace\n",
    ])
    .expect("loads");
    assert!(fire(&r, sh("bash")).is_empty());
    assert_eq!(
        fire(&r, B::exec("bash", &["bash"]).host().build()),
        ["shell"]
    );
    // Rule: condition appended, priority/enabled replaced, tags appended, output replaced.
    let r = load(&[
        base,
        "- rule: shell\n  condition: and proc.pid = 1\n  override:\n    condition: append\n",
    ])
    .expect("loads");
    assert!(fire(&r, sh("bash")).is_empty());
    let r = load(&[
        base,
        "- rule: shell\n  priority: CRITICAL\n  tags: [b]\n  override:\n    priority: replace\n    tags: append\n",
    ])
    .expect("loads");
    let info = r.rules().find(|x| x.name() == "shell").expect("rule");
    assert_eq!(info.priority(), rampart_event::Priority::Critical);
    assert_eq!(info.tags(), ["a", "b"]);
    let r = load(&[
        base,
        "- rule: shell\n  enabled: false\n",
        "- rule: other\n  desc: d\n  condition: spawned_process\n  output: o\n  priority: INFO\n  enabled: false\n",
        "- rule: other\n  enabled: true\n  override:\n    enabled: replace\n",
    ])
    .expect("loads");
    assert_eq!(fire(&r, sh("bash")), ["other"]);
    // Appending to, or overriding, what does not exist is an error naming the place.
    let e = load_err(&[
        base,
        "- rule: nope\n  condition: and proc.pid = 1\n  append: true\n",
    ]);
    assert!(e.contains("f1.yaml:1:") && e.contains("nope"), "{e}");
    let e = load_err(&[
        base,
        "- rule: nope\n  condition: and proc.pid = 1\n  override:\n    condition: append\n",
    ]);
    assert!(e.contains("f1.yaml:1:") && e.contains("nope"), "{e}");
    let e = load_err(&[
        base,
        "- macro: nope\n  condition: and x.y = 1\n  append: true\n",
    ]);
    assert!(e.contains("nope"), "{e}");
    let e = load_err(&[base, "- list: nope\n  items: [a]\n  append: true\n"]);
    assert!(e.contains("nope"), "{e}");
    // override and append together, an unknown override key, an override value of neither.
    let e = load_err(&[
        base,
        "- rule: shell\n  condition: and a.b = 1\n  append: true\n  override:\n    condition: append\n",
    ]);
    assert!(e.contains("cannot be used together"), "{e}");
    let e = load_err(&[
        base,
        "- rule: shell\n  desc: x\n  override:\n    desc: merge\n",
    ]);
    assert!(e.contains("append") && e.contains("replace"), "{e}");
    let e = load_err(&[
        base,
        "- rule: shell\n  priority: INFO\n  override:\n    priority: append\n",
    ]);
    assert!(e.contains("priority"), "{e}");
}

#[test]
fn rule_keys_and_unknown_fields() {
    // Every key Falco's rule files use: versions, tags, enabled, source, capture,
    // warn_evttypes, skip-if-unknown-filter.
    let text = "- required_engine_version: 0.57.0\n\
- required_plugin_versions:\n    - name: k8saudit\n      version: 0.7.0\n      alternatives:\n        - name: k8saudit-eks\n          version: 0.4.0\n\
- rule: all keys\n  desc: d\n  condition: spawned_process and proc.name = curl\n  output: o\n  priority: NOTICE\n  tags: [network, T1105]\n  enabled: true\n  source: syscall\n  capture: true\n  capture_duration: 5000\n  warn_evttypes: false\n  skip-if-unknown-filter: false\n\
- rule: future field\n  desc: d\n  condition: spawned_process and proc.not_yet_a_field = 1\n  output: o\n  priority: NOTICE\n  skip-if-unknown-filter: true\n\
- rule: cloud\n  desc: d\n  condition: ct.name = ConsoleLogin\n  output: o\n  priority: NOTICE\n  source: aws_cloudtrail\n";
    let rules = load(&[text]).expect("loads");
    assert_eq!(fire(&rules, curl()), ["all keys"]);
    let status = |name: &str| {
        rules
            .report()
            .rule_status
            .iter()
            .find(|s| s.rule == name)
            .map(|s| s.evaluation.clone())
            .expect("status")
    };
    assert_eq!(status("all keys"), Evaluation::Evaluated);
    assert_eq!(
        status("future field"),
        Evaluation::Skipped {
            field: "proc.not_yet_a_field".into()
        }
    );
    assert!(matches!(status("cloud"), Evaluation::CannotFire(_)));
    let info = rules
        .rules()
        .find(|r| r.name() == "all keys")
        .expect("rule");
    assert_eq!(info.tags(), ["network", "T1105"]);
    // Engine and plugin versions are checked as Falco checks their form.
    let newer = load(&["- required_engine_version: 0.99.1\n"]).expect("a warning, not an error");
    assert!(newer
        .report()
        .warnings
        .iter()
        .any(|w| w.message.contains("0.99.1") && w.at.line == 1));
    assert!(load(&["- required_engine_version: 12\n"])
        .expect("old numeric form")
        .report()
        .warnings
        .is_empty());
    for bad in [
        "- required_engine_version: latest\n",
        "- required_engine_version: 0.57\n",
        "- required_plugin_versions: container\n",
        "- required_plugin_versions:\n    - name: container\n",
        "- required_plugin_versions:\n    - name: a\n      version: 1.0.0\n      alternatives: b\n",
    ] {
        let e = load_err(&[bad]);
        assert!(e.starts_with("f0.yaml:"), "{bad}: {e}");
    }
    // Without skip-if-unknown-filter an unknown field is an error naming it and its place.
    let e = load_err(&[&rule("r", "spawned_process and proc.not_yet_a_field = 1")]);
    assert!(
        e.contains("f0.yaml:3:") && e.contains("proc.not_yet_a_field"),
        "{e}"
    );
    // A field Falco has but Rampart cannot produce is not an error: the rule is reported.
    let rules = load(&[&rule("k8s", "spawned_process and k8s.ns.name = default")]).expect("loads");
    assert!(matches!(
        &rules.report().rule_status[0].evaluation,
        Evaluation::CannotFire(n) if n.iter().any(|n| n.to_string() == "field k8s.ns.name")
    ));
    let rules = load(&[&rule(
        "partial",
        "spawned_process and not k8s.ns.name = default",
    )])
    .expect("loads");
    assert_eq!(
        rules.report().rule_status[0].evaluation,
        Evaluation::Partial {
            absent: vec!["k8s.ns.name".into()]
        }
    );
    assert_eq!(fire(&rules, curl()), ["partial"]);
}

/// `in` as Falco documents it ("checks whether the field value is in a list", comparing text
/// exactly): case matters, a value of another length or of the same length with other bytes
/// is not in the list, and long texts (past the 63 bytes of the length filter) are compared
/// in full. A list of several values is one hash lookup per event; these pin its answers.
#[test]
fn in_lists_compare_text_exactly_at_every_length() {
    let named = |name: &str| {
        let n = name.to_string();
        B::exec(name, &[name]).proc(move |p| p.name = n).build()
    };
    let long_a = "a".repeat(70);
    let long_b = format!("{}b", "a".repeat(69));
    let longer = "a".repeat(80);
    let list = format!("proc.name in (curl, wget, '', {long_a}, x{longer})");
    assert!(holds(&list, named("curl")));
    assert!(!holds(&list, named("Curl")), "case-sensitive");
    assert!(!holds(&list, named("curk")), "same length, other bytes");
    assert!(!holds(&list, named("cur")) && !holds(&list, named("curls")));
    assert!(holds(&list, named(&long_a)));
    assert!(!holds(&list, named(&long_b)), "long, same length");
    assert!(!holds(&list, named(&longer)), "long, other length");
    assert!(holds(&list, named(&format!("x{longer}"))));
    // The negation holds exactly where `in` does not.
    let not_list = format!("not {list}");
    assert!(!holds(&not_list, named("curl")) && holds(&not_list, named("Curl")));
    // `intersects` of a single-valued field is `in`.
    assert!(holds("proc.name intersects (wget, curl)", named("curl")));
    assert!(!holds("proc.name intersects (wget, CURL)", named("curl")));
}

/// `pmatch` as Falco's pmatch page describes it: true when one of the paths is a prefix of
/// the value, component by component (`/var/run` covers `/var/run/x`, not `/var/runx`),
/// whichever component the match ends at.
#[test]
fn pmatch_prefixes_end_at_a_component() {
    let p = |c: &str, path: &str| holds(c, open(path));
    let c = "fd.name pmatch (/var/run, /a/b/c/d, /etc)";
    for yes in [
        "/var/run",
        "/var/run/",
        "/var/run/x/y",
        "/a/b/c/d/e",
        "/etc",
        "/etc/x",
    ] {
        assert!(p(c, yes), "{yes}");
    }
    for no in [
        "/var/runx",
        "/var",
        "/a/b/c",
        "/a/b/c/dd",
        "/etcx",
        "/",
        "",
        "var/run",
    ] {
        assert!(!p(c, no), "{no}");
    }
    // Case-sensitive, like every text comparison but icontains/iglob.
    assert!(!p(c, "/ETC/passwd"));
}

/// `dns.query.suffixes` and `net.remote_name.suffixes` have one value per dot-suffix of the
/// name (`pool.minexmr.com`, `minexmr.com`, `com`); a comparison holds when it holds for one
/// value, `!=` when none is equal.
#[test]
fn suffix_fields_hold_for_any_suffix() {
    let dns = |q: &str| B::dns(q).build();
    assert!(holds(
        "dns.query.suffixes in (minexmr.com)",
        dns("pool.minexmr.com")
    ));
    assert!(holds(
        "dns.query.suffixes in (minexmr.com)",
        dns("minexmr.com")
    ));
    assert!(!holds(
        "dns.query.suffixes in (minexmr.com)",
        dns("pool.minexmr.co")
    ));
    assert!(!holds(
        "dns.query.suffixes in (minexmr.com)",
        dns("xminexmr.com")
    ));
    assert!(!holds(
        "dns.query.suffixes in (MINEXMR.com)",
        dns("pool.minexmr.com")
    ));
    assert!(holds("dns.query.suffixes = com", dns("pool.minexmr.com")));
    assert!(!holds("dns.query.suffixes != com", dns("pool.minexmr.com")));
    assert!(holds("dns.query.suffixes != org", dns("pool.minexmr.com")));
    let conn = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        B::connect("203.0.113.9", 3333)
            .net(move |n| n.remote_names = names)
            .build()
    };
    let c = "net.remote_name.suffixes in (nanopool.org)";
    assert!(holds(c, conn(&["example.com", "xmr-eu1.nanopool.org"])));
    assert!(!holds(c, conn(&["example.com", "nanopool.org.evil"])));
    assert!(!holds(c, conn(&[])));
    assert!(!holds("net.remote_name.suffixes != org", conn(&["a.org"])));
    assert!(holds("net.remote_name.suffixes != net", conn(&["a.org"])));
}
