//! Where the operator runs PostgreSQL's tools (psql, pg_dump, pg_restore, pg_basebackup):
//! inside the stack's postgres container, as the commands on the host do, or beside it, as
//! the stack's backup service does (`schedule`: the postgres image, in postgres's network, so
//! PGHOST=127.0.0.1). The scripts are the same in both: they name the server's user and
//! database through POSTGRES_USER and POSTGRES_DB, which both environments set.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use bollard::Docker;

use crate::docker::{exec_sh, exec_to};

#[derive(Clone, Copy)]
pub enum Pg<'a> {
    /// In this container of the stack's postgres (through Docker).
    Container(&'a Docker, &'a str),
    /// Here, beside the server: the backup service.
    Beside,
}

impl Pg<'_> {
    /// Runs a shell script with `args` as $1...; its standard output, or an error naming `what`.
    pub async fn sh(self, what: &str, script: &str, args: &[&str]) -> Result<String> {
        match self {
            Pg::Container(docker, name) => exec_sh(docker, name, what, script, args).await,
            Pg::Beside => {
                let mut out = Vec::new();
                let (code, stderr) = self.sh_to(script, args, &mut out).await?;
                if code != 0 {
                    bail!("{what} failed (exit {code}): {}", stderr.trim());
                }
                Ok(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }

    /// Runs a shell script, its standard output into `out`; its exit code and standard error.
    pub async fn sh_to(self, script: &str, args: &[&str], out: &mut dyn Write) -> Result<(i64, String)> {
        match self {
            Pg::Container(docker, name) => {
                let mut cmd = vec!["sh", "-c", script, "sh"];
                cmd.extend(args);
                exec_to(docker, name, &cmd, out).await
            }
            // Blocking: the backup service does one thing at a time.
            Pg::Beside => {
                let mut child = Command::new("sh")
                    .args(["-c", script, "sh"])
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("running sh")?;
                let mut stderr = child.stderr.take().context("the script's standard error")?;
                let errors = std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = stderr.read_to_string(&mut text);
                    text
                });
                std::io::copy(&mut child.stdout.take().context("the script's output")?, out)?;
                let status = child.wait()?;
                Ok((status.code().unwrap_or(-1).into(), errors.join().unwrap_or_default()))
            }
        }
    }

    /// What the messages call the server.
    pub fn name(&self) -> &str {
        match self {
            Pg::Container(_, name) => name,
            Pg::Beside => "postgres",
        }
    }
}

/// Runs SQL with psql as the image's user in the stack's database; psql's unaligned output.
pub async fn psql(pg: Pg<'_>, sql: &str) -> Result<String> {
    psql_in(pg, None, sql).await
}

/// Runs SQL with psql in database `db` (None: the stack's).
pub async fn psql_in(pg: Pg<'_>, db: Option<&str>, sql: &str) -> Result<String> {
    let script = r#"psql -X -At -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "${2:-$POSTGRES_DB}" -c "$1""#;
    pg.sh("psql", script, &[sql, db.unwrap_or_default()]).await
}

/// The schema version and the rows of every table of the stack's database.
pub async fn census(pg: Pg<'_>) -> Result<(i64, BTreeMap<String, i64>)> {
    census_in(pg, None).await
}

pub async fn census_in(pg: Pg<'_>, db: Option<&str>) -> Result<(i64, BTreeMap<String, i64>)> {
    let sql = "SELECT table_name || '=' || (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM public.%I', \
               table_name), false, true, '')))[1]::text FROM information_schema.tables \
               WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1";
    let mut rows = BTreeMap::new();
    for line in psql_in(pg, db, sql).await?.lines() {
        if let Some((table, n)) = line.split_once('=') {
            rows.insert(table.to_string(), n.trim().parse().with_context(|| format!("row count of {table}: {n}"))?);
        }
    }
    let schema = if rows.contains_key("_sqlx_migrations") {
        let sql = "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success";
        let v = psql_in(pg, db, sql).await?;
        v.trim().parse().with_context(|| format!("schema version: {v}"))?
    } else {
        0
    };
    Ok((schema, rows))
}
