"""
Many processes without gunicorn: `twist --reactor=gevent web --listen systemd:...` under socket
activation, with the listening socket passed the way systemd (or circus) passes it: as fd 3, with
LISTEN_FDS=1, LISTEN_FDNAMES and LISTEN_PID set to the pid of the process that execs twist.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

APPS = Path(__file__).parent / "gunicorn_apps"

# What systemd does between fork and exec: the socket to fd 3, LISTEN_PID to this very process.
EXEC_WRAPPER = """
import os, sys
fd = int(os.environ.pop("TEST_LISTEN_FD"))
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_FDNAMES"] = "http"  # systemd 227+ names every socket; Twisted wants both
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


@pytest.mark.timeout(60)
def test_twist_web_under_socket_activation(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    port = listener.getsockname()[1]
    env = dict(os.environ, TEST_LISTEN_FD=str(listener.fileno()))
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")])
    command = [
        sys.executable, "-c", EXEC_WRAPPER,
        "-m", "twisted", "--reactor=gevent", "web",
        "--listen", "systemd:domain=INET:index=0", "--wsgi", "gevent_apps.wsgi",
    ]  # fmt: skip
    log = open(tmp_path / "twist.log", "wb")
    proc = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        pass_fds=(listener.fileno(),),
        start_new_session=True,
    )
    # The parent keeps its copy, as systemd does: connections queue until twist accepts.
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/pid")
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        assert response.status == 200, body
        # Served by the process the wrapper exec'd (same pid), on GeventReactor.
        assert f"pid={proc.pid} " in body and "reactor=GeventReactor" in body, body
        proc.send_signal(signal.SIGTERM)
        # twist stops its reactor, then ends itself with the signal it got (as Twisted does).
        assert proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
        listener.close()
