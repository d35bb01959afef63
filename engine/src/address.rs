//! spiped's address syntax (`/unix/path`, `host:port`, `[1.2.3.4]:port`, `[::1]:port`):
//! parsing into [`Address`] and printing back in the same syntax. Pure: no I/O, no DNS
//! (resolving a host name is the network layer's job, `net::resolve`). Listen and target
//! addresses need a port; `-b` bind addresses may omit it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::str::FromStr;

use crate::control_char::ControlChar;

/// One endpoint as spiped's `-s`, `-t` and `-b` options describe it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An absolute path to a UNIX-domain socket.
    Unix(PathBuf),
    /// A literal IP address and port, needing no DNS.
    Ip(SocketAddr),
    /// A host name, resolved when used (and re-resolved for targets, like spiped's `-r`).
    Host { name: String, port: u16 },
    /// A listening socket a service manager passes in (systemd's socket activation), by
    /// the name its socket unit gives it (`FileDescriptorName=`): `systemd:NAME`.
    Systemd(String),
}

/// Why a string is not a usable address. Every message quotes the input and says how to
/// write it instead.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AddressError {
    #[error("the address is empty: write host:port, [ip]:port or an absolute UNIX socket path")]
    Empty,
    #[error("{}", missing_port_message(.0))]
    MissingPort(String),
    #[error(
        "{0:?} has a bad port: the port must be a number from 1 to 65535, e.g. example.org:8025"
    )]
    BadPort(String),
    #[error(
        "{0:?} looks like an IPv6 address without brackets: write it as [address]:port, e.g. [::1]:8025"
    )]
    UnbracketedIpv6(String),
    #[error(
        "{0:?} is not a valid IP address in brackets: brackets hold an IPv4 or IPv6 address, e.g. [192.0.2.1]:8025 or [::1]:8025"
    )]
    BadIp(String),
    #[error(
        "{0:?} is a relative path: UNIX socket paths must be absolute (start with /), and network addresses need host:port"
    )]
    RelativeUnixPath(String),
    /// Not in the original API sketch: `":80"` has a port but nothing to connect to.
    #[error("{0:?} has no host: write it as host:port, e.g. localhost{0}")]
    MissingHost(String),
    /// Not in the original API sketch: characters no host name can contain.
    #[error(
        "{0:?} is not a valid host name: use letters, digits, '-' and '.', or an IP address in brackets"
    )]
    BadHost(String),
    #[error(
        "{0:?} is a UNIX socket path or a passed-in socket, which cannot be used here: use host:port or [ip]:port"
    )]
    UnixNotAllowed(String),
    #[error(
        "{0:?}: a passed-in socket is written systemd:NAME, NAME being its FileDescriptorName= (printable, no ':', at most 255 characters)"
    )]
    BadSystemdName(String),
    /// A UNIX socket path on a system without UNIX-domain sockets Sluice can use (Windows).
    #[error(
        "{0:?} is a UNIX socket path, and this system has no UNIX-domain sockets Sluice can use: use host:port or [ip]:port"
    )]
    UnixSocketsUnsupported(String),
    /// In any form, a UNIX path included: an address ends up in unit files, configs and
    /// log lines, which a line feed would split.
    #[error("{input:?}: an address cannot contain control characters (here {found}): remove it")]
    ControlCharacter { input: String, found: ControlChar },
}

fn missing_port_message(input: &str) -> String {
    // A bare number is most likely a port typed without a host; suggest the usual fix.
    if !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit()) {
        format!("{input:?} has no host: write it as host:port, e.g. 127.0.0.1:{input}")
    } else {
        let host = input.strip_suffix(':').unwrap_or(input);
        format!("{input:?} has no port: write it as host:port, e.g. {host}:8025")
    }
}

/// Longest DNS name; longer input is a typo or garbage, not a host.
const MAX_HOST_LEN: usize = 253;

impl FromStr for Address {
    type Err = AddressError;

