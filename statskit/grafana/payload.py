"""The original Go receiver's ``Payload`` struct and its parts (field tables for :mod:`.structs`)."""
from __future__ import annotations

from typing import Any, List, Optional

from .structs import ANY_LIST, BOOL, INT, STR, _Struct, value_text


class Options(_Struct):
    # Only the five options the server reads; the panel's others (server, dashboard,
    # showDetails, flatten) are unknown keys to the Go struct, so any value goes there.
    post_start: bool
    post_end: bool
    post_heartbeat: bool
    heartbeat_interval: int
    heartbeat_always: bool
    __slots__ = ("post_start", "post_end", "post_heartbeat", "heartbeat_interval", "heartbeat_always")
    FIELDS = (("postStart", "post_start", BOOL), ("postEnd", "post_end", BOOL),
              ("postHeartbeat", "post_heartbeat", BOOL), ("heartbeatInterval", "heartbeat_interval", INT),
              ("heartbeatAlways", "heartbeat_always", BOOL))


class BuildInfo(_Struct):
    version: str
    commit: str
    env: str
    edition: str
    __slots__ = ("version", "commit", "env", "edition")
    FIELDS = (("version", "version", STR), ("commit", "commit", STR), ("env", "env", STR),
              ("edition", "edition", STR))


class LicenseInfo(_Struct):
    has_license: bool
    expiry: int
    state_info: str
    __slots__ = ("has_license", "expiry", "state_info")
    FIELDS = (("hasLicense", "has_license", BOOL), ("expiry", "expiry", INT), ("stateInfo", "state_info", STR))


class Host(_Struct):
    hostname: str
    port: str
    protocol: str
    build_info: BuildInfo
    license_info: LicenseInfo
    __slots__ = ("hostname", "port", "protocol", "build_info", "license_info")
    FIELDS = (("hostname", "hostname", STR), ("port", "port", STR), ("protocol", "protocol", STR),
              ("buildInfo", "build_info", BuildInfo), ("licenseInfo", "license_info", LicenseInfo))


class Dashboard(_Struct):
    name: str
    uid: str
    __slots__ = ("name", "uid")
    FIELDS = (("name", "name", STR), ("uid", "uid", STR))


class User(_Struct):
    is_signed_in: bool
    id: int
    login: str
    email: str
    name: str
    light_theme: bool
    org_count: int
    org_id: int
    org_name: str
    org_role: str
    is_grafana_admin: bool
    timezone: str
    locale: str
    has_edit_permission_in_folders: bool
    __slots__ = ("is_signed_in", "id", "login", "email", "name", "light_theme", "org_count", "org_id",
                 "org_name", "org_role", "is_grafana_admin", "timezone", "locale",
                 "has_edit_permission_in_folders")
    FIELDS = (("isSignedIn", "is_signed_in", BOOL), ("id", "id", INT), ("login", "login", STR),
              ("email", "email", STR), ("name", "name", STR), ("lightTheme", "light_theme", BOOL),
              ("orgCount", "org_count", INT), ("orgId", "org_id", INT), ("orgName", "org_name", STR),
              ("orgRole", "org_role", STR), ("isGrafanaAdmin", "is_grafana_admin", BOOL),
              ("timezone", "timezone", STR), ("locale", "locale", STR),
              ("hasEditPermissionInFolders", "has_edit_permission_in_folders", BOOL))

    @property
    def theme(self) -> str:
        return "light" if self.light_theme else "dark"

    @property
    def role(self) -> str:
        """The original's role label: admin, editor or user."""
        if self.is_grafana_admin:
            return "admin"
        return "editor" if self.has_edit_permission_in_folders else "user"


class Variable(_Struct):
    name: str
    label: str
    type: str
    multi: bool
    values: Optional[List[Any]]
    __slots__ = ("name", "label", "type", "multi", "values")
    # values is []interface{} in Go: any JSON values, None when absent or null.
    FIELDS = (("name", "name", STR), ("label", "label", STR), ("type", "type", STR),
              ("multi", "multi", BOOL), ("values", "values", ANY_LIST))

    def value_texts(self) -> List[str]:
        values = self.values
        if not values:
            return []
        if all(v.__class__ is str for v in values):
            return values  # the usual case: the panel sends strings
        return [value_text(v) for v in values]


class RawTimeRange(_Struct):
    from_: str
    to: str
    __slots__ = ("from_", "to")
    FIELDS = (("from", "from_", STR), ("to", "to", STR))


class TimeRange(_Struct):
    from_: int
    to: int
    raw: RawTimeRange
    __slots__ = ("from_", "to", "raw")
    FIELDS = (("from", "from_", INT), ("to", "to", INT), ("raw", "raw", RawTimeRange))


class Payload(_Struct):
    """One decoded payload; attribute names are the JSON names in snake_case."""

    uuid: str
    type: str
    has_focus: bool
    options: Options
    host: Host
    dashboard: Dashboard
    user: User
    variables: Optional[List[Variable]]
    time_range: TimeRange
    time_zone: str
    time_origin: int
    time: int
    flattened: bool  # the body came flattened (not a struct field, so not in the raw log)
    __slots__ = ("uuid", "type", "has_focus", "options", "host", "dashboard", "user", "variables",
                 "time_range", "time_zone", "time_origin", "time", "flattened")
    FIELDS = (("uuid", "uuid", STR), ("type", "type", STR), ("hasFocus", "has_focus", BOOL),
              ("options", "options", Options), ("host", "host", Host), ("dashboard", "dashboard", Dashboard),
              ("user", "user", User), ("variables", "variables", [Variable]),
              ("timeRange", "time_range", TimeRange), ("timeZone", "time_zone", STR),
              ("timeOrigin", "time_origin", INT), ("time", "time", INT))
