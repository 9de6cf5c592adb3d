"""File objects over a GreenConnection, as ``socket.makefile`` builds them over a socket."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._green_connection import GreenConnection


class GreenConnectionIO(io.RawIOBase):
    """A raw stream over a connection; closing it leaves the connection open (as sockets do)."""

    def __init__(self, conn: GreenConnection, mode: str) -> None:
        super().__init__()
        self._conn = conn
        self._reading = "r" in mode
        self._writing = "w" in mode

    def readable(self) -> bool:
        return self._reading

    def writable(self) -> bool:
        return self._writing

    def readinto(self, b: WriteableBuffer) -> int:
        """
        Receive into ``b`` as ``GreenConnection.recv_into`` does; 0 at the end of input.

        Blocks the current greenlet. Must not be called from the hub.
        """
        self._checkClosed()
        if not self._reading:
            raise io.UnsupportedOperation("makefile(): this file was opened without 'r'")
        return self._conn.recv_into(b)

    def write(self, b: ReadableBuffer) -> int:
        """
        Send all of ``b`` as ``GreenConnection.sendall`` does; return its length.

        Blocks the current greenlet while the transport's write buffer is over its limit. Must
        not be called from the hub.
        """
        self._checkClosed()
        if not self._writing:
            raise io.UnsupportedOperation("makefile(): this file was opened without 'w'")
        data = bytes(b)
        self._conn.sendall(data)
        return len(data)


def make_file(
    conn: GreenConnection,
    mode: str,
    buffering: int | None,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
) -> io.IOBase:
    if not isinstance(mode, str) or not set(mode) <= {"r", "w", "b"} or not mode:
        raise ValueError(
            f"makefile(mode=...) expects a mode made of 'r', 'w' and 'b', got {mode!r}"
        )
    writing = "w" in mode
    reading = "r" in mode or not writing
    binary = "b" in mode
    raw = GreenConnectionIO(conn, ("r" if reading else "") + ("w" if writing else ""))
    if buffering is None or buffering < 0:
        buffering = io.DEFAULT_BUFFER_SIZE
    if buffering == 0:
        if not binary:
            raise ValueError("makefile(buffering=0) is only allowed in binary mode ('b')")
        return raw
    buffer: io.BufferedIOBase
    if reading and writing:
        buffer = io.BufferedRWPair(raw, raw, buffering)
    elif reading:
        buffer = io.BufferedReader(raw, buffering)
    else:
        buffer = io.BufferedWriter(raw, buffering)
    if binary:
        return buffer
    # typeshed has io.text_encoding from Python 3.11 (when io's __all__ got it); io has it since
    # 3.10.
    encoding = io.text_encoding(encoding)  # type: ignore[attr-defined]
    # typeshed's TextIOWrapper wants a buffer with a name, which BufferedRWPair has not; the
    # standard library's socket.makefile wraps one the same way.
    text = io.TextIOWrapper(buffer, encoding, errors, newline)  # type: ignore[type-var]
    # typeshed has IO.mode read-only; a TextIOWrapper's is a plain attribute (socket.makefile
    # sets it too).
    text.mode = mode  # type: ignore[misc]
    return text
