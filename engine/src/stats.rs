//! Per-tunnel traffic statistics: lock-free counters bumped by the connection pumps, a
//! cheap copyable snapshot for readers, and a per-second rate history the supervisor
//! samples once a second (so no reader ever computes rates itself).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::SystemTime;

pub use crate::fault::HandshakeFailure;
use crate::fault::TunnelFault;

/// How many one-second samples of rate history a tunnel keeps (ten minutes).
pub const RATE_HISTORY_SECS: usize = 600;

/// Counters of one tunnel, shared between its tasks and any reader.
///
/// "Up" is the direction from the listening side to the target, "down" the reverse;
/// byte counts are plaintext payload, which is what the user's application sees.
#[derive(Default)]
pub struct TunnelStats {
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    active_connections: AtomicU64,
    total_connections: AtomicU64,
    handshake_failures: [AtomicU64; 5],
    target_failures: AtomicU64,
    data_rejections: AtomicU64,
    limit_reached: AtomicU64,
    waiting_clients: AtomicU64,
    reverse_ready: AtomicU64,
    reverse_unserved: AtomicU64,
    handshakes: [AtomicU64; 2],
    last_error: Mutex<Option<LastError>>,
    history: Mutex<RateHistory>,
}

/// The most recent failure of a tunnel.
#[derive(Clone, Debug, PartialEq)]
pub struct LastError {
    pub at: SystemTime,
    pub fault: TunnelFault,
}

/// A copy of a tunnel's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CounterSnapshot {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub active_connections: u64,
    pub total_connections: u64,
    /// Indexed like [`HandshakeFailure::ALL`].
    pub handshake_failures: [u64; 5],
    pub target_failures: u64,
    pub data_rejections: u64,
    pub limit_reached: u64,
    /// Clients queued for a slot while the connection limit is reached (sampled each
    /// second; 0 under the limit, and where the system cannot tell).
    pub waiting_clients: u64,
    /// A reverse tunnel's pooled connections ready for a client now.
    pub reverse_ready: u64,
    /// Clients of a reverse-in end closed because no pooled connection was ready in time.
    pub reverse_unserved: u64,
    /// Completed handshakes by key: `[current, previous]` (a previous key is accepted
    /// only during a rotation).
    pub handshakes: [u64; 2],
    pub last_error: Option<LastError>,
    /// Bytes per second over the last full second, each way.
    pub rate_up: f64,
    pub rate_down: f64,
}

impl CounterSnapshot {
    pub fn handshake_failures_for(&self, cause: HandshakeFailure) -> u64 {
        self.handshake_failures[cause.index()]
    }

    pub fn total_handshake_failures(&self) -> u64 {
        self.handshake_failures.iter().sum()
    }
}

/// One second of traffic: bytes per second each way.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RateSample {
    /// Seconds since the Unix epoch at the end of the sampled second.
    pub unix_secs: u64,
    pub up: f64,
    pub down: f64,
}

#[derive(Default)]
struct RateHistory {
    samples: VecDeque<RateSample>,
    last_totals: (u64, u64),
}

impl TunnelStats {
    pub fn add_up(&self, n: u64) {
        self.bytes_up.fetch_add(n, Relaxed);
    }

