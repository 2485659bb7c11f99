//! The operator of a weknora stack: start, stop, back up, upgrade, diagnose. Two front ends
//! run it: `cargo xtask` in a checkout (which builds our images from the source) and the
//! `weknora` binary of a release bundle (which imports the bundle's images), each installing
//! its [`host::Host`] (name, root, [`host::Images`]) once at start and naming
//! [`cli::Command`]. Results go to stdout, progress to stderr.
//!
//! # Layers
//!
//! Bottom to top; a module uses its own layer and those below, never one above
//! (`tests/layout.rs` holds the table and checks it):
//!
//! - **L0 ground**: `host` (the front end, the runtime, the error report), `digest`,
//!   `report` (the table of checks), `utc`, `poll`, `confirm`, `disk`, `process`.
//! - **L1 engines**: `paths`, `dotenv`, `database`, `docker`, `containers`, `third_party`,
//!   `pg`, `swarm`: one outside thing each (a file, Docker, PostgreSQL, a registry).
//! - **L2 the stack's mechanisms**: `compose` (the `Stack`), `images`, `deep`, doctor's
//!   `probe`/`checks`/`fix`/`examine`/`setup`, and `backup`'s `archive`/`take`/`drill`/
//!   `pitr`/`retention`/`schedule`.
//! - **L3 commands**: `cli` (the `Command` enum) and one module per command group (`start`,
//!   `stack`, `upgrade`, `deploy`, `reindex`, `backup`, `doctor`, `migrate`, `ollama`,
//!   `bundle`), with the clap arguments and what only that command does.
//! - **L4 front ends**: `main.rs` (`weknora`) and `xtask`, outside this library.
//!
//! # Invariants
//!
//! - No import circle, and no module imports the one that mounts it (`backup::take` never
//!   uses `backup`).
//! - Mechanisms never import commands, and only commands know clap.
//! - Commands share procedures of a lower layer (`doctor::setup::ready_to_run`,
//!   `Stack::pull_upstream`) or `start::bring_up`, never another command's clap arguments.
//! - `lib.rs` declares modules and nothing else; only what the front ends need is `pub`.
//! - Nothing here knows about a checkout beyond `paths.rs`: every file is found there,
//!   relative to the installed host's root, and building images is the host's
//!   [`host::Images`]' business (a bundle's `weknora` has no cargo, git or source).
//! - The stack's compose project is driven only through `compose::Stack`, with everything
//!   explicit (program, project, files, env file, profiles).

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
pub mod report;
pub(crate) mod stack;
pub(crate) mod start;
pub mod swarm;
pub mod third_party;
pub(crate) mod upgrade;
pub mod utc;
