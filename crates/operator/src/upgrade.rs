//! Moving the running production stack to this checkout, and back: `upgrade`, `rollback`.
//!
//! `upgrade` keeps the images of ours that run now under the tag `pre-upgrade`, takes a
//! backup, writes a record of both (`last-upgrade.json` in the backup folder), then starts
//! the stack from this checkout exactly as `start` does: build, migrate, recreate, wait until
//! healthy. If any of that fails it rolls back by itself. `rollback` restores the backup
//! taken before the upgrade (the old schema: no migration) and runs the kept images again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::TagImageOptionsBuilder;
use serde::{Deserialize, Serialize};

use crate::backup;
use crate::compose::{OURS, Stack};
use crate::containers::Parts;
use crate::containers::{self, Container};
use crate::dotenv::{self, Vars};
use crate::start;

/// The tag the images that ran before an upgrade keep.
pub const KEPT: &str = "pre-upgrade";

#[derive(clap::Args)]
pub struct Upgrade {
    /// Confirm: the stack is rebuilt from this checkout, migrated and recreated.
    #[arg(long)]
    yes: bool,
    /// Print the plan, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// On failure leave the stack as it is for inspection instead of rolling back.
    #[arg(long)]
    no_rollback: bool,
    /// How long the upgraded services may take to be healthy, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Upgrade to a newer release bundle (`weknora-<version>-linux-<arch>.tar.gz`): its files
    /// replace this one's (kept in `previous/` for rollback), its images are imported.
    #[arg(long, value_name = "TARBALL")]
    bundle: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct Rollback {
    /// Confirm: data written since the upgrade is lost.
    #[arg(long)]
    yes: bool,
    /// Print the plan, change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// What an upgrade left for its rollback.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    project: String,
    at: String,
    from_version: String,
    from_revision: String,
    to_revision: String,
    /// The backup taken just before.
    backup: PathBuf,
    /// The image of each of our services that ran before (kept as `weknora/<svc>:pre-upgrade`).
    images: BTreeMap<String, String>,
    /// The optional services that ran (their profiles).
    profiles: Vec<String>,
    /// Whether the upgrade installed a bundle (the release before is in `previous/`).
    #[serde(default)]
    bundle: bool,
}

fn record_path() -> PathBuf {
    backup::take::backup_dir(None).join("last-upgrade.json")
}

fn short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}

