//! `marathon-uninstall`: remove the demo's group (only if every app in it is ours) and wait until Marathon
//! has stopped it. Removing what is not there succeeds.

use std::time::{Duration, Instant};

use clap::Parser;
use workload::cli::parse_duration;

use super::client::Client;
use super::config::{ConnectionArgs, validate_group};
use super::diff;
use super::errors::{Failure, MarathonError, runtime};
use super::wait;

/// Remove the queue demo that marathon-install put on Marathon: its whole group, in one DELETE.
///
/// Refuses when the group holds apps marathon-install did not create (they lack the
/// io.microscaling.suite label). Succeeds with a message when the group does not exist. Waits until the
/// deployment that stops the apps is finished (or --timeout), unless --no-wait.
///
/// Exit status: 0 removed (or nothing to remove), 1 Marathon or network failure, 2 bad usage.
#[derive(Parser, Debug)]
#[command(name = "marathon-uninstall", version)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// The Marathon group to remove.
    #[arg(long, default_value = "/microscaling-demo", value_name = "ID")]
    pub group: String,

    /// Cancel a deployment that locks the group instead of waiting for it (Marathon's force=true).
    #[arg(long)]
    pub force: bool,

    /// Return once Marathon accepted the removal, without waiting for the apps to stop.
    #[arg(long)]
    pub no_wait: bool,

    /// Say what would be removed and contact nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The longest to wait for locks and for the removal to finish.
    #[arg(long, default_value = "5m", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub timeout: Duration,

    /// How often to poll /v2/deployments.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION", hide = true)]
    pub poll_interval: Duration,
}

/// The whole uninstall; see [`UninstallArgs`].
pub fn run(args: UninstallArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let id = validate_group(&args.group)?;
    let conn = args
        .connection
        .clone()
        .with_env_password()
        .validate(!args.dry_run)?;
    if args.timeout.is_zero() || args.poll_interval.is_zero() {
        return Err(super::errors::UsageError::new("--timeout must be more than 0").into());
    }
    let Some(conn) = conn else {
        workload::note!(
            "dry run: would DELETE MARATHON_URL/v2/groups{id} after checking that every app in it was installed by marathon-install; nothing was contacted"
        );
        return Ok(());
    };
    if args.dry_run {
        workload::note!(
            "dry run: would DELETE {}/v2/groups{id} after checking that every app in it was installed by marathon-install; nothing was contacted",
            conn.url
        );
        return Ok(());
    }
    let client = Client::new(&conn)?;
    let deadline = started + args.timeout;
    runtime()?.block_on(async {
        let Some(live) = client.get_group(&id).await? else {
            workload::note!("nothing to uninstall: group {id} does not exist on {}", client.base());
            return Ok(());
        };
        let foreign = diff::foreign_apps(&live);
        if !foreign.is_empty() {
            return Err(MarathonError::Foreign {
                what: format!("uninstall {id}"),
                group: id.clone(),
                apps: foreign.join(", "),
                advice: "removing the group would remove them too; remove them yourself first, or check --group".into(),
            }
            .into());
        }
        let apps = diff::live_apps(&live).count();
        let force = args.force;
        let Some(started_dep) = wait::retry_locked(deadline, || client.delete_group(&id, force)).await? else {
            workload::note!("nothing to uninstall: group {id} was removed meanwhile");
            return Ok(());
        };
        let dep = started_dep.deployment_id;
        if args.no_wait {
            workload::note!("removing {id} ({apps} apps): deployment {dep} started; not waiting for it (--no-wait)");
            return Ok(());
        }
        workload::note!("removing {id} ({apps} apps)");
        let took = wait::until_done(&client, &dep, deadline, started, args.poll_interval).await?;
        workload::note!("removed {id}; deployment {dep} finished in {:.1}s", took.as_secs_f64());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        UninstallArgs::command().debug_assert();
    }
}
