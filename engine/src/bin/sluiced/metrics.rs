//! `--metrics ADDR`: the engine's counters for Prometheus, in the OpenMetrics text format
//! (written by the `prometheus-client` crate), served at `/metrics` over plain HTTP/1.1.
//! Read-only, bounded, and nothing secret: tunnel names and numbers only.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use sluice_engine::{Address, HandshakeFailure, Health, StatusReader, TunnelStatus};

/// Connections served at once. When all are taken, the oldest is dropped for the newest:
/// idle clients cannot hold the endpoint, and a scrape sends its request at once.
const MAX_CONNECTIONS: usize = 64;
/// A request head larger than this is not a scrape.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A client that has not sent its whole request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Writing the answer to a client that does not read it ends after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The numbers, gathered afresh from the engine's snapshots at each scrape.
#[derive(Clone)]
pub struct SluiceCollector {
    statuses: StatusReader,
    started: Instant,
}

impl std::fmt::Debug for SluiceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SluiceCollector").finish_non_exhaustive()
    }
}

impl SluiceCollector {
    pub fn new(statuses: StatusReader) -> SluiceCollector {
        SluiceCollector {
            statuses,
            started: Instant::now(),
        }
    }

    /// The whole exposition, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a
        // descriptor, and then the scrape shows what was written before it.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

/// A per-tunnel metric: its name (without unit and `_total`), help, unit, type, and how
/// to read it from a status.
struct TunnelMetric {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    value: fn(&TunnelStatus) -> u64,
}

fn tunnel_metrics() -> [TunnelMetric; 11] {
    use MetricType::{Counter, Gauge};
    [
        TunnelMetric {
            name: "sluice_tunnel_received",
            help: "Plaintext bytes from the listening side towards the target",
            unit: Some(Unit::Bytes),
            kind: Counter,
            value: |s| s.counters.bytes_up,
        },
        TunnelMetric {
            name: "sluice_tunnel_sent",
            help: "Plaintext bytes from the target back to the listening side",
            unit: Some(Unit::Bytes),
            kind: Counter,
            value: |s| s.counters.bytes_down,
        },
        TunnelMetric {
            name: "sluice_tunnel_connections",
            help: "Connections accepted",
            unit: None,
            kind: Counter,
            value: |s| s.counters.total_connections,
        },
        TunnelMetric {
            name: "sluice_tunnel_active_connections",
            help: "Connections open now",
            unit: None,
            kind: Gauge,
            value: |s| s.counters.active_connections,
        },
        TunnelMetric {
            name: "sluice_tunnel_target_unreachable",
            help: "Connections whose target could not be reached",
            unit: None,
            kind: Counter,
            value: |s| s.counters.target_failures,
        },
        TunnelMetric {
            name: "sluice_tunnel_rejected_packets",
            help: "Packets that failed authentication (the connection was closed)",
            unit: None,
            kind: Counter,
            value: |s| s.counters.data_rejections,
        },
        TunnelMetric {
            name: "sluice_tunnel_connection_limit",
            help: "The connection limit in force (0: unlimited)",
            unit: None,
            kind: Gauge,
            value: |s| u64::from(s.max_connections),
        },
        TunnelMetric {
            name: "sluice_tunnel_connection_limit_reached",
            help: "Times the connection limit was reached",
            unit: None,
            kind: Counter,
            value: |s| s.counters.limit_reached,
        },
        TunnelMetric {
            name: "sluice_tunnel_waiting_clients",
            help: "Clients queued for a slot while the connection limit is reached",
            unit: None,
            kind: Gauge,
            value: |s| s.counters.waiting_clients,
        },
        TunnelMetric {
            name: "sluice_tunnel_reverse_ready",
            help: "A reverse tunnel's pooled connections ready for a client",
            unit: None,
            kind: Gauge,
            value: |s| s.counters.reverse_ready,
        },
        TunnelMetric {
            name: "sluice_tunnel_reverse_unserved",
            help: "Clients of a reverse-in end closed because no pooled connection was ready in time",
            unit: None,
            kind: Counter,
            value: |s| s.counters.reverse_unserved,
        },
    ]
}

impl Collector for SluiceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let statuses = self.statuses.statuses();

