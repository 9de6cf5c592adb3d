"""Checking and normalising what callers pass to the resolver, before any lookup starts.

Twisted's own resolvers fail late (a ``KeyError`` from a lookup table, a ``TypeError`` deep in a
thread); these checks fail early, in the caller's frame, naming the argument.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from socket import AF_INET, AF_INET6, AF_UNSPEC, SOCK_DGRAM, SOCK_STREAM

from twisted.internet.address import IPv4Address, IPv6Address

# ThreadedResolver's fallback when the caller gives no timeout at all.
DEFAULT_TIMEOUT = 60.0

_FAMILIES = {
    frozenset([IPv4Address]): AF_INET,
    frozenset([IPv6Address]): AF_INET6,
    frozenset([IPv4Address, IPv6Address]): AF_UNSPEC,
}

_SOCKET_TYPES = {"TCP": SOCK_STREAM, "UDP": SOCK_DGRAM}


def _idna_bytes(text: str) -> bytes:
    # The same choice as twisted.internet._idna._idnaBytes (private there): the `idna` package
    # (IDNA 2008) when installed, else the standard library's IDNA 2003 codec.
    try:
        import idna
    except ImportError:
        return text.encode("idna")
    return idna.encode(text)


def host_name(value: object, argument: str) -> str:
    """Return ``value`` as an ASCII host name, IDNA-encoding non-ASCII text as Twisted does.

    ASCII names pass through untouched (like Twisted's ``SimpleResolverComplexifier``), so IP
    literals and names the resolver will reject still reach it and fail as lookups, not here.
    """
    if not isinstance(value, str):
        raise TypeError(
            f"{argument} must be a str (a host name), not {type(value).__name__}: {value!r}"
        )
    if not value:
        raise ValueError(f"{argument} must be a non-empty host name, got ''")
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        try:
            return _idna_bytes(value).decode("ascii")
        except UnicodeError as e:
            raise ValueError(
                f"{argument} must be a valid internationalised domain name, got {value!r}: {e}"
            ) from None
    return value


def port_number(value: object) -> int:
    """Return ``value`` if it is a port number (an int from 0 to 65535)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"portNumber must be an int from 0 to 65535, not {type(value).__name__}: {value!r}"
        )
    if not 0 <= value <= 65535:
        raise ValueError(f"portNumber must be an int from 0 to 65535, got {value!r}")
    return value


def address_family(value: Iterable[type] | None) -> int:
    """Return the socket family for ``addressTypes`` (``None`` means IPv4 and IPv6)."""
    if value is None:
        return AF_UNSPEC
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            "addressTypes must be None or a collection of IPv4Address/IPv6Address classes, "
            f"not {type(value).__name__}: {value!r}"
        )
    types = list(value)
    wrong = [t for t in types if t not in (IPv4Address, IPv6Address)]
    if wrong or not types:
        raise ValueError(
            "addressTypes must be None or a non-empty collection of "
            f"twisted.internet.address.IPv4Address/IPv6Address classes, got {value!r}"
        )
    return _FAMILIES[frozenset(types)]


def socket_type(value: object) -> int:
    """Return the socket type for ``transportSemantics`` (``'TCP'`` or ``'UDP'``)."""
    try:
        return _SOCKET_TYPES[value]  # type: ignore[index]
    except (KeyError, TypeError):
        raise ValueError(f"transportSemantics must be 'TCP' or 'UDP', got {value!r}") from None


def timeout_seconds(value: object) -> float:
    """Return the lookup's time limit: the sum of ``timeout``, as Twisted's ThreadedResolver does.

    An empty or ``None`` timeout means ThreadedResolver's default of 60 seconds.
    """
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            "timeout must be a sequence of seconds such as (1, 3, 11, 45), "
            f"not {type(value).__name__}: {value!r}"
        )
    parts = list(value)
    if not parts:
        return DEFAULT_TIMEOUT
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, numbers.Real) or not float(part) >= 0:
            raise ValueError(
                "timeout must be a sequence of non-negative numbers of seconds such as "
                f"(1, 3, 11, 45), got {value!r}"
            )
    total = float(sum(parts))
    if total <= 0:
        raise ValueError(f"timeout must add up to more than 0 seconds, got {value!r}")
    return total