    /// Parses spiped's syntax. Like spiped, the last `:` splits host from port and the
    /// port is required; unlike spiped, an unbracketed IPv4 literal is taken as an IP
    /// directly instead of going through the resolver (the result is the same).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, PortRule::Required, crate::platform::UNIX_SOCKETS)
    }
}

impl Address {
    /// Parses an address of another machine (the far end, a Unix server), where a UNIX
    /// socket path is fine even if this system has none.
    pub fn parse_remote(s: &str) -> Result<Address, AddressError> {
        parse(s, PortRule::Required, true)
    }
}

/// Parses a `-b` bind address: like [`Address::from_str`] but the port may be omitted
/// (port 0 = any local port), bare IP literals are accepted (`192.0.2.1`, `::1`), and
/// UNIX paths are rejected because an outgoing TCP socket cannot bind to one.
///
/// A bare IPv6 address is always taken whole (`::1:80` is the address `0:0:0:0:0:0:1:80`, not
/// port 80): bracket it to give a port.
pub fn parse_bind(s: &str) -> Result<Address, AddressError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Address::Ip(SocketAddr::new(ip, 0)));
    }
    match parse(s, PortRule::Optional, true)? {
        Address::Unix(_) | Address::Systemd(_) => Err(AddressError::UnixNotAllowed(s.to_owned())),
        other => Ok(other),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// Listen and target addresses: 1..=65535, must be present.
    Required,
    /// Bind addresses: may be absent or 0, both meaning "any".
    Optional,
}

/// `unix_sockets`: whether a `/path` is a UNIX socket address where it is used.
fn parse(s: &str, rule: PortRule, unix_sockets: bool) -> Result<Address, AddressError> {
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if let Some(found) = ControlChar::find(s) {
        return Err(AddressError::ControlCharacter {
            input: s.to_owned(),
            found,
        });
    }
    if s.starts_with('/') {
        if rule == PortRule::Required && !unix_sockets {
            return Err(AddressError::UnixSocketsUnsupported(s.to_owned()));
        }
        return Ok(Address::Unix(PathBuf::from(s)));
    }
    if let Some(name) = s.strip_prefix("systemd:") {
        // systemd's rule for FileDescriptorName=: up to 255 printable characters, no ':'.
        let fits = !name.is_empty()
            && name.len() <= 255
            && name.chars().all(|c| c.is_ascii_graphic() && c != ':');
        return if fits {
            Ok(Address::Systemd(name.to_owned()))
        } else {
            Err(AddressError::BadSystemdName(s.to_owned()))
        };
    }
    if let Some(rest) = s.strip_prefix('[') {
        return parse_bracketed(s, rest, rule);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        if s.contains('/') {
            return Err(AddressError::RelativeUnixPath(s.to_owned()));
        }
        return match rule {
            PortRule::Required => Err(AddressError::MissingPort(s.to_owned())),
            PortRule::Optional => host_address(s, s, 0),
        };
    };
    if host.contains(':') {
        return Err(AddressError::UnbracketedIpv6(s.to_owned()));
    }
    if host.is_empty() {
        return Err(AddressError::MissingHost(s.to_owned()));
    }
    let port = parse_port(s, port, rule)?;
    host_address(s, host, port)
}

/// `[ip]` or `[ip]:port`; `rest` is everything after the opening bracket.
fn parse_bracketed(s: &str, rest: &str, rule: PortRule) -> Result<Address, AddressError> {
    let Some((inner, after)) = rest.split_once(']') else {
        return Err(AddressError::BadIp(s.to_owned()));
    };
    let port = if after.is_empty() {
        match rule {
            PortRule::Required => return Err(AddressError::MissingPort(s.to_owned())),
            PortRule::Optional => 0,
        }
    } else if let Some(port) = after.strip_prefix(':') {
        parse_port(s, port, rule)?
    } else {
        // Something other than ":port" after the bracket, e.g. "[::1]80".
        return Err(AddressError::BadPort(s.to_owned()));
    };
    let mut ip = parse_bracketed_ip(inner).ok_or_else(|| AddressError::BadIp(s.to_owned()))?;
    ip.set_port(port);
    Ok(Address::Ip(ip))
}

