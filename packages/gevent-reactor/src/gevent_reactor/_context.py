"""Old name of ``_reactor_context`` (the reactor's own context), kept so that modules still
importing from here need no change."""

from ._reactor_context import ReactorContextBlockingError, _ReactorContext

__all__ = ["ReactorContextBlockingError", "_ReactorContext"]
