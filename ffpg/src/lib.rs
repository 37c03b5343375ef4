//! The `ffpg` command-line tool's library: connection handling, the demo,
//! and the benchmark workloads (shared with the comparison benchmark, which
//! drives other backends through the same code).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod cluster;
pub mod db;
pub mod demo;
pub mod progress;
