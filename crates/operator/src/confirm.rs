//! The one confirmation path of destructive commands: `--dry-run` prints the plan,
//! `--yes` goes ahead, neither refuses, naming the plan.

use anyhow::{Result, bail};

/// The dry-run and confirmation of a destructive command: with `dry_run` prints the plan
/// (false: stop here); without `yes` refuses, naming the plan; else true: go ahead.
pub fn go_ahead(command: &str, plan: &[String], dry_run: bool, yes: bool, json: bool) -> Result<bool> {
    if dry_run {
        if json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "plan": plan }))?);
        } else {
            for step in plan {
                println!("would {step}");
            }
        }
        return Ok(false);
    }
    if !yes {
        bail!("{command} would {}: add --yes to go ahead, or --dry-run to see the plan alone", plan.join("; "));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destructive_commands_need_yes_and_dry_run_changes_nothing() {
        let plan = ["replace the database".to_string()];
        assert!(!go_ahead("restore", &plan, true, true, false).unwrap(), "--dry-run wins over --yes");
        let refused = go_ahead("restore", &plan, false, false, false).unwrap_err().to_string();
        assert!(refused.contains("--yes") && refused.contains("replace the database"), "{refused}");
        assert!(go_ahead("restore", &plan, false, true, false).unwrap());
    }
}
