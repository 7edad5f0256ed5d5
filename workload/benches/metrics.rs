//! What `/metrics` costs: the per-message bookkeeping on the consumer's hot path (two counter increments and
//! two histogram observations), encoding a registry the size of the consumer's, and a whole scrape over
//! loopback HTTP. Prints the figures; exits non-zero when one misses its target.
//!
//! Targets: per-message bookkeeping under 250 ns (the embedded queue delivers a message in ~10 µs, so
//! metrics stay under a few percent of it); an encode under 500 µs and a scrape's p99 under 5 ms, so that a
//! scrape every second costs the process well under 1 % of a core.
//!
//! Run: `cargo bench -p workload --bench metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use workload::metrics::{
    Counter, Exporter, Gauge, Registry, Unit, encode, latency_histogram, registry,
};
use workload::shutdown::Shutdown;

const HOT_PATH_TARGET_NS: f64 = 250.0;
const ENCODE_TARGET_US: f64 = 500.0;
const SCRAPE_P99_TARGET_MS: f64 = 5.0;

/// A registry shaped like the consumer's: 12 counters, 2 gauges, 2 histograms, the depth gauges.
fn consumer_like() -> (Registry, Counter, Counter, workload::metrics::Histogram) {
    let mut r = registry("consumer", Some("sqlite"));
    let counters: Vec<Counter> = (0..12).map(|_| Counter::default()).collect();
    for (i, c) in counters.iter().enumerate() {
        c.inc_by(1_000_000 + i as u64);
        r.register(format!("counter_{i}"), "A counter", c.clone());
    }
    for name in ["in_flight", "slots"] {
        let g: Gauge = Gauge::default();
        g.set(20);
        r.register(name, "A gauge", g);
    }
    let e2e = latency_histogram();
    let work = latency_histogram();
    for i in 0..100_000u64 {
        e2e.observe((i % 5000) as f64 / 1e4);
        work.observe((i % 300) as f64 / 1e4);
    }
    r.register_with_unit("end_to_end", "Send to ack", Unit::Seconds, e2e.clone());
    r.register_with_unit("work", "Work", Unit::Seconds, work);
    // Stand-ins for the queue depth gauges (`queues::metrics::DepthGauges`, two gauges and an error counter):
    // this crate sits below `queues`, and the encoding cost is the same per series.
    for name in ["queue_visible_messages", "queue_in_flight_messages"] {
        let g: Gauge = Gauge::default();
        g.set(1000);
        r.register(name, "A depth gauge", g);
    }
    r.register(
        "queue_depth_errors",
        "Failed depth reads",
        Counter::<u64>::default(),
    );
    (r, counters[0].clone(), counters[1].clone(), e2e)
}

fn main() -> ExitCode {
    let mut ok = true;
    let (registry, received, acked, e2e) = consumer_like();

    // Hot path: what the consumer adds per message.
    let work = latency_histogram();
    let n = 2_000_000u64;
    let t = Instant::now();
    for i in 0..n {
        received.inc();
        acked.inc();
        e2e.observe(std::hint::black_box(i as f64 * 1e-9));
        work.observe(std::hint::black_box(1e-3));
    }
    let per_msg_ns = t.elapsed().as_nanos() as f64 / n as f64;
    // The anchor, measured now on this machine: the least the same bookkeeping can cost (two atomic counter
    // increments, and per observation a bucket search over as many bounds plus an atomic count and sum).
    let bounds: Vec<f64> = (0..24).map(|i| 1e-5 * 2f64.powi(i)).collect();
    let cells: Vec<std::sync::atomic::AtomicU64> = (0..=bounds.len() * 2 + 4)
        .map(|_| Default::default())
        .collect();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let t = Instant::now();
    for i in 0..n {
        cells[0].fetch_add(1, relaxed);
        cells[1].fetch_add(1, relaxed);
        for (k, v) in [(0, i as f64 * 1e-9), (1, 1e-3)] {
            let v = std::hint::black_box(v);
            let b = bounds.partition_point(|x| *x < v);
            cells[4 + k * bounds.len() + b.min(bounds.len() - 1)].fetch_add(1, relaxed);
            cells[2 + k].fetch_add(v.to_bits(), relaxed);
        }
    }
    let anchor_ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "per-message bookkeeping: {per_msg_ns:.0} ns (target < {HOT_PATH_TARGET_NS} ns), {:.2}× a bare atomics-and-bucket-search loop ({anchor_ns:.0} ns, same run)",
        per_msg_ns / anchor_ns
    );
    ok &= per_msg_ns < HOT_PATH_TARGET_NS;

    // Encoding the whole registry.
    let rounds = 2000;
    let mut text = String::new();
    let t = Instant::now();
    for _ in 0..rounds {
        text.clear();
        encode(&mut text, &registry).expect("encode");
    }
    let encode_us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    println!(
        "encode ({} bytes, {} lines): {encode_us:.1} µs (target < {ENCODE_TARGET_US} µs)",
        text.len(),
        text.lines().count()
    );
    ok &= encode_us < ENCODE_TARGET_US;

    // Whole scrapes over loopback, each on a new connection as Prometheus makes them after an idle close.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = Shutdown::new();
    let addr = runtime.block_on(async {
        let exporter = Exporter::bind(([127, 0, 0, 1], 0).into())
            .await
            .expect("bind");
        let addr = exporter.local_addr();
        exporter.serve(registry, shutdown.clone());
        addr
    });
    let mut times: Vec<Duration> = (0..1000)
        .map(|_| {
            let t = Instant::now();
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).expect("read");
            assert!(out.starts_with(b"HTTP/1.1 200 OK"));
            t.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = ms(times[times.len() / 2]);
    let p99 = ms(times[times.len() * 99 / 100]);
    println!(
        "scrape over loopback: p50 {p50:.2} ms, p99 {p99:.2} ms (target p99 < {SCRAPE_P99_TARGET_MS} ms)"
    );
    ok &= p99 < SCRAPE_P99_TARGET_MS;
    shutdown.trigger();

    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("a metrics target was missed");
        ExitCode::FAILURE
    }
}
