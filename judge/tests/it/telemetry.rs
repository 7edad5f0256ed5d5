//! The telemetry channel with the real binaries: consumers that come and go (each in its own temp directory,
//! as pods with no shared disk), stopped by SIGTERM or SIGKILL mid-work by a scripted scaler, and
//! `audit --queue` against the file ledgers the same consumers wrote beside it. Build the binaries first:
//! `cargo build --workspace --bins`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{Proc, command, eventually};
use workload::contract;
use workload::ledger::{Entry, Outcome};

/// How a backend is started and reached, for the scenario.
struct Backend {
    url: String,
    /// Extra environment the roles need (Azurite's key).
    env: Vec<(String, String)>,
    depth: fn(&str) -> u64,
}

impl Backend {
    fn cmd(&self, name: &str) -> Command {
        let mut cmd = command(name);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn depth(&self) -> u64 {
        (self.depth)(&self.url)
    }
}

/// A consumer "pod": its own working directory, telemetry on, and a file ledger beside it for the comparison.
fn consumer(b: &Backend, pod: &Path, ledgers: &Path, i: usize) -> Proc {
    std::fs::create_dir_all(pod).expect("pod dir");
    let mut cmd = b.cmd("consumer");
    cmd.current_dir(pod)
        .args(["--queue", &b.url, "--telemetry", "on", "--ledger"])
        .arg(ledgers.join(format!("c{i}.ledger")))
        .args([
            "--work",
            "sleep:uniform(5ms..40ms)",
            "--max-in-flight",
            "8",
            "--batch",
            "16",
            "--lease",
            "2s",
            "--drain-timeout",
            "3s",
            "--stats-interval",
            "500ms",
            // Some failures and poison, so that the poison counts are compared too.
            "--fail-rate",
            "0.05",
            "--fail-delay",
            "100ms",
            "--max-deliveries",
            "2",
        ]);
    Proc::spawn(&format!("consumer{i}"), cmd)
}

fn audit(args: &[&str], env: &[(String, String)]) -> (contract::Audit, String) {
    let mut cmd = command("audit");
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn("audit", cmd);
    let status = p.wait(Duration::from_secs(120));
    let line = p
        .audit_report()
        .unwrap_or_else(|| panic!("no audit line ({status}): {}", p.stderr()));
    (line, p.stderr())
}

/// The scenario of the acceptance: one producer for `secs` seconds; consumers started and stopped by a
/// scripted scaler every 1.5 s, every other stop a SIGKILL; then the backlog drained, and both audits.
fn pods_come_and_go(b: &Backend, secs: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledgers = dir.path().join("ledgers");
    std::fs::create_dir_all(&ledgers).expect("mkdir");
    let mut pcmd = b.cmd("producer");
    pcmd.current_dir(dir.path()).args([
        "--queue",
        &b.url,
        "--telemetry",
        "on",
        "--rate",
        "150",
        "--duration",
        &format!("{secs}s"),
        "--batch",
        "20",
        "--stats-interval",
        "500ms",
    ]);
    let mut producer = Proc::spawn("producer", pcmd);
    // The scaler's script: how many consumers to run at each step.
    let script = [2usize, 4, 3, 1, 3, 5, 2, 4, 1, 3, 2];
    let step = Duration::from_millis(1500);
    let started = Instant::now();
    let mut running: Vec<Proc> = Vec::new();
    let (mut next, mut kills, mut terms) = (0usize, 0u32, 0u32);
    let mut stopped: Vec<Proc> = Vec::new();
    // Each killed consumer's pid (in its id on the channel) and name (`consumerN`, its file ledger cN).
    let mut killed: Vec<(i32, String)> = Vec::new();
    let mut pids: Vec<(i32, String)> = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        for &want in &script {
            while running.len() < want {
                let p = consumer(b, &dir.path().join(format!("pod{next}")), &ledgers, next);
                pids.push((p.pid(), p.name.clone()));
                running.push(p);
                next += 1;
            }
            while running.len() > want {
                let mut p = running.remove(0);
                // Mid-work: every consumer here holds messages (150/s over at most 5 consumers).
                if (kills + terms) % 2 == 0 {
                    p.signal(libc::SIGKILL);
                    killed.push((p.pid(), p.name.clone()));
                    kills += 1;
                } else {
                    p.signal(libc::SIGTERM);
                    terms += 1;
                }
                p.wait(Duration::from_secs(15));
                stopped.push(p);
            }
            std::thread::sleep(step);
            if started.elapsed() >= Duration::from_secs(secs) {
                break;
            }
        }
    }
    // Generous: Azurite on a loaded machine falls behind 150/s, and the producer sends its whole schedule.
    let status = producer.wait(Duration::from_secs(180));
    assert!(status.success(), "producer: {}", producer.stderr());
    std::fs::write(
        dir.path().join("producer.jsonl"),
        producer.lines().join("\n") + "\n",
    )
    .expect("write producer lines");
    // Drain what is left with two more pods, then stop them gracefully.
    while running.len() < 2 {
        let p = consumer(b, &dir.path().join(format!("pod{next}")), &ledgers, next);
        pids.push((p.pid(), p.name.clone()));
        running.push(p);
        next += 1;
    }
    assert!(
        eventually(Duration::from_secs(90), || b.depth() == 0),
        "backlog not drained"
    );
    testkit::stop_gracefully(&mut running);
    assert!(kills >= 3 && terms >= 3, "kills {kills}, terms {terms}");

