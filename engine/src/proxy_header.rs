//! The PROXY protocol header (HAProxy's specification, versions 1 and 2), sans-I/O: what a
//! tunnel writes at the start of a plaintext stream so the service behind it sees the real
//! client's address, and what it reads from a load balancer in front of it. Parsing is
//! bounded and strict: a malformed or oversized header is refused, never guessed at.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Which version of the header to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProxyVersion {
    /// Text: `PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n`.
    V1,
    /// Binary, with a 16-byte fixed part.
    V2,
}

impl fmt::Display for ProxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        })
    }
}

/// The v2 signature, the first 12 bytes of every v2 header.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// The longest v1 header the specification allows, CRLF included.
const V1_MAX: usize = 107;
/// The longest v2 header this reads: the addresses of any family plus room for TLVs
/// (a load balancer's own additions); anything longer is refused.
pub const V2_MAX: usize = 16 + 512;
/// The most bytes a header can take; a reader needs no more to decide.
pub const MAX_HEADER: usize = V2_MAX;

/// The connection a header describes: the client's address and the address it
/// connected to. `None`: the sender did not say (v1 UNKNOWN, v2 LOCAL or UNSPEC).
pub type Endpoints = Option<(SocketAddr, SocketAddr)>;

/// Writes a header for `endpoints` (`None`: the connection's addresses are not known,
/// e.g. a UNIX socket client).
pub fn encode(version: ProxyVersion, endpoints: Endpoints) -> Vec<u8> {
    // Both addresses in one family: an IPv4 one beside an IPv6 one is written mapped.
    let endpoints = endpoints.map(
        |(source, destination)| match (source.ip(), destination.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                (source, destination)
            }
            _ => (mapped(source), mapped(destination)),
        },
    );
    match version {
        ProxyVersion::V1 => match endpoints {
            None => b"PROXY UNKNOWN\r\n".to_vec(),
            Some((source, destination)) => {
                let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
                format!(
                    "PROXY {family} {} {} {} {}\r\n",
                    source.ip(),
                    destination.ip(),
                    source.port(),
                    destination.port()
                )
                .into_bytes()
            }
        },
        ProxyVersion::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            match endpoints {
                None => out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]),
                Some((source, destination)) => {
                    let (family, addresses): (u8, Vec<u8>) = match (source, destination) {
                        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                            (0x11, [s.ip().octets(), d.ip().octets()].concat())
                        }
                        (s, d) => (0x21, [v6_octets(s.ip()), v6_octets(d.ip())].concat()),
                    };
                    let mut body = addresses;
                    body.extend_from_slice(&source.port().to_be_bytes());
                    body.extend_from_slice(&destination.port().to_be_bytes());
                    out.extend_from_slice(&[0x21, family]);
                    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
                    out.extend_from_slice(&body);
                }
            }
            out
        }
    }
}

fn mapped(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(v6(address.ip())), address.port())
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    v6(ip).octets()
}

/// What the start of a stream holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes, describing `endpoints`.
    Header { len: usize, endpoints: Endpoints },
    /// The start of a header: more bytes are needed (at most [`MAX_HEADER`] in all).
    Incomplete,
    /// No header: the stream starts with something else.
    NotAHeader,
}

/// Why a header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the PROXY protocol header is longer than {0} bytes")]
    TooLong(usize),
    #[error("the PROXY protocol header is malformed ({0})")]
    Malformed(&'static str),
}

