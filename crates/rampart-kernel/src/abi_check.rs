//! Test support: checks Rust mirrors of a C ABI header against the header itself, by
//! compiling a C program that prints every size, field offset and constant with the host C
//! compiler and comparing its output with what the Rust side computes (`offset_of!`,
//! `size_of`). The header stays the one source of truth; a field moved, resized or renumbered
//! on one side only fails the test.

use std::fmt::Write as _;

/// One C struct and its Rust mirror: C name, C size, and per C field the offset of the Rust
/// field in the C struct.
pub(crate) struct Layout {
    pub c: &'static str,
    pub size: usize,
    pub fields: Vec<(&'static str, usize)>,
}

/// `layout!("c_name", RustType, shift, { "c_field" => rust_field, ... })`: `shift` is what the
/// C struct has before the Rust one starts (4 for an LPM key's `prefixlen`, which aya's `Key`
/// adds).
macro_rules! layout {
    ($c:literal, $t:ty, $shift:expr, { $($cf:literal => $rf:ident),* $(,)? }) => {
        $crate::abi_check::Layout {
            c: $c,
            size: std::mem::size_of::<$t>() + $shift,
            fields: vec![$(($cf, std::mem::offset_of!($t, $rf) + $shift)),*],
        }
    };
}
pub(crate) use layout;

/// Compiles `header` (in `bpf/`) into a program printing the C side of `layouts` and
/// `constants`, runs it and panics with every difference.
pub(crate) fn check(header: &str, layouts: &[Layout], constants: &[(&'static str, i64)]) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf");
    let mut c = format!(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\n#include \"{header}\"\nint main(void) {{\n"
    );
    let mut expected = Vec::new();
    for l in layouts {
        let _ = writeln!(c, "printf(\"{0} %zu\\n\", sizeof(struct {0}));", l.c);
        expected.push(format!("{} {}", l.c, l.size));
        for (f, off) in &l.fields {
            let _ = writeln!(
                c,
                "printf(\"{0}.{1} %zu\\n\", offsetof(struct {0}, {1}));",
                l.c, f
            );
            expected.push(format!("{}.{f} {off}", l.c));
        }
    }
    for (name, value) in constants {
        let _ = writeln!(c, "printf(\"{name} %lld\\n\", (long long)({name}));");
        expected.push(format!("{name} {value}"));
    }
    c.push_str("return 0;\n}\n");
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("abi.c");
    let bin = tmp.path().join("abi");
    std::fs::write(&src, c).expect("write");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = match std::process::Command::new(&cc)
        .arg("-I")
        .arg(dir)
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            testkit::skip(header, &format!("a C compiler ({cc}: {e})"));
            return;
        }
    };
    assert!(
        built.status.success(),
        "{header}: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = std::process::Command::new(&bin).output().expect("run");
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got.len(), expected.len(), "{header}: {got:?}");
    let diff: Vec<String> = expected
        .iter()
        .zip(&got)
        .filter(|(e, g)| e != g)
        .map(|(e, g)| format!("Rust {e} / C {g}"))
        .collect();
    assert!(
        diff.is_empty(),
        "{header}: ABI mismatch:\n{}",
        diff.join("\n")
    );
}
