//! The operator of a weknora stack: start, stop, back up, upgrade, diagnose. Two front ends
//! run it: `cargo xtask` in a checkout (which builds our images from the source) and the
//! `weknora` binary of a release bundle (which imports the bundle's images), each installing
//! its root and its [`host::Images`] once at start. One module per command group; shared
//! mechanisms (compose and containers in `stack`/`docker`, env files in `dotenv`, waits in
//! `poll`, confirmations in `confirm`) in their own. Results go to stdout, progress to stderr.

pub mod backup;
pub mod bundle;
pub mod cli;
pub mod compose;
pub(crate) mod confirm;
pub mod containers;
pub(crate) mod database;
pub(crate) mod deep;
pub(crate) mod deploy;
pub mod digest;
pub mod disk;
pub mod docker;
pub mod doctor;
pub mod dotenv;
pub mod host;
pub(crate) mod images;
pub(crate) mod migrate;
pub(crate) mod ollama;
pub mod paths;
pub(crate) mod pg;
pub mod poll;
pub mod process;
pub(crate) mod reindex;
pub(crate) mod report;
pub(crate) mod stack;
pub(crate) mod start;
pub mod swarm;
pub mod third_party;
pub(crate) mod upgrade;
pub mod utc;
