//! Benchmark of the send schedule: how fast it computes due times, per shape.
//!
//! Run with `cargo bench -p producer --bench schedule`. A due time is found by bisecting the shape's integral
//! (see `producer/src/schedule.rs`), which costs a few dozen evaluations of it per message; this measures
//! that this never limits a producer. For each shape it takes 1,000,000 due times and prints the rate.
//! Target: ≥ 1,000,000 due times/s for every shape, so that scheduling costs a producer sending 100,000
//! msgs/s under 10 % of one core.
//!
//! Prints one figure per line and exits 1 when a target is missed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use producer::schedule::{Schedule, Share};
use workload::shape::Shape;

const DUE_TIMES: u64 = 1_000_000;
const TARGET_PER_S: f64 = 1_000_000.0;

/// The anchor, measured in the same run: the cheapest schedule there is (constant rate, due time = start +
/// i / rate), handing out the same chunks of 1000.
fn anchor_rate() -> f64 {
    let start = Instant::now();
    let timer = Instant::now();
    let mut taken = 0u64;
    while taken < DUE_TIMES {
        let chunk: Vec<Instant> = (taken..taken + 1000)
            .map(|i| start + Duration::from_secs_f64(std::hint::black_box(i as f64 / 100_000.0)))
            .collect();
        taken += std::hint::black_box(chunk).len() as u64;
    }
    taken as f64 / timer.elapsed().as_secs_f64()
}

fn main() -> ExitCode {
    let mut missed = false;
    let anchor = anchor_rate();
    println!("anchor: start + i/rate, {anchor:.0} due times/s");
    for spec in [
        "const:100000",
        "step:50000,150000@3s,100000@6s",
        "ramp:0..200000/10s",
        "sine:100000+-80000/5s",
        "const:50000+burst:100000@2s",
        "poisson:100000",
        "const:50000+poisson:50000",
    ] {
        let shape = Shape::parse(spec).expect("a valid shape");
        let start = Instant::now();
        let share = Share {
            producers: 1,
            index: 0,
        };
        let mut s = Schedule::new(start, Some(shape), share, 1);
        // Far in the future: every message is due at once, so this measures only the computation.
        let far = start + Duration::from_secs(1_000_000);
        let timer = Instant::now();
        let mut taken = 0u64;
        while taken < DUE_TIMES {
            let got = s.take_due(far, None, 1000).len() as u64;
            assert!(got > 0, "{spec} ran out of messages");
            taken += got;
        }
        let rate = taken as f64 / timer.elapsed().as_secs_f64();
        let ok = rate >= TARGET_PER_S;
        missed |= !ok;
        println!(
            "schedule {spec:<34} {rate:>12.0} due times/s, {:.3}× the anchor  (target ≥ {TARGET_PER_S:.0}) {}",
            rate / anchor,
            if ok { "ok" } else { "MISSED" }
        );
    }
    if missed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
