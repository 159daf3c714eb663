"""nginx as an independent HTTP/1.1 upstream for end-to-end tests.

Everything nginx touches lives in one directory the test owns: the config, the pid file,
the error and access logs, the temp directories and the files it serves. It runs in the
foreground as a single process (``daemon off; master_process off;``), so it keeps the
test's user and one ``kill`` ends it. It listens on 127.0.0.1 only, on a free port.

What it serves:

- any path: 200 ``fixed body\\n``, echoing the request's ``Via`` and ``X-Forwarded-For``
  back as ``X-Seen-Via`` and ``X-Seen-Forwarded-For`` (absent when the request had none);
- ``/files/NAME``: the file ``NAME`` from :attr:`NginxUpstream.www` (``Content-Length``);
- ``/slow/NAME``: the same file, sent at :data:`SLOW_RATE` bytes per second.

The access log has one line per request: ``$connection $connection_requests $status
$request_uri $body_bytes_sent`` (see :meth:`NginxUpstream.access_log`).

nginx must be installed (``sh bench/setup.sh`` installs nginx-light); when it is not,
:func:`nginx_binary` fails the test with the command that installs it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXED_BODY = b"fixed body\n"
SLOW_RATE = 1024 * 1024  # bytes per second on /slow/
INSTALL_HINT = "run `sh bench/setup.sh` (apt-get install -y wrk nginx-light nghttp2-client)"

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    default_type text/plain;
    log_format gwtest '$connection $connection_requests $status $request_uri $body_bytes_sent';
    access_log {prefix}/access.log gwtest;
{temp_paths}
    keepalive_timeout 75s;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            add_header X-Seen-Via $http_via always;
            add_header X-Seen-Forwarded-For $http_x_forwarded_for always;
            return 200 "fixed body\\n";
        }}
        location /files/ {{
            alias {prefix}/www/;
        }}
        location /slow/ {{
            alias {prefix}/www/;
            sendfile off;
            output_buffers 1 64k;
            limit_rate {rate};
        }}
    }}
}}
"""


def find_tool(name: str) -> str:
    """The path of ``name``; fails the test (never skips it) when it is not installed."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def nginx_binary() -> str:
    return find_tool("nginx")


def _nginx_options(binary: str, prefix: Path) -> tuple[list[str], str]:
    """The command-line options and ``*_temp_path`` directives that keep this nginx
    inside ``prefix``: ``-e`` (nginx >= 1.19.5) names the error log used before the
    config is read, and a temp path is set for each module built in (a module built
    ``--without`` rejects its directive), so nothing goes to ``/var/lib/nginx``."""
    configure = subprocess.run(
        [binary, "-V"], capture_output=True, text=True, timeout=10, check=True
    ).stderr
    version = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", configure)
    options = ["-p", str(prefix)]
    if version is not None and tuple(map(int, version.groups())) >= (1, 19, 5):
        options += ["-e", str(prefix / "error.log")]
    lines = [f"    client_body_temp_path {prefix}/tmp/body;"]
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in configure:
            lines.append(f"    {module}_temp_path {prefix}/tmp/{module};")
    return options, "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AccessLine:
    connection: int
    connection_requests: int
    status: int
    uri: str
    bytes_sent: int


@dataclass
class NginxUpstream:
    """``NginxUpstream(directory).start()``; :meth:`stop` (or :meth:`kill`) ends it."""

    prefix: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def www(self) -> Path:
        return self.prefix / "www"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> NginxUpstream:
        binary = nginx_binary()
        for sub in ("www", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        options, temp_paths = _nginx_options(binary, self.prefix)
        for _ in range(attempts):  # another process may take the free port first
            self.port = _free_port()
            conf = self.prefix / "nginx.conf"
            conf.write_text(
                CONFIG.format(
                    prefix=self.prefix, port=self.port, temp_paths=temp_paths, rate=SLOW_RATE
                )
            )
            output = (self.prefix / "nginx.out").open("ab")
            self.process = subprocess.Popen(
                [binary, *options, "-c", str(conf)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            output.close()
            if self._wait_listening(10.0):
                return self
            self.stop()
        raise RuntimeError(f"nginx did not start:\n{self.errors()}")

    def _wait_listening(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop at once (SIGTERM, then SIGKILL after 5 s); idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: nginx dies with its connections open (the kernel resets/closes them)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def errors(self) -> str:
        text = ""
        for name in ("nginx.out", "error.log"):
            with contextlib.suppress(OSError):
                text += (self.prefix / name).read_text(errors="replace")
        return text

    def access_log(self) -> list[AccessLine]:
        path = self.prefix / "access.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split(" ")
            if len(parts) == 5:
                conn, reqs, status, uri, sent = parts
                out.append(AccessLine(int(conn), int(reqs), int(status), uri, int(sent)))
        return out
