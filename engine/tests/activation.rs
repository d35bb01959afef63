//! sluiced started by a super-server: `--inetd` in both roles against stock spiped, under
//! `systemd-socket-activate --inetd`; listening sockets passed by name
//! (`systemd-socket-activate --fdname`, `systemd:NAME` in a config); and a restart while
//! the socket is held for it, during which no connection attempt is lost.

// Unix only: these tests drive real processes and sockets through the test kit.
#![cfg(unix)]

mod support;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const SLOW: Duration = Duration::from_secs(20);

fn have_prerequisites() -> bool {
    require(
        have_program("systemd-socket-activate"),
        "systemd-socket-activate",
        "apt-get install systemd",
    ) && require(
        Path::new(&spiped_bin()).exists(),
        "spiped",
        "apt-get install spiped",
    )
}

/// `systemd-socket-activate ARGS... -- sluiced SLUICED_ARGS...`, started once it listens.
fn activate(dir: &Path, name: &str, args: &[&str], sluiced_args: &[&str]) -> (Proc, Addr) {
    start_daemon(
        name,
        dir,
        || free_addr(LOCALHOST_V4),
        |addr| {
            let mut c = Command::new("systemd-socket-activate");
            c.arg("-l")
                .arg(addr.tcp().to_string())
                .args(args)
                .arg(SLUICED)
                .args(sluiced_args);
            c
        },
    )
}

#[test]
fn inetd_serves_one_connection_per_process_in_both_roles_against_stock_spiped() {
    if !have_prerequisites() {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let key_arg = key.display().to_string();
    let echo = Echo::tcp(LOCALHOST_V4);

    // Decrypting: stock spiped -e → sluiced --inetd -d, one process per connection.
    let echo_arg = echo.addr.spiped();
    let (_super_d, inetd_d) = activate(
        dir.path(),
        "inetd-d",
        &["--inetd", "-a"],
        &["--inetd", "-d", "-t", &echo_arg, "-k", &key_arg],
    );
    let (_spiped_e, client) = spiped("-e", LOCALHOST_V4, &inetd_d, &key, &[], dir.path());
    for i in 0..3u8 {
        let data = test_data(100_000, u64::from(i));
        let got = exchange_with(&client, &data, SLOW);
        assert_echoed(&format!("-d connection {i}"), &data, &got);
    }
    assert!(wait_until(SLOW, || echo.finished() == 3));

    // Encrypting: sluiced --inetd -e → stock spiped -d.
    let (_spiped_d, far) = spiped("-d", LOCALHOST_V4, &echo.addr, &key, &[], dir.path());
    let far_arg = far.spiped();
    let (_super_e, inetd_e) = activate(
        dir.path(),
        "inetd-e",
        &["--inetd", "-a"],
        &["--inetd", "-e", "-t", &far_arg, "-k", &key_arg],
    );
    let got = exchange_with(&inetd_e, b"through --inetd -e", SLOW);
    assert_echoed("-e", b"through --inetd -e", &got);
}

#[test]
fn sockets_passed_by_name_are_listened_on() {
    if !have_prerequisites() {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let config = dir.path().join("tunnels.ron");
    let tunnel = |name: &str, listen: &str| {
        format!(
            "(name: {name:?}, mode: Decrypt, listen: {listen:?}, target: {:?}, key: File({:?})),",
            echo.addr.spiped(),
            key.display().to_string()
        )
    };
    fs::write(
        &config,
        format!(
            "(version: 1, tunnels: [{} {}])\n",
            tunnel("first", "systemd:first"),
            tunnel("second", "systemd:second")
        ),
    )
    .unwrap();
    let (first, second) = (free_addr(LOCALHOST_V4), free_addr(LOCALHOST_V4));
    let mut c = Command::new("systemd-socket-activate");
    c.arg("-l")
        .arg(first.tcp().to_string())
        .arg("-l")
        .arg(second.tcp().to_string())
        .arg("--fdname=first:second")
        .arg(SLUICED)
        .args(["-F", "--config"])
        .arg(&config);
    let mut activator = Proc::spawn("activated", c, dir.path());
    assert!(activator.wait_listening(&first) && activator.wait_listening(&second));
    for (addr, what) in [(&first, "first"), (&second, "second")] {
        let (_e, client) = spiped("-e", LOCALHOST_V4, addr, &key, &[], dir.path());
        let got = exchange_with(&client, what.as_bytes(), SLOW);
        assert_echoed(what, what.as_bytes(), &got);
    }
}

/// A service manager holds the socket; sluiced is stopped and started again while
/// clients keep connecting: every attempt is served, those in the gap a little later.
#[test]
fn a_restart_with_the_socket_held_loses_no_connection_attempt() {
    if !require(
        Path::new(&spiped_bin()).exists(),
        "spiped",
        "apt-get install spiped",
    ) {
        return;
    }
    let dir = temp_dir();
    let key = random_key(dir.path(), "key");
    let echo = Echo::tcp(LOCALHOST_V4);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = Addr::Tcp(held.local_addr().unwrap());
    let start = |name: &str| {
        let fd = held.as_raw_fd();
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec \"$0\" \"$@\"")
            .arg(SLUICED)
            .args([
                "-d",
                "-F",
                "-s",
                "systemd:web",
                "-t",
                &echo.addr.spiped(),
                "-k",
            ])
            .arg(&key);
        // SAFETY: dup2 is async-signal-safe; it puts the held socket at descriptor 3 in
        // the child only.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let proc = Proc::spawn(name, c, dir.path());
        assert!(proc.wait_for_log("listening on", SLOW), "{}", proc.stderr());
        proc
    };
    let mut first = start("sluiced-first");
    let (_e, client) = spiped("-e", LOCALHOST_V4, &port, &key, &[], dir.path());
    let clients = std::thread::spawn(move || {
        (0..60u32)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(25));
                let got = exchange_with(&client, &i.to_be_bytes(), SLOW);
                got.bytes == i.to_be_bytes()
            })
            .filter(|served| *served)
            .count()
    });
    // Restart once some have been served, while the rest keep coming.
    assert!(wait_until(SLOW, || echo.finished() >= 10));
    first.signal(libc::SIGTERM);
    assert!(
        first.wait_timeout(SLOW).is_some(),
        "the first sluiced stops"
    );
    let _second = start("sluiced-second");
    let served = clients.join().unwrap();
    assert_eq!(served, 60, "every connection attempt was served");
}
