//! Lint: Dockerfiles, and the configuration of built images.

mod args;
pub(crate) mod config;
pub mod dockerfile;

pub use args::{LintArgs, LintFailOn, LintFormat};
pub use dockerfile::{lint as lint_dockerfile, parse as parse_dockerfile, Instruction};