impl Upgrade {
    pub fn run(self) -> Result<ExitCode> {
        crate::host::runtime()?.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<ExitCode> {
        let staged = match &self.bundle {
            Some(_) if !crate::paths::bundle_manifest().exists() => bail!(
                "upgrade --bundle is for a stack run from a release bundle (`./weknora upgrade --bundle`); a checkout \
                 upgrades to itself: check out the newer revision and run `cargo xtask upgrade`"
            ),
            Some(path) => Some(crate::bundle::Staged::unpack(path)?),
            None => None,
        };
        let release = match &staged {
            Some(s) => s.manifest.release(),
            None => crate::host::host().images.release()?,
        };
        let migrations = match &staged {
            Some(s) => s.dir.join("migrations"),
            None => crate::paths::migrations(),
        };
        let vars = Vars::load();
        // A rollback's pin is for this: upgrading again moves on (and removes it).
        let rolled_back = vars.get("WEKNORA_VERSION") == Some(KEPT);
        if let Some(pinned) = vars.get("WEKNORA_VERSION").filter(|v| *v != release.version && *v != KEPT) {
            bail!(
                "WEKNORA_VERSION={pinned} pins the images to run: remove it from .env (and the environment) to \
                 upgrade to this checkout ({})",
                release.version
            );
        }
        let docker = crate::docker::connect_for_transfers().await?;
        let mut stack = Stack::open(&docker, None, &[]).await?;
        // This checkout's images are the ones built and run.
        stack.pin_version(&release.version);
        if stack.dev() {
            bail!(
                "upgrade is for production stacks; in development `cargo xtask start --dev` rebuilds on every change"
            );
        }
        let all = containers::containers(&docker, &stack.project).await?;
        let ours: Vec<&Container> = all.iter().filter(|c| OURS.contains(&c.service.as_str())).collect();
        if ours.is_empty() {
            bail!("project {} runs nothing to upgrade: `cargo xtask start` starts this checkout", stack.project);
        }
        let parts = Parts::find(&docker, &stack.project).await?;
        let from_revision =
            containers::image_revision(&docker, &parts.app.image_id).await.unwrap_or_else(|| "unknown".into());
        let to_revision = release.revision.clone();
        if from_revision == to_revision && !release.dirty {
            println!("project {} already runs {}: nothing to upgrade", stack.project, short(&to_revision));
            return Ok(ExitCode::SUCCESS);
        }
        let (schema, _) = crate::pg::census(crate::pg::Pg::Container(&docker, &parts.postgres.name)).await?;
        let latest = crate::migrate::latest_version(&migrations).await?;
        if schema > latest {
            bail!(
                "the database is at schema {schema}, newer than this checkout's migrations ({latest}): this checkout is \
                 older than what runs; check out a newer revision, or `cargo xtask rollback` if an upgrade brought it"
            );
        }
        let profiles: Vec<String> =
            all.iter().filter_map(|c| crate::compose::profile_of(&c.service)).map(str::to_string).collect();
        // An app given its chat model by `start --ollama` keeps it.
        let ollama = crate::compose::ollama_chat_env(&docker, &stack.project).await?.is_some();
        let mut plan = vec![
            format!("keep the images that run now ({}) as weknora/<service>:{KEPT}", short(&from_revision)),
            match &staged {
                Some(s) => format!(
                    "install weknora {} ({}) from the bundle, the running release's files going to {}, and import \
                     its images while the stack keeps serving",
                    s.manifest.version,
                    short(&to_revision),
                    crate::paths::previous_release().display()
                ),
                None => format!("build this checkout's images ({}) while the stack keeps serving", short(&to_revision)),
            },
            "stop the app (the web UI answers 502 until the end) and back up the database and the uploaded files"
                .to_string(),
        ];
        if schema < latest {
            plan.push(format!("migrate from schema {schema} to {latest}"));
        }
        plan.push("recreate the services and wait until every one is healthy".into());
        plan.push(if self.no_rollback {
            "on failure, leave the stack as it is (--no-rollback)".into()
        } else {
            "on failure, roll back by itself".into()
        });
        if !crate::confirm::go_ahead("upgrade", &plan, self.dry_run, self.yes, false)? {
            return Ok(ExitCode::SUCCESS);
        }

        let mut images = BTreeMap::new();
        for c in &ours {
            // Under the repository compose runs (APP_IMAGE, ...), where a rollback finds it.
            let repo = crate::images::repository(&vars, &c.service);
            let options = TagImageOptionsBuilder::default().repo(&repo).tag(KEPT).build();
            docker.tag_image(&c.image_id, Some(options)).await.with_context(|| format!("tagging {repo}:{KEPT}"))?;
            images.insert(c.service.clone(), c.image_id.clone());
        }
        eprintln!("==> kept the running images as weknora/<service>:{KEPT}");
        let wanted: Vec<&str> = ours.iter().map(|c| c.service.as_str()).collect();
        let bundle = staged.is_some();
        if let Some(staged) = staged {
            staged.install()?;
        }
        if let Err(e) = crate::images::ensure_ours(&docker, &stack, &wanted, false, false).await {
            if bundle {
                crate::bundle::restore_previous()?;
            }
            return Err(e.context("getting the new images failed; nothing was changed"));
        }
        // From here on nothing may be written that a rollback would lose.
        eprintln!("==> stopping {} for the backup and the switch", parts.app.service);
        stack.run(&["stop", &parts.app.service])?;
        let backup = match backup::take::take(
            &docker,
            &stack.project,
            &backup::take::backup_dir(None),
            Some("before-upgrade"),
            &[],
        )
        .await
        {
            Ok((path, _)) => path,
            Err(e) => {
                let _ = stack.run(&["start", &parts.app.service]);
                return Err(
                    e.context("the backup before the upgrade failed; the app was started again, nothing changed")
                );
            }
        };
        let record = Record {
            project: stack.project.clone(),
            at: crate::utc::rfc3339(crate::utc::now()),
            from_version: parts.app.version.clone(),
            from_revision: from_revision.clone(),
            to_revision: to_revision.clone(),
            backup,
            images,
            profiles: profiles.clone(),
            bundle,
        };
        std::fs::write(record_path(), serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", record_path().display()))?;

        eprintln!("==> upgrading {} to {}", short(&from_revision), short(&to_revision));
        if rolled_back {
            edit_env(|text| dotenv::unpin(text, "WEKNORA_VERSION"))?;
            eprintln!("==> removed the pin of the last rollback (WEKNORA_VERSION={KEPT}) from .env");
        }
        let upgraded = start::bring_up(&start::Plan::production(profiles, ollama, self.timeout)).await;
        let Err(e) = upgraded else {
            let done = format!(
                "upgraded project {} from {} to {}; `cargo xtask rollback --yes` returns to {} and to the data of {} \
                 (changes made since are lost)",
                stack.project,
                short(&from_revision),
                short(&to_revision),
                short(&from_revision),
                record.at
            );
            println!("{}", crate::host::in_host_words(&done));
            return Ok(ExitCode::SUCCESS);
        };
        if self.no_rollback {
            return Err(e.context("upgrade failed; the stack was left as it is (--no-rollback): `cargo xtask rollback --yes` returns to the state before"));
        }
        eprintln!("error: upgrade failed: {e:#}");
        eprintln!("==> rolling back to {}", short(&from_revision));
        roll_back(&docker, &record, Duration::from_secs(300)).await.with_context(|| {
            format!(
                "upgrade failed ({e:#}), and so did the automatic rollback; the backup is {}",
                record.backup.display()
            )
        })?;
        bail!(
            "upgrade failed, rolled back to {}: the stack runs as it did before. The cause: {e:#}",
            short(&from_revision)
        )
    }
}

/// Rewrites `.env` (its mode and owner stay: the file is written in place).
fn edit_env(change: impl Fn(&str) -> String) -> Result<()> {
    let path = crate::paths::env_file();
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    std::fs::write(&path, change(&text)).with_context(|| format!("writing {}", path.display()))
}

/// Restores the backup taken before the upgrade, runs the kept images again, and pins
/// `.env` to them.
async fn roll_back(docker: &Docker, record: &Record, timeout: Duration) -> Result<()> {
    for (service, id) in &record.images {
        let kept = format!("{}:{KEPT}", crate::images::repository(&Vars::load(), service));
        match docker.inspect_image(&kept).await {
            Ok(i) if i.id.as_deref() == Some(id.as_str()) => {}
            _ => bail!(
                "{kept} is gone or no longer the image that ran before the upgrade (was it pruned?): rollback needs it"
            ),
        }
    }
    let archive = backup::Archive::plain(&record.backup);
    let checked = backup::check(&archive)?;
    if !checked.problems.is_empty() {
        bail!("the backup {} is damaged: {}", record.backup.display(), checked.problems.join("; "));
    }
    if record.bundle && crate::bundle::restore_previous()? {
        eprintln!("==> the release of before is back in {}", crate::paths::project_root().display());
    }
    let mut stack = Stack::open(docker, Some(false), &record.profiles).await?;
    let parts = Parts::find(docker, &stack.project).await?;
    eprintln!("==> stopping {}", parts.app.service);
    stack.run(&["stop", &parts.app.service])?;
    backup::replace_data(docker, &stack, &parts, &archive, &checked.manifest, &Vars::load()).await?;
    eprintln!("==> running the images of {} again", short(&record.from_revision));
    stack.pin_version(KEPT);
    stack.keep_ollama_chat_model(docker).await?;
    let services: Vec<String> = record.images.keys().cloned().collect();
    let mut args = vec!["up", "--detach", "--no-deps", "--force-recreate"];
    args.extend(services.iter().map(String::as_str));
    stack.run(&args)?;
    containers::wait_healthy(docker, &stack.project, &services, timeout).await?;
    // `start` stays on these images until the operator upgrades again.
    let why = crate::host::in_host_words(&format!(
        "a rollback at {}: `start` runs the images of before the upgrade (weknora/<service>:{KEPT}); \
         `cargo xtask upgrade` moves on and removes this",
        crate::utc::rfc3339(crate::utc::now())
    ));
    edit_env(|text| dotenv::pin(text, "WEKNORA_VERSION", KEPT, &why))?;
    // Used up: a second rollback would find nothing to undo.
    let path = record_path();
    let done = path.with_extension("rolled-back.json");
    std::fs::rename(&path, &done).with_context(|| format!("renaming {}", path.display()))?;
    Ok(())
}

impl Rollback {
    pub fn run(self) -> Result<ExitCode> {
        crate::host::runtime()?.block_on(async {
            let path = record_path();
            let text = std::fs::read_to_string(&path).map_err(|_| {
                anyhow::anyhow!(
                    "no upgrade to roll back: {} does not exist (`cargo xtask upgrade` writes it, a rollback uses it up)",
                    path.display()
                )
            })?;
            let record: Record =
                serde_json::from_str(&text).with_context(|| format!("{} is not an upgrade record", path.display()))?;
            let docker = crate::docker::connect_for_transfers().await?;
            let project = crate::docker::project_name(&Vars::load()).to_ascii_lowercase();
            if record.project != project {
                bail!("{} is the upgrade of project {}, not of {project}", path.display(), record.project);
            }
            let plan = [
                format!(
                    "restore the backup taken before the upgrade ({}, {}): data written since is lost",
                    record.backup.display(),
                    record.at
                ),
                format!("run the images of {} (weknora/<service>:{KEPT}) again", short(&record.from_revision)),
            ];
            if !crate::confirm::go_ahead("rollback", &plan, self.dry_run, self.yes, false)? {
                return Ok(ExitCode::SUCCESS);
            }
            roll_back(&docker, &record, Duration::from_secs(self.timeout)).await?;
            let done = format!(
                "rolled back project {} to {} (the data of {}), and pinned it there: .env says \
                 WEKNORA_VERSION={KEPT}, so `cargo xtask start` keeps these images; `cargo xtask upgrade` moves on \
                 to {} again",
                record.project,
                short(&record.from_revision),
                record.at,
                short(&record.to_revision),
            );
            println!("{}", crate::host::in_host_words(&done));
            Ok(ExitCode::SUCCESS)
        })
    }
}
