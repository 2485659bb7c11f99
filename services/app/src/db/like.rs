//! `LIKE` patterns from what a person typed: `%`, `_` and `\` match themselves.

/// A pattern matching text that contains `words` (for `ILIKE ... ESCAPE '\'`, PostgreSQL's
/// default escape).
pub fn containing(words: &str) -> String {
    format!("%{}%", words.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards_match_themselves() {
        assert_eq!(super::containing("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }
}