    let producer_file = dir.path().join("producer.jsonl");
    let (files, _) = audit(
        &[
            "--producer",
            producer_file.to_str().expect("utf-8"),
            "--ledger",
            ledgers.to_str().expect("utf-8"),
        ],
        &b.env,
    );
    let save = dir.path().join("save");
    let (channel, stderr) = audit(
        &["--queue", &b.url, "--save", save.to_str().expect("utf-8")],
        &b.env,
    );
    eprintln!("files: {files:?}\nchannel: {channel:?}\n{stderr}");
    assert!(files.produced > 1000, "{files:?}");
    assert_eq!(channel.lost, 0, "{channel:?}");
    assert_eq!(files.lost, 0, "{files:?}");
    assert!(files.poison > 0, "the failure model made poison: {files:?}");
    assert_eq!(channel.produced, files.produced, "{channel:?}");
    // Each consumer's records on the channel are its file ledger's, entry for entry. The one exception is
    // the kill: a consumer killed between its two writes (the channel's publish confirmed by the broker but
    // not yet settled by the consume loop, then the file's write) has its last group of records on the
    // channel and not in the file. Records are published one group at a time, and a group is at most what the
    // consumer holds finished (3 receives' worth, min(--batch, --max-in-flight) = 8 each), so a killed
    // consumer may differ by that one group and no more.
    let saved = saved_ledgers(&save);
    let mut killed_diff = 0;
    for (pid, name) in &pids {
        let index = name.trim_start_matches("consumer");
        let from_file = entries(&ledgers.join(format!("c{index}.ledger")));
        let on_channel = saved.get(pid).cloned().unwrap_or_default();
        let diff = symmetric_difference(&from_file, &on_channel);
        if killed.iter().any(|(k, _)| k == pid) {
            assert!(diff <= 3 * 8, "{name} (killed) differs by {diff} entries");
            killed_diff += diff;
        } else {
            assert_eq!(
                diff, 0,
                "{name} (not killed): its channel records and file ledger differ"
            );
        }
    }
    let counted = |a: &contract::Audit| a.consumed + a.duplicates + a.poison;
    assert!(
        counted(&channel).abs_diff(counted(&files)) <= killed_diff as u64,
        "every difference between the audits is a killed consumer's last batch: channel {channel:?}, files {files:?}"
    );
    eprintln!(
        "SIGKILLed {kills}, SIGTERMed {terms}; entries in one record and not the other: {killed_diff}"
    );
    // A second audit re-reads what the first saved: the channel is empty now.
    let (again, stderr) = audit(
        &["--queue", &b.url, "--save", save.to_str().expect("utf-8")],
        &b.env,
    );
    assert_eq!(
        again,
        contract::Audit {
            head: again.head.clone(),
            ..channel.clone()
        },
        "{stderr}"
    );
    assert!(stderr.contains("took 0 ledger entries"), "{stderr}");
}

#[test]
fn sqlite_pods_that_come_and_go_are_audited_from_the_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Backend {
        url: testkit::sqlite_url(dir.path()),
        env: vec![],
        depth: |url| testkit::depth(url).total(),
    };
    pods_come_and_go(&b, 30);
}

