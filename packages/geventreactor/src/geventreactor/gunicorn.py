"""
gunicorn workers that run GeventReactor, one per worker process::

    gunicorn -k geventreactor.gunicorn.TwistedWorker module:app
    gunicorn -k geventreactor.gunicorn.GeventReactorWorker module:wsgi_app

Importing this module installs no reactor: each worker makes its own after the fork.
"""

from ._gunicorn_gevent import GeventReactorWorker
from ._gunicorn_twisted import TwistedWorker

__all__ = ["GeventReactorWorker", "TwistedWorker"]
