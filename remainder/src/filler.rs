//! The filler: worker threads that turn CPU time nobody else wants into counted, fixed-size work units.
//!
//! Each worker lowers itself to the lowest scheduling priority ([`crate::priority`]) and then either runs
//! calibrated work units back to back (`cpu` mode) or parks until told to stop (`sleep` mode, the original 2016
//! remainder, which held a slot on the cluster and did nothing with it). Workers check a stop flag between units,
//! so a unit's length (about 1 ms) bounds how long a stop takes once the workers get a turn on the CPU.

use std::num::NonZeroUsize;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use workload::work::thread_cpu_time;

use crate::priority::{self, Priority};

/// How long one work unit should take. Short enough that a stop request is honoured well within 100 ms even
/// with a unit in progress on every worker; long enough that counting a unit costs nothing next to doing it.
pub const UNIT_TARGET: Duration = Duration::from_millis(1);

/// What each worker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Run calibrated CPU work units back to back.
    Cpu,
    /// Hold the slot and do nothing until stopped, like the original 2016 remainder.
    Sleep,
}

impl Mode {
    /// The name used in the stats lines' `mode` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cpu => "cpu",
            Mode::Sleep => "sleep",
        }
    }
}

/// One unit of CPU work: `iterations` rounds of a xorshift generator. Returns the generator's state so that the
/// compiler cannot drop the loop.
///
/// Pure register arithmetic on purpose: no memory traffic, so the filler does not evict the caches of the work
/// it runs beside or compete for memory bandwidth, neither of which the scheduler priority protects.
pub fn work_unit(iterations: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..std::hint::black_box(iterations) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// The size of a work unit on this machine, measured at start.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    /// Iterations of [`work_unit`] per unit.
    pub iterations: u64,
    /// CPU time one unit took while calibrating.
    pub unit: Duration,
}

/// Finds how many iterations make one unit take about `target` of CPU time on the calling thread.
///
/// It measures the thread's CPU time rather than wall time, so that a preemption during calibration does not
/// make units look slower than they are. Call it before lowering the thread's priority: at `SCHED_IDLE` on a
/// busy machine, the measurement itself could wait seconds for its CPU time and delay the start.
pub fn calibrate(target: Duration) -> Calibration {
    // Grow a batch until one run takes at least 4 ms, so that the clock's resolution and start-up effects
    // (cold caches, the CPU's clock ramping up) are small next to it. The whole calibration costs ~20 ms of
    // start-up: a remainder is started and stopped often, and its first unit should come quickly.
    const MIN_SAMPLE: Duration = Duration::from_millis(4);
    let time = |iterations: u64| {
        let before = thread_cpu_time();
        work_unit(iterations);
        thread_cpu_time().saturating_sub(before)
    };
    let mut batch: u64 = 1 << 10;
    let mut best = time(batch);
    while best < MIN_SAMPLE && batch < 1 << 40 {
        batch *= 2;
        best = time(batch);
    }
    // Best of two at that size: interference (an interrupt, a sibling hyperthread) only ever makes a run slower.
    best = best.min(time(batch));
    let per_iteration_ns = best.as_nanos().max(1) as f64 / batch as f64;
    let iterations = ((target.as_nanos() as f64 / per_iteration_ns).round() as u64).max(1);
    // Report what a unit of that size really costs, averaged over a few, rather than the target.
    const CHECK_UNITS: u32 = 4;
    let before = thread_cpu_time();
    for _ in 0..CHECK_UNITS {
        work_unit(iterations);
    }
    let unit = thread_cpu_time().saturating_sub(before) / CHECK_UNITS;
    Calibration { iterations, unit }
}

/// A per-worker unit counter alone on its cache line(s). Each worker writes only its own, and the stats ticker
/// reads them all: without the padding, neighbouring counters would share a line, and every increment would
/// steal that line from the other workers' cores. 128 bytes because x86 prefetches lines in pairs.
#[repr(align(128))]
#[derive(Default)]
struct PaddedCounter(AtomicU64);

/// What the workers and the thread that owns the pool share.
struct Shared {
    /// Set once to ask every worker to stop after its current unit.
    stop: AtomicBool,
    counters: Box<[PaddedCounter]>,
    /// Unix µs at which the first unit of the whole pool completed; 0 until then.
    first_unit_at_us: AtomicU64,
}

