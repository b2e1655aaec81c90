//! Errors of loading and running the sensor.

use std::path::PathBuf;

/// Why the sensor (or the probe) could not do something. The variants carry what a user needs
/// to act: the program and hook, the kernel's answer, the verifier log (inside `source`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    #[error("loading BPF programs needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_RESOURCE): run with sudo")]
    NotRoot,
    #[error("kernel BTF (/sys/kernel/btf/vmlinux) is unreadable: {0}")]
    Btf(#[source] aya::BtfError),
    #[error("loading the BPF object: {0}")]
    Object(#[source] Box<aya::EbpfError>),
    #[error("BPF program {program} on {hook}: {source}")]
    Program {
        program: &'static str,
        hook: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no build of the sensor programs was chosen to load")]
    NoPrograms,
    #[error("proc connector: {0}")]
    ProcConnector(#[source] std::io::Error),
    #[error("no event source works on this host: BPF failed ({bpf}) and the proc connector failed ({fallback})")]
    NoSource { bpf: String, fallback: String },
}

impl KernelError {
    pub(crate) fn program(
        program: &'static str,
        hook: &'static str,
        source: aya::programs::ProgramError,
    ) -> Self {
        KernelError::Program {
            program,
            hook,
            source: Box::new(source),
        }
    }

    pub(crate) fn map(map: &'static str, source: aya::maps::MapError) -> Self {
        KernelError::Map {
            map,
            source: Box::new(source),
        }
    }
}
