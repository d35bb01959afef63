//! Numbers in words a person reads at a glance: byte counts, rates, durations and times
//! (local, from the system's time-zone database through jiff). One place, so every view
//! says "1.5 MiB" the same way.

use std::time::{Duration, SystemTime};

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

/// [`local_time`] for a given "now" and zone.
pub fn time_in_zone(at: SystemTime, now: SystemTime, zone: &jiff::tz::TimeZone) -> String {
    let (Ok(at), Ok(now)) = (
        jiff::Timestamp::try_from(at),
        jiff::Timestamp::try_from(now),
    ) else {
        return "(time out of range)".to_owned();
    };
    let (at, now) = (zone.to_datetime(at), zone.to_datetime(now));
    if at.date() == now.date() {
        at.strftime("%H:%M:%S").to_string()
    } else {
        at.strftime("%Y-%m-%d %H:%M:%S").to_string()
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
    }
}
