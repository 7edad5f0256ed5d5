//! Azurite's queue service for tests: `azurite-queue` from the repository's `node_modules` (pinned in
//! `package.json`, installed by `npm ci` in `scripts/test`), on a free loopback port, with its data in a
//! temp dir, killed when dropped.
//!
//! It runs with `--disableTelemetry` (its telemetry calls fail offline and slow it down) and without
//! `--skipApiVersionCheck`: the backend's default API version must be one Azurite accepts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::server::{ServerProcess, block_on, free_port, with_options};

/// The development account Azurite always accepts, and its documented (public) key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite queue service.
pub struct Azurite {
    process: Option<ServerProcess>,
    port: u16,
    dir: tempfile::TempDir,
    in_memory: bool,
}

/// The workspace root (where `package.json` and `node_modules` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .to_path_buf()
}

impl Azurite {
    /// Starts Azurite with disk persistence in a temp dir (tests: in-memory mode stalls after large deletes).
    pub fn start() -> Azurite {
        Self::launch(false)
    }

    /// Starts Azurite with `--inMemoryPersistence` (the benchmark: fastest puts).
    pub fn start_in_memory() -> Azurite {
        Self::launch(true)
    }

    fn launch(in_memory: bool) -> Azurite {
        let mut a = Azurite {
            process: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            in_memory,
        };
        a.restart();
        a
    }

    /// The path of the azurite-queue launcher, or a panic that says how to install it.
    pub fn launcher() -> PathBuf {
        let bin = repo_root().join("node_modules/.bin/azurite-queue");
        assert!(
            bin.exists(),
            "{} is missing: run `npm ci` at the repository root (scripts/test does)",
            bin.display()
        );
        bin
    }

    /// Starts it again on the same port and data dir (after [`Azurite::stop`]); waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "Azurite is already running");
        let mut cmd = Command::new(Self::launcher());
        cmd.args(["--queueHost", "127.0.0.1", "--queuePort"])
            .arg(self.port.to_string())
            .args(["--disableTelemetry", "--silent"])
            .current_dir(self.dir.path());
        // Azurite refuses --location together with --inMemoryPersistence.
        if self.in_memory {
            cmd.arg("--inMemoryPersistence");
        } else {
            cmd.arg("--location").arg(self.dir.path());
        }
        let mut process = ServerProcess::spawn(
            "azurite-queue",
            cmd,
            &self.dir.path().join("azurite.log"),
            "is Node installed?",
        );
        let port = self.port;
        process.wait_ready(Duration::from_secs(30), Duration::from_millis(50), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        self.process = Some(process);
    }

    /// Stops it as an operator would (SIGTERM, then SIGKILL after 10 s). Data on disk stays for
    /// [`Azurite::restart`]. (A SIGKILL can lose Azurite's own metadata, which it writes to disk lazily: the
    /// queue itself would be gone, a fault of the emulator rather than of our clients.)
    pub fn stop(&mut self) {
        if let Some(p) = self.process.take() {
            p.stop(libc::SIGTERM);
        }
    }

    /// The OS process id, for CPU accounting in benchmarks.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The account's queue endpoint (path-style, as Azurite serves it).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// An `azure://` URL for `queue` on this Azurite, with extra `&`-separated options (may be empty).
    pub fn url(&self, queue: &str, options: &str) -> String {
        with_options(
            format!("azure://{ACCOUNT}/{queue}?endpoint={}", self.endpoint()),
            options,
        )
    }

    /// A full connection string for this Azurite (with the key).
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};QueueEndpoint={};",
            self.endpoint()
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets the environment of a command to authenticate with the account key, and removes every other Azure
/// credential variable that could leak in from the developer's shell.
pub fn with_key(cmd: &mut Command) -> &mut Command {
    clear_credentials(cmd).env("AZURE_STORAGE_ACCOUNT_KEY", KEY)
}

/// Removes every Azure credential variable from a command's environment.
pub fn clear_credentials(cmd: &mut Command) -> &mut Command {
    for v in [
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_QUEUE_NAME",
    ] {
        cmd.env_remove(v);
    }
    cmd
}

/// Opens an `azure://` URL in process with the account key (the test's own environment holds none).
fn open_with_key(url: &str) -> queues::azure::AzureQueue {
    let parsed = queues::QueueUrl::parse(url).expect("valid azure URL");
    let parsed = parsed
        .settings::<queues::azure::AzureUrl>()
        .unwrap_or_else(|| panic!("not an azure URL: {parsed}"))
        .clone();
    block_on(queues::azure::AzureQueue::open_with_env(parsed, &|k| {
        (k == "AZURE_STORAGE_ACCOUNT_KEY").then(|| KEY.to_string())
    }))
    .expect("open the Azurite queue")
}

/// The depth an `azure://` URL reports (approximate by default, visible-only with `depth=visible`).
pub fn depth(url: &str) -> queues::Depth {
    use queues::Queue;
    let q = open_with_key(url);
    block_on(q.depth()).expect("read depth")
}

/// Publishes bodies straight onto an `azure://` queue.
pub fn publish(url: &str, bodies: Vec<Vec<u8>>) {
    use queues::Queue;
    let q = open_with_key(url);
    block_on(q.publish(bodies)).expect("publish");
}
