//! The demo's Docker engine (judge::demo::docker) in a real dockerd of the test's own: containers of the
//! image started with the run's labels, scale-in by container stop (the consumer drains, exits 0, nothing is
//! lost), a container that fails to start leaves nothing, and the clean-up removes every container, network
//! and volume of the run and nothing else.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use judge::demo::docker::{Engine, RUN_LABEL, Removed, Spec};
use testkit::docker::{self, Dockerd};

const MESSAGES: u64 = 300;

#[test]
fn containers_scale_in_by_stop_lose_nothing_and_the_run_leaves_nothing_behind() {
    let d = Dockerd::start();
    let image = docker::build_workload_image(&d, "qw-demo");
    // The run directory, shared with the containers (their user is not root).
    let dir = d.scratch("run");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bind = format!("{}:/run-dir", dir.display());
    let run = "run-0123456789abcdef";
    // Another run's container and this run's network and volume: the clean-up takes exactly the latter.
    let other = d.run(&[
        "create",
        "--label",
        &format!("{RUN_LABEL}=other"),
        &image,
        "remainder",
    ]);
    let label = format!("{RUN_LABEL}={run}");
    d.run(&["network", "create", "--label", &label, "qw-demo-net"]);
    d.run(&["volume", "create", "--label", &label, "qw-demo-vol"]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = rt
        .block_on(Engine::connect(&d.host(), run))
        .expect("connect");
    let spec = |name: &'static str, role: &'static str, cmd: &[&str], env: &[String]| Spec {
        name,
        role,
        image: &image,
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        binds: vec![bind.clone()],
        env: env.to_vec(),
        user: None,
        grace: Duration::from_secs(10),
        cpu_shares: None,
    };
    let queue = "QUEUE_URL=sqlite:/run-dir/queue.db".to_string();
    let consumer_env = |n: u32| {
        vec![
            queue.clone(),
            format!("CONSUMER_LEDGER=/run-dir/c{n}.ledger"),
            "CONSUMER_WORK=sleep:20ms".into(),
            "CONSUMER_DRAIN_TIMEOUT=3s".into(),
        ]
    };
    let c1 = rt
        .block_on(engine.start(&spec(
            "qw-demo-c1",
            "consumer",
            &["consumer"],
            &consumer_env(1),
        )))
        .expect("start consumer 1");
    let c2 = rt
        .block_on(engine.start(&spec(
            "qw-demo-c2",
            "consumer",
            &["consumer"],
            &consumer_env(2),
        )))
        .expect("start consumer 2");
    assert_eq!(rt.block_on(engine.running("consumer")).unwrap(), 2);
    let producer_env = [
        queue.clone(),
        format!("PRODUCER_COUNT={MESSAGES}"),
        "PRODUCER_RATE=200".into(),
    ];
    let p = rt
        .block_on(engine.start(&spec("qw-demo-p", "producer", &["producer"], &producer_env)))
        .expect("start the producer");

    // Scale in while the work is under way: the stopped consumer drains and exits 0 within the grace.
    std::thread::sleep(Duration::from_millis(800));
    let t0 = std::time::Instant::now();
    rt.block_on(engine.stop(&c2, Duration::from_secs(10)))
        .expect("stop");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(rt.block_on(engine.exit_code(&c2)).unwrap(), Some(0));
    assert_eq!(rt.block_on(engine.running("consumer")).unwrap(), 1);

    assert!(
        testkit::eventually(Duration::from_secs(60), || {
            rt.block_on(engine.exit_code(&p)).unwrap() == Some(0)
        }),
        "the producer did not finish"
    );
    let consumed = || testkit::ledger_entries(&dir).len() as u64;
    assert!(
        testkit::eventually(Duration::from_secs(60), || consumed() >= MESSAGES),
        "{} of {MESSAGES} consumed",
        consumed()
    );
    rt.block_on(engine.stop(&c1, Duration::from_secs(10)))
        .expect("stop");
    assert_eq!(rt.block_on(engine.exit_code(&c1)).unwrap(), Some(0));
    let (distinct, lost, dups, unexpected) =
        testkit::tally(&testkit::ledger_entries(&dir), MESSAGES);
    assert_eq!((distinct, lost, dups, unexpected), (MESSAGES, 0, 0, 0));

    // A container the engine cannot start (its user does not exist): a one-line error naming it, and
    // nothing left of it. An image that does not exist fails at create, likewise.
    let mut bad = spec("qw-demo-bad", "consumer", &["consumer"], &[]);
    bad.user = Some("no-such-user".into());
    let mut missing = spec("qw-demo-missing", "consumer", &["consumer"], &[]);
    missing.image = "qw-no-such-image:1";
    for s in [&bad, &missing] {
        let err = rt
            .block_on(engine.start(s))
            .expect_err("this container cannot start");
        let text = err.to_string();
        assert!(text.contains(s.name) && !text.contains('\n'), "{text}");
        let names = d.run(&["ps", "--all", "--format", "{{.Names}}"]);
        assert!(!names.contains(s.name), "{names}");
    }
    // A binary that is not in the image: the container starts (its init runs), and exits 127 at once.
    let gone = rt
        .block_on(engine.start(&spec("qw-demo-127", "consumer", &["no-such-binary"], &[])))
        .expect("the init starts");
    assert!(
        testkit::eventually(Duration::from_secs(10), || {
            rt.block_on(engine.exit_code(&gone)).unwrap() == Some(127)
        }),
        "a missing binary should exit 127"
    );

    // The clean-up: everything of the run (4 exited containers, the network, the volume), nothing else.
    let removed = rt.block_on(engine.clean_up()).expect("clean up");
    assert_eq!(
        removed,
        Removed {
            containers: 4,
            networks: 1,
            volumes: 1
        }
    );
    let filter = format!("label={label}");
    for what in [
        vec!["ps", "--all", "--quiet", "--filter", &filter],
        vec!["network", "ls", "--quiet", "--filter", &filter],
        vec!["volume", "ls", "--quiet", "--filter", &filter],
    ] {
        assert_eq!(d.run(&what).trim(), "", "left behind: {what:?}");
    }
    assert_eq!(
        rt.block_on(engine.clean_up()).expect("clean up again"),
        Removed::default()
    );
    let all = d.run(&["ps", "--all", "--quiet", "--no-trunc"]);
    assert!(
        all.contains(other.trim()),
        "another run's container was removed"
    );
}
