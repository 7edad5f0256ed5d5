//! Parsing and resolving `--autoscale`; the policies' own tests sit with them.

use super::*;

fn a(spec: &str) -> Autoscale {
    Autoscale::resolve(&spec.parse().unwrap(), &AutoscaleArgs::default()).unwrap()
}

fn pairs(p: &[(&str, &str)]) -> AutoscaleArgs {
    AutoscaleArgs::from_pairs(
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap()
}

#[test]
fn specs_parse_with_defaults_and_fallbacks() {
    let s = a("target=50,min=0,max=8,interval=1s");
    assert_eq!(s.policy, PolicyKind::Microscaling);
    assert_eq!(
        (s.target, s.min, s.max, s.interval, s.slots, s.start_delay),
        (50, 0, 8, Duration::from_secs(1), 8, Duration::ZERO)
    );
    assert_eq!(
        s.to_string(),
        "policy=microscaling,target=50,min=0,max=8,interval=1s,slots=8,start-delay=0s"
    );
    assert_eq!(a("target=10,max=3,slots=5,interval=500ms").slots, 5);
    // The scenario fills in what the flag leaves out; the flag wins where both say.
    let scenario = pairs(&[("target", "20"), ("max", "4")]);
    let r = Autoscale::resolve(&"max=6".parse().unwrap(), &scenario).unwrap();
    assert_eq!((r.target, r.max), (20, 6));
    assert_eq!(
        Autoscale::resolve(&"on".parse().unwrap(), &scenario)
            .unwrap()
            .max,
        4
    );
}

#[test]
fn keda_takes_the_documented_defaults_and_every_setting() {
    let k = a("policy=keda");
    // KEDA's and the HPA's defaults; the target is the Azure queue scaler's queueLength.
    assert_eq!(
        (k.policy, k.target, k.min, k.max),
        (PolicyKind::Keda, 5, 0, 8)
    );
    let s = &k.keda;
    assert_eq!(
        (s.polling, s.cooldown, s.initial_cooldown, s.activation),
        (
            Duration::from_secs(30),
            Duration::from_secs(300),
            Duration::ZERO,
            0
        )
    );
    assert!(!s.use_cached_metrics);
    assert_eq!(
        (s.hpa.sync, s.hpa.tolerance),
        (Duration::from_secs(15), 0.1)
    );
    assert_eq!(
        (s.hpa.up.percent, s.hpa.up.pods, s.hpa.up.stabilization),
        (Some(100), Some(4), Duration::ZERO)
    );
    assert_eq!(
        (
            s.hpa.down.percent,
            s.hpa.down.pods,
            s.hpa.down.stabilization
        ),
        (Some(100), None, Duration::from_secs(300))
    );
    assert_eq!(k.band_low(), 4);
    // The NSQ scaler's depthThreshold is 10.
    assert_eq!(a("policy=keda,scaler=nsq").target, 10);
    // Every scaler's settings write back to what parses to the same (the strategy is the scaler's own).
    for scaler in ["nsq", "azure", "redis", "nats", "amqp"] {
        let k = a(&format!("policy=keda,scaler={scaler}"));
        assert_eq!(a(&k.to_string()), k, "{k}");
    }
    // Redis Streams' scaler counts pending entries by default (target 5), the group's lag with `lagCount`.
    let r = a("policy=keda,queue-length-strategy=visibleonly,scaler=redis");
    assert_eq!(
        (r.target, r.keda.scaler.unwrap().counts),
        (5, Counts::Visible)
    );
    // Every key set, and the settings written back parse to the same.
    let spec = "policy=keda,target=20,min=1,max=6,interval=500ms,slots=7,start-delay=2s,scaler=azure,\
                queue-length-strategy=visibleonly,polling=5s,cooldown=30s,initial-cooldown=10s,activation=3,\
                use-cached-metrics=true,sync=10s,tolerance=0.2,up-stabilization=5s,up-percent=50,up-pods=2,\
                up-period=20s,up-select=min,down-stabilization=1m,down-percent=0,down-pods=1,\
                down-period=30s,down-select=disabled";
    let k = a(spec);
    assert_eq!(k.to_string(), spec);
    let scaler = k.keda.scaler.unwrap();
    assert_eq!((scaler.name(), scaler.counts), ("azure", Counts::Visible));
    assert_eq!(
        (k.keda.hpa.down.percent, k.keda.hpa.down.pods),
        (None, Some(1))
    );
    assert_eq!(a(&k.to_string()), k);
    assert_eq!(
        a("policy=keda,polling=5s,cooldown=30s").summary(),
        "keda (azure scaler) target=5,min=0,max=8,polling=5s,cooldown=30s"
    );
    // A scenario may name the policy and its settings; the flag still wins key by key.
    let scenario = pairs(&[("policy", "keda"), ("cooldown", "1m"), ("target", "50")]);
    let r = Autoscale::resolve(&"cooldown=30s".parse().unwrap(), &scenario).unwrap();
    assert_eq!(
        (r.policy, r.target, r.keda.cooldown),
        (PolicyKind::Keda, 50, Duration::from_secs(30))
    );
    // ... and its KEDA settings do not stop a run under microscaling.
    let r = Autoscale::resolve(&"policy=microscaling".parse().unwrap(), &scenario).unwrap();
    assert_eq!(r.policy, PolicyKind::Microscaling);
}

#[test]
fn bad_specs_say_what_is_expected() {
    for (bad, needle) in [
        ("target", "no `=`"),
        ("target=x", "not a whole number"),
        ("speed=3", "unknown key"),
        ("interval=3", "invalid"),
        ("policy=hpa", "microscaling or keda"),
        ("scaler=sqs", "a backend KEDA has a scaler for"),
        ("queue-length-strategy=some", "all, visibleonly or inflight"),
        ("tolerance=1.5", "under 1"),
        ("up-select=most", "max, min or disabled"),
        ("use-cached-metrics=yes", "true or false"),
    ] {
        // Clap names the flag before it.
        let e = bad.parse::<AutoscaleArgs>().unwrap_err();
        assert!(e.contains(needle), "{bad}: {e}");
    }
    for (bad, needle) in [
        ("max=3", "needs a target"),
        ("target=0", "1 or more"),
        ("target=5,min=4,max=3", "min <= max"),
        ("target=5,max=4,slots=3", "at least max"),
        ("target=5,interval=0s", "more than 0"),
        ("policy=keda,polling=0s", "polling must be more than 0"),
        ("target=5,cooldown=30s", "setting of policy=keda"),
        // NSQ's scaler reads the channel's depth, ready messages only: it has no other reading.
        (
            "policy=keda,scaler=nsq,queue-length-strategy=all",
            "nsq scaler (nsq) counts visibleonly",
        ),
    ] {
        let e = Autoscale::resolve(&bad.parse().unwrap(), &AutoscaleArgs::default()).unwrap_err();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn remainders_fill_the_spare_slots_and_the_drain_keeps_one() {
    assert_eq!(a("target=50,max=3").remainders(1), 2);
    assert_eq!(a("target=5,max=2,slots=6").remainders(2), 4);
    // The drain's floor: one consumer while messages remain, whatever the policy asks.
    assert_eq!(with_floor(0, 1, 8), 1);
    assert_eq!(with_floor(3, 1, 8), 3);
    assert_eq!(with_floor(0, 0, 8), 0);
    let mut keda = a("policy=keda,activation=100").start();
    let d = Depth {
        visible: 50,
        in_flight: Some(0),
    };
    // 50 messages are under the activation value: KEDA leaves 0, the drain's floor makes it 1.
    assert_eq!(keda.decide(Duration::ZERO, d, 0), 0);
    assert_eq!(
        with_floor(keda.decide(Duration::from_secs(30), d, 0), 1, 8),
        1
    );
}
