//! Diffie-Hellman work off the async runtime, on threads of its own that run at background
//! priority, so that established connections' traffic goes first. They run nothing else,
//! so no other work (name lookups, file reads on tokio's blocking pool) inherits that
//! lower priority.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::platform;

/// At most this many exponentiations at once; more wait their turn. As tokio's blocking
/// pool did for them, a worker is started whenever none is free, so each handshake under
/// way gets one (and the handshakes' share of the CPU grows with their number).
const MAX_WORKERS: usize = 64;

/// A worker with nothing to do for this long ends (tokio's blocking pool waits as long).
const IDLE_BEFORE_EXIT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    /// Workers alive, and those of them waiting for a job.
    workers: usize,
    idle: usize,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    jobs: VecDeque::new(),
    workers: 0,
    idle: 0,
});
static QUEUED: Condvar = Condvar::new();

fn lock_queue() -> Option<MutexGuard<'static, Queue>> {
    // Nothing panics while holding the lock (jobs run outside it), so it is never poisoned.
    QUEUE.lock().ok()
}

fn run_jobs() {
    // Only Diffie-Hellman work runs here, so the priority is lowered once, for good (an
    // unprivileged Linux thread cannot raise it again).
    platform::lower_thread_priority();
    let Some(mut queue) = lock_queue() else {
        return;
    };
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            // A job that panics drops its answer's sender (its caller sees the work
            // interrupted); the worker goes on with the next.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            queue = match lock_queue() {
                Some(queue) => queue,
                None => return,
            };
            continue;
        }
        queue.idle += 1;
        let waited = QUEUED.wait_timeout(queue, IDLE_BEFORE_EXIT);
        let Ok((mut woken, timeout)) = waited else {
            return;
        };
        woken.idle -= 1;
        if timeout.timed_out() && woken.jobs.is_empty() {
            woken.workers -= 1;
            return;
        }
        queue = woken;
    }
}

/// Runs Diffie-Hellman work (a modular exponentiation) on the background workers, never on
/// a runtime thread, at the lower priority of background work
/// ([`platform::lower_thread_priority`]): when handshakes and established connections'
/// traffic compete for the CPU, the traffic goes first (docs/PERFORMANCE.md,
/// "Exponentiations at background priority"). The answer is an error only if the work
/// panicked. Not an `async fn`: the closure (a handshake's whole state) is queued at once
/// instead of also sitting in every future that awaits the answer. Where no worker thread
/// could be started, tokio's blocking pool runs it at normal priority.
pub(crate) fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<T> {
    let (answer, answered) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = answer.send(work());
    });
    let Some(mut queue) = lock_queue() else {
        tokio::task::spawn_blocking(job);
        return answered;
    };
    let a_worker_is_free = queue.idle > queue.jobs.len();
    if !a_worker_is_free && queue.workers < MAX_WORKERS {
        let started = std::thread::Builder::new()
            .name("sluice-dh-worker".into())
            .spawn(run_jobs);
        match started {
            Ok(_) => queue.workers += 1,
            // No thread to be had and none there: tokio's pool runs it.
            Err(_) if queue.workers == 0 => {
                drop(queue);
                tokio::task::spawn_blocking(job);
                return answered;
            }
            // No thread to be had: the job waits for the workers there are.
            Err(_) => {}
        }
    }
    queue.jobs.push_back(job);
    QUEUED.notify_one();
    answered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap()
            .block_on(f)
    }

    #[cfg(target_os = "linux")]
    fn nice_of_this_thread() -> i32 {
        // SAFETY: plain system calls about the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn background_work_runs_off_the_runtime_at_a_lower_priority_and_lends_it_to_nothing_else() {
        let runtime_thread = std::thread::current().id();
        let before = nice_of_this_thread();
        let (thread, nice, blocking_nice) = block_on(async {
            let (thread, nice) =
                in_background(move || (std::thread::current().id(), nice_of_this_thread()))
                    .await
                    .unwrap();
            // The runtime's one blocking thread, which ran the exponentiations before
            // they had workers of their own and then kept their priority.
            let blocking_nice = tokio::task::spawn_blocking(nice_of_this_thread)
                .await
                .unwrap();
            (thread, nice, blocking_nice)
        });
        assert_ne!(thread, runtime_thread, "a worker, not the runtime's thread");
        assert!(nice >= 10, "nice {nice}");
        assert_eq!(nice_of_this_thread(), before, "the runtime's thread");
        assert_eq!(blocking_nice, before, "tokio's blocking pool");
    }

    #[test]
    fn each_exponentiation_under_way_gets_a_worker_of_its_own() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Instant;

        // Eight jobs that each finish only once all eight are running: with fewer
        // workers than jobs, some would wait for the others and the deadline would pass.
        const AT_ONCE: usize = 8;
        let running = Arc::new(AtomicUsize::new(0));
        let all_ran_together = block_on(async {
            let waiting: Vec<_> = (0..AT_ONCE)
                .map(|_| {
                    let running = Arc::clone(&running);
                    in_background(move || {
                        running.fetch_add(1, Ordering::SeqCst);
                        let deadline = Instant::now() + Duration::from_secs(20);
                        while running.load(Ordering::SeqCst) < AT_ONCE {
                            if Instant::now() > deadline {
                                return false;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        true
                    })
                })
                .collect();
            let mut all = true;
            for answer in waiting {
                all &= answer.await.unwrap();
            }
            all
        });
        assert!(all_ran_together);
    }

    #[test]
    fn every_answer_reaches_its_caller_and_a_panic_reads_as_interrupted() {
        let answers = block_on(async {
            let waiting: Vec<_> = (0..64u64).map(|i| in_background(move || i * i)).collect();
            let mut answers = Vec::new();
            for answer in waiting {
                answers.push(answer.await.unwrap());
            }
            answers
        });
        assert_eq!(answers, (0..64u64).map(|i| i * i).collect::<Vec<_>>());

        let panicked = block_on(in_background(|| -> u8 { panic!("a failing job") }));
        assert!(panicked.is_err());
        let after = block_on(in_background(|| 7u8));
        assert_eq!(after, Ok(7), "the workers go on after a panic");
    }
}
