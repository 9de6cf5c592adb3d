"""HubThread: greenlets in a real OS thread, outcomes delivered to a real reactor's thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import gevent
import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.epollreactor import EPollReactor
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gevent_deferred import GreenletKilledError, HubThread, IHubReactor, shared_hub_thread


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_call_runs_in_hub_thread_and_fires_in_reactor_thread(running_reactor, hub_thread):
    seen = {}

    def work(x, y=0):
        seen["fn_thread"] = threading.get_ident()
        gevent.sleep(0.01)  # a greenlet in the hub thread may block with gevent
        return x + y

    def in_reactor():
        d = hub_thread.call(running_reactor.reactor, work, 40, y=2)

        def record(result):
            seen["callback_thread"] = threading.get_ident()
            return result

        return d.addCallback(record)

    assert running_reactor.call(in_reactor) == 42
    assert seen["fn_thread"] == hub_thread.thread_ident
    assert seen["fn_thread"] not in (threading.get_ident(), running_reactor.thread_ident)
    assert seen["callback_thread"] == running_reactor.thread_ident


def test_failure_keeps_original_traceback(running_reactor, hub_thread):
    def broken():
        raise ValueError("broken on purpose")

    def in_reactor():
        return hub_thread.call(running_reactor.reactor, broken)

    failure = running_reactor.outcome(in_reactor)
    assert isinstance(failure, Failure)
    assert failure.check(ValueError)
    assert "broken on purpose" in str(failure.value)
    assert "broken" in [frame[0] for frame in failure.frames]


def test_cancel_kills_the_greenlet(running_reactor, hub_thread):
    events = []

    def sleeper():
        try:
            gevent.sleep(30)
        except gevent.GreenletExit:
            events.append("killed")
            raise

    holder = {}

    def start():
        holder["d"] = hub_thread.call(running_reactor.reactor, sleeper)

    running_reactor.call(start)
    time.sleep(0.05)  # let the greenlet start sleeping

    def cancel():
        d = holder["d"]
        d.cancel()
        return d

    failure = running_reactor.outcome(cancel)
    assert failure.check(CancelledError)
    wait_until(lambda: events == ["killed"])


def test_cancel_before_the_greenlet_starts_never_runs_it(running_reactor, hub_thread):
    ran = []

    def in_reactor():
        d = hub_thread.call(running_reactor.reactor, ran.append, 1)
        d.cancel()  # same reactor turn: the hub thread may not have started it yet
        return d.addErrback(lambda f: f.type)

    assert running_reactor.call(in_reactor) is CancelledError
    time.sleep(0.05)
    assert ran in ([], [1])  # racing is allowed, but the Deferred was failed exactly once


def test_stop_kills_greenlets_fails_deferred_with_greenlet_killed(running_reactor):
    ht = HubThread()
    ht.start()
    holder = {}

    def start():
        d = holder["d"] = ht.call(running_reactor.reactor, gevent.sleep, 30)
        d.addErrback(lambda f: holder.setdefault("failure", f))

    running_reactor.call(start)
    time.sleep(0.05)
    ht.stop()
    wait_until(lambda: "failure" in holder)
    assert holder["failure"].check(GreenletKilledError)
    assert "was killed" in str(holder["failure"].value)
    assert isinstance(holder["failure"].value, CancelledError)


def test_stop_joins_the_real_thread_and_restart_works():
    ht = HubThread()
    assert not ht.running
    ht.start()
    ht.start()  # idempotent
    assert ht.running
    wait_until(lambda: ht.thread_ident is not None)
    ident = ht.thread_ident
    assert ident in sys._current_frames()
    ht.stop()
    assert not ht.running
    assert ident not in sys._current_frames()
    ht.stop()  # stopping twice is harmless
    ht.start()
    try:
        done = threading.Event()
        ht.submit(done.set)
        assert done.wait(5)
    finally:
        ht.stop()


def test_submit_from_many_threads(hub_thread):
    count = 0
    lock = threading.Lock()
    all_done = threading.Event()

    def bump():
        nonlocal count
        with lock:
            count += 1
            if count == 800:
                all_done.set()

    def spam():
        for _ in range(100):
            hub_thread.submit(bump)

    threads = [threading.Thread(target=spam) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert all_done.wait(5)
    assert count == 800


def test_hub_stays_alive_while_idle(hub_thread):
    time.sleep(0.1)  # an idle hub must not exit with LoopExit
    done = threading.Event()
    hub_thread.submit(done.set)
    assert done.wait(5)


def test_result_may_be_a_coroutine_or_deferred(running_reactor, hub_thread):
    async def coro():
        return "from coroutine"

    def in_reactor():
        return hub_thread.call(running_reactor.reactor, coro)

    assert running_reactor.call(in_reactor) == "from coroutine"


def test_misuse_errors(hub_thread):
    with pytest.raises(TypeError, match="expects a callable, got int"):
        hub_thread.submit(1)
    with pytest.raises(TypeError, match="expects a Twisted reactor"):
        hub_thread.call(object(), len)
    with pytest.raises(TypeError, match="expects a callable fn"):
        hub_thread.call(EPollReactor(), "nope")
    with pytest.raises(TypeError, match="expects a str"):
        HubThread(name=3)
    stopped = HubThread()
    with pytest.raises(RuntimeError, match="not running; call start"):
        stopped.submit(len, "")


def test_stop_from_its_own_thread_raises(hub_thread):
    result = {}
    done = threading.Event()

    def try_stop():
        try:
            hub_thread.stop()
        except RuntimeError as exc:
            result["error"] = str(exc)
        done.set()

    hub_thread.submit(try_stop)
    assert done.wait(5)
    assert "from its own thread" in result["error"]
    assert hub_thread.running


def test_stop_from_a_greenlet_does_not_block_other_greenlets():
    ht = HubThread()
    ht.start()

    def slow_to_die():
        try:
            gevent.sleep(30)
        finally:
            time.sleep(0.2)  # a real (unpatched) sleep in the hub thread delays its end

    ht.submit(slow_to_die)
    time.sleep(0.05)
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(1000)])
    gevent.spawn(ht.stop).join(5)
    ticker.kill()
    assert not ht.running
    assert len(ticks) >= 3, "the calling thread's hub was blocked during stop()"


def test_reactor_in_main_thread_hub_thread_elsewhere():
    # The usual shape for a Twisted program: the reactor owns the main thread.
    reactor = EPollReactor()
    ht = HubThread()
    ht.start()
    results = []

    def go():
        def work():
            gevent.sleep(0.01)
            return threading.get_ident()

        d = ht.call(reactor, work)
        d.addCallback(lambda ident: results.append((ident, threading.get_ident())))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.callLater(5, reactor.stop)  # a safety net, never a hang
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        ht.stop()
    [(fn_ident, callback_ident)] = results
    assert callback_ident == threading.get_ident() != fn_ident


def test_shared_hub_thread_is_one_running_instance():
    a = shared_hub_thread()
    b = shared_hub_thread()
    assert a is b and a.running
    done = threading.Event()
    a.submit(done.set)
    assert done.wait(5)


def test_ihubreactor_is_verifiable():
    @implementer(IHubReactor)
    class FakeHubOwner:
        hub = None

    owner = FakeHubOwner()
    owner.hub = gevent.get_hub()
    assert verifyObject(IHubReactor, owner)
    assert not IHubReactor.providedBy(EPollReactor())


def test_works_after_patch_all_in_a_subprocess():
    script = textwrap.dedent(
        """
        # patch_all() removes select.epoll, so the epoll reactor's module is imported first.
        from twisted.internet.epollreactor import EPollReactor
        from gevent import monkey; monkey.patch_all()
        import time
        from gevent_deferred import HubThread, shared_hub_thread
        from gevent_deferred._threads import get_ident

        reactor = EPollReactor()
        ht = shared_hub_thread()
        out = []

        def work():
            time.sleep(0.01)  # patched: a gevent sleep in the hub thread
            return get_ident()

        def go():
            d = ht.call(reactor, work)
            d.addCallback(lambda ident: out.append((ident, get_ident())))
            d.addBoth(lambda _: reactor.stop())

        reactor.callWhenRunning(go)
        reactor.callLater(5, reactor.stop)
        reactor.run(installSignalHandlers=False)
        [(fn_ident, cb_ident)] = out
        assert fn_ident != cb_ident, out
        ht.stop()
        assert not ht.running
        print("OK")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert proc.stdout.strip() == "OK", proc.stdout + proc.stderr


def test_failure_traceback_names_the_raising_line(running_reactor, hub_thread):
    def deep():
        raise KeyError("deep")

    def in_reactor():
        return hub_thread.call(running_reactor.reactor, deep)

    failure = running_reactor.outcome(in_reactor)
    text = failure.getTraceback()
    assert "in deep" in text and "KeyError" in text