        let info = ConstGauge::new(1_i64);
        let mut build = encoder.encode_descriptor(
            "sluice_build_info",
            "The sluiced build (value 1), labelled with its version",
            None,
            info.metric_type(),
        )?;
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        info.encode(build.encode_family(&version)?)?;

        let uptime = ConstGauge::new(self.started.elapsed().as_secs_f64());
        let metric = encoder.encode_descriptor(
            "sluice_uptime",
            "Time since sluiced started",
            Some(&Unit::Seconds),
            uptime.metric_type(),
        )?;
        uptime.encode(metric)?;

        for metric in tunnel_metrics() {
            let mut family = encoder.encode_descriptor(
                metric.name,
                metric.help,
                metric.unit.as_ref(),
                metric.kind,
            )?;
            for status in &statuses {
                let labels = [("tunnel", LabelValue(&status.name))];
                let value = (metric.value)(status);
                let sample = family.encode_family(&labels)?;
                match metric.kind {
                    MetricType::Gauge => {
                        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(sample)?
                    }
                    _ => ConstCounter::new(value).encode(sample)?,
                }
            }
        }

        let mut failures = encoder.encode_descriptor(
            "sluice_tunnel_handshake_failures",
            "Handshakes that failed, by cause",
            None,
            MetricType::Counter,
        )?;
        for status in &statuses {
            for cause in HandshakeFailure::ALL {
                let labels = [
                    ("tunnel", LabelValue(&status.name)),
                    ("cause", LabelValue(cause.metric_label())),
                ];
                let count = status.counters.handshake_failures_for(cause);
                ConstCounter::new(count).encode(failures.encode_family(&labels)?)?;
            }
        }
        let mut by_key = encoder.encode_descriptor(
            "sluice_handshakes",
            "Handshakes completed, by the key the peer used (previous: a rotation's old key)",
            None,
            MetricType::Counter,
        )?;
        for status in &statuses {
            for (i, key) in ["current", "previous"].into_iter().enumerate() {
                let labels = [
                    ("tunnel", LabelValue(&status.name)),
                    ("key", LabelValue(key)),
                ];
                let count = status.counters.handshakes[i];
                ConstCounter::new(count).encode(by_key.encode_family(&labels)?)?;
            }
        }
        encode_far_end_health(&mut encoder, &statuses)
    }
}

