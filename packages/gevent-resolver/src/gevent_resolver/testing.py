"""Test helpers: a real DNS server on loopback to point c-ares at (``LoopbackDNSServer``)."""

from ._loopback_dns import DEFAULT_RECORDS, DEFAULT_SILENT, ZONE, LoopbackDNSServer

__all__ = ["DEFAULT_RECORDS", "DEFAULT_SILENT", "ZONE", "LoopbackDNSServer"]
