//! `marathon-install`: validate everything, compare with what Marathon has, send the group in one PUT when
//! something changed, and wait for the deployment.

use std::time::Instant;

use serde_json::Value;

use super::client::Client;
use super::definitions::{EnvValue, Reveal};
use super::diff::{self, Change};
use super::errors::{Failure, MarathonError, runtime};
use super::plan::InstallArgs;
use super::wait;

/// The whole install; see [`InstallArgs`] for the behaviour.
pub fn run(args: InstallArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let mut plan = args.plan()?;
    let conn = args
        .connection
        .clone()
        .with_env_password()
        .validate(!args.dry_run)?;
    for w in &plan.warnings {
        workload::note!("warning: {w}");
    }
    let id = plan.group.id.clone();
    if args.dry_run {
        let body = plan.group.to_json(Reveal::No);
        let base = conn.as_ref().map_or("MARATHON_URL", |c| c.url.as_str());
        let force = if args.force { "?force=true" } else { "" };
        workload::note!(
            "dry run: would PUT {base}/v2/groups{id}{force} with this body (secrets shown as <redacted>); nothing was contacted"
        );
        if plan.engine_needs_leader.is_some() {
            workload::note!(
                "dry run: the engine's MSS_MARATHON_API would be http://LEADER, LEADER read from {base}/v2/leader"
            );
        }
        let text = serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string());
        workload::outln!("{text}");
        return Ok(());
    }
    let Some(conn) = conn else {
        unreachable!("validate(true) returns a connection or an error")
    };
    let client = Client::new(&conn)?;
    let deadline = started + args.timeout;
    runtime()?.block_on(async {
        let what = format!("install {id}");
        let live = client.get_group(&id).await?;
        if let Some(g) = &live {
            let foreign = diff::foreign_apps(g);
            if !foreign.is_empty() {
                return Err(MarathonError::Foreign {
                    what,
                    group: id.clone(),
                    apps: foreign.join(", "),
                    advice: "installing would stop them; choose another --group".into(),
                }
                .into());
            }
        }
        if let Some(engine_id) = &plan.engine_needs_leader {
            let leader = client.leader().await?;
            if let Some(engine) = plan.group.apps.iter_mut().find(|a| &a.id == engine_id) {
                engine.env.insert(
                    "MSS_MARATHON_API".into(),
                    EnvValue::Plain(format!("http://{leader}")),
                );
            }
        }
        // The engine owns these apps' instance counts: keep what it set rather than reset them.
        if let Some(g) = &live {
            for app in plan.group.apps.iter_mut().filter(|a| plan.engine_scaled.contains(&a.id)) {
                if let Some(n) = diff::live_apps(g)
                    .find(|l| l.get("id").and_then(Value::as_str) == Some(app.id.as_str()))
                    .and_then(|l| l.get("instances"))
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                {
                    app.instances = n;
                }
            }
        }
        let body = plan.group.to_json(Reveal::Yes);
        let desired: Vec<Value> = body["apps"].as_array().cloned().unwrap_or_default();
        let changes = diff::changes(&desired, live.as_ref());
        if live.is_some() && changes.is_empty() {
            workload::note!("{id} is up to date ({} apps); nothing to do", desired.len());
            return Ok(());
        }
        if live.is_none() {
            workload::note!("creating {id}:");
        } else {
            workload::note!("updating {id}:");
        }
        for c in &changes {
            workload::note!("  {c}");
        }
        let force = args.force;
        let started_dep = wait::retry_locked(deadline, || client.put_group(&id, &body, force)).await?;
        let dep = started_dep.deployment_id;
        if args.no_wait {
            workload::note!("deployment {dep} started; not waiting for it (--no-wait): follow it in {}/v2/deployments", client.base());
            return Ok(());
        }
        let took = wait::until_done(&client, &dep, deadline, started, args.poll_interval).await?;
        let summary = summarize(&changes);
        workload::note!(
            "installed {id} ({summary}); deployment {dep} finished in {:.1}s",
            took.as_secs_f64()
        );
        Ok(())
    })
}

fn summarize(changes: &[Change]) -> String {
    let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    format!(
        "{} added, {} updated, {} removed",
        count(|c| matches!(c, Change::Added(_))),
        count(|c| matches!(c, Change::Updated(..))),
        count(|c| matches!(c, Change::Removed(_)))
    )
}
