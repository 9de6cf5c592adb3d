"""LoopWaker: one cross-thread wake-up, from real threads, closed while they still wake it."""

from __future__ import annotations

import threading
import time

import gevent
import gevent.event
import pytest

from gevent_deferred import LoopWaker


def test_wake_from_other_threads_runs_the_callback_in_the_hub():
    hub = gevent.get_hub()
    ran: list[tuple[int, bool]] = []
    waker = LoopWaker(
        hub.loop, lambda: ran.append((threading.get_ident(), gevent.getcurrent() is hub))
    )
    try:
        threads = [threading.Thread(target=waker.wake) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        with gevent.Timeout(5):
            while not ran:
                gevent.sleep(0.01)
        assert ran[0] == (threading.get_ident(), True)
        assert len(ran) <= 4  # coalesced, never more runs than wakes
    finally:
        waker.close()


def test_close_races_wakes_from_other_threads_without_sending_to_a_closed_watcher():
    """libuv aborts the process ("Sending to a closed watcher") if a send reaches a closed async
    watcher; closing while four threads keep waking must be harmless, and later wakes do nothing."""
    hub = gevent.get_hub()
    for _ in range(20):
        waker = LoopWaker(hub.loop, lambda: None)
        stop = threading.Event()
        errors: list[BaseException] = []

        def spam(
            waker: LoopWaker = waker,
            stop: threading.Event = stop,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                while not stop.is_set():
                    waker.wake()
            except BaseException as exc:  # an assertion from gevent would land here
                errors.append(exc)

        threads = [threading.Thread(target=spam) for _ in range(4)]
        for t in threads:
            t.start()
        gevent.sleep(0.005)
        waker.close()
        assert waker.closed
        gevent.sleep(0.005)
        stop.set()
        for t in threads:
            t.join(5)
        assert not errors, errors
        waker.wake()  # does nothing once closed
        waker.close()  # a second close does nothing


def test_close_from_its_own_callback():
    hub = gevent.get_hub()
    done: list[bool] = []

    def callback() -> None:
        waker.close()
        done.append(True)

    waker = LoopWaker(hub.loop, callback)
    threading.Thread(target=waker.wake).start()
    with gevent.Timeout(5):
        while not done:
            gevent.sleep(0.01)
    gevent.sleep(0.01)  # the deferred close runs
    assert waker.closed


def test_an_unreferenced_waker_does_not_keep_the_loop_alive():
    hub = gevent.get_hub()
    waker = LoopWaker(hub.loop, lambda: None, ref=False)
    try:
        assert waker.ref is False
        waker.ref = True
        assert waker.ref is True
    finally:
        waker.close()


def test_bad_arguments_are_named():
    loop = gevent.get_hub().loop
    with pytest.raises(TypeError, match="callable callback"):
        LoopWaker(loop, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="gevent loop"):
        LoopWaker(object(), lambda: None)
    with pytest.raises(ValueError, match="fallback"):
        LoopWaker(loop, lambda: None, fallback=0)


class _LostSend:
    def send(self) -> None:
        pass


@pytest.mark.skipif(
    not type(gevent.get_hub().loop).__module__.startswith("gevent.libuv"),
    reason="libev's loop keeps its own async watcher in C; only libuv lost sends",
)
def test_a_one_shot_threadsafe_call_survives_a_lost_send_on_libuv():
    """The module docstring's reason why run_callback_threadsafe needs no waker: on libuv, a call
    whose send is lost still runs within gevent's 0.3 s loop timer, not at the next event."""
    loop = gevent.get_hub().loop
    ran = gevent.event.Event()
    sent_at: list[float] = []

    def call() -> None:
        sent_at.append(time.monotonic())
        loop.run_callback_threadsafe(ran.set)

    own_send = loop._threadsafe_async
    loop._threadsafe_async = _LostSend()
    try:
        caller = threading.Timer(0.2, call)
        caller.start()
        assert ran.wait(5)
        woken_after = time.monotonic() - sent_at[0]
        caller.join(5)
    finally:
        loop._threadsafe_async = own_send
    assert woken_after < 1.5