/// Looks at the start of a stream. Strict: a header that begins but breaks a rule is an
/// error, not "no header".
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if bytes.starts_with(b"PROXY ") {
        return parse_v1(bytes);
    }
    if bytes.starts_with(&V2_SIGNATURE) {
        return match bytes.len() {
            ..16 => Ok(Parsed::Incomplete),
            _ => parse_v2(bytes),
        };
    }
    // Too short to tell yet (nothing at all, too).
    if b"PROXY ".starts_with(bytes) || V2_SIGNATURE.starts_with(bytes) {
        return Ok(Parsed::Incomplete);
    }
    Ok(Parsed::NotAHeader)
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Err(ProxyHeaderError::TooLong(V1_MAX))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(ProxyHeaderError::TooLong(V1_MAX));
    }
    let line = std::str::from_utf8(&bytes[..end])
        .map_err(|_| ProxyHeaderError::Malformed("v1 header is not text"))?;
    let words: Vec<&str> = line.split(' ').collect();
    let endpoints = match words.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            source,
            destination,
            sport,
            dport,
        ] => {
            let ip = |text: &str| {
                text.parse::<IpAddr>()
                    .map_err(|_| ProxyHeaderError::Malformed("v1 address"))
            };
            let port = |text: &str| {
                // No sign, no leading zero (the specification's grammar).
                if text.starts_with('0') && text.len() > 1 || text.starts_with('+') {
                    return Err(ProxyHeaderError::Malformed("v1 port"));
                }
                text.parse::<u16>()
                    .map_err(|_| ProxyHeaderError::Malformed("v1 port"))
            };
            let (s, d) = (ip(source)?, ip(destination)?);
            let v4 = *family == "TCP4";
            if s.is_ipv4() != v4 || d.is_ipv4() != v4 {
                return Err(ProxyHeaderError::Malformed(
                    "v1 address of the wrong family",
                ));
            }
            Some((
                SocketAddr::new(s, port(sport)?),
                SocketAddr::new(d, port(dport)?),
            ))
        }
        _ => return Err(ProxyHeaderError::Malformed("v1 fields")),
    };
    Ok(Parsed::Header { len, endpoints })
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let (version_command, family) = (bytes[12], bytes[13]);
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version"));
    }
    let body = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(ProxyHeaderError::TooLong(V2_MAX));
    }
    if bytes.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let body = &bytes[16..len];
    let endpoints = match (version_command & 0x0F, family) {
        // LOCAL: the sender's own connection (a health check); no addresses.
        (0x0, _) => None,
        (0x1, 0x11) => {
            let a = body
                .get(..12)
                .ok_or(ProxyHeaderError::Malformed("v2 IPv4 addresses"))?;
            let ip = |o: &[u8]| IpAddr::from([o[0], o[1], o[2], o[3]]);
            Some((
                SocketAddr::new(ip(&a[0..4]), u16::from_be_bytes([a[8], a[9]])),
                SocketAddr::new(ip(&a[4..8]), u16::from_be_bytes([a[10], a[11]])),
            ))
        }
        (0x1, 0x21) => {
            let a = body
                .get(..36)
                .ok_or(ProxyHeaderError::Malformed("v2 IPv6 addresses"))?;
            let ip = |o: &[u8]| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(o);
                IpAddr::from(octets)
            };
            Some((
                SocketAddr::new(ip(&a[0..16]), u16::from_be_bytes([a[32], a[33]])),
                SocketAddr::new(ip(&a[16..32]), u16::from_be_bytes([a[34], a[35]])),
            ))
        }
        // UNSPEC, UNIX and datagram families: a connection, but no IP addresses to pass on.
        (0x1, _) => None,
        _ => return Err(ProxyHeaderError::Malformed("v2 command")),
    };
    Ok(Parsed::Header { len, endpoints })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn v1_as_the_specification_writes_it() {
        let four = Some((at("192.0.2.1:56324"), at("198.51.100.7:443")));
        assert_eq!(
            encode(ProxyVersion::V1, four),
            b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"
        );
        let six = Some((at("[2001:db8::1]:1"), at("[::1]:2")));
        assert_eq!(
            encode(ProxyVersion::V1, six),
            b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
        );
        assert_eq!(encode(ProxyVersion::V1, None), b"PROXY UNKNOWN\r\n");
        let mixed = encode(ProxyVersion::V1, Some((at("192.0.2.1:1"), at("[::1]:2"))));
        assert_eq!(mixed, b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n");
    }

    /// The specification's section 2.2 layout, byte for byte.
    #[test]
    fn v2_as_the_specification_writes_it() {
        let header = encode(
            ProxyVersion::V2,
            Some((at("192.0.2.1:56324"), at("198.51.100.7:443"))),
        );
        let mut expected = V2_SIGNATURE.to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        expected.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
        expected.extend_from_slice(&56324u16.to_be_bytes());
        expected.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(header, expected);
        let local = encode(ProxyVersion::V2, None);
        assert_eq!(&local[12..], &[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            encode(ProxyVersion::V2, Some((at("[::1]:1"), at("[::2]:2")))).len(),
            16 + 36
        );
    }

    #[test]
    fn what_is_written_reads_back_and_the_rest_of_the_stream_is_left() {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            for endpoints in [
                Some((at("192.0.2.1:56324"), at("198.51.100.7:443"))),
                Some((at("[2001:db8::1]:1"), at("[::1]:2"))),
                None,
            ] {
                let mut stream = encode(version, endpoints);
                let len = stream.len();
                stream.extend_from_slice(b"GET / HTTP/1.1\r\n");
                assert_eq!(parse(&stream), Ok(Parsed::Header { len, endpoints }));
                for cut in 0..len {
                    assert_eq!(
                        parse(&stream[..cut]),
                        Ok(Parsed::Incomplete),
                        "{version} {cut}"
                    );
                }
            }
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(Parsed::NotAHeader));
        assert_eq!(parse(b"\r\n\r\nx"), Ok(Parsed::NotAHeader));
        assert_eq!(parse(b"PROXZ"), Ok(Parsed::NotAHeader));
    }

    #[test]
    fn malformed_and_oversized_headers_are_refused() {
        let refused = [
            &b"PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n"[..],
            b"PROXY TCP4 ::1 198.51.100.7 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 01 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 65536 2\r\n",
            b"PROXY SCTP 192.0.2.1 198.51.100.7 1 2\r\n",
        ];
        for header in refused {
            assert!(
                matches!(parse(header), Err(ProxyHeaderError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse(&endless), Err(ProxyHeaderError::TooLong(V1_MAX)));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert_eq!(parse(&huge), Err(ProxyHeaderError::TooLong(V2_MAX)));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Err(ProxyHeaderError::Malformed(_))));
        let mut version = encode(ProxyVersion::V2, None);
        version[12] = 0x30;
        assert!(matches!(
            parse(&version),
            Err(ProxyHeaderError::Malformed(_))
        ));
    }
}
