//! The table vocabulary of every verdict the operator prints: a check's status, its row,
//! and the aligned table doctor, `check` and `check --deep` show.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier, for scripts reading `--json`.
    pub id: &'static str,
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// How to fix it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A row; its fix names commands as the operator types them here (`./weknora` in a bundle).
pub fn check(
    id: &'static str,
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    fix: Option<&str>,
) -> Check {
    Check { id, name, status, detail: detail.into(), fix: fix.map(crate::host::in_host_words) }
}

/// A plain aligned table: CHECK, STATUS, DETAIL, FIX.
pub fn render_table(checks: &[Check]) -> String {
    let rows: Vec<[String; 4]> = checks
        .iter()
        .map(|c| {
            [c.name.to_string(), c.status.label().to_string(), c.detail.clone(), c.fix.clone().unwrap_or_default()]
        })
        .collect();
    let header = ["CHECK", "STATUS", "DETAIL", "FIX"].map(String::from);
    let mut widths = [0usize; 3];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
