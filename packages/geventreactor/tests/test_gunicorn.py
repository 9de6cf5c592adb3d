"""
geventreactor.gunicorn's workers under a real gunicorn master with two workers on 127.0.0.1.

Every test starts its own master (in its own session, so that a failed test can kill its whole
process group) and bounds each wait. The workers inherit GEVENT_LOOP, so both loops are covered by
running this file under each.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")

APPS = Path(__file__).parent / "gunicorn_apps"
TWISTED = "geventreactor.gunicorn.TwistedWorker"
GEVENT = "geventreactor.gunicorn.GeventReactorWorker"
PID = re.compile(r"pid=(\d+)")


def free_port() -> int:
    # gunicorn cannot bind port 0 and report it; take one the kernel hands out now.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Gunicorn:
    """A gunicorn master serving one of the test applications."""

    def __init__(self, tmp_path: Path, app: str, worker: str, *options: str, workers: int = 2):
        self.port = free_port()
        self.log_path = tmp_path / "gunicorn.log"
        self.access_path = tmp_path / "access.log"
        self.workers_wanted = workers
        command = [
            sys.executable, "-m", "gunicorn", "--no-control-socket",
            "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--pythonpath", str(APPS),
            "-k", worker, "--access-logfile", str(self.access_path),
            "--error-logfile", str(self.log_path), "--log-level", "info",
            "--graceful-timeout", "5", *options, app,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "stderr.log", "wb"),
            start_new_session=True,
        )
        self.stderr_path = tmp_path / "stderr.log"

    def log(self) -> str:
        text = self.log_path.read_text() if self.log_path.exists() else ""
        return text + self.stderr_path.read_text()

    def workers(self) -> set[int]:
        return children(self.proc.pid)

    def get(self, path: str, timeout: float = 10.0) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode()
            assert response.status == 200, (response.status, body)
            return body
        finally:
            connection.close()

    def pid_of(self, path: str = "/pid", timeout: float = 10.0) -> int:
        return int(PID.search(self.get(path, timeout)).group(1))

    def ready(self, timeout: float = 30.0) -> set[int]:
        """Wait until every worker has served a request; return their pids."""

        def all_served():
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited early:\n{self.log()}")
            try:
                seen.add(self.pid_of(timeout=5))
            except OSError:
                return None
            workers = self.workers()
            return workers if len(workers) == self.workers_wanted and workers <= seen else None

        seen: set[int] = set()
        return wait_for(all_served, timeout, "every worker to serve a request")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Workers that outlived their master (a bug) go with the process group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def gunicorn(tmp_path):
    started = []

    def start(app: str, worker: str = TWISTED, *options: str, **kwargs) -> Gunicorn:
        server = Gunicorn(tmp_path, app, worker, *options, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class ClientLoop:
    """Requests one after another (a new connection each) from a thread, counting failures."""

    def __init__(self, server: Gunicorn, path: str = "/pid"):
        self.server = server
        self.path = path
        self.pids: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.pids.append(int(PID.search(self.server.get(self.path, 10)).group(1)))
            except Exception as exc:
                self.failures.append(repr(exc))

    def stop(self):
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive()


# -- TwistedWorker --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_resource_served_by_both_workers_with_access_log(gunicorn):
    server = gunicorn("twisted_apps:resource")
    pids = server.ready()
    assert len(pids) == 2
    seen = set()
    wait_for(lambda: seen.add(server.pid_of()) or seen == pids, 20, "both workers to answer")
    body = server.get("/x?a=1")
    assert body.startswith("pid=") and "path=/x" in body
    line = wait_for(
        lambda: [x for x in server.access_path.read_text().splitlines() if "/x?a=1" in x],
        10,
        "the access log line",
    )[0]
    # gunicorn's default format: %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[[^\]]+\] "GET /x\?a=1 HTTP/1\.1" 200 \d+ "-" "[^"]*"', line
    ), line


@pytest.mark.timeout(60)
def test_kill_9_worker_is_replaced_and_no_request_fails(gunicorn):
    server = gunicorn("twisted_apps:resource")
    before = server.ready()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    loop = ClientLoop(server)
    try:
        replaced = wait_for(
            lambda: (w := server.workers()) and len(w) == 2 and victim not in w and w,
            20,
            "the master to replace the killed worker",
        )
        (newcomer,) = replaced - before
        wait_for(lambda: newcomer in loop.pids, 20, "the new worker to serve")
    finally:
        loop.stop()
    assert loop.failures == []
    assert victim not in loop.pids


@pytest.mark.timeout(60)
def test_sighup_under_steady_client_loop_no_request_fails(gunicorn):
    server = gunicorn("twisted_apps:resource", TWISTED, "--graceful-timeout", "10")
    before = server.ready()
    loop = ClientLoop(server)
    try:
        wait_for(lambda: len(loop.pids) > 20, 10, "the client loop to run")
        server.proc.send_signal(signal.SIGHUP)
        after = wait_for(
            lambda: (w := server.workers()) and len(w) == 2 and not (w & before) and w,
            30,
            "new workers only",
        )
        wait_for(lambda: after <= set(loop.pids), 20, "the new workers to serve")
    finally:
        loop.stop()
    assert loop.failures == []
    assert before & set(loop.pids)  # the old workers served too, before the reload


@pytest.mark.timeout(60)
def test_sigterm_lets_slow_in_flight_request_complete(gunicorn):
    server = gunicorn("twisted_apps:resource", TWISTED, "--graceful-timeout", "15", workers=1)
    server.ready()
    result = {}

    def slow():
        try:
            result["body"] = server.get("/sleep?s=2", timeout=20)
        except Exception as exc:
            result["error"] = repr(exc)

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.5)  # let the request reach a worker; not a threshold, only an ordering aid
    server.proc.send_signal(signal.SIGTERM)
    client.join(20)
    assert result.get("error") is None and "path=/sleep" in result["body"], result
    assert server.proc.wait(20) == 0
    # The port no longer accepts once the master is gone.
    with pytest.raises(OSError):
        server.get("/pid", timeout=2)


@pytest.mark.timeout(60)
def test_blocked_greenlet_keeps_worker_blocked_loop_gets_it_killed(gunicorn):
    server = gunicorn("twisted_apps:resource", TWISTED, "--timeout", "2", workers=1)
    (worker,) = server.ready()
    # Blocking the request's greenlet (gevent.sleep) for longer than --timeout: the reactor keeps
    # sending the heartbeat, so the worker survives and answers.
    body = server.get("/sleep?s=3", timeout=20)
    assert f"pid={worker}" in body
    assert server.workers() == {worker}
    assert "WORKER TIMEOUT" not in server.log()
    # Blocking the whole loop (time.sleep): no heartbeat, the master aborts the worker.
    with pytest.raises((http.client.HTTPException, OSError)):
        server.get("/block?s=30", timeout=20)
    replaced = wait_for(
        lambda: (w := server.workers()) and worker not in w and w, 20, "a replacement worker"
    )
    assert f"WORKER TIMEOUT (pid:{worker})" in server.log()
    assert server.pid_of() in replaced


@pytest.mark.timeout(60)
def test_max_requests_recycles_worker(gunicorn):
    server = gunicorn("twisted_apps:resource", TWISTED, "--max-requests", "5", workers=1)
    (first,) = server.ready()
    pids = [server.pid_of() for _ in range(12)]  # every request succeeds across the recycling
    assert len(set(pids)) >= 2 and pids[0] == first
    # No worker serves more than its 5 requests (the first came from ready()).
    for pid in set(pids):
        assert pids.count(pid) + (pid == first) <= 5
    assert "Autorestarting worker after current request." in server.log()


@pytest.mark.timeout(60)
def test_wsgi_app_on_real_threads(gunicorn):
    server = gunicorn("twisted_apps:wsgi", TWISTED, workers=1)
    server.ready()
    body = server.get("/hello?x=1")
    assert "path=/hello" in body and "thread=other" in body
    wait_for(lambda: '"GET /hello?x=1 HTTP/1.1" 200' in server.access_path.read_text(), 10, "log")
    # A client that closes as soon as it has the body, before the application's thread has
    # ended the response: the request is logged all the same.
    assert "path=/slow-close" in server.get("/slow-close?x=2")
    wait_for(
        lambda: '"GET /slow-close?x=2 HTTP/1.1" 200' in server.access_path.read_text(), 10, "log"
    )


@pytest.mark.timeout(60)
def test_wsgi_app_on_greenlets_with_gevent_threadpool(gunicorn):
    server = gunicorn("green_wsgi_app:wsgi", TWISTED, workers=1)
    (worker,) = server.ready()
    assert "thread=main" in server.get("/hello")
    # Greenlet handlers that block with gevent overlap: the worker answers while another of its
    # requests is still sleeping.
    slow = []
    client = threading.Thread(target=lambda: slow.append(server.get("/sleep?s=3", 15)))
    client.start()
    time.sleep(0.3)  # ordering aid only
    assert server.pid_of() == worker
    assert not slow  # still sleeping in its greenlet
    client.join(15)
    assert slow and "path=/sleep thread=main" in slow[0]


@pytest.mark.timeout(60)
def test_protocol_factory_app(gunicorn):
    server = gunicorn("twisted_apps:factory", TWISTED, workers=1)

    # Not HTTP: speak the line protocol directly.
    def ask(line: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(line + b"\n")
            return s.makefile("rb").readline()

    def answered():
        if server.proc.poll() is not None:
            raise AssertionError(server.log())
        try:
            return ask(b"hello")
        except OSError:
            return None

    reply = wait_for(answered, 30, "the protocol to answer")
    assert re.fullmatch(rb"pid=\d+ echo=hello\n", reply), reply
    assert b"echo=sleep 0.2" in ask(b"sleep 0.2")  # the protocol may block its greenlet


@pytest.mark.timeout(60)
def test_preload_with_default_reactor_gives_clear_error(gunicorn):
    server = gunicorn("preload_default_reactor:resource", TWISTED, "--preload")
    assert server.proc.wait(30) != 0
    log = server.log()
    assert "was installed as twisted.internet.reactor before the worker started" in log, log
    assert "--preload" in log and "gevent_reactor.install()" in log


@pytest.mark.timeout(60)
def test_preload_with_gevent_reactor_installed_works(gunicorn):
    server = gunicorn("preload_gevent_reactor:resource", TWISTED, "--preload", workers=1)
    server.ready()
    assert "path=/sleep" in server.get("/sleep?s=0.2")


@pytest.mark.timeout(60)
def test_unix_socket_survives_reload(gunicorn, tmp_path):
    path = tmp_path / "g.sock"
    server = gunicorn("twisted_apps:resource", TWISTED, "-b", f"unix:{path}", workers=1)

    def get_unix():
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        try:
            s.connect(str(path))
            s.sendall(b"GET /pid HTTP/1.0\r\n\r\n")
            return b"".join(iter(lambda: s.recv(4096), b"")).decode()
        finally:
            s.close()

    server.ready()
    before = server.workers()
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: (w := server.workers()) and len(w) == 1 and not (w & before), 30, "reload")
    # A stopped worker neither unlinked the path nor shut the shared socket down.
    for _ in range(10):
        assert "200 OK" in get_unix()
    assert path.exists()


# -- GeventReactorWorker ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_gevent_worker_calls_twisted_client(gunicorn):
    server = gunicorn("gevent_apps:wsgi", GEVENT, workers=1)
    pids = server.ready()
    assert "reactor=GeventReactor" in server.get("/pid")
    body = server.get("/agent", timeout=20)
    # The Agent's request went to this same single worker, which served it while the calling
    # request waited in its own greenlet.
    match = re.fullmatch(
        r"pid=(\d+) path=/agent code=200 fetched=\[pid=(\d+) path=/sleep .*\]", body
    )
    assert match, body
    assert {int(match.group(1)), int(match.group(2))} <= pids
    wait_for(lambda: '"GET /agent HTTP/1.1" 200' in server.access_path.read_text(), 10, "log")


@pytest.mark.timeout(60)
def test_gevent_worker_blocked_greenlet_survives_blocked_loop_killed(gunicorn):
    server = gunicorn("gevent_apps:wsgi", GEVENT, "--timeout", "2", workers=1)
    (worker,) = server.ready()
    assert f"pid={worker}" in server.get("/sleep?s=3", timeout=20)
    assert "WORKER TIMEOUT" not in server.log()
    with pytest.raises((http.client.HTTPException, OSError)):
        server.get("/block?s=30", timeout=20)
    wait_for(lambda: (w := server.workers()) and worker not in w, 20, "a replacement worker")
    assert f"WORKER TIMEOUT (pid:{worker})" in server.log()
    assert server.ready() != {worker}


@pytest.mark.timeout(60)
def test_gevent_worker_sigterm_and_max_requests(gunicorn):
    server = gunicorn("gevent_apps:wsgi", GEVENT, "--max-requests", "4", workers=1)
    (first,) = server.ready()
    # gunicorn's gevent worker notices max_requests within a second: keep asking until it went.
    pids = []
    wait_for(lambda: pids.append(server.pid_of()) or pids[-1] != first, 20, "a recycled worker")
    assert "Autorestarting worker after current request." in server.log()
    result = {}

    def slow():
        try:
            result["body"] = server.get("/sleep?s=2", timeout=20)
        except Exception as exc:
            result["error"] = repr(exc)

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.5)
    last = pids[-1]
    server.proc.send_signal(signal.SIGTERM)
    client.join(20)
    assert result.get("error") is None and "path=/sleep" in result["body"], result
    assert server.proc.wait(20) == 0
    # Both the recycled worker and the one stopped by SIGTERM shut their reactor down.
    log = server.log()
    assert f"reactor shutdown in worker {first}" in log, log
    assert f"reactor shutdown in worker {last}" in log, log


# -- in-process -------------------------------------------------------------------------------


def test_connection_tracking_factory_provides_iprotocolfactory():
    from twisted.internet.interfaces import IProtocolFactory
    from twisted.internet.protocol import Factory, Protocol
    from zope.interface.verify import verifyObject

    from geventreactor._gunicorn_twisted import _Connections

    counted = []
    connections = _Connections(Factory.forProtocol(Protocol), lambda: counted.append(1))
    assert verifyObject(IProtocolFactory, connections)
    protocol = connections.buildProtocol(None)
    assert isinstance(protocol, Protocol) and counted == [1]
    assert connections.live() == [protocol]  # not connected yet: counts as open


def test_serving_factory_rejects_other_objects():
    from geventreactor._gunicorn_twisted import serving_factory

    with pytest.raises(TypeError, match=r"IResource.*IProtocolFactory.*WSGI callable, got 42"):
        serving_factory(42, None, None)


def test_importing_the_workers_installs_no_reactor():
    # What the gunicorn master does with `-k geventreactor.gunicorn.TwistedWorker`.
    code = (
        "import sys, geventreactor.gunicorn as g; g.TwistedWorker.setup(); "
        "print('twisted.internet.reactor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
