//! Compiles the BPF programs in `bpf/` with clang into `$OUT_DIR`, where `src/` embeds them.
//!
//! All clang flags live here (one build helper, CONTRIBUTING.md, "one C header is the ABI"). The kernel type header
//! (`vmlinux.h`) comes from `RAMPART_VMLINUX_H` when set, otherwise it is generated from the
//! build machine's BTF with bpftool. CO-RE relocations make the objects independent of the
//! build machine's kernel: aya relocates them against the running kernel's BTF at load time.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (object name, source, extra clang defines)
const PROGRAMS: &[(&str, &str, &[&str])] = &[
    ("rampart_kfunc", "rampart", &["-DRP_BTF=1", "-DRP_KFUNC=1"]),
    ("rampart_btf", "rampart", &["-DRP_BTF=1"]),
    ("rampart_raw", "rampart", &["-DRP_BTF=0"]),
    ("probe", "probe", &[]),
    ("syscalls", "syscalls", &[]),
    ("enforce", "enforce", &[]),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let bpf_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir")).join("bpf");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-env-changed=RAMPART_VMLINUX_H");
    println!("cargo:rerun-if-env-changed=CLANG");

    let vmlinux_dir = out.join("vmlinux");
    std::fs::create_dir_all(&vmlinux_dir).expect("create vmlinux dir");
    let vmlinux = vmlinux_dir.join("vmlinux.h");
    if let Some(given) = env::var_os("RAMPART_VMLINUX_H") {
        std::fs::copy(&given, &vmlinux)
            .unwrap_or_else(|e| panic!("RAMPART_VMLINUX_H={}: {e}", Path::new(&given).display()));
    } else if !vmlinux.exists() {
        let btf = Path::new("/sys/kernel/btf/vmlinux");
        assert!(
            btf.exists(),
            "no kernel BTF at {} to generate vmlinux.h from; set RAMPART_VMLINUX_H to a vmlinux.h \
             (bpftool btf dump file <vmlinux> format c)",
            btf.display()
        );
        let output = Command::new("bpftool")
            .args(["btf", "dump", "file"])
            .arg(btf)
            .args(["format", "c"])
            .output()
            .unwrap_or_else(|e| panic!("running bpftool (apt-get install bpftool): {e}"));
        assert!(
            output.status.success(),
            "bpftool btf dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&vmlinux, output.stdout).expect("write vmlinux.h");
    }

    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        other => panic!("no BPF target arch mapping for {other:?}"),
    };
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    for (name, source, defines) in PROGRAMS {
        let src = bpf_dir.join(format!("{source}.bpf.c"));
        let obj = out.join(format!("{name}.bpf.o"));
        let output = Command::new(&clang)
            .args(["-g", "-O2", "-target", "bpf", "-Wall", "-Werror"])
            .args(*defines)
            .arg(format!("-D__TARGET_ARCH_{arch}"))
            .arg("-I")
            .arg(&vmlinux_dir)
            .arg("-I")
            .arg(&bpf_dir)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap_or_else(|e| panic!("running {clang} (apt-get install clang libbpf-dev): {e}"));
        assert!(
            output.status.success(),
            "clang failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