#[test]
fn fake_nsqd_pods_that_come_and_go_are_audited_from_the_channel() {
    let nsqd = testkit::fake_nsqd::FakeNsqd::start();
    let b = Backend {
        url: nsqd.url("work", "workers"),
        env: vec![],
        depth: |url| testkit::depth(url).total(),
    };
    pods_come_and_go(&b, 30);
}

#[test]
fn azurite_pods_that_come_and_go_are_audited_from_the_channel() {
    let azurite = testkit::azurite::Azurite::start();
    let b = Backend {
        url: azurite.url("work", ""),
        env: vec![(
            "AZURE_STORAGE_ACCOUNT_KEY".into(),
            testkit::azurite::KEY.into(),
        )],
        depth: |url| testkit::azurite::depth(url).total(),
    };
    pods_come_and_go(&b, 30);
}

#[test]
fn redis_pods_that_come_and_go_are_audited_from_the_channel() {
    let server = testkit::redis::RedisServer::start();
    let b = Backend {
        url: server.url("work", ""),
        env: vec![],
        depth: |url| testkit::depth(url).total(),
    };
    pods_come_and_go(&b, 30);
}

#[test]
fn nats_pods_that_come_and_go_are_audited_from_the_channel() {
    let server = testkit::nats::NatsServer::start();
    let b = Backend {
        url: server.url("work", ""),
        env: vec![],
        depth: |url| testkit::depth(url).total(),
    };
    pods_come_and_go(&b, 30);
}

/// Every entry (consumed or poison) of a ledger file, counted.
fn entries(path: &Path) -> HashMap<(Entry, bool), u32> {
    let mut all = HashMap::new();
    if path.exists() {
        workload::ledger::read_outcomes(path, |e, o| {
            *all.entry((e, o == Outcome::Consumed)).or_insert(0) += 1;
        })
        .expect("read ledger");
    }
    all
}

/// The ledgers `audit --queue --save` wrote, by the pid in each consumer's id (`HOST-PID-RANDOM`).
fn saved_ledgers(save: &Path) -> HashMap<i32, HashMap<(Entry, bool), u32>> {
    let mut by_pid = HashMap::new();
    for run in std::fs::read_dir(save).expect("saved runs") {
        let run = run.expect("dir entry").path();
        if !run.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&run).expect("saved ledgers") {
            let path = file.expect("dir entry").path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ledger"))
            else {
                continue;
            };
            let pid: i32 = stem
                .rsplit('-')
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("a consumer id HOST-PID-RANDOM: {stem}"));
            let mine: &mut HashMap<(Entry, bool), u32> = by_pid.entry(pid).or_default();
            for (k, n) in entries(&path) {
                *mine.entry(k).or_insert(0) += n;
            }
        }
    }
    by_pid
}

fn symmetric_difference(a: &HashMap<(Entry, bool), u32>, b: &HashMap<(Entry, bool), u32>) -> usize {
    let mut diff = 0;
    for (k, &n) in a {
        diff += n.abs_diff(b.get(k).copied().unwrap_or(0)) as usize;
    }
    for (k, &n) in b {
        if !a.contains_key(k) {
            diff += n as usize;
        }
    }
    diff
}

/// Messages still in the work queue have no ledger record: `audit --queue` counts them as lost, and says that
/// the queue still holds them, so that an audit run before the queue drained is not taken for a loss.
#[test]
fn audit_queue_names_the_messages_still_in_the_work_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = testkit::sqlite_url(dir.path());
    let mut cmd = command("producer");
    cmd.args([
        "--queue",
        &url,
        "--telemetry",
        "on",
        "--rate",
        "0",
        "--count",
        "20",
    ]);
    let mut p = Proc::spawn("producer", cmd);
    assert!(p.wait(Duration::from_secs(60)).success(), "{}", p.stderr());
    let save = dir.path().join("save");
    let (line, stderr) = audit(
        &["--queue", &url, "--save", save.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!((line.produced, line.lost), (20, 20), "{stderr}");
    assert!(
        stderr.contains("the work queue still holds 20 message(s) (20 waiting, 0 in flight)"),
        "{stderr}"
    );
}
