//! The PROXY protocol against a real nginx with `listen ... proxy_protocol`: the address
//! nginx logs is the real client's, for v1 and v2, through stock spiped -d and through
//! sluiced -d, with the header written by the encrypting end, by the decrypting end, or
//! passed on from a load balancer; never two headers; a malformed one refused.

// Unix only: these tests drive real processes and sockets through the test kit.
#![cfg(unix)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const SLOW: Duration = Duration::from_secs(20);

/// A real nginx on loopback that expects a PROXY header and logs the address in it.
struct Nginx {
    _proc: Proc,
    addr: Addr,
    log: PathBuf,
}

impl Nginx {
    fn start(dir: &Path) -> Nginx {
        let root = dir.join("nginx");
        fs::create_dir_all(root.join("tmp")).unwrap();
        let log = root.join("access.log");
        let (proc, addr) = start_daemon(
            "nginx",
            dir,
            || free_addr(LOCALHOST_V4),
            |addr| {
                let conf = root.join("nginx.conf");
                let tmp = root.join("tmp");
                fs::write(
                    &conf,
                    format!(
                        "daemon off; master_process off; worker_processes 1;\n\
                         pid {root}/nginx.pid; error_log {root}/error.log;\n\
                         events {{ worker_connections 64; }}\n\
                         http {{\n\
                           log_format proxied '$proxy_protocol_addr $remote_addr \"$request\"';\n\
                           access_log {log} proxied;\n\
                           client_body_temp_path {tmp}; proxy_temp_path {tmp};\n\
                           fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n\
                           server {{ listen {addr} proxy_protocol; location / {{ return 200 \"ok\\n\"; }} }}\n\
                         }}\n",
                        root = root.display(),
                        log = log.display(),
                        tmp = tmp.display(),
                        addr = addr.tcp(),
                    ),
                )
                .unwrap();
                let mut c = Command::new(nginx_bin());
                c.arg("-e").arg(root.join("error.log")).arg("-c").arg(&conf);
                c
            },
        );
        Nginx {
            _proc: proc,
            addr,
            log,
        }
    }

    /// The address nginx logged for the `n`th request (1-based), once it is there.
    fn logged(&self, n: usize) -> String {
        let mut line = None;
        assert!(
            wait_until(SLOW, || {
                let text = fs::read_to_string(&self.log).unwrap_or_default();
                line = complete_lines(&text).nth(n - 1).map(str::to_owned);
                line.is_some()
            }),
            "nginx logged no request {n}: {}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        line.unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn requests(&self) -> usize {
        complete_lines(&fs::read_to_string(&self.log).unwrap_or_default()).count()
    }
}

fn nginx_bin() -> String {
    [
        "/opt/sluice-test-tools/nginx/usr/sbin/nginx",
        "/usr/sbin/nginx",
        "/usr/bin/nginx",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or("/usr/sbin/nginx")
    .to_owned()
}

/// An HTTP request from `from` (a loopback address of the test's choosing); the status
/// line nginx answered, or "" if the connection closed without an answer.
fn get(to: &Addr, from: Ipv4Addr, before: &[u8]) -> String {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .unwrap();
    socket.connect(&to.tcp().into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(SLOW)).unwrap();
    stream.write_all(before).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

fn have_prerequisites() -> bool {
    require(
        Path::new(&nginx_bin()).exists(),
        "nginx",
        "scripts/install-test-deps (it unpacks nginx to /opt/sluice-test-tools)",
    ) && require(
        Path::new(&spiped_bin()).exists(),
        "spiped",
        "apt-get install spiped",
    )
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[test]
fn the_encrypting_end_carries_the_client_address_through_stock_spiped_and_sluiced() {
    if !have_prerequisites() {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let nginx = Nginx::start(dir.path());
    let (_spiped_d, via_spiped) = spiped("-d", LOCALHOST_V4, &nginx.addr, &key, &[], dir.path());
    let (_sluiced_d, via_sluiced) = sluiced("-d", LOCALHOST_V4, &nginx.addr, &key, &[], dir.path());
    let mut n = 0;
    for version in ["v1", "v2"] {
        for far in [&via_spiped, &via_sluiced] {
            let (_e, entry) = sluiced(
                "-e",
                LOCALHOST_V4,
                far,
                &key,
                &["--proxy-protocol", version],
                dir.path(),
            );
            assert_eq!(get(&entry, CLIENT, b""), "HTTP/1.1 200 OK", "{version}");
            n += 1;
            assert_eq!(
                nginx.logged(n),
                "127.0.0.2",
                "{version}: the client's address"
            );
        }
    }
}

#[test]
fn the_decrypting_end_tells_the_encrypting_end_address_and_never_sends_two_headers() {
    if !have_prerequisites() {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let nginx = Nginx::start(dir.path());
    let mut n = 0;
    for version in ["v1", "v2"] {
        let (_d, far) = sluiced(
            "-d",
            LOCALHOST_V4,
            &nginx.addr,
            &key,
            &["--proxy-protocol", version],
            dir.path(),
        );
        // The encrypting end dials out from 127.0.0.3: that is what the far end tells.
        let (_e, entry) = sluiced(
            "-e",
            LOCALHOST_V4,
            &far,
            &key,
            &["-b", "[127.0.0.3]"],
            dir.path(),
        );
        assert_eq!(get(&entry, CLIENT, b""), "HTTP/1.1 200 OK");
        n += 1;
        assert_eq!(nginx.logged(n), "127.0.0.3", "{version}");
        // Both ends set: the decrypting end's header alone reaches nginx (a second one
        // would be a bad request).
        let (_e2, both) = sluiced(
            "-e",
            LOCALHOST_V4,
            &far,
            &key,
            &["-b", "[127.0.0.3]", "--proxy-protocol", "v1"],
            dir.path(),
        );
        assert_eq!(
            get(&both, CLIENT, b""),
            "HTTP/1.1 200 OK",
            "{version}: one header"
        );
        n += 1;
        assert_eq!(nginx.logged(n), "127.0.0.3");
    }
}

#[test]
fn a_load_balancer_header_is_passed_on_and_a_malformed_one_refused() {
    if !have_prerequisites() {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let nginx = Nginx::start(dir.path());
    let (_d, far) = sluiced("-d", LOCALHOST_V4, &nginx.addr, &key, &[], dir.path());
    let (e, entry) = sluiced(
        "-e",
        LOCALHOST_V4,
        &far,
        &key,
        &["--accept-proxy-protocol", "--proxy-protocol", "v2"],
        dir.path(),
    );
    let from_balancer = b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 80\r\n";
    assert_eq!(get(&entry, CLIENT, from_balancer), "HTTP/1.1 200 OK");
    assert_eq!(nginx.logged(1), "203.0.113.7", "the balancer's client");

    assert_eq!(
        get(&entry, CLIENT, b"PROXY TCP4 203.0.113.7 nonsense\r\n"),
        ""
    );
    assert_eq!(
        get(&entry, CLIENT, b""),
        "",
        "no header where one is expected"
    );
    assert!(
        e.wait_for_log("PROXY protocol header is malformed", SLOW),
        "{}",
        e.stderr()
    );
    // The second refusal in a minute is counted, not logged line by line (a stranger
    // could repeat it at will).
    assert_eq!(nginx.requests(), 1, "nothing refused reached nginx");
}
