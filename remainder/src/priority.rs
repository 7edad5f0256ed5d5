//! Lowering a worker thread to the lowest scheduling priority Linux offers, so that the filler only ever gets
//! CPU time nothing else wants.
//!
//! `SCHED_IDLE` is the right tool: the scheduler runs such a thread only when no normal thread is runnable on
//! that CPU (its weight is about 0.3% of a nice-0 thread's), and any unprivileged process may move its own
//! threads into it. Some sandboxes (seccomp profiles, gVisor) refuse `sched_setscheduler`, so the fallback is
//! nice 19, which still yields to normal work but takes a bigger share (about 1.5% against one nice-0 thread).

use std::fmt;
use std::io;

/// The priority a thread ended up with, from lowest to highest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// `SCHED_IDLE`: runs only on otherwise idle CPU.
    SchedIdle,
    /// `SCHED_OTHER` at nice 19: the lowest normal priority.
    Nice19,
    /// Both requests were refused: the thread competes with other work as an equal.
    Normal,
}

impl Priority {
    /// The name used in the summary line's `priority` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::SchedIdle => "sched_idle",
            Priority::Nice19 => "nice19",
            Priority::Normal => "normal",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`lower_current_thread`] obtained, and why it got no lower.
#[derive(Debug)]
pub struct Lowered {
    pub priority: Priority,
    /// Why `SCHED_IDLE` was refused, when it was.
    pub sched_idle_error: Option<io::Error>,
    /// Why nice 19 was refused, when it was tried and refused.
    pub nice_error: Option<io::Error>,
}

/// Moves the calling thread (only it: Linux schedules threads, not processes) to `SCHED_IDLE`, or to nice 19
/// where that is refused. Never fails: a thread left at normal priority still works, and the caller reports
/// what it got.
pub fn lower_current_thread() -> Lowered {
    // Zeroed rather than a struct literal: musl's sched_param has extra fields that glibc's lacks.
    // SAFETY: sched_param is plain data, valid when all zero (priority 0, which SCHED_IDLE and SCHED_OTHER need).
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 names the calling thread; `param` is a valid sched_param that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        return Lowered {
            priority: Priority::SchedIdle,
            sched_idle_error: None,
            nice_error: None,
        };
    }
    let sched_idle_error = Some(io::Error::last_os_error());
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // On Linux PRIO_PROCESS with a thread id sets that thread's nice value alone (a known divergence from POSIX
    // that glibc documents), which is what we want: the runtime thread that writes stats stays at normal
    // priority, so stats and shutdown stay timely however busy the machine is.
    // SAFETY: setpriority only reads its integer arguments.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) };
    if rc == 0 {
        Lowered {
            priority: Priority::Nice19,
            sched_idle_error,
            nice_error: None,
        }
    } else {
        Lowered {
            priority: Priority::Normal,
            sched_idle_error,
            nice_error: Some(io::Error::last_os_error()),
        }
    }
}

/// Moves a `SCHED_IDLE` thread of this process back to normal scheduling, so that it can run to its exit.
///
/// Why: a process has exited only once every one of its threads has, and a `SCHED_IDLE` thread on a CPU that
/// normal work keeps busy may wait seconds for its next turn, even with a kill pending. Raising it for the last
/// unit (at most about 1 ms of CPU) is what lets a stop complete within 100 ms on a saturated machine, which is
/// exactly when a scaling engine evicts the remainder to make room. Leaving `SCHED_IDLE` needs `CAP_SYS_NICE`
/// (or an `RLIMIT_NICE` of 20), which containers often lack: then this fails with EPERM and the exit waits for
/// idle CPU. A thread at nice 19 is left there, as lowering a nice value needs the same privilege.
///
/// # Errors
/// EPERM without the privilege; ESRCH when the thread has already exited (harmless).
pub fn raise_to_normal(thread: libc::pthread_t) -> io::Result<()> {
    // Zeroed rather than a struct literal: musl's sched_param has extra fields that glibc's lacks.
    // SAFETY: sched_param is plain data, valid when all zero (priority 0, which SCHED_IDLE and SCHED_OTHER need).
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: the caller passes the pthread_t of a thread it has not joined or detached, which stays valid
    // (glibc answers ESRCH once such a thread has exited); `param` outlives the call.
    let rc = unsafe { libc::pthread_setschedparam(thread, libc::SCHED_OTHER, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_a_thread_leaves_the_others_alone() {
        // SAFETY: pid 0 names the calling thread.
        let before = unsafe { libc::sched_getscheduler(0) };
        let got = std::thread::spawn(|| {
            let lowered = lower_current_thread();
            // SAFETY: pid 0 names the calling thread.
            let policy = unsafe { libc::sched_getscheduler(0) };
            (lowered.priority, policy)
        })
        .join()
        .expect("thread ran");
        match got.0 {
            Priority::SchedIdle => assert_eq!(got.1, libc::SCHED_IDLE),
            Priority::Nice19 | Priority::Normal => assert_eq!(got.1, libc::SCHED_OTHER),
        }
        // SAFETY: pid 0 names the calling thread.
        let here = unsafe { libc::sched_getscheduler(0) };
        assert_eq!(here, before, "the test thread was not lowered");
    }

    #[test]
    fn a_lowered_thread_can_be_raised_when_privileged() {
        use std::os::unix::thread::JoinHandleExt;
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let _ = tx.send(lower_current_thread().priority);
            let _ = stop_rx.recv();
            // SAFETY: pid 0 names the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        });
        let lowered = rx.recv().expect("worker reports");
        let raised = raise_to_normal(worker.as_pthread_t());
        drop(stop_tx);
        let policy = worker.join().expect("worker ran");
        match (lowered, raised) {
            (Priority::SchedIdle, Ok(())) => assert_eq!(policy, libc::SCHED_OTHER),
            (Priority::SchedIdle, Err(e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert_eq!(policy, libc::SCHED_IDLE);
            }
            // SCHED_IDLE was refused here, so there was nothing to raise.
            (Priority::Nice19 | Priority::Normal, _) => assert_eq!(policy, libc::SCHED_OTHER),
        }
    }

    #[test]
    fn priorities_order_from_lowest_and_name_themselves() {
        assert!(Priority::SchedIdle < Priority::Nice19 && Priority::Nice19 < Priority::Normal);
        assert_eq!(Priority::SchedIdle.to_string(), "sched_idle");
        assert_eq!(Priority::Nice19.as_str(), "nice19");
    }
}
