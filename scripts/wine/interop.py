#!/usr/bin/env python3
"""Windows' sluiced.exe, run under wine, against Debian's stock spiped on loopback.

    scripts/wine/interop.py path/to/sluiced.exe

Each case starts its own processes on free loopback ports and checks the result byte for
byte; every wait has a deadline. Any failure (or a missing spiped or wine) ends the run
with status 1 and says why: nothing here is skipped. The cases:

  - sluiced.exe -e into spiped -d, and spiped -e into sluiced.exe -d: 1 MiB of random
    bytes each way through an echo server, compared byte for byte;
  - a wrong key in both roles: the client gets nothing back, the connection ends, and
    sluiced says the handshake failed;
  - sluiced.exe --spipe through spiped -d: 1 MiB through standard input and output;
  - sluiced.exe --config with --metrics: serves, answers a scrape, and rereads its file
    on `sluiced.exe --reload --config FILE`, starting the tunnel added meanwhile;
  - Ctrl+C (SIGINT to the wine process, which wine turns into CTRL_C_EVENT): a graceful
    stop, "stopped" logged, exit status 0;
  - the key tools: --generate-key writes 32 bytes, --fingerprint reads them; a key file
    others may read is flagged through its access list.
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WINE_RUN = os.path.join(ROOT, "scripts", "wine", "run")
SPIPED = "/usr/bin/spiped"
MIB = 1 << 20
DEADLINE = 60.0


class Failure(Exception):
    pass


def check(ok, message):
    if not ok:
        raise Failure(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_ports():
    """Ports with a listening TCP socket on this machine (state 0A in /proc/net/tcp)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def wait_until(what, ok, deadline=DEADLINE):
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if ok():
            return
        time.sleep(0.05)
    raise Failure(f"{what}: not within {deadline:.0f} s")


def windows_path(path):
    """A Linux path as wine's Z: drive shows it."""
    return "Z:" + path.replace("/", "\\")


