//! Rampart's shipping side (work in progress).

pub mod queue;
