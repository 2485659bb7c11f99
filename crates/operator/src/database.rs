//! Which PostgreSQL the operator means, and connecting to it with errors that name the
//! host, port, user and database tried, and the fix. The password never reaches output.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::dotenv::Vars;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database to connect to, and how to describe it without its password.
#[derive(Debug, Clone)]
pub struct DbTarget {
    pub options: PgConnectOptions,
    /// Where the settings came from, for error messages ("DATABASE_URL" or "DB_*").
    pub source: &'static str,
    password: Option<String>,
}

impl DbTarget {
    /// `DATABASE_URL` if set, else `DB_HOST`, `DB_PORT`, `DB_USER`, `DB_PASSWORD`, `DB_NAME`
    /// (host and port default to localhost:5432).
    pub fn from_vars(vars: &Vars) -> Result<DbTarget> {
        if let Some(url) = vars.get("DATABASE_URL") {
            let password = url_password(url);
            let options = PgConnectOptions::from_str(url).map_err(|e| {
                anyhow!("DATABASE_URL is not a valid PostgreSQL URL ({}): expected postgres://USER:PASSWORD@HOST:PORT/DATABASE", redact(&e.to_string(), password.as_deref()))
            })?;
            return Ok(DbTarget { options, source: "DATABASE_URL", password });
        }
        let missing: Vec<&str> = ["DB_USER", "DB_NAME"].into_iter().filter(|k| vars.get(k).is_none()).collect();
        if !missing.is_empty() {
            bail!(
                "no database configured: {} not set. Set DATABASE_URL, or DB_HOST, DB_PORT, DB_USER, DB_PASSWORD and DB_NAME, in the environment or in .env",
                missing.join(" and ")
            );
        }
        let port = match vars.get("DB_PORT") {
            None => 5432,
            Some(p) => p.parse().map_err(|_| {
                anyhow!("DB_PORT=`{p}` is not a port number: set it in .env (PostgreSQL's default is 5432)")
            })?,
        };
        let password = vars.get("DB_PASSWORD").map(str::to_string);
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(vars.get("DB_HOST").unwrap_or("localhost"))
            .port(port)
            .username(vars.get("DB_USER").unwrap_or_default())
            .database(vars.get("DB_NAME").unwrap_or_default());
        if let Some(p) = &password {
            options = options.password(p);
        }
        Ok(DbTarget { options, source: "DB_*", password })
    }

    /// `user@host:port/database`.
    pub fn describe(&self) -> String {
        let o = &self.options;
        format!(
            "{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or(o.get_username())
        )
    }

    /// Removes the password from text that might echo it.
    pub fn redact(&self, text: &str) -> String {
        redact(text, self.password.as_deref())
    }

    /// One connection (not a pool: sqlx's migration lock is held by a session).
    pub async fn connect(&self) -> Result<PgConnection> {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options)).await;
        match attempt {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(anyhow!(self.explain(&e))),
            Err(_) => Err(anyhow!(
                "PostgreSQL at {} did not answer within {}s: check DB_HOST/DB_PORT ({}) and that nothing blocks the port",
                self.describe(),
                CONNECT_TIMEOUT.as_secs(),
                self.source
            )),
        }
    }

    /// Turns a connection error into what happened and what to do, naming what was tried.
    pub fn explain(&self, e: &sqlx::Error) -> String {
        let o = &self.options;
        let (user, host, port) = (o.get_username(), o.get_host(), o.get_port());
        let db = o.get_database().unwrap_or(user);
        let code = e.as_database_error().and_then(|d| d.code()).map(|c| c.to_string());
        let text = match code.as_deref() {
            Some("28P01") => format!(
                "authentication failed for user `{user}` at {host}:{port}: the password is wrong. Check DB_PASSWORD (or the password in DATABASE_URL) against the server"
            ),
            Some("28000") => format!(
                "PostgreSQL at {host}:{port} refuses user `{user}` for database `{db}` (no such role, or pg_hba.conf has no entry for this client): check DB_USER, or the server's pg_hba.conf"
            ),
            Some("3D000") => format!(
                "database `{db}` does not exist on {host}:{port}: create it (`createdb -h {host} -p {port} -U {user} {db}`) or fix DB_NAME"
            ),
            Some("53300") => {
                format!("PostgreSQL at {host}:{port} has no free connection slots: retry, or raise max_connections")
            }
            _ => match e {
                sqlx::Error::Io(io) => format!(
                    "cannot reach PostgreSQL at {host}:{port} (user `{user}`, database `{db}`): {io}. Is it running? Check DB_HOST and DB_PORT ({}); for the local stack, `cargo xtask doctor` and `docker ps`",
                    self.source
                ),
                sqlx::Error::Tls(tls) => {
                    format!("TLS to PostgreSQL at {host}:{port} failed: {tls}. Check `sslmode` in DATABASE_URL")
                }
                other => format!("connecting to PostgreSQL at {} failed: {other}", self.describe()),
            },
        };
        self.redact(&text)
    }
}

fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let (_, password) = userinfo.split_once(':')?;
    Some(password.to_string()).filter(|p| !p.is_empty())
}

/// What a URL's user and password must escape: everything but unreserved characters.
const URL_USERINFO: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Replaces every occurrence of the password (raw and percent-encoded) with `***`.
pub fn redact(text: &str, password: Option<&str>) -> String {
    let Some(p) = password.filter(|p| !p.is_empty()) else { return text.to_string() };
    let mut out = text.replace(p, "***");
    let encoded = percent_encoding::utf8_percent_encode(p, URL_USERINFO).to_string();
    if encoded != p {
        out = out.replace(&encoded, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dotenv::EnvFile;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        let env: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Vars::new(env, EnvFile::default())
    }

    #[test]
    fn database_url_wins() {
        let t = DbTarget::from_vars(&vars(&[
            ("DATABASE_URL", "postgres://alice:s3cret@db.internal:6543/kb"),
            ("DB_HOST", "ignored"),
        ]))
        .unwrap();
        assert_eq!(t.describe(), "alice@db.internal:6543/kb");
        assert_eq!(t.source, "DATABASE_URL");
        assert_eq!(t.redact("x s3cret y"), "x *** y");
    }

    #[test]
    fn db_variables_with_defaults() {
        let t = DbTarget::from_vars(&vars(&[("DB_USER", "weknora"), ("DB_NAME", "WeKnora"), ("DB_PASSWORD", "pw")]))
            .unwrap();
        assert_eq!(t.describe(), "weknora@localhost:5432/WeKnora");
    }

    #[test]
    fn missing_keys_are_named() {
        let err = DbTarget::from_vars(&vars(&[("DB_HOST", "h")])).unwrap_err().to_string();
        assert!(err.contains("DB_USER and DB_NAME not set"), "{err}");
        let err = DbTarget::from_vars(&vars(&[("DB_USER", "u"), ("DB_NAME", "d"), ("DB_PORT", "x")])).unwrap_err();
        assert!(err.to_string().contains("DB_PORT=`x`"));
    }

    #[test]
    fn a_bad_url_never_echoes_its_password() {
        let err =
            DbTarget::from_vars(&vars(&[("DATABASE_URL", "postgres://u:topsecret@host:notaport/db")])).unwrap_err();
        assert!(!format!("{err:#}").contains("topsecret"), "{err:#}");
    }

    #[test]
    fn redaction_covers_the_percent_encoded_form() {
        assert_eq!(redact("pw=p@ss:w0rd url=p%40ss%3Aw0rd", Some("p@ss:w0rd")), "pw=*** url=***");
        assert_eq!(redact("nothing", None), "nothing");
    }
}
