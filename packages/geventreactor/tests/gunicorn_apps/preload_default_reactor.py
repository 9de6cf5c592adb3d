"""An app module that imports twisted.internet.reactor at the top (Twisted's default reactor)."""

from twisted.internet import reactor  # noqa: F401
from twisted_apps import resource

__all__ = ["resource"]