/// The running worker threads.
pub struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    /// Disconnects when every worker has returned: each one holds a sender and drops it on the way out, even
    /// when unwinding.
    done: mpsc::Receiver<()>,
    priority: Priority,
}

/// The pool's final counts.
#[derive(Debug)]
pub struct Stopped {
    pub units: u64,
    pub first_unit_at_us: Option<u64>,
}

impl Pool {
    /// Starts `threads` workers: `cpu` mode runs units of `calibration.iterations` each; `sleep` mode (with no
    /// calibration) parks. Returns once every worker has lowered its priority, and logs what they obtained.
    ///
    /// # Errors
    /// When the OS refuses to start a thread; the workers started so far are stopped first.
    pub fn start(threads: NonZeroUsize, calibration: Option<Calibration>) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            counters: (0..threads.get())
                .map(|_| PaddedCounter::default())
                .collect(),
            first_unit_at_us: AtomicU64::new(0),
        });
        let (done_tx, done) = mpsc::channel::<()>();
        let (ready_tx, ready) = mpsc::channel::<priority::Lowered>();
        let mut pool = Pool {
            shared,
            handles: Vec::with_capacity(threads.get()),
            done,
            priority: Priority::SchedIdle,
        };
        for index in 0..threads.get() {
            let shared = pool.shared.clone();
            let worker_done = done_tx.clone();
            let worker_ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("filler-{index}"))
                .spawn(move || {
                    let _done = worker_done;
                    // Workers never log: a worker starved of CPU while holding stderr's lock would stall the
                    // runtime thread's logging. The pool's owner logs what they report instead.
                    let _ = worker_ready.send(priority::lower_current_thread());
                    drop(worker_ready);
                    match calibration {
                        Some(c) => run_units(&shared, index, c.iterations),
                        None => park_until_stopped(&shared),
                    }
                });
            match spawned {
                Ok(handle) => pool.handles.push(handle),
                Err(e) => {
                    drop(done_tx);
                    pool.stop(Duration::from_millis(100));
                    return Err(e);
                }
            }
        }
        drop((done_tx, ready_tx));
        let reports: Vec<priority::Lowered> = ready.iter().collect();
        pool.priority = log_priorities(&reports, threads.get());
        Ok(pool)
    }

    /// Units completed so far by all workers.
    pub fn units(&self) -> u64 {
        // Relaxed: each counter is a monotonic tally that publishes no other data.
        self.shared
            .counters
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }

    /// A reader of [`Pool::units`] that outlives the pool, for `/metrics` to read the same counters at each
    /// scrape.
    pub fn units_reader(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || {
            shared
                .counters
                .iter()
                .map(|c| c.0.load(Ordering::Relaxed))
                .sum()
        }
    }

    /// The lowest priority every worker obtained (the highest any one of them was left at).
    pub fn priority(&self) -> Priority {
        self.priority
    }

    pub fn threads(&self) -> usize {
        self.shared.counters.len()
    }

    /// Asks every worker to stop and waits for them, at most `grace`; the counts include every unit completed
    /// by then.
    ///
    /// Each worker is first raised back to normal priority (where the process may: see
    /// [`priority::raise_to_normal`]), so that a starved `SCHED_IDLE` worker gets a turn to see the stop flag
    /// and exit. A worker that still does not return in time is left behind: it holds no resource, and its
    /// counts are already in the atomics, so waiting for it would only delay the summary.
    pub fn stop(mut self, grace: Duration) -> Stopped {
        let deadline = Instant::now() + grace;
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut refused = None;
        for handle in &self.handles {
            // std hands out a u64; glibc's pthread_t is that already, musl's is a pointer.
            #[allow(clippy::unnecessary_cast)]
            let thread = handle.as_pthread_t() as libc::pthread_t;
            if let Err(e) = priority::raise_to_normal(thread) {
                // ESRCH: that worker has already returned.
                if e.raw_os_error() != Some(libc::ESRCH) {
                    refused = Some(e);
                }
            }
            handle.thread().unpark();
        }
        let all_returned = loop {
            match self
                .done
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break true,
                Err(mpsc::RecvTimeoutError::Timeout) => break false,
            }
        };
        if all_returned {
            for handle in self.handles.drain(..) {
                if handle.join().is_err() {
                    tracing::error!("a filler thread panicked; its units so far are counted");
                }
            }
        } else {
            tracing::warn!(
                "some filler threads had not stopped within {grace:?}: the CPU is busy{}; the process exits \
                 once they get a turn",
                refused.map_or_else(String::new, |e| format!(
                    " and they could not be raised to normal priority to finish ({e}; needs CAP_SYS_NICE)"
                ))
            );
        }
        let first = self.shared.first_unit_at_us.load(Ordering::Relaxed);
        Stopped {
            units: self.units(),
            first_unit_at_us: (first != 0).then_some(first),
        }
    }
}

