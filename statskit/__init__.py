"""statskit: a self-hosted analytics ingestion kit.

The library holds everything but HTTP: the event model (:mod:`statskit.events`), sinks
(:mod:`statskit.sinks`), shared state (:mod:`statskit.state`), Grafana panel sessions and
one-shot Prometheus events. ``statskit_server`` mounts it on Falcon; ``statskit_client`` posts to it.

    >>> from statskit.config import load_settings
    >>> from statskit.pipeline import build_pipeline
    >>> from statskit.events import parse_items
    >>> settings = load_settings(env={}, overrides={"state.backend": "memory", "sinks.enabled": ["prometheus"]})
    >>> pipeline = build_pipeline(settings)
    >>> pipeline.ingest(parse_items([{"uid": "u1", "event": "signup"}]))
"""
__version__ = "0.1.0"
