"""Twisted name resolution on gevent's resolvers (c-ares, threads, ...), in-loop or standalone."""

from importlib.metadata import version as _version

from ._install import install_gevent_resolver
from ._resolution import GeventHostResolution
from ._resolver import GeventResolver

__version__ = _version("gevent-resolver")

__all__ = ["GeventHostResolution", "GeventResolver", "install_gevent_resolver"]
