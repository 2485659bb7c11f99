//! The answers streaming now: one per session, a bounded number per tenant, each with a
//! switch that stops it. A running answer holds its place until it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Why an answer cannot start now.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// The session is answering already.
    Running,
    /// The tenant has as many answers streaming as it may.
    TooMany(usize),
}

#[derive(Default)]
struct Table {
    sessions: HashMap<Uuid, CancellationToken>,
    tenants: HashMap<Uuid, usize>,
}

#[derive(Default)]
pub struct Answers {
    table: Arc<Mutex<Table>>,
}

/// An answer's place among the running ones, given back when dropped.
pub struct Running {
    table: Arc<Mutex<Table>>,
    tenant: Uuid,
    session: Uuid,
    pub cancel: CancellationToken,
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        t.sessions.remove(&self.session);
        if let Some(n) = t.tenants.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                t.tenants.remove(&self.tenant);
            }
        }
    }
}

impl Answers {
    /// Takes a place for an answer in `session`, if the session has none running and the
    /// tenant has fewer than `limit`.
    pub fn admit(&self, tenant: Uuid, session: Uuid, limit: usize) -> Result<Running, Refused> {
        let mut t = lock(&self.table);
        if t.sessions.contains_key(&session) {
            return Err(Refused::Running);
        }
        let count = t.tenants.entry(tenant).or_default();
        if *count >= limit {
            return Err(Refused::TooMany(limit));
        }
        *count += 1;
        let cancel = CancellationToken::new();
        t.sessions.insert(session, cancel.clone());
        Ok(Running { table: self.table.clone(), tenant, session, cancel })
    }

    /// Stops the session's running answer; false when none was running.
    pub fn stop(&self, session: Uuid) -> bool {
        lock(&self.table).sessions.get(&session).map(CancellationToken::cancel).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_per_session_and_a_bounded_number_per_tenant() {
        let answers = Answers::default();
        let (tenant, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (s1, s2, s3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let first = answers.admit(tenant, s1, 2).unwrap();
        assert_eq!(answers.admit(tenant, s1, 2).err(), Some(Refused::Running));
        let _second = answers.admit(tenant, s2, 2).unwrap();
        assert_eq!(answers.admit(tenant, s3, 2).err(), Some(Refused::TooMany(2)));
        assert!(answers.admit(other, Uuid::new_v4(), 2).is_ok(), "another tenant has its own bound");
        assert!(answers.stop(s1) && first.cancel.is_cancelled());
        drop(first);
        assert!(!answers.stop(s1), "a finished answer cannot be stopped");
        assert!(answers.admit(tenant, s3, 2).is_ok(), "its place was given back");
    }
}