/// A `cpu` worker's loop: one unit, one count, until asked to stop.
fn run_units(shared: &Shared, index: usize, iterations: u64) {
    let counter = &shared.counters[index].0;
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        work_unit(iterations);
        counter.fetch_add(1, Ordering::Relaxed);
        if first {
            first = false;
            // Only the pool's very first unit sets the time; later firsts find it set and leave it.
            let _ = shared.first_unit_at_us.compare_exchange(
                0,
                workload::clock::unix_micros(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// A `sleep` worker's loop: park (no CPU at all) until the stop flag is set. `park` may return spuriously,
/// hence the loop.
fn park_until_stopped(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::park();
    }
}

/// Logs the priority the workers obtained, once for the pool rather than once per thread, and returns the
/// highest any worker was left at (so that the summary never claims more than every worker got).
fn log_priorities(reports: &[priority::Lowered], threads: usize) -> Priority {
    // A worker that died before reporting is counted as left at normal priority.
    let priority = if reports.len() < threads {
        Priority::Normal
    } else {
        reports
            .iter()
            .map(|r| r.priority)
            .max()
            .unwrap_or(Priority::Normal)
    };
    let idle_error = reports.iter().find_map(|r| r.sched_idle_error.as_ref());
    let nice_error = reports.iter().find_map(|r| r.nice_error.as_ref());
    match priority {
        Priority::SchedIdle => tracing::info!(
            "{threads} filler thread(s) at SCHED_IDLE: they run only on CPU time no other thread wants"
        ),
        Priority::Nice19 => tracing::warn!(
            "SCHED_IDLE refused ({}); {threads} filler thread(s) at nice 19 instead: they yield to normal work \
             but take a small share of a busy CPU",
            idle_error.map_or_else(|| "no reason given".to_string(), |e| e.to_string())
        ),
        Priority::Normal => tracing::warn!(
            "SCHED_IDLE refused ({}) and nice 19 refused ({}); filler threads run at normal priority and compete \
             with other work as equals",
            idle_error.map_or_else(|| "no reason given".to_string(), |e| e.to_string()),
            nice_error.map_or_else(|| "no reason given".to_string(), |e| e.to_string())
        ),
    }
    priority
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_hits_its_target_roughly() {
        let c = calibrate(UNIT_TARGET);
        assert!(c.iterations > 0);
        // Loose bounds: a unit test runs beside others, and the debug build is slow but calibrated the same way.
        assert!(
            c.unit >= Duration::from_micros(250) && c.unit <= Duration::from_millis(4),
            "unit took {:?}",
            c.unit
        );
    }

    #[test]
    fn counters_sit_on_their_own_cache_lines() {
        assert_eq!(std::mem::align_of::<PaddedCounter>(), 128);
        assert_eq!(std::mem::size_of::<PaddedCounter>(), 128);
    }

    #[test]
    fn cpu_pool_counts_units_and_stops_promptly() {
        let c = Calibration {
            iterations: 1000,
            unit: Duration::ZERO,
        };
        let pool =
            Pool::start(NonZeroUsize::MIN.saturating_add(1), Some(c)).expect("threads start");
        assert_eq!(pool.threads(), 2);
        assert!(
            wait_until(Duration::from_secs(5), || pool.units() > 0),
            "no unit completed"
        );
        let asked = Instant::now();
        let stopped = pool.stop(Duration::from_secs(2));
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "every worker returned well before the grace ran out"
        );
        assert!(stopped.units > 0);
        assert!(stopped.first_unit_at_us.is_some_and(|t| t > 0));
    }

    #[test]
    fn sleep_pool_does_no_units_and_wakes_to_stop() {
        let pool = Pool::start(NonZeroUsize::MIN, None).expect("thread starts");
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        let stopped = pool.stop(Duration::from_secs(2));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "parked workers woke to stop"
        );
        assert_eq!(stopped.units, 0);
        assert_eq!(stopped.first_unit_at_us, None);
    }

    fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !cond() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}
