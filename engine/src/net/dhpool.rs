//! A pool of ephemeral Diffie-Hellman key pairs computed ahead of time on a background
//! thread, so only one modular exponentiation per side (the shared secret) sits on a
//! connection's critical path. Each key pair is handed out once and then dropped (wiped);
//! pairs live in boxes, so the pool's vector moves pointers, never copies of an exponent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::net::background::in_background;
use crate::platform;
use crate::protocol::EphemeralKeyPair;

/// How many key pairs to keep ready. Enough to absorb a burst of connections; small
/// enough that the pool costs nothing noticeable (each pair is ~300 bytes).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// While at least half the pool is ready, a refill waits until no handshake has finished
/// for this long, so that it does not compete for the cores with the connection that
/// just took a pair (its first exchange of data) or the one after it. Below half, it
/// refills at once: under a steady stream of handshakes the pool must keep up.
const QUIET_BEFORE_REFILL: Duration = Duration::from_millis(3);

struct PoolState {
    // Boxed on purpose: growing or shrinking the vector then moves pointers, never the
    // exponents themselves (which would leave unwiped copies in freed or spare memory).
    #[allow(clippy::vec_box)]
    ready: Mutex<Vec<Box<EphemeralKeyPair>>>,
    want_more: Condvar,
    target: usize,
    closed: AtomicBool,
    /// Handshakes that took a pair and are over (see [`RefillLater`]).
    finished: AtomicU64,
}

/// Shared handle; the background thread stops when the last handle is dropped.
pub struct KeyPairPool {
    state: Arc<PoolState>,
}

/// The OS random number generator failed; nothing secure can be done without it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessError(String);

/// 32 bytes from the OS RNG.
pub fn random_bytes() -> Result<[u8; 32], RandomnessError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RandomnessError(e.to_string()))?;
    Ok(bytes)
}

/// No key pair could be had for a handshake.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyPairError {
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
    #[error(
        "internal error: the Diffie-Hellman key pair could not be computed (the engine is shutting down)"
    )]
    Interrupted,
}

/// The threads key pairs were computed on: where the work ran, for the tests.
#[cfg(test)]
static COMPUTED_ON: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());

/// One modular exponentiation: call it on the refill thread or through [`in_background`].
fn fresh_key_pair() -> Result<Box<EphemeralKeyPair>, RandomnessError> {
    #[cfg(test)]
    if let Ok(mut threads) = COMPUTED_ON.lock() {
        threads.push(std::thread::current().id());
    }
    let mut private = random_bytes()?;
    let pair = EphemeralKeyPair::boxed_from_random(private);
    zeroize::Zeroize::zeroize(&mut private);
    Ok(pair)
}

impl KeyPairPool {
    /// Starts the refill thread. `target` = 0 makes a pool that computes each pair when it
    /// is asked for (on a background worker).
    pub fn new(target: usize) -> KeyPairPool {
        let state = Arc::new(PoolState {
            ready: Mutex::new(Vec::with_capacity(target)),
            want_more: Condvar::new(),
            target,
            closed: AtomicBool::new(false),
            finished: AtomicU64::new(0),
        });
        if target > 0 {
            let worker = Arc::clone(&state);
            let spawned = std::thread::Builder::new()
                .name("sluice-dh-pool".into())
                .spawn(move || refill(&worker));
            // Without the thread the pool still works: take() computes on a background worker.
            if spawned.is_err() {
                state.closed.store(true, Ordering::Relaxed);
            }
        }
        KeyPairPool { state }
    }

    /// A key pair never handed out before: from the pool if one is ready, else computed
    /// on a background worker (never on the async runtime's threads, which serve every other
    /// connection meanwhile). The refill thread is only woken when the returned
    /// [`RefillLater`] is dropped: hold it until the handshake that uses the pair is over,
    /// so that computing the replacement does not compete with that handshake's own
    /// exponentiation; the refill then also waits for a quiet spell while the pool is at
    /// least half full ([`QUIET_BEFORE_REFILL`]).
    pub async fn take(&self) -> Result<(Box<EphemeralKeyPair>, RefillLater<'_>), KeyPairError> {
        let pooled = self
            .state
            .ready
            .lock()
            .ok()
            .and_then(|mut ready| ready.pop());
        let pair = match pooled {
            Some(pair) => pair,
            None => in_background(fresh_key_pair)
                .await
                .map_err(|_| KeyPairError::Interrupted)??,
        };
        Ok((pair, RefillLater(&self.state)))
    }

    /// How many key pairs are ready now.
    #[cfg(test)]
    fn ready(&self) -> usize {
        self.state.ready.lock().map_or(0, |r| r.len())
    }
}

