"""`twistd -n --reactor=gevent web --wsgi=...` serving a WSGI app to concurrent clients."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import gevent
from gevent import socket, subprocess
from helpers import raw_http

from geventreactor.pytest_plugin import greenlet_test

HERE = Path(__file__).parent
# The twistd script of this environment, run by this interpreter (the same as the `twistd` command).
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; run()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc, timeout: float = 20.0) -> None:
    with gevent.Timeout(timeout, AssertionError(f"twistd did not listen on {port}")):
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"twistd exited early: {proc.stdout.read()!r}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                gevent.sleep(0.05)


@greenlet_test
def test_twistd_web_wsgi_on_gevent_reactor(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    proc = subprocess.Popen(
        [
            *TWISTD,
            "-n",
            "--reactor=gevent",
            "--pidfile=",
            "web",
            f"--listen=tcp:{port}:interface=127.0.0.1",
            "--wsgi=wsgiapp_for_twistd.application",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        requests = [
            b"POST /item/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nb%02d"
            % (i, i)
            for i in range(5)
        ]
        clients = [gevent.spawn(raw_http, port, r, 30) for r in requests]
        gevent.joinall(clients, timeout=30, raise_error=True)
        indexes = set()
        for i, c in enumerate(clients):
            head, _, body = c.value.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), c.value
            match = re.fullmatch(
                rb"wsgi POST /item/(\d) body=b(\d\d) concurrent=5 index=(\d)", body
            )
            assert match, body
            assert int(match[1]) == int(match[2]) == i
            indexes.add(int(match[3]))
        assert indexes == {0, 1, 2, 3, 4}
    finally:
        proc.terminate()
        try:
            output = proc.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0]
    assert b"GeventReactor" in output, output[-2000:]
    assert b"Traceback" not in output, output[-4000:]