class Processes:
    """Every process a case starts, stopped (and its wine server too) when the run ends."""

    def __init__(self, scratch):
        self.scratch = scratch
        self.running = []

    def start(self, name, argv, stdin=subprocess.DEVNULL):
        log = open(os.path.join(self.scratch, name + ".log"), "wb")
        proc = subprocess.Popen(argv, stdin=stdin, stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = log.name
        proc.name = name
        self.running.append(proc)
        return proc

    def stop_all(self):
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
        for proc in self.running:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def log_of(proc):
    with open(proc.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_for_log(proc, needle, deadline=DEADLINE):
    def seen():
        if proc.poll() is not None and needle not in log_of(proc):
            raise Failure(f"{proc.name} exited ({proc.returncode}) before logging {needle!r}:\n{log_of(proc)}")
        return needle in log_of(proc)

    wait_until(f"{proc.name} to log {needle!r}", seen, deadline)


def wait_listening(proc, port):
    def up():
        if proc.poll() is not None:
            raise Failure(f"{proc.name} exited ({proc.returncode}) before listening on {port}:\n{log_of(proc)}")
        return port in listening_ports()

    wait_until(f"{proc.name} to listen on {port}", up)


class Echo:
    """A TCP echo server on loopback: each connection gets back what it sent, and an
    end of stream once it sent its own."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.echo, args=(conn,), daemon=True).start()

    @staticmethod
    def echo(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)


def exchange(port, data, deadline=DEADLINE):
    """Sends `data` to loopback `port`, half-closes, reads until the end of stream.
    Returns what came back (bytes), or what it got before the connection failed."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as conn:
        conn.settimeout(deadline)

        def send():
            try:
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
        except OSError:
            pass
        sender.join(deadline)
    return bytes(received)


def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


def assert_echoed(what, port):
    data = os.urandom(MIB)
    back = exchange(port, data)
    check(
        back == data,
        f"{what}: sent 1 MiB ({digest(data)}), got {len(back)} bytes back ({digest(back)})",
    )
    print(f"ok: {what}: 1 MiB each way, byte for byte")


def assert_refused(what, port, refusing):
    back = exchange(port, os.urandom(4096), deadline=30)
    check(back == b"", f"{what}: {len(back)} bytes came back through a wrong key")
    wait_for_log(refusing, "handshake", deadline=30)
    print(f"ok: {what}: refused")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    exe = os.path.abspath(sys.argv[1])
    for program, install in ((SPIPED, "apt-get install spiped"), ("wine", "apt-get install wine wine64")):
        if shutil.which(program) is None:
            print(f"wine-interop: {program} not found: {install}", file=sys.stderr)
            return 1
    check_exists = os.path.isfile(exe)
    if not check_exists:
        print(f"wine-interop: {exe} does not exist: build it first (scripts/check-platforms)", file=sys.stderr)
        return 1

    scratch = tempfile.mkdtemp(prefix="sluice-wine-interop-")
    procs = Processes(scratch)
    sluiced = lambda name, *args, **kw: procs.start(name, [WINE_RUN, exe, *args], **kw)
    try:
        key = os.path.join(scratch, "key")
        wrong = os.path.join(scratch, "wrong")
        for path in (key, wrong):
            with open(path, "wb") as f:
                f.write(os.urandom(32))
            os.chmod(path, 0o600)
        wkey, wwrong = windows_path(key), windows_path(wrong)
        echo = Echo()
        addr = lambda port: f"[127.0.0.1]:{port}"

        # Warm the wine prefix once, so the first case's deadline is not spent on it.
        version = subprocess.run([WINE_RUN, exe, "-v"], capture_output=True, timeout=300)
        check(version.returncode == 0 and b"sluiced" in version.stderr,
              f"sluiced.exe -v under wine: status {version.returncode}: {version.stderr!r}")

        # 1. sluiced.exe encrypts, spiped decrypts.
        p_in, p_mid = free_port(), free_port()
        spiped_d = procs.start("spiped-d", [SPIPED, "-d", "-F", "-s", addr(p_mid), "-t", addr(echo.port), "-k", key])
        enc = sluiced("sluiced-e", "-e", "-F", "-s", addr(p_in), "-t", addr(p_mid), "-k", wkey)
        wait_listening(spiped_d, p_mid)
        wait_listening(enc, p_in)
        assert_echoed("sluiced.exe -e into spiped -d", p_in)

        # 2. spiped encrypts, sluiced.exe decrypts.
        q_in, q_mid = free_port(), free_port()
        dec = sluiced("sluiced-d", "-d", "-F", "-s", addr(q_mid), "-t", addr(echo.port), "-k", wkey)
        spiped_e = procs.start("spiped-e", [SPIPED, "-e", "-F", "-s", addr(q_in), "-t", addr(q_mid), "-k", key])
        wait_listening(dec, q_mid)
        wait_listening(spiped_e, q_in)
        assert_echoed("spiped -e into sluiced.exe -d", q_in)

        # 3. Wrong keys, both roles.
        r_in = free_port()
        spiped_wrong = procs.start("spiped-e-wrong", [SPIPED, "-e", "-F", "-s", addr(r_in), "-t", addr(q_mid), "-k", wrong])
        wait_listening(spiped_wrong, r_in)
        assert_refused("spiped -e with another key into sluiced.exe -d", r_in, dec)
        s_in = free_port()
        enc_wrong = sluiced("sluiced-e-wrong", "-e", "-F", "-s", addr(s_in), "-t", addr(p_mid), "-k", wwrong)
        wait_listening(enc_wrong, s_in)
        assert_refused("sluiced.exe -e with another key into spiped -d", s_in, enc_wrong)
        # The right key still works through the same daemons.
        assert_echoed("sluiced.exe -d after refusing a wrong key", q_in)

        # 4. --spipe: standard input and output through spiped -d.
        data = os.urandom(MIB)
        spipe = subprocess.run(
            [WINE_RUN, exe, "--spipe", "-t", addr(p_mid), "-k", wkey],
            input=data, capture_output=True, timeout=DEADLINE,
        )
        check(spipe.returncode == 0 and spipe.stdout == data,
              f"sluiced.exe --spipe: status {spipe.returncode}, {len(spipe.stdout)} bytes back "
              f"({digest(spipe.stdout)} for {digest(data)}): {spipe.stderr.decode(errors='replace')}")
        print("ok: sluiced.exe --spipe through spiped -d: 1 MiB each way, byte for byte")

        # 5. --config with metrics, then a reload that adds a tunnel.
        config = os.path.join(scratch, "tunnels.ron")
        c1, c2, metrics = free_port(), free_port(), free_port()

        def tunnel(name, port):
            return (f'(name: "{name}", mode: Encrypt, listen: "{addr(port)}", target: "{addr(p_mid)}", '
                    f'key: File("{wkey.replace(chr(92), chr(92) * 2)}"))')

        def write_config(*tunnels):
            with open(config, "w") as f:
                f.write(f'(version: 1, metrics: Some("127.0.0.1:{metrics}"), tunnels: [{", ".join(tunnels)}])\n')

        write_config(tunnel("first", c1))
        daemon = sluiced("sluiced-config", "--config", windows_path(config))
        wait_listening(daemon, c1)
        wait_listening(daemon, metrics)
        assert_echoed("sluiced.exe --config", c1)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=30) as answer:
            text = answer.read().decode()
        check("sluice_tunnel_connections" in text and '"first"' in text, f"metrics scrape: {text[:500]!r}")
        print("ok: sluiced.exe --metrics answers a scrape")
        write_config(tunnel("first", c1), tunnel("second", c2))
        reload = subprocess.run([WINE_RUN, exe, "--reload", "--config", windows_path(config)],
                                capture_output=True, timeout=DEADLINE)
        check(reload.returncode == 0, f"sluiced.exe --reload: {reload.stderr.decode(errors='replace')}")
        wait_for_log(daemon, "reload: starting second")
        wait_listening(daemon, c2)
        assert_echoed("a tunnel added by sluiced.exe --reload", c2)

        # 6. Ctrl+C: a graceful stop.
        daemon.send_signal(signal.SIGINT)
        try:
            status = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure(f"sluiced.exe did not stop within 30 s of Ctrl+C:\n{log_of(daemon)}")
        check(status == 0 and "stopped" in log_of(daemon),
              f"sluiced.exe after Ctrl+C: status {status}:\n{log_of(daemon)}")
        print("ok: Ctrl+C stops sluiced.exe gracefully")

        # 7. The key tools, and a key file others may read.
        made = os.path.join(scratch, "made.key")
        gen = subprocess.run([WINE_RUN, exe, "--generate-key", windows_path(made)], capture_output=True, timeout=DEADLINE)
        check(gen.returncode == 0 and os.path.getsize(made) == 32, f"--generate-key: {gen.stdout!r} {gen.stderr!r}")
        fp = subprocess.run([WINE_RUN, exe, "--fingerprint", windows_path(made)], capture_output=True, timeout=DEADLINE)
        check(fp.returncode == 0 and fp.stdout.decode().strip() in gen.stdout.decode(),
              f"--fingerprint {fp.stdout!r} differs from --generate-key's {gen.stdout!r}")
        os.chmod(key, 0o644)  # wine shows a world-readable file as readable by Everyone
        fp = subprocess.run([WINE_RUN, exe, "--fingerprint", wkey], capture_output=True, timeout=DEADLINE)
        check(b"access list lets Everyone read it" in fp.stderr, f"an exposed key file: {fp.stderr!r}")
        print("ok: --generate-key, --fingerprint, and a key file Everyone may read is flagged")
    except Failure as failure:
        print(f"wine-interop: FAILED: {failure}", file=sys.stderr)
        for proc in procs.running:
            print(f"--- {proc.name} ---\n{log_of(proc)}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
    print("wine-interop: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
