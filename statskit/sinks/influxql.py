"""Reading events back from InfluxDB 1.x with InfluxQL (``GET /log/event/{id}``, ``GET /log/events``).

A row of ``SELECT *`` does not say which columns are tags, and its JSON writes the float 2.0 as
``2``: ``SHOW TAG KEYS`` and ``SHOW FIELD KEYS`` (sent in the same request) turn a row back into
the :class:`~statskit.events.Event` it was written from. Only ``TABLE_NAME`` is read: the
measurement of ``{uid, event}`` events, whose ids clients get back.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import RetryableError
from ..events import Event, id_time
from .influxdb_http import Rejected, V1Writer, _ident, _literal

ID_WINDOW_NS = 60 * 10**9  # lookup(): search this close to the id's creation time first


class InfluxQLReader:
    """Events of one measurement, through a :class:`V1Writer`'s ``/query``."""

    def __init__(self, writer: V1Writer, table_name: str) -> None:
        self.writer = writer
        self.table_name = table_name

    def lookup(self, event_id: str) -> Optional[Event]:
        """The event stored under ``event_id``, or None."""
        where = f'"event_id" = \'{_literal(event_id)}\''
        created = id_time(event_id)
        if created is not None:
            # A field is not indexed: search around the id's creation time first (where events
            # without an explicit time are), then everywhere.
            center = int(created * 1e9)
            found = self.select(f"{where} AND time >= {center - ID_WINDOW_NS} AND time <= {center + ID_WINDOW_NS}", 1)
            if found:
                return found[0]
        found = self.select(where, 1)
        return found[0] if found else None

    def query(self, uid: Optional[str] = None, event: Optional[str] = None, since_ns: Optional[int] = None,
              until_ns: Optional[int] = None, limit: int = 100) -> List[Event]:
        """Events newest first, filtered on the ``uid`` and ``event`` tags and on time."""
        where = []
        if uid is not None:
            where.append(f'"uid" = \'{_literal(uid)}\'')
        if event is not None:
            where.append(f'"event" = \'{_literal(event)}\'')
        if since_ns is not None:
            where.append(f"time >= {int(since_ns)}")
        if until_ns is not None:
            where.append(f"time < {int(until_ns)}")
        return self.select(" AND ".join(where), int(limit), newest_first=True)

    def select(self, where: str, limit: int, newest_first: bool = False) -> List[Event]:
        """Events of the measurement matching an InfluxQL ``where`` clause (already escaped)."""
        table = _ident(self.table_name)
        q = (f'SELECT * FROM "{table}"' + (f" WHERE {where}" if where else "")
             + (" ORDER BY time DESC" if newest_first else "") + f" LIMIT {limit}"
             # Which columns are tags and what type each field has, in the same request: the JSON
             # answer writes the float 2.0 as 2, and tags and fields look alike in it.
             + f'; SHOW TAG KEYS FROM "{table}"; SHOW FIELD KEYS FROM "{table}"')
        results = self._query(q).get("results") or []
        errors = [r["error"] for r in results if r.get("error")]
        if errors:
            if any("database not found" in e for e in errors) or not self._database_exists():
                # Nothing written yet (a query of several statements only says "not executed").
                return []
            # A refusal of InfluxDB's is not the client's fault nor a bug of ours: 503, never 500.
            raise RetryableError(f"InfluxDB query failed: {'; '.join(errors)[:300]}")
        if len(results) < 3 or not results[0].get("series"):
            return []
        tag_keys = {row[0] for s in results[1].get("series", ()) for row in s["values"]}
        field_types = {row[0]: row[1] for s in results[2].get("series", ()) for row in s["values"]}
        series = results[0]["series"][0]  # no GROUP BY: every series of the measurement in one
        rows = (dict(zip(series["columns"], values)) for values in series["values"])
        # Rows without an event_id were not written by statskit (stats-service, other tools).
        return [self.event(row, tag_keys, field_types) for row in rows if row.get("event_id") is not None]

    def _query(self, q: str) -> Dict[str, Any]:
        """``/query``'s answer; every failure a RetryableError (the reader says 503 with it)."""
        try:
            answer = self.writer.query(q)
        except Rejected as exc:  # a 4xx: authentication, permissions, a proxy in the way
            raise RetryableError(f"InfluxDB refused the query: {exc}") from exc
        except ValueError as exc:  # not JSON: not an InfluxDB answering
            raise RetryableError(f"InfluxDB answered no JSON to a query: {exc}") from exc
        if not isinstance(answer, dict):
            raise RetryableError("InfluxDB answered a query with something else than a JSON object")
        return answer

    def _database_exists(self) -> bool:
        results = self._query("SHOW DATABASES").get("results") or [{}]
        names = {row[0] for s in results[0].get("series", ()) for row in s.get("values", ())}
        return self.writer.database in names

    def event(self, row: Dict[str, Any], tag_keys: set, field_types: Dict[str, str]) -> Event:
        """A row back into the Event it was written from."""
        time_ns, event_id = int(row.pop("time")), row.pop("event_id")
        tags: Dict[str, str] = {}
        fields: Dict[str, Any] = {}
        for key, value in row.items():
            if value is None:
                continue  # a column of another point of the measurement
            if key in tag_keys:
                tags[key] = str(value)
            elif field_types.get(key) == "float":
                fields[key] = float(value)
            else:
                fields[key] = value
        uid, name = tags.get("uid"), tags.get("event")
        if uid is None or name is None:
            return Event(event_id, time_ns, self.table_name, tags, fields)  # a point, not an event
        return Event(event_id, time_ns, self.table_name, tags, fields, uid=uid, event=name)
