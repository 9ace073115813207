"""statskit_server: a thin Falcon app over the statskit library, run by gunicorn.

    gunicorn 'statskit_server:create_app()'
"""
from .app import create_app, shutdown

__all__ = ["create_app", "shutdown"]
