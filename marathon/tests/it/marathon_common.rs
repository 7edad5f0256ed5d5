//! What the tests of the real installer binaries against the fake Marathon share (marathon.rs,
//! marathon_failures.rs): running a binary with a clean environment and a bounded wait, and counting the
//! writes the fake saw.
// Each test file uses a part of it.

use std::time::Duration;

use testkit::fake_marathon::FakeMarathon;

/// What a finished run left: exit code, stdout, stderr.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a binary with `args` and extra environment, none of the caller's Marathon or Azure variables, and a
/// bounded wait.
pub fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = testkit::command(bin);
    for v in [
        "MSS_MARATHON_API",
        "DCOS_TOKEN",
        "MARATHON_PASSWORD",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_QUEUE_NAME",
    ] {
        cmd.env_remove(v);
    }
    cmd.args(args).args(["--poll-interval", "50ms"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = testkit::Proc::spawn(bin, cmd);
    let status = p.wait(Duration::from_secs(60));
    Run {
        code: status.code().unwrap_or(-1),
        stdout: p.lines().join("\n"),
        stderr: p.stderr(),
    }
}

pub fn install(fake: &FakeMarathon, args: &[&str]) -> Run {
    let url = fake.url();
    let mut all = vec!["--marathon-url", url.as_str()];
    all.extend_from_slice(args);
    run("marathon-install", &all, &[])
}

pub fn uninstall(fake: &FakeMarathon, args: &[&str]) -> Run {
    let url = fake.url();
    let mut all = vec!["--marathon-url", url.as_str()];
    all.extend_from_slice(args);
    run("marathon-uninstall", &all, &[])
}

pub fn group_puts(fake: &FakeMarathon) -> usize {
    fake.writes()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/v2/groups"))
        .count()
}