/// An IP literal from inside brackets; IPv6 may carry a numeric scope id (`fe80::1%2`),
/// which link-local addresses need and `SocketAddrV6` can hold.
fn parse_bracketed_ip(inner: &str) -> Option<SocketAddr> {
    if let Ok(ip) = inner.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    let (ip, scope) = inner.split_once('%')?;
    let ip = ip.parse::<Ipv6Addr>().ok()?;
    let scope = scope.parse::<u32>().ok()?;
    Some(SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, scope)))
}

fn parse_port(s: &str, port: &str, rule: PortRule) -> Result<u16, AddressError> {
    if port.is_empty() {
        return match rule {
            PortRule::Required => Err(AddressError::MissingPort(s.to_owned())),
            PortRule::Optional => Ok(0),
        };
    }
    // Digits only: `u16::from_str` would also take a leading '+', which spiped does not.
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::BadPort(s.to_owned()));
    }
    match port.parse::<u16>() {
        Ok(0) if rule == PortRule::Required => Err(AddressError::BadPort(s.to_owned())),
        Ok(p) => Ok(p),
        Err(_) => Err(AddressError::BadPort(s.to_owned())),
    }
}

/// A host part without brackets: an IPv4 literal becomes `Ip`, anything else a `Host`.
fn host_address(s: &str, host: &str, port: u16) -> Result<Address, AddressError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Address::Ip(SocketAddr::new(ip, port)));
    }
    if host.contains('/') {
        return Err(AddressError::RelativeUnixPath(s.to_owned()));
    }
    let bad = host.len() > MAX_HOST_LEN
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '[' | ']' | '%' | '@'));
    if bad {
        return Err(AddressError::BadHost(s.to_owned()));
    }
    Ok(Address::Host {
        name: host.to_owned(),
        port,
    })
}

impl fmt::Display for Address {
    /// Prints spiped's syntax, so the output parses back to the same address (IPv4 is
    /// bracketed like spiped's own messages and pidfile names: `[127.0.0.1]:8000`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Ip(SocketAddr::V4(v4)) => write!(f, "[{}]:{}", v4.ip(), v4.port()),
            // SocketAddrV6 already prints "[ip%scope]:port".
            Address::Ip(SocketAddr::V6(v6)) => write!(f, "{v6}"),
            Address::Host { name, port } => write!(f, "{name}:{port}"),
            Address::Systemd(name) => write!(f, "systemd:{name}"),
        }
    }
}

