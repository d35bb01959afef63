//! The audit trail: one record per connection when it ends (who, for how long, how much,
//! how it ended), never throttled, and its line in the stable format `sluiced
//! --audit-log` writes and fail2ban's filter reads (docs/AUDIT.md).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::fault::HandshakeFailure;
use crate::net::stream::Peer;

/// How a connection ended, for the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Both directions ended in order (a health check answered counts too).
    Ok,
    /// The handshake failed, for this cause.
    HandshakeFailed(HandshakeFailure),
    /// The target (or a reverse tunnel's far service) could not be reached.
    TargetUnreachable,
    /// A reverse-in end had no pooled connection ready in time.
    NoReverseConnection,
    /// A PROXY protocol header was missing or malformed.
    ProxyRefused,
    /// A packet failed authentication.
    DataRejected,
    /// A socket failed in the middle, or a reverse connection broke.
    Error,
    /// The tunnel stopped and closed it.
    Stopped,
}

impl AuditOutcome {
    /// The outcome and, after a failed handshake, its cause, as the audit line writes
    /// them (`outcome=handshake_failed cause=wrong_key`): stable words for filters,
    /// spreadsheets and searches.
    pub fn words(self) -> (&'static str, Option<&'static str>) {
        match self {
            AuditOutcome::Ok => ("ok", None),
            AuditOutcome::HandshakeFailed(cause) => {
                ("handshake_failed", Some(cause.metric_label()))
            }
            AuditOutcome::TargetUnreachable => ("target_unreachable", None),
            AuditOutcome::NoReverseConnection => ("no_reverse_connection", None),
            AuditOutcome::ProxyRefused => ("proxy_header_refused", None),
            AuditOutcome::DataRejected => ("data_rejected", None),
            AuditOutcome::Error => ("error", None),
            AuditOutcome::Stopped => ("stopped", None),
        }
    }
}

/// One connection, as it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub ended: SystemTime,
    pub tunnel: String,
    pub peer: Peer,
    /// The client's address a PROXY protocol header named, if one did.
    pub client: Option<SocketAddr>,
    pub duration: Duration,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub outcome: AuditOutcome,
}

/// The line, without its line feed:
/// `2026-12-04T15:04:05.123Z tunnel="redis" peer=192.0.2.7 port=53211 client=- duration=1.204 up=512 down=20480 outcome=ok`,
/// and ` cause=wrong_key` after a failed handshake. Addresses are written bare (an IPv6
/// one without brackets) so a filter matches `peer=<HOST> `; `-` stands for none.
impl fmt::Display for AuditRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_utc(f, self.ended)?;
        f.write_str(" tunnel=\"")?;
        for c in self.tunnel.chars() {
            match c {
                '"' | '\\' => write!(f, "\\{c}")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\" ")?;
        match self.peer {
            Peer::Ip(address) => write!(f, "peer={} port={}", address.ip(), address.port())?,
            Peer::LocalSocket => f.write_str("peer=local port=-")?,
            Peer::Unknown => f.write_str("peer=unknown port=-")?,
        }
        match self.client {
            Some(client) => write!(f, " client={} client_port={}", client.ip(), client.port())?,
            None => f.write_str(" client=- client_port=-")?,
        }
        let (outcome, cause) = self.outcome.words();
        write!(
            f,
            " duration={:.3} up={} down={} outcome={outcome}",
            self.duration.as_secs_f64(),
            self.bytes_up,
            self.bytes_down
        )?;
        if let Some(cause) = cause {
            write!(f, " cause={cause}")?;
        }
        Ok(())
    }
}

/// RFC 3339 in UTC with milliseconds, from the proleptic Gregorian calendar (days since
/// the epoch to a civil date: Howard Hinnant's algorithm).
fn write_utc(f: &mut fmt::Formatter<'_>, at: SystemTime) -> fmt::Result {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    write!(
        f,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: AuditOutcome) -> AuditRecord {
        AuditRecord {
            // 2026-12-04T15:04:05.123Z
            ended: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_396_645_123),
            tunnel: r#"redis "prod" \ eu"#.into(),
            peer: Peer::Ip("[2001:db8::7]:53211".parse().unwrap()),
            client: Some("203.0.113.9:4711".parse().unwrap()),
            duration: Duration::from_millis(1204),
            bytes_up: 512,
            bytes_down: 20480,
            outcome,
        }
    }

    #[test]
    fn the_line_is_stable() {
        assert_eq!(
            record(AuditOutcome::Ok).to_string(),
            r#"2026-12-04T15:04:05.123Z tunnel="redis \"prod\" \\ eu" peer=2001:db8::7 port=53211 client=203.0.113.9 client_port=4711 duration=1.204 up=512 down=20480 outcome=ok"#
        );
        let mut failed = record(AuditOutcome::HandshakeFailed(HandshakeFailure::WrongKey));
        failed.peer = Peer::Ip("192.0.2.7:1".parse().unwrap());
        failed.client = None;
        assert!(failed.to_string().ends_with(
            " peer=192.0.2.7 port=1 client=- client_port=- duration=1.204 up=512 down=20480 outcome=handshake_failed cause=wrong_key"
        ));
    }

    #[test]
    fn dates_are_the_calendar_s() {
        let line = |secs: u64| {
            let mut r = record(AuditOutcome::Ok);
            r.ended = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            r.to_string()[..24].to_owned()
        };
        assert_eq!(line(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(line(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(line(4_107_542_399), "2100-02-28T23:59:59.000Z");
    }
}
