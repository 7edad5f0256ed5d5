//! RabbitMQ for tests: Debian's `rabbitmq-server` (scripts/apt-packages), run directly from
//! `/usr/lib/rabbitmq/bin` (the `/usr/sbin` wrapper switches user), on free loopback ports, with every path it
//! writes (`RABBITMQ_BASE`, `MNESIA_BASE`, `LOG_BASE`, config, plugins, pid, `HOME` for the Erlang cookie) in
//! a temp dir, and its own `epmd` on a free loopback port (the node would otherwise start a shared epmd daemon
//! on every interface and leave it running). The management plugin serves the HTTP API.
//!
//! A node is ready in 5-10 s, and nextest runs every test in a process of its own, so each test binary has one
//! test that starts one node and runs its scenarios on it, each on its own queue name. Stopping is a SIGKILL
//! of the node's processes (a graceful stop takes 6-8 s); the data stays on disk for [`Rabbit::restart`], and
//! quorum queues recover what they confirmed. The node and epmd stay in the test's process group, so a test
//! runner that kills a timed-out test's group kills them too.
//!
//! The per-queue figures of a quorum queue (in the management API and in `rabbitmqctl list_queues` alike)
//! are sampled on the queue's 5 s tick, so tests that compare with them wait for a tick (see
//! [`Rabbit::settled_counts`]); only the ready count of a passive `queue.declare` is exact at once.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::server::{ServerProcess, descendants, free_port, with_options};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A running RabbitMQ node and its epmd.
pub struct Rabbit {
    node: Option<ServerProcess>,
    epmd: Option<ServerProcess>,
    dir: tempfile::TempDir,
    port: u16,
    management_port: u16,
    dist_port: u16,
    epmd_port: u16,
}

impl Rabbit {
    /// Starts a node (and its epmd); waits until AMQP and the management API accept connections.
    pub fn start() -> Rabbit {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: install Debian's rabbitmq-server (scripts/apt-packages; scripts/test does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("create dirs");
        }
        let mut r = Rabbit {
            node: None,
            epmd: None,
            dir,
            port: free_port(),
            management_port: free_port(),
            dist_port: free_port(),
            epmd_port: free_port(),
        };
        std::fs::write(
            r.dir.path().join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{}\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {}\ncollect_statistics_interval = 100\n",
                r.port, r.management_port
            ),
        )
        .expect("write rabbitmq.conf");
        std::fs::write(
            r.dir.path().join("enabled_plugins"),
            "[rabbitmq_management].\n",
        )
        .expect("write enabled_plugins");
        std::fs::write(r.dir.path().join("rabbitmq-env.conf"), "").expect("write env conf");
        // Here too, or the node reads /etc/rabbitmq/advanced.config.
        std::fs::write(r.dir.path().join("advanced.config"), "[].\n")
            .expect("write advanced.config");

        let mut epmd = Command::new("epmd");
        epmd.args(["-port", &r.epmd_port.to_string(), "-address", "127.0.0.1"]);
        r.epmd = Some(
            ServerProcess::spawn(
                "epmd",
                epmd,
                &r.dir.path().join("epmd.out"),
                "it is part of Debian's erlang-base, which rabbitmq-server depends on",
            )
            .with_whole_tree(),
        );
        r.restart();
        r
    }

    /// Starts the node again on the same ports and data (after [`Rabbit::kill`]); waits until it is ready.
    pub fn restart(&mut self) {
        assert!(self.node.is_none(), "RabbitMQ is already running");
        let d = self.dir.path();
        let mut cmd = Command::new(SERVER);
        cmd.env("HOME", d)
            .env("RABBITMQ_BASE", d)
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("rabbitmq.pid"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_NODENAME", format!("wl{}@localhost", self.port))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            );
        // The node is a shell script whose beam.smp has helpers: stopping it means stopping them all.
        let mut node = ServerProcess::spawn(
            "rabbitmq-server",
            cmd,
            &d.join("server.out"),
            "install Debian's rabbitmq-server (scripts/apt-packages)",
        )
        .with_whole_tree();
        let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
        node.wait_ready(Duration::from_secs(60), Duration::from_millis(100), || {
            up(self.port) && up(self.management_port)
        });
        self.node = Some(node);
    }

    /// Kills the node at once (SIGKILL of the launcher, beam and its helpers), as a crash would; data on disk
    /// stays for [`Rabbit::restart`]. epmd keeps running.
    pub fn kill(&mut self) {
        self.node = None;
    }

    /// The process ids of the node (the launcher and everything under it), for CPU accounting in benchmarks.
    pub fn pids(&self) -> Vec<i32> {
        self.node.as_ref().map_or_else(Vec::new, |c| {
            let pid = c.pid() as i32;
            let mut all = descendants(pid);
            all.push(pid);
            all
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn management_port(&self) -> u16 {
        self.management_port
    }

    /// An `amqp://` URL for `queue` on this node, with extra `&`-separated options (may be empty).
    pub fn url(&self, queue: &str, options: &str) -> String {
        with_options(
            format!(
                "amqp://127.0.0.1:{}/{queue}?management=127.0.0.1:{}",
                self.port, self.management_port
            ),
            options,
        )
    }

    /// The broker's (ready, unacknowledged) counts of `queue`, taken after a statistics tick that began
    /// after this call: the figures a quorum queue reports (to the management API and to `rabbitmqctl
    /// list_queues` alike) are sampled on its tick, every 5 s, so a reading taken at once can predate the last
    /// change (a new queue reads (0, 0) for its first seconds). The node emits statistics every 100 ms
    /// (`collect_statistics_interval`, default 5 s, which would add its own lag). About 6 s a call. `None` while the API does
    /// not answer or has no figures.
    pub fn settled_counts(&self, queue: &str) -> Option<(u64, u64)> {
        std::thread::sleep(Duration::from_millis(6_000));
        // A young queue has no figures yet: wait for its first ones.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.management_queue(queue).and_then(|v| {
                Some((
                    v["messages_ready"].as_u64()?,
                    v["messages_unacknowledged"].as_u64()?,
                ))
            });
            if got.is_some() || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The management API's JSON for `queue` (`GET /api/queues/%2F/QUEUE`), as the broker has it now.
    pub fn management_queue(&self, queue: &str) -> Option<serde_json::Value> {
        // guest:guest, RabbitMQ's public default account.
        let (status, json) = crate::server::http(
            self.management_port,
            "GET",
            &format!("/api/queues/%2F/{queue}"),
            "Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n",
        )?;
        if status != 200 {
            return None;
        }
        serde_json::from_str(&json).ok()
    }
}

impl Drop for Rabbit {
    /// The node first (SIGKILL of its whole tree), then its epmd.
    fn drop(&mut self) {
        self.kill();
        self.epmd = None;
    }
}

/// The depth an `amqp://` URL reports.
pub use crate::depth;
/// Publishes bodies straight onto an `amqp://` queue.
pub use crate::publish_raw as publish;

/// Removes the AMQP password variable, which could leak in from the developer's shell.
pub fn clear_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("AMQP_PASSWORD")
}