impl Address {
    /// The TCP port, or `None` for a UNIX socket.
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::Unix(_) | Address::Systemd(_) => None,
            Address::Ip(addr) => Some(addr.port()),
            Address::Host { port, .. } => Some(*port),
        }
    }

    /// True for a loopback IP (including IPv4-mapped IPv6 such as `::ffff:127.0.0.1`) and
    /// for the name `localhost`. UNIX sockets are not network addresses and return false;
    /// callers that care about exposure should treat them separately.
    pub fn is_loopback(&self) -> bool {
        match self {
            Address::Unix(_) | Address::Systemd(_) => false,
            Address::Ip(addr) => addr.ip().to_canonical().is_loopback(),
            Address::Host { name, .. } => {
                let name = name.strip_suffix('.').unwrap_or(name);
                name.eq_ignore_ascii_case("localhost")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Address {
        Address::Ip(s.parse().unwrap())
    }

    fn host(name: &str, port: u16) -> Address {
        Address::Host {
            name: name.to_owned(),
            port,
        }
    }

    #[test]
    fn parses_every_form() {
        let unix = (
            "/var/run/redis.sock",
            Address::Unix("/var/run/redis.sock".into()),
        );
        let cases = [
            unix,
            ("example.org:8025", host("example.org", 8025)),
            ("localhost:1", host("localhost", 1)),
            ("[1.2.3.4]:80", ip("1.2.3.4:80")),
            ("[::1]:65535", ip("[::1]:65535")),
            ("[2001:db8::7]:443", ip("[2001:db8::7]:443")),
            ("127.0.0.1:8000", ip("127.0.0.1:8000")),
            ("[fe80::1%2]:22", ip("[fe80::1%2]:22")),
            // spiped hands unbracketed names to getaddrinfo, which takes "127.1" too.
            ("127.1:80", host("127.1", 80)),
        ];
        // Windows: a UNIX path is refused by name, not taken for a host.
        let skip = usize::from(!crate::platform::UNIX_SOCKETS);
        for (input, want) in cases.into_iter().skip(skip) {
            assert_eq!(input.parse::<Address>(), Ok(want), "{input}");
        }
        if !crate::platform::UNIX_SOCKETS {
            assert_eq!(
                "/var/run/redis.sock".parse::<Address>(),
                Err(AddressError::UnixSocketsUnsupported(
                    "/var/run/redis.sock".into()
                ))
            );
        }
    }

    #[test]
    fn display_round_trips_in_spiped_syntax() {
        let cases = [
            ("/tmp/s", "/tmp/s"),
            ("example.org:8025", "example.org:8025"),
            ("[1.2.3.4]:80", "[1.2.3.4]:80"),
            ("127.0.0.1:8000", "[127.0.0.1]:8000"),
            ("[::1]:80", "[::1]:80"),
            ("[fe80::1%2]:22", "[fe80::1%2]:22"),
        ];
        let usable =
            |(input, _): &(&str, &str)| crate::platform::UNIX_SOCKETS || !input.starts_with('/');
        for (input, shown) in cases.into_iter().filter(usable) {
            let addr: Address = input.parse().unwrap();
            assert_eq!(addr.to_string(), shown);
            assert_eq!(shown.parse::<Address>().unwrap(), addr);
        }
    }

    #[test]
    fn rejects_every_malformed_form() {
        use AddressError::*;
        let cases = [
            ("", Empty),
            ("example.org", MissingPort("example.org".into())),
            ("example.org:", MissingPort("example.org:".into())),
            ("[::1]", MissingPort("[::1]".into())),
            ("[1.2.3.4]", MissingPort("[1.2.3.4]".into())),
            (":80", MissingHost(":80".into())),
            ("host:0", BadPort("host:0".into())),
            ("host:65536", BadPort("host:65536".into())),
            ("host:abc", BadPort("host:abc".into())),
            ("host:+80", BadPort("host:+80".into())),
            ("host:-1", BadPort("host:-1".into())),
            ("[::1]:0", BadPort("[::1]:0".into())),
            ("[::1]80", BadPort("[::1]80".into())),
            ("::1:80", UnbracketedIpv6("::1:80".into())),
            ("::1", UnbracketedIpv6("::1".into())),
            ("2001:db8::1:443", UnbracketedIpv6("2001:db8::1:443".into())),
            ("[::1:80", BadIp("[::1:80".into())),
            ("[example.org]:80", BadIp("[example.org]:80".into())),
            ("[1.2.3]:80", BadIp("[1.2.3]:80".into())),
            ("[fe80::1%eth0]:80", BadIp("[fe80::1%eth0]:80".into())),
            ("relative/path", RelativeUnixPath("relative/path".into())),
            ("./sock", RelativeUnixPath("./sock".into())),
            ("dir/x:80", RelativeUnixPath("dir/x:80".into())),
            ("my host:80", BadHost("my host:80".into())),
            ("user@host:80", BadHost("user@host:80".into())),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Address>(), Err(want), "{input:?}");
        }
        let long = format!("{}:80", "a".repeat(254));
        assert_eq!(long.parse::<Address>(), Err(BadHost(long.clone())));
    }

    #[test]
    fn control_characters_are_refused_in_every_form() {
        let refused = |input: &str, position: usize| {
            let error = input.parse::<Address>().unwrap_err();
            match &error {
                AddressError::ControlCharacter { input: i, found } => {
                    assert_eq!((i.as_str(), found.position), (input, position));
                }
                other => panic!("{input:?}: {other:?}"),
            }
            error.to_string()
        };
        assert_eq!(
            refused("/tmp/a\nb", 7),
            r#""/tmp/a\nb": an address cannot contain control characters (here a line feed at position 7): remove it"#
        );
        // A UNIX path ending in a unit file's next line: the case that slipped through.
        refused("/run/x.sock\nExecStartPre=/bin/sh -c evil", 12);
        refused("example.org\r:80", 12);
        refused("host:80\n", 8);
        refused("[::1]:80\n", 9);
        refused("[127.0.0.1\t]:80", 11);
        refused("\u{1b}[31mred:80", 1);
        refused("a\u{85}b:80", 2);
        for bind in [
            "10.0.0.1\n",
            "[::1]\n",
            "eth-host\t",
            "/tmp/s\n",
            "host:\x7f",
        ] {
            assert!(
                matches!(parse_bind(bind), Err(AddressError::ControlCharacter { .. })),
                "{bind:?}: {:?}",
                parse_bind(bind)
            );
        }
    }

    #[test]
    fn messages_say_what_to_write() {
        let msg = |s: &str| s.parse::<Address>().unwrap_err().to_string();
        assert_eq!(
            msg("example.org"),
            "\"example.org\" has no port: write it as host:port, e.g. example.org:8025"
        );
        assert_eq!(
            msg("8000"),
            "\"8000\" has no host: write it as host:port, e.g. 127.0.0.1:8000"
        );
        assert!(msg("::1:80").contains("[::1]:8025"));
        assert!(msg("host:0").contains("1 to 65535"));
        assert!(msg(":80").contains("localhost:80"));
        assert!(msg("relative/path").contains("absolute"));
        assert!(msg("").contains("empty"));
    }

    #[test]
    fn bind_addresses_may_omit_the_port() {
        let cases = [
            ("[1.2.3.4]", ip("1.2.3.4:0")),
            ("[1.2.3.4]:5000", ip("1.2.3.4:5000")),
            ("[::1]", ip("[::1]:0")),
            ("[::1]:0", ip("[::1]:0")),
            ("1.2.3.4", ip("1.2.3.4:0")),
            ("1.2.3.4:0", ip("1.2.3.4:0")),
            ("::1", ip("[::1]:0")),
            ("2001:db8::5", ip("[2001:db8::5]:0")),
            ("eth-host", host("eth-host", 0)),
            ("eth-host:7000", host("eth-host", 7000)),
            ("eth-host:", host("eth-host", 0)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_bind(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bind_rejects_what_cannot_be_bound() {
        use AddressError::*;
        let cases = [
            ("", Empty),
            ("/tmp/sock", UnixNotAllowed("/tmp/sock".into())),
            ("relative/path", RelativeUnixPath("relative/path".into())),
            ("host:65536", BadPort("host:65536".into())),
            ("host:abc", BadPort("host:abc".into())),
            ("[::1", BadIp("[::1".into())),
            (":80", MissingHost(":80".into())),
            ("fe80::1:xyz", UnbracketedIpv6("fe80::1:xyz".into())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_bind(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn port_and_loopback() {
        assert_eq!(ip("1.2.3.4:80").port(), Some(80));
        assert_eq!(host("h", 9).port(), Some(9));
        assert_eq!(Address::Unix("/s".into()).port(), None);

        assert!(ip("127.0.0.1:1").is_loopback());
        assert!(ip("127.9.9.9:1").is_loopback());
        assert!(ip("[::1]:1").is_loopback());
        assert!(ip("[::ffff:127.0.0.1]:1").is_loopback());
        assert!(host("localhost", 1).is_loopback());
        assert!(host("LocalHost.", 1).is_loopback());
        assert!(!host("localhost.example.org", 1).is_loopback());
        assert!(!ip("0.0.0.0:1").is_loopback());
        assert!(!ip("192.0.2.1:1").is_loopback());
        assert!(!Address::Unix("/s".into()).is_loopback());
    }
}
