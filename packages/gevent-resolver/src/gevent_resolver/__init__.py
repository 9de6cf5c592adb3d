"""Twisted name resolution on gevent's resolvers (c-ares, threads, ...), in-loop or standalone."""

from ._install import install_gevent_resolver
from ._resolution import GeventHostResolution
from ._resolver import GeventResolver

__all__ = ["GeventHostResolution", "GeventResolver", "install_gevent_resolver"]
