//! The steps every interoperability test takes with another project's client (a Python one, in a venv that
//! scripts/test made): run its script, send it our envelopes, check what it read back, and consume what it
//! sent with our consumer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use workload::envelope::Envelope;

use crate::{Proc, command, u, venv_python};

/// What our producer sends the other client: a run id it can check, and padding it must keep.
const RUN_ID: &str = "abc";
const SIZE: usize = 300;

/// A script of the other client, run by its venv's Python.
pub struct Python {
    python: PathBuf,
    script: PathBuf,
}

impl Python {
    /// The venv is `$env` or `target/default_dir` (see [`venv_python`]); `what` names its package.
    pub fn new(env: &str, default_dir: &str, what: &str, script: &str) -> Python {
        Python {
            python: venv_python(env, default_dir, what),
            script: PathBuf::from(script),
        }
    }

    /// Runs the script with `args`; returns its stdout, or fails the test with its stderr.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

/// Sends `count` of our envelopes to `url` with the real producer (run id `abc`, padded to 300 bytes), with
/// the backend's credentials set by `env`, and checks they were all sent.
pub fn send_ours(url: &str, count: u64, env: fn(&mut Command) -> &mut Command) {
    let mut p = command("producer");
    env(&mut p)
        .args(["--queue", url, "--count", &count.to_string(), "--rate", "0"])
        .args(["--run-id", RUN_ID, "--size", &SIZE.to_string()]);
    let mut p = Proc::spawn("producer", p);
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.stderr());
    assert_eq!(u(&p.summary().expect("producer summary"), "sent"), count);
}

/// Checks that the bodies the other client read are exactly the envelopes [`send_ours`] sent: seqs `0..count`,
/// each once, of run `abc`, with their padding.
pub fn assert_ours<S: AsRef<str>>(bodies: &[S], count: u64) {
    let mut seqs: Vec<u64> = bodies
        .iter()
        .map(|b| {
            let b = b.as_ref();
            let e = Envelope::decode(b.as_bytes()).unwrap_or_else(|e| panic!("{e}: {b:?}"));
            assert_eq!(e.run_id, 0xabc);
            assert!(b.len() >= SIZE, "padding survived");
            e.seq
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..count).collect::<Vec<_>>());
}

/// Consumes `count` messages from `url` with the real consumer, its ledger at `ledger`, and `extra` flags;
/// returns its summary once it has exited 0.
pub fn consume(
    url: &str,
    count: u64,
    env: fn(&mut Command) -> &mut Command,
    ledger: &Path,
    extra: &[&str],
) -> Value {
    let mut c = command("consumer");
    env(&mut c)
        .args(["--queue", url, "--count", &count.to_string(), "--ledger"])
        .arg(ledger)
        .args(extra);
    let mut c = Proc::spawn("consumer", c);
    assert!(c.wait(Duration::from_secs(30)).success(), "{}", c.stderr());
    c.summary().expect("consumer summary")
}
