"""statskit_server: a thin Falcon app over the statskit library, run by gunicorn.

    gunicorn 'statskit_server:create_app()'
"""
from typing import Any

__all__ = ["create_app", "shutdown"]


def __getattr__(name: str) -> Any:
    # Lazy: `statskit-token` lives in this package and must not pay for importing falcon.
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
