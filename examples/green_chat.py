"""
A chat server written for gevent, on Twisted's networking: GreenFactory runs one greenlet per member.

Every line a member sends goes to every other member. By default it runs a short scripted session
(two members on 127.0.0.1, a random port) and exits; with --serve it listens until interrupted.

    python examples/green_chat.py                 # scripted session, prints it, exits
    python examples/green_chat.py --serve 8023    # then: telnet 127.0.0.1 8023
"""

from __future__ import annotations

import sys

import geventreactor

geventreactor.install(background=True)  # the reactor runs itself: no reactor.run() below

import gevent  # noqa: E402

from geventreactor import connect, listen  # noqa: E402

members = set()


def member(conn):
    """One member's greenlet: it may block; closing happens when it returns."""
    conn.sendall(b"welcome; your name?\n")
    name = conn.readline().strip() or b"anonymous"
    members.add(conn)
    try:
        for line in conn:  # blocks this greenlet only, until the member leaves
            for other in list(members):
                if other is not conn:
                    other.sendall(b"<" + name + b"> " + line)
    finally:
        members.discard(conn)


def scripted() -> None:
    port = listen("tcp:0:interface=127.0.0.1", member)
    address = f"tcp:127.0.0.1:{port.getHost().port}"
    alice, bob = connect(address, timeout=5), connect(address, timeout=5)
    for conn, name in ((alice, b"alice"), (bob, b"bob")):
        assert conn.readline() == b"welcome; your name?\n"
        conn.sendall(name + b"\n")
    while len(members) < 2:
        gevent.sleep(0.01)
    alice.sendall(b"hello bob\n")
    print("bob got:", bob.readline().decode().strip())
    bob.sendall(b"hi alice\n")
    print("alice got:", alice.readline().decode().strip())
    alice.close()
    bob.close()
    with gevent.Timeout(5):
        while members:  # each member's greenlet sees the end of its input and returns
            gevent.sleep(0.01)
    print("members left:", len(members))


def serve(number: int) -> None:
    port = listen(f"tcp:{number}", member)
    print(f"chat on {port.getHost()}; Ctrl-C to stop")
    while True:
        gevent.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]) if len(sys.argv) > 2 else 8023)
    else:
        scripted()
