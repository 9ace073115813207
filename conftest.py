"""Root conftest: what ``--doctest-modules`` must not import."""

# Deprecated aliases of moved modules (each warns on import; tests/core/test_layout.py checks them).
DEPRECATED_ALIASES = ["statskit/panel.py", "statskit/sessions.py", "statskit/sessionlog.py",
                      "statskit/grafana_metrics.py", "statskit/state/sessions.py", "statskit/state/oneshot.py",
                      "statskit/grafana/journal.py"]

collect_ignore = DEPRECATED_ALIASES + ["setup.py", "benchmarks"]
