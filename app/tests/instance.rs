//! The one-instance socket against clients that misbehave: a silent one holding a
//! connection open, one that floods, a holder that never answers, another user, and a
//! socket directory others could write to. A second start must never wait long, and
//! never become a second Sluice.

// Unix only: these tests use the test kit's sockets and processes. The app is built
// for Windows and macOS, not run there.
#![cfg(unix)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice::error::InstanceError;
use sluice::platform::{ANSWER_DEADLINE, Instance, claim_instance};

/// The first Sluice in `dir`, serving; the count goes up for each "show" it answers.
fn first_instance(dir: &Path) -> Arc<AtomicUsize> {
    let Ok(Instance::First(lock)) = claim_instance(Some(dir)) else {
        panic!("the first start claims the socket");
    };
    let shown = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&shown);
    lock.serve(move || {
        count.fetch_add(1, Ordering::SeqCst);
    });
    shown
}

/// A second start: it must be handed over to the first, and soon.
fn second_start_is_handed_over(dir: &Path) -> Duration {
    let started = Instant::now();
    let outcome = claim_instance(Some(dir));
    let took = started.elapsed();
    match outcome {
        Ok(Instance::HandedOver) => {}
        Ok(Instance::First(_)) => panic!("a second instance started"),
        Err(e) => panic!("the second start was not handed over: {e}"),
    }
    assert!(took < ANSWER_DEADLINE, "the second start waited {took:?}");
    took
}

fn socket_in(dir: &Path) -> std::path::PathBuf {
    sluice::platform::instance_socket(Some(dir)).unwrap()
}

#[test]
fn a_silent_client_holding_a_connection_does_not_hold_up_a_second_start() {
    let dir = tempfile::tempdir().unwrap();
    let shown = first_instance(dir.path());
    let silent = UnixStream::connect(socket_in(dir.path())).unwrap();
    second_start_is_handed_over(dir.path());
    assert_eq!(shown.load(Ordering::SeqCst), 1);
    // The silent client was dropped by the first instance, not served.
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        (&silent).read_to_end(&mut rest).unwrap(),
        0,
        "closed, unanswered"
    );
}

#[test]
fn a_flood_without_a_line_is_cut_off_and_not_taken_for_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let shown = first_instance(dir.path());
    let flood = UnixStream::connect(socket_in(dir.path())).unwrap();
    let writer = {
        let mut flood = flood.try_clone().unwrap();
        // The first instance closes after a few bytes; the rest may fail to go.
        std::thread::spawn(move || {
            let _ = flood.write_all(&vec![b'x'; 256 * 1024]);
        })
    };
    flood
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = (&flood).read_to_end(&mut answer);
    assert!(answer.is_empty(), "answered {answer:?}");
    writer.join().unwrap();
    // "show" followed by more than a request holds is not a request either.
    let mut long = UnixStream::connect(socket_in(dir.path())).unwrap();
    long.write_all(b"show show show show\n").unwrap();
    long.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = long.read_to_end(&mut answer);
    assert!(answer.is_empty(), "answered {answer:?}");
    assert_eq!(shown.load(Ordering::SeqCst), 0);
    second_start_is_handed_over(dir.path());
    assert_eq!(shown.load(Ordering::SeqCst), 1);
}

#[test]
fn a_holder_that_never_answers_stops_the_second_start_without_starting_it() {
    let dir = tempfile::tempdir().unwrap();
    // Something holds the socket and accepts nothing (a hung Sluice, say).
    let path = socket_in(dir.path());
    let _hung = UnixListener::bind(&path).unwrap();
    let started = Instant::now();
    let outcome = claim_instance(Some(dir.path()));
    let took = started.elapsed();
    match outcome {
        Err(e @ InstanceError::NoAnswer { .. }) => {
            assert!(!e.starts_alone(), "the app must not start alone: {e}");
            let message = e.to_string();
            assert!(
                message.contains(&path.display().to_string())
                    && message.contains("did not answer within 3 s"),
                "{message}"
            );
        }
        Ok(Instance::First(_)) => panic!("a second instance started"),
        Ok(Instance::HandedOver) => panic!("handed over to nobody"),
        Err(e) => panic!("{e}"),
    }
    assert!(
        took < ANSWER_DEADLINE + Duration::from_secs(2),
        "the second start waited {took:?}"
    );
    assert!(path.exists(), "the holder's socket was left alone");
}

#[test]
fn the_socket_directory_must_be_ours_and_closed_to_others() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o777, 0o720, 0o702] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        match claim_instance(Some(dir.path())) {
            Err(e @ InstanceError::DirOpen { .. }) => {
                assert!(!e.starts_alone());
                assert!(e.to_string().contains("chmod 700"), "{e}");
            }
            Err(e) => panic!("mode {mode:o}: {e}"),
            Ok(_) => panic!("mode {mode:o}: the socket was used"),
        }
        assert!(!socket_in(dir.path()).exists(), "nothing was bound");
    }
    // Readable by others, but not writable: fine.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(
        claim_instance(Some(dir.path())),
        Ok(Instance::First(_))
    ));

    // Another user's directory (root can hand one over to test it; others cannot).
    let theirs = tempfile::tempdir().unwrap();
    let nobody = 65534;
    let handed_over = std::os::unix::fs::chown(theirs.path(), Some(nobody), Some(nobody)).is_ok();
    if !sluice_testkit::require(
        handed_over,
        "root (to hand a directory to nobody)",
        "run the tests as root, as CI does",
    ) {
        return;
    }
    match claim_instance(Some(theirs.path())) {
        Err(e @ InstanceError::DirNotOurs { .. }) => {
            assert!(!e.starts_alone());
            assert!(e.to_string().contains("belongs to user 65534"), "{e}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("another user's directory was used"),
    }
}

/// A client that connects, says "show" and prints what came back (a broken pipe or a
/// reset, as a close before or after the request gives, is nothing): as this user, or as
/// nobody (setpriv).
fn python_client(socket: &Path, as_nobody: bool) -> String {
    let script = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  s.settimeout(10)\n\
                  s.connect(sys.argv[1])\n\
                  try:\n    s.sendall(b'show\\n')\n    answer = s.recv(16)\n\
                  except (BrokenPipeError, ConnectionResetError):\n    answer = b''\n\
                  print(repr(answer))\n";
    let mut command = if as_nobody {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "python3",
        ]);
        c
    } else {
        std::process::Command::new("python3")
    };
    // The system's python3, reachable by nobody (not a per-user install under /root).
    let output = command
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .arg("-c")
        .arg(script)
        .arg(socket)
        .output()
        .expect("setpriv and python3 run (util-linux, python3)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn another_users_connection_is_closed_unanswered() {
    if !sluice_testkit::require(
        sluice_testkit::is_root(),
        "root (to run a client as nobody)",
        "run the tests as root, as CI does",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Let nobody reach the socket, as a mistake elsewhere might.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let shown = first_instance(dir.path());
    let socket = socket_in(dir.path());
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        python_client(&socket, false),
        "b'ok\\n'",
        "this user is answered"
    );
    assert_eq!(shown.load(Ordering::SeqCst), 1);
    assert_eq!(python_client(&socket, true), "b''", "nobody is not");
    assert_eq!(
        shown.load(Ordering::SeqCst),
        1,
        "and nothing was shown for it"
    );
}
