//! Lint: Dockerfiles, and the configuration of built images.

pub(crate) mod config;
pub mod dockerfile;

pub use dockerfile::{lint as lint_dockerfile, parse as parse_dockerfile, Instruction};
