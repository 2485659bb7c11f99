//! The schema, embedded in the binary: `migrate` and AUTO_MIGRATE apply it, `/ready` compares
//! the database's with it.

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// The version of the newest migration this build carries.
pub fn newest() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default()
}