/// Wakes the pool's refill thread when dropped (see [`KeyPairPool::take`]).
pub struct RefillLater<'a>(&'a PoolState);

impl Drop for RefillLater<'_> {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
        self.0.want_more.notify_one();
    }
}

impl Drop for KeyPairPool {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::Relaxed);
        self.state.want_more.notify_all();
    }
}

fn refill(state: &PoolState) {
    // Refilling gives way to the connections it serves (see the platform module).
    platform::lower_thread_priority();
    let mut seen = state.finished.load(Ordering::Relaxed);
    loop {
        if state.closed.load(Ordering::Relaxed) {
            return;
        }
        let missing = match state.ready.lock() {
            Ok(ready) => state.target.saturating_sub(ready.len()),
            Err(_) => return,
        };
        if missing == 0 {
            let Ok(ready) = state.ready.lock() else {
                return;
            };
            // Sleep until a take() leaves room (or the pool is closed).
            let _unused = state.want_more.wait_while(ready, |r| {
                r.len() >= state.target && !state.closed.load(Ordering::Relaxed)
            });
            continue;
        }
        wait_for_quiet(state, &mut seen);
        // Compute outside the lock so take() never waits for an exponentiation.
        let Ok(pair) = fresh_key_pair() else {
            return;
        };
        match state.ready.lock() {
            Ok(mut ready) if ready.len() < state.target => ready.push(pair),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Returns once no handshake has finished for [`QUIET_BEFORE_REFILL`], or at once when
/// less than half the pool is ready (or the pool is closed). `seen` is the count of
/// finished handshakes the refill last looked at.
fn wait_for_quiet(state: &PoolState, seen: &mut u64) {
    loop {
        let finished = state.finished.load(Ordering::Relaxed);
        let plenty = state
            .ready
            .lock()
            .is_ok_and(|ready| 2 * ready.len() >= state.target);
        if finished == *seen || !plenty || state.closed.load(Ordering::Relaxed) {
            return;
        }
        *seen = finished;
        std::thread::sleep(QUIET_BEFORE_REFILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn pool_fills_in_the_background_and_hands_out_distinct_pairs() {
        let pool = KeyPairPool::new(4);
        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.ready() < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.ready(), 4);
        let (a, _) = block_on(pool.take()).unwrap();
        let (b, _) = block_on(pool.take()).unwrap();
        assert_ne!(a.public(), b.public());
    }

    #[test]
    fn refill_happens_only_after_the_guard_is_dropped() {
        let pool = KeyPairPool::new(2);
        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.ready() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (a, later) = block_on(pool.take()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pool.ready(), 1, "no refill while the handshake runs");
        drop(later);
        while pool.ready() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.ready(), 2);
        let (b, _later) = block_on(pool.take()).unwrap();
        assert_ne!(a.public(), b.public());
    }

    #[test]
    fn a_refill_waits_for_a_quiet_spell_unless_the_pool_runs_low() {
        let state = PoolState {
            ready: Mutex::new(Vec::new()),
            want_more: Condvar::new(),
            target: 2,
            closed: AtomicBool::new(false),
            finished: AtomicU64::new(5),
        };
        // Less than half ready: at once, even right after a handshake.
        let mut seen = 4;
        wait_for_quiet(&state, &mut seen);
        assert_eq!(seen, 4, "no quiet spell was waited for");

        // Half ready and a handshake just finished: one quiet spell, then go.
        state
            .ready
            .lock()
            .unwrap()
            .push(EphemeralKeyPair::boxed_from_random([7; 32]));
        let started = Instant::now();
        wait_for_quiet(&state, &mut seen);
        assert!(started.elapsed() >= QUIET_BEFORE_REFILL);
        assert_eq!(seen, 5, "the finished handshake was seen");

        // Nothing finished since: at once.
        wait_for_quiet(&state, &mut seen);
        assert_eq!(seen, 5);
    }

    #[test]
    fn empty_pool_computes_off_the_runtime_thread() {
        // Counted where it runs, not timed: a warm background worker can finish a key
        // pair before the runtime looks at the answer, so whether another task ran
        // meanwhile says nothing.
        let pool = KeyPairPool::new(0);
        let (a, b) = block_on(async {
            let a = pool.take().await.unwrap().0;
            let b = pool.take().await.unwrap().0;
            (a, b)
        });
        let runtime_thread = std::thread::current().id();
        assert!(
            !COMPUTED_ON.lock().unwrap().contains(&runtime_thread),
            "the runtime thread computed a key pair itself"
        );
        assert_ne!(a.public(), b.public());
    }
}
