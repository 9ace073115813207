"""The HTTP side of each feature: one module per feature, each with
``mount(app, service, web)``, which adds that feature's routes around the service its
:class:`~statskit.feature.Feature` built. Resources get exactly what they use.

A third-party feature points the ``statskit_server.routes`` entry point (named like its
feature) at its own ``mount`` function.
"""
from __future__ import annotations

from dataclasses import dataclass

from statskit.config import Settings

from ..auth import Authenticator


@dataclass(frozen=True)
class Web:
    """What every route module may use besides its feature's service."""

    settings: Settings
    auth: Authenticator
