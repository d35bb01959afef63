//! `--metrics ADDR`: the engine's counters for Prometheus, in the OpenMetrics text format
//! (written by the `prometheus-client` crate), served at `/metrics` over plain HTTP/1.1.
//! Read-only, bounded, and nothing secret: tunnel names and numbers only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use sluice_engine::{Address, HandshakeFailure, StatusReader, TunnelStatus};

/// Scrapes served at once; more wait in the listen queue.
const MAX_CONCURRENT_SCRAPES: usize = 8;
/// A request head larger than this is not a scrape.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A client that has not sent its request head by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
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

fn tunnel_metrics() -> [TunnelMetric; 9] {
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
                let labels = [("tunnel", status.name.as_str())];
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
                    ("tunnel", status.name.as_str()),
                    ("cause", cause.metric_label()),
                ];
                let count = status.counters.handshake_failures_for(cause);
                ConstCounter::new(count).encode(failures.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
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

/// Serves scrapes until the runtime shuts down. Anything but `GET /metrics` gets a short
/// 404 or 405; a slow or oversized request is dropped.
pub async fn serve(listener: TcpListener, collector: SluiceCollector) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or similar: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let collector = collector.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &collector)).await;
            drop(slot);
        });
    }
}

async fn answer(mut stream: TcpStream, collector: &SluiceCollector) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let response = respond(&head, || collector.render());
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The HTTP response to one request head (`render` is called only for a scrape).
fn respond(head: &[u8], render: impl FnOnce() -> String) -> Vec<u8> {
    let request_line = head
        .split(|&b| b == b'\r')
        .next()
        .and_then(|line| std::str::from_utf8(line).ok())
        .unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
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

    #[test]
    fn a_scrape_gets_openmetrics_and_anything_else_a_short_refusal() {
        let ok = text_of(&respond(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
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