/// The far ends' health, for tunnels that have checked theirs: up or not, the last good
/// check's handshake time, and the cause while down (one sample, the current cause).
fn encode_far_end_health(
    encoder: &mut DescriptorEncoder,
    statuses: &[TunnelStatus],
) -> Result<(), std::fmt::Error> {
    let checked: Vec<_> = statuses
        .iter()
        .filter(|s| s.health != Health::Unknown)
        .collect();
    let mut up = encoder.encode_descriptor(
        "sluice_far_end_up",
        "Whether the tunnel's far end answered its last check (1) or not (0)",
        None,
        MetricType::Gauge,
    )?;
    for status in &checked {
        let value = i64::from(matches!(status.health, Health::Up { .. }));
        let labels = [("tunnel", LabelValue(&status.name))];
        ConstGauge::new(value).encode(up.encode_family(&labels)?)?;
    }
    let mut round_trip = encoder.encode_descriptor(
        "sluice_far_end_check",
        "The handshake time of the last check that reached the far end",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for status in &checked {
        if let Some(seconds) = status.last_round_trip {
            let labels = [("tunnel", LabelValue(&status.name))];
            let sample = round_trip.encode_family(&labels)?;
            ConstGauge::new(seconds.as_secs_f64()).encode(sample)?;
        }
    }
    let mut cause = encoder.encode_descriptor(
        "sluice_far_end_down_cause",
        "Why the far end is down (1 for the current cause; no sample while it is up)",
        None,
        MetricType::Gauge,
    )?;
    for status in &checked {
        if let Some(down) = status.health.down_cause() {
            let labels = [
                ("tunnel", LabelValue(&status.name)),
                ("cause", LabelValue(down.metric_label())),
            ];
            ConstGauge::new(1_i64).encode(cause.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// A label value as OpenMetrics writes it: backslash, `"` and line feed escaped, so a tunnel
/// named `a",cause="x` cannot forge labels or break the scrape (prometheus-client writes
/// label values as they are).
#[derive(Clone, Copy, Debug)]
struct LabelValue<'a>(&'a str);

impl EncodeLabelValue for LabelValue<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write_escaped(encoder, self.0)
    }
}

fn write_escaped(out: &mut impl std::fmt::Write, value: &str) -> std::fmt::Result {
    for c in value.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '"' => out.write_str("\\\"")?,
            '\n' => out.write_str("\\n")?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// What to warn about an endpoint bound at `bound`: anything but loopback is open to
/// whoever reaches it.
pub fn exposure_warning(bound: std::net::SocketAddr) -> Option<String> {
    (!bound.ip().is_loopback()).then(|| format!(
        "metrics at {bound} can be read by anyone who reaches that address (tunnel names and traffic, no authentication): bind them to 127.0.0.1, or keep the port on a management network behind a firewall"
    ))
}

/// Binds where metrics are served (a TCP address; host names resolve here).
pub async fn bind(address: &Address) -> std::io::Result<TcpListener> {
    match address {
        Address::Ip(socket) => TcpListener::bind(socket).await,
        Address::Host { name, port } => TcpListener::bind((name.as_str(), *port)).await,
        Address::Unix(path) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a TCP address", path.display()),
        )),
    }
}

/// The `Host` names a scrape may carry, besides IP literals and `localhost`: the name the
/// endpoint was given (`--metrics NAME:PORT`) and this machine's name. A web page that
/// rebinds its own DNS name to this address (DNS rebinding) sends its own name, and is
/// refused, so a browser on this machine cannot read tunnel names.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    pub fn for_address(address: &Address, this_host: &str) -> AllowedHosts {
        let mut names = vec![this_host.to_ascii_lowercase()];
        // The short name, as Prometheus configs often use it.
        if let Some((short, _)) = this_host.split_once('.') {
            names.push(short.to_ascii_lowercase());
        }
        if let Address::Host { name, .. } = address {
            names.push(name.to_ascii_lowercase());
        }
        AllowedHosts { names }
    }

    /// Whether a request's `Host` header value (host, optionally `:port`) is allowed.
    fn allows(&self, host_header: &str) -> bool {
        let host = host_header.trim();
        let name = match host.strip_prefix('[') {
            // [v6]:port
            Some(rest) => {
                return rest
                    .split(']')
                    .next()
                    .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
            }
            None => host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            }),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || self.names.contains(&name)
    }
}

/// Serves scrapes until the runtime shuts down. Anything but `GET /metrics` gets a short
/// 404 or 405, a request for another host name 403; a slow or oversized request is
/// dropped.
pub async fn serve(listener: TcpListener, collector: SluiceCollector, hosts: AllowedHosts) {
    let hosts = Arc::new(hosts);
    let mut open: VecDeque<tokio::task::AbortHandle> = VecDeque::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or similar: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        open.retain(|task| !task.is_finished());
        if open.len() >= MAX_CONNECTIONS
            && let Some(oldest) = open.pop_front()
        {
            oldest.abort();
        }
        let collector = collector.clone();
        let hosts = Arc::clone(&hosts);
        let task = tokio::spawn(async move {
            let _ = answer(stream, &collector, &hosts).await;
        });
        open.push_back(task.abort_handle());
    }
}

async fn answer(
    mut stream: TcpStream,
    collector: &SluiceCollector,
    hosts: &AllowedHosts,
) -> std::io::Result<()> {
    let Ok(Some(head)) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await else {
        return Ok(());
    };
    let response = respond(&head, hosts, || collector.render());
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or(Ok(()))
}

