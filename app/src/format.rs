//! Numbers in words a person reads at a glance: byte counts, rates, durations and times
//! (local, from the system's time-zone database through jiff), and a far end's health in
//! a few words. One place, so every view (and the tray, and notifications) says "1.5 MiB"
//! or "nothing listening at db:8025" the same way.

use std::time::{Duration, SystemTime};

use sluice_engine::{DownCause, TargetReport};

/// 1536 → "1.5 KiB"; binary units, one decimal above bytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Bytes per second, as "12.0 KiB/s".
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec.max(0.0).round() as u64))
}

/// 75 s → "1 min 15 s"; sub-second durations in milliseconds.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{} ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{:.1} s", d.as_secs_f64()),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min"),
    }
}

/// A moment in the system's local time: "HH:MM:SS" today, "YYYY-MM-DD HH:MM:SS" on
/// another day.
pub fn local_time(at: SystemTime) -> String {
    time_in_zone(at, SystemTime::now(), &jiff::tz::TimeZone::system())
}

/// A moment to the minute, for "down since 14:02": "HH:MM" today, "YYYY-MM-DD HH:MM" on
/// another day.
pub fn local_minute(at: SystemTime) -> String {
    clock_in_zone(at, SystemTime::now(), &jiff::tz::TimeZone::system(), false)
}

/// Today's date in the system's local time, "YYYY-MM-DD".
pub fn local_date() -> String {
    jiff::tz::TimeZone::system()
        .to_datetime(jiff::Timestamp::now())
        .date()
        .to_string()
}

/// [`local_time`] for a given "now" and zone.
pub fn time_in_zone(at: SystemTime, now: SystemTime, zone: &jiff::tz::TimeZone) -> String {
    clock_in_zone(at, now, zone, true)
}

fn clock_in_zone(
    at: SystemTime,
    now: SystemTime,
    zone: &jiff::tz::TimeZone,
    seconds: bool,
) -> String {
    let (Ok(at), Ok(now)) = (
        jiff::Timestamp::try_from(at),
        jiff::Timestamp::try_from(now),
    ) else {
        return "(time out of range)".to_owned();
    };
    let (at, now) = (zone.to_datetime(at), zone.to_datetime(now));
    let clock = if seconds { "%H:%M:%S" } else { "%H:%M" };
    if at.date() == now.date() {
        at.strftime(clock).to_string()
    } else {
        at.strftime(&format!("%Y-%m-%d {clock}")).to_string()
    }
}

/// Why a far end is down, with where when the cause is about reaching it: "nothing
/// listening at db.example:8025", "wrong key". `target` is the tunnel's target (its far
/// end's address).
pub fn down_cause_at(cause: DownCause, target: &str) -> String {
    match cause {
        DownCause::NothingListening | DownCause::Unreachable | DownCause::TimedOut => {
            format!("{} at {target}", cause.label())
        }
        DownCause::NotResolved => format!("{} ({target})", cause.label()),
        DownCause::WrongKey
        | DownCause::ModeMismatch
        | DownCause::FarTargetDown
        | DownCause::NotConnected => cause.label().to_owned(),
    }
}

/// What to do about a far end that is down, by cause: the second half of a notification.
pub fn down_advice(cause: DownCause) -> &'static str {
    match cause {
        DownCause::NotResolved => {
            "Check the far end's host name in the tunnel's target, and this machine's DNS."
        }
        DownCause::NothingListening => {
            "Start spiped or sluiced on the far end; if Sluice set it up, Check in the tunnel's Far end tab offers Repair."
        }
        DownCause::Unreachable => {
            "Check the network between here and the far end (a VPN, a route, a firewall)."
        }
        DownCause::TimedOut => {
            "Check that the far end's machine is up and that a firewall lets its port through."
        }
        DownCause::WrongKey => {
            "Both ends need the same key: compare the fingerprints, or use Repair in the tunnel's Far end tab to send this key again."
        }
        DownCause::ModeMismatch => {
            "Give both ends the same forward secrecy and handshake settings (the far end's spiped -f/-g, sluiced --x25519)."
        }
        DownCause::FarTargetDown => {
            "The far end answers, but its service does not: start the service the far end forwards to."
        }
        DownCause::NotConnected => {
            "Start the dialing end (sluiced --reverse-out) on the machine with the service, with the same key, and check that it reaches this machine."
        }
    }
}

/// What a Sluice far end says of its own target, in a sentence; `None` for one that
/// says nothing (stock spiped).
pub fn far_target(report: Option<TargetReport>) -> &'static str {
    match report {
        None => "the far end does not say whether it reaches its target (stock spiped)",
        Some(TargetReport::Unknown) => "the far end has not tried its target yet",
        Some(TargetReport::Up { .. }) => "the far end reaches its target",
        Some(TargetReport::Down { .. }) => "the far end cannot reach its target",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(16 * 1024 * 1024), "16.0 MiB");
        assert_eq!(rate(2048.4), "2.0 KiB/s");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_millis(12)), "12 ms");
        assert_eq!(duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(duration(Duration::from_secs(75)), "1 min 15 s");
        assert_eq!(duration(Duration::from_secs(7300)), "2 h 1 min");
    }

    #[test]
    fn local_times_carry_the_date_only_when_not_today() {
        let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        // 2024-07-01 22:30:00 UTC is 00:30 on July 2nd in Berlin (summer time).
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_719_873_000);
        assert_eq!(
            time_in_zone(at, at + Duration::from_secs(60), &zone),
            "00:30:00"
        );
        assert_eq!(
            time_in_zone(at, at + Duration::from_secs(86_400), &zone),
            "2024-07-02 00:30:00"
        );
        assert_eq!(time_in_zone(at, at, &jiff::tz::TimeZone::UTC), "22:30:00");
        assert_eq!(
            clock_in_zone(at, at, &jiff::tz::TimeZone::UTC, false),
            "22:30"
        );
        assert_eq!(
            clock_in_zone(at, at + Duration::from_secs(86_400), &zone, false),
            "2024-07-02 00:30"
        );
    }

    #[test]
    fn down_causes_say_where_when_it_is_about_reaching_the_far_end() {
        assert_eq!(
            down_cause_at(DownCause::NothingListening, "db.example:8025"),
            "nothing listening at db.example:8025"
        );
        assert_eq!(down_cause_at(DownCause::WrongKey, "db:8025"), "wrong key");
        assert_eq!(
            down_cause_at(DownCause::NotResolved, "db.example:8025"),
            "name does not resolve (db.example:8025)"
        );
        for cause in DownCause::ALL {
            assert!(down_advice(cause).ends_with('.'));
        }
    }
}
