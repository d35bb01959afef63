//! Each tunnel's connection history, as the engine's audit trail reports it (one record
//! per connection when it ends: who, for how long, how much, how it ended): the newest
//! [`KEPT_PER_TUNNEL`] per tunnel, searched by words and written out as CSV.

use std::collections::{HashMap, VecDeque};

use sluice_engine::{AuditRecord, Peer};

/// Connections kept per tunnel; older ones make room (the count of all is still exact in
/// the traffic view).
pub const KEPT_PER_TUNNEL: usize = 2000;

/// The history of every tunnel, by name.
#[derive(Default)]
pub struct ConnectionLog {
    by_tunnel: HashMap<String, VecDeque<AuditRecord>>,
}

impl ConnectionLog {
    pub fn record(&mut self, record: AuditRecord) {
        let history = self.by_tunnel.entry(record.tunnel.clone()).or_default();
        if history.len() == KEPT_PER_TUNNEL {
            history.pop_front();
        }
        history.push_back(record);
    }

    /// A tunnel's connections, newest first.
    pub fn newest_first(&self, tunnel: &str) -> impl Iterator<Item = &AuditRecord> {
        self.by_tunnel
            .get(tunnel)
            .into_iter()
            .flat_map(|history| history.iter().rev())
    }

    pub fn len(&self, tunnel: &str) -> usize {
        self.by_tunnel.get(tunnel).map_or(0, VecDeque::len)
    }

    pub fn forget(&mut self, tunnel: &str) {
        self.by_tunnel.remove(tunnel);
    }
}

/// Whether a connection matches what was typed in the search box: every word (ignoring
/// case) somewhere in its audit line, which names the time (UTC), the peer's address and
/// port, the client a PROXY header named, the outcome and its cause (`wrong_key`,
/// `outcome=ok`, `203.0.113.9`). An empty search matches everything.
pub fn matches(record: &AuditRecord, search: &str) -> bool {
    let line = record.to_string().to_lowercase();
    search
        .split_whitespace()
        .all(|word| line.contains(&word.to_lowercase()))
}

/// The records as CSV (RFC 4180, a header line first, CRLF line ends): the audit log's
/// fields, one column each, times in UTC.
pub fn csv<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> String {
    let mut out = String::from(
        "ended_utc,tunnel,peer,peer_port,client,client_port,duration_s,bytes_up,bytes_down,outcome,cause\r\n",
    );
    for record in records {
        let (peer, peer_port) = match record.peer {
            Peer::Ip(address) => (address.ip().to_string(), address.port().to_string()),
            Peer::LocalSocket => ("local".to_owned(), String::new()),
            Peer::Unknown => ("unknown".to_owned(), String::new()),
        };
        let (client, client_port) = record.client.map_or((String::new(), String::new()), |c| {
            (c.ip().to_string(), c.port().to_string())
        });
        let (outcome, cause) = record.outcome.words();
        let fields = [
            utc(record.ended),
            record.tunnel.clone(),
            peer,
            peer_port,
            client,
            client_port,
            format!("{:.3}", record.duration.as_secs_f64()),
            record.bytes_up.to_string(),
            record.bytes_down.to_string(),
            outcome.to_owned(),
            cause.unwrap_or_default().to_owned(),
        ];
        let row: Vec<String> = fields.iter().map(|f| field(f)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV field: quoted when it holds a comma, quote or line break, quotes doubled. A
/// field a spreadsheet would run as a formula (a tunnel named `=HYPERLINK(…)`) gets a
/// leading apostrophe, as OWASP advises for CSV meant for spreadsheets.
fn field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// RFC 3339 in UTC with milliseconds, as the audit log writes it.
fn utc(at: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(at)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use sluice_engine::{AuditOutcome, HandshakeFailure};

    use super::*;

    fn record(tunnel: &str, peer: &str, outcome: AuditOutcome) -> AuditRecord {
        AuditRecord {
            // 2026-12-04T15:04:05.123Z
            ended: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_396_645_123),
            tunnel: tunnel.into(),
            peer: Peer::Ip(peer.parse().unwrap()),
            client: None,
            duration: Duration::from_millis(1204),
            bytes_up: 512,
            bytes_down: 20480,
            outcome,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_per_tunnel_and_lists_them_newest_first() {
        let mut log = ConnectionLog::default();
        for port in 0..(KEPT_PER_TUNNEL as u16 + 5) {
            log.record(record("a", &format!("192.0.2.1:{port}"), AuditOutcome::Ok));
        }
        log.record(record("b", "192.0.2.2:1", AuditOutcome::Ok));
        assert_eq!(log.len("a"), KEPT_PER_TUNNEL);
        let ports: Vec<String> = log
            .newest_first("a")
            .map(|r| r.peer.to_string())
            .take(2)
            .collect();
        let last = KEPT_PER_TUNNEL as u16 + 4;
        assert_eq!(
            ports,
            [
                format!("192.0.2.1:{last}"),
                format!("192.0.2.1:{}", last - 1)
            ]
        );
        log.forget("a");
        assert_eq!(log.len("a"), 0);
        assert_eq!(log.len("b"), 1);
    }

    #[test]
    fn every_searched_word_must_match_ignoring_case() {
        let failed = record(
            "redis",
            "192.0.2.7:4000",
            AuditOutcome::HandshakeFailed(HandshakeFailure::WrongKey),
        );
        assert!(matches(&failed, ""));
        assert!(matches(&failed, "WRONG_KEY"));
        assert!(matches(&failed, "192.0.2.7 handshake_failed"));
        assert!(!matches(&failed, "192.0.2.7 outcome=ok"));
        assert!(!matches(
            &record("redis", "192.0.2.8:1", AuditOutcome::Ok),
            "192.0.2.7"
        ));
    }

    #[test]
    fn csv_has_a_header_one_row_per_record_and_quotes_what_needs_it() {
        let mut failed = record(
            "db, \"eu\"",
            "[2001:db8::7]:53211",
            AuditOutcome::HandshakeFailed(HandshakeFailure::WrongKey),
        );
        failed.client = Some("203.0.113.9:4711".parse().unwrap());
        let formula = record("=HYPERLINK(\"x\")", "192.0.2.1:1", AuditOutcome::Ok);
        let text = csv([&failed, &formula]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "ended_utc,tunnel,peer,peer_port,client,client_port,duration_s,bytes_up,bytes_down,outcome,cause"
        );
        assert_eq!(
            lines[1],
            r#"2026-12-04T15:04:05.123Z,"db, ""eu""",2001:db8::7,53211,203.0.113.9,4711,1.204,512,20480,handshake_failed,wrong_key"#
        );
        assert!(
            lines[2].starts_with(r#"2026-12-04T15:04:05.123Z,"'=HYPERLINK(""x"")",192.0.2.1,1,,,"#)
        );
        assert!(lines[2].ends_with(",ok,"));
        assert_eq!(lines[3], "");
        assert_eq!(lines.len(), 4);
    }
}