/// The request head, up to its blank line; `None` if the client closed first or sent more
/// than [`MAX_REQUEST_HEAD`] bytes without one.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

/// The HTTP response to one request head (`render` is called only for a scrape).
fn respond(head: &[u8], hosts: &AllowedHosts, render: impl FnOnce() -> String) -> Vec<u8> {
    let text = std::str::from_utf8(head).unwrap_or("");
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let host = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("host").then_some(value)
    });
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        _ if host.is_some_and(|h| !hosts.allows(h)) => (
            "403 Forbidden",
            "text/plain; charset=utf-8",
            "sluiced answers only for its own address: scrape it by IP address, as localhost, by this machine's name or by the name given in its metrics address\n".to_owned(),
        ),
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, render()),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "sluiced serves its metrics at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics is served\n".to_owned(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(response: &[u8]) -> String {
        String::from_utf8(response.to_vec()).unwrap()
    }

    fn respond(head: &[u8], render: impl FnOnce() -> String) -> Vec<u8> {
        let hosts = AllowedHosts::for_address(&"[127.0.0.1]:9185".parse().unwrap(), "box.lan");
        super::respond(head, &hosts, render)
    }

    #[test]
    fn only_requests_for_this_machine_are_answered() {
        let hosts = AllowedHosts::for_address(&"metrics.example:9185".parse().unwrap(), "Box.lan");
        for ok in [
            "127.0.0.1:9185",
            "127.0.0.1",
            "[::1]:9185",
            "10.1.2.3",
            "localhost:9185",
            "LOCALHOST",
            "box.lan:9185",
            "box",
            "metrics.example:9185",
            "metrics.example.",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example:9185",
            "rebind.attacker.test",
            "[not-an-ip]:1",
            "box.lan.evil.example",
            "",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let forbidden = super::respond(
            b"GET /metrics HTTP/1.1\r\nHost: rebind.attacker.test:9185\r\n\r\n",
            &hosts,
            || panic!("no scrape for a foreign host"),
        );
        assert!(text_of(&forbidden).starts_with("HTTP/1.1 403 Forbidden"));
        // HTTP/1.0 clients may send no Host at all; browsers always send one.
        let bare = super::respond(b"GET /metrics HTTP/1.0\r\n\r\n", &hosts, || {
            "# EOF\n".into()
        });
        assert!(text_of(&bare).starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn an_endpoint_off_loopback_is_warned_about() {
        for open in ["0.0.0.0:9185", "[::]:9185", "10.0.0.5:9185"] {
            let warning = exposure_warning(open.parse().unwrap()).unwrap();
            assert!(warning.contains("no authentication"), "{warning}");
        }
        for private in ["127.0.0.1:9185", "[::1]:9185", "127.0.0.2:1"] {
            assert_eq!(exposure_warning(private.parse().unwrap()), None);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        write_escaped(&mut out, "a\",cause=\"x \\ \n ✔").unwrap();
        assert_eq!(out, "a\\\",cause=\\\"x \\\\ \\n ✔");
    }

    #[test]
    fn a_scrape_gets_openmetrics_and_anything_else_a_short_refusal() {
        let ok = text_of(&respond(
            b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9185\r\n\r\n",
            || "# EOF\n".into(),
        ));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE) && ok.contains("Content-Length: 6\r\n"));
        assert!(ok.ends_with("\r\n\r\n# EOF\n"));

        let head = text_of(&respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", || {
            "# EOF\n".into()
        }));
        assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"));

        let elsewhere = respond(b"GET / HTTP/1.1\r\n\r\n", || panic!("not a scrape"));
        assert!(text_of(&elsewhere).starts_with("HTTP/1.1 404 Not Found"));
        let post = respond(b"POST /metrics HTTP/1.1\r\n\r\n", || panic!("not a scrape"));
        assert!(text_of(&post).starts_with("HTTP/1.1 405"));
        let garbage = respond(b"\xff\xfe\r\n\r\n", || panic!("not a scrape"));
        assert!(text_of(&garbage).starts_with("HTTP/1.1 405"));
    }
}