    pub fn add_down(&self, n: u64) {
        self.bytes_down.fetch_add(n, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.active_connections.fetch_add(1, Relaxed);
        self.total_connections.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.active_connections.fetch_sub(1, Relaxed);
    }

    pub fn handshake_failed(&self, cause: HandshakeFailure) {
        self.handshake_failures[cause.index()].fetch_add(1, Relaxed);
    }

    pub fn target_failed(&self) {
        self.target_failures.fetch_add(1, Relaxed);
    }

    pub fn data_rejected(&self) {
        self.data_rejections.fetch_add(1, Relaxed);
    }

    pub fn limit_was_reached(&self) {
        self.limit_reached.fetch_add(1, Relaxed);
    }

    pub fn set_waiting_clients(&self, n: u64) {
        self.waiting_clients.store(n, Relaxed);
    }

    pub fn reverse_ready_changed(&self, up: bool) {
        if up {
            self.reverse_ready.fetch_add(1, Relaxed);
        } else {
            self.reverse_ready.fetch_sub(1, Relaxed);
        }
    }

    /// A handshake completed, with the previous key (a rotation's old client) or not.
    pub fn handshake_completed(&self, previous_key: bool) {
        self.handshakes[usize::from(previous_key)].fetch_add(1, Relaxed);
    }

    pub fn reverse_unserved(&self) {
        self.reverse_unserved.fetch_add(1, Relaxed);
    }

    pub fn set_last_error(&self, fault: TunnelFault) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(LastError {
                at: SystemTime::now(),
                fault,
            });
        }
    }

    /// Records one second of traffic; called once a second by the supervisor.
    /// Returns whether anything moved, so the caller knows whether to wake a viewer.
    pub fn sample_rates(&self, now: SystemTime) -> bool {
        let totals = (self.bytes_up.load(Relaxed), self.bytes_down.load(Relaxed));
        let Ok(mut history) = self.history.lock() else {
            return false;
        };
        // Counters start at zero, so the first second counts everything so far.
        let (u, d) = history.last_totals;
        let (up, down) = (totals.0.saturating_sub(u), totals.1.saturating_sub(d));
        history.last_totals = totals;
        let unix_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if history.samples.len() == RATE_HISTORY_SECS {
            history.samples.pop_front();
        }
        let previous = history.samples.back().copied().unwrap_or_default();
        history.samples.push_back(RateSample {
            unix_secs,
            up: up as f64,
            down: down as f64,
        });
        up > 0 || down > 0 || previous.up > 0.0 || previous.down > 0.0
    }

    pub fn rate_history(&self) -> Vec<RateSample> {
        self.history
            .lock()
            .map(|h| h.samples.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let latest = self
            .history
            .lock()
            .ok()
            .and_then(|h| h.samples.back().copied())
            .unwrap_or_default();
        CounterSnapshot {
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            active_connections: self.active_connections.load(Relaxed),
            total_connections: self.total_connections.load(Relaxed),
            handshake_failures: std::array::from_fn(|i| self.handshake_failures[i].load(Relaxed)),
            target_failures: self.target_failures.load(Relaxed),
            data_rejections: self.data_rejections.load(Relaxed),
            limit_reached: self.limit_reached.load(Relaxed),
            waiting_clients: self.waiting_clients.load(Relaxed),
            reverse_ready: self.reverse_ready.load(Relaxed),
            reverse_unserved: self.reverse_unserved.load(Relaxed),
            handshakes: std::array::from_fn(|i| self.handshakes[i].load(Relaxed)),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            rate_up: latest.up,
            rate_down: latest.down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_are_differences_between_seconds() {
        let stats = TunnelStats::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert!(!stats.sample_rates(t0));
        // Traffic before the very first sample counts in the first second it is seen.
        let fresh = TunnelStats::default();
        fresh.add_up(5);
        assert!(fresh.sample_rates(t0));
        assert_eq!(fresh.snapshot().rate_up, 5.0);
        stats.add_up(300);
        stats.add_down(7);
        assert!(stats.sample_rates(t0 + Duration::from_secs(1)));
        let snap = stats.snapshot();
        assert_eq!((snap.rate_up, snap.rate_down), (300.0, 7.0));
        assert_eq!((snap.bytes_up, snap.bytes_down), (300, 7));
        // One quiet second still reports a change (the rate fell to zero), the next does not.
        assert!(stats.sample_rates(t0 + Duration::from_secs(2)));
        assert!(!stats.sample_rates(t0 + Duration::from_secs(3)));
        assert_eq!(stats.rate_history().len(), 4);
    }

    #[test]
    fn history_is_bounded() {
        let stats = TunnelStats::default();
        for s in 0..(RATE_HISTORY_SECS as u64 + 50) {
            stats.sample_rates(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        }
        let history = stats.rate_history();
        assert_eq!(history.len(), RATE_HISTORY_SECS);
        assert_eq!(history[0].unix_secs, 50);
    }

    #[test]
    fn failures_are_counted_by_cause() {
        let stats = TunnelStats::default();
        stats.handshake_failed(HandshakeFailure::WrongKey);
        stats.handshake_failed(HandshakeFailure::WrongKey);
        stats.handshake_failed(HandshakeFailure::Timeout);
        let snap = stats.snapshot();
        assert_eq!(snap.handshake_failures_for(HandshakeFailure::WrongKey), 2);
        assert_eq!(snap.handshake_failures_for(HandshakeFailure::Timeout), 1);
        assert_eq!(snap.total_handshake_failures(), 3);
    }
}
