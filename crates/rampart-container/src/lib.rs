//! Container runtimes for Rampart.
//!
//! * [`Enricher`]: turns the sensor's events into complete [`rampart_event::Event`]s: process
//!   and ancestry from the [`ProcessTable`], container identity from the cgroup path and the
//!   runtime's metadata, user names, drift, DNS names of remote addresses.
//! * [`DockerClient`] / [`DockerWatcher`]: the Docker Engine API and its events stream.
//! * [`container_from_cgroup_path`]: container id and runtime from any runtime's cgroup path.

mod cgroup;
mod directory;
mod docker;
mod engine;
mod enrich;
mod error;
mod exehash;
mod journal;
mod logs;
mod procfs;
mod proctable;
mod stats;

pub use cgroup::container_from_cgroup_path;
pub use directory::{ContainerDirectory, ContainerRecord};
pub use docker::{is_build_step, DockerClient, DockerWatcher, DEFAULT_SOCKET};
pub use engine::{models, ContainerEvent, ContainerEvents};
pub use enrich::{Enricher, EnricherConfig, InspectOnMiss};
pub use error::ContainerError;
pub use journal::{follow_journal, journal_available, JournalOptions};
pub use logs::{parse_auth_line, AuthLogs, ParsedAuth};
pub use procfs::ProcFs;
pub use proctable::ProcessTable;
pub use stats::{IoCounters, StatsSampler};
