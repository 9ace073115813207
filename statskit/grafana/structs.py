"""Go structs in Python: field tables, zero values, and decoding with Go's ``encoding/json`` rules."""
from __future__ import annotations

import json
from typing import Any, Callable, ClassVar, Dict, List, Tuple, Type, TypeVar

from ..constants import INT64_MAX, INT64_MIN
from ..errors import ValidationError

# A flattened list index above this is not a list (it would make us allocate that many slots).
MAX_FLAT_INDEX = 10_000
# Nesting allowed in variable values and in flattened keys (the panel sends strings, 4 levels deep).
MAX_DEPTH = 32

# Field kinds of the Go struct.
STR, BOOL, INT, ANY_LIST = "string", "boolean", "integer", "array"


def _fold(key: str) -> str:
    """Go's case-insensitive field match (simple Unicode folding; 'ſ' folds to 's', 'K' to 'k')."""
    return key.lower().replace("\u017f", "s")


class _Slow(Exception):
    """Raised by a generated fast decoder for anything but the usual shape: the slow path
    decides (it also builds the precise error). In Python 3.11 a try block costs nothing."""


class _Struct:
    """A Go struct: ``FIELDS`` lists (json name, attribute, kind) in the struct's field order.

    ``kind`` is STR/BOOL/INT/ANY_LIST, a _Struct subclass, or ``[subclass]`` for a slice of it.
    Each subclass gets a generated ``_fast(d)``: straight-line code, one ``get`` and one type
    check per field, that takes the usual body (exact key names, right types, nulls) and
    raises :class:`_Slow` for anything else. A payload has ~60 fields and this runs on every
    request: it is 3x faster than a generic loop.

    Subclasses also declare their fields as bare annotations (no values, so ``__slots__`` still
    holds them): the attributes are set dynamically, and the annotations give them their types.
    """

    __slots__: Tuple[str, ...] = ()
    FIELDS: Tuple[Tuple[str, str, Any], ...] = ()
    _BY_NAME: Dict[str, Tuple[str, Any]] = {}
    _EXACT: frozenset = frozenset()
    _FOLDED: frozenset = frozenset()
    # Set on each subclass by __init_subclass__ (a staticmethod): a decoded JSON object -> an instance.
    _fast: ClassVar[Callable[[Dict[str, Any]], Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._BY_NAME = {}
        for name, attr, kind in cls.FIELDS:
            cls._BY_NAME[name] = (attr, kind)
            cls._BY_NAME.setdefault(_fold(name), (attr, kind))
        cls._EXACT = frozenset(name for name, _, _ in cls.FIELDS)
        cls._FOLDED = frozenset(_fold(name) for name in cls._EXACT)
        # (ignore: Python 3.9's stubs give staticmethod no __call__; drop it with python_version 3.10)
        cls._fast = staticmethod(_generate_fast(cls))  # type: ignore[assignment]

    def __init__(self) -> None:
        zero = type(self)._fast(_EMPTY)
        for attr in self.__slots__:
            setattr(self, attr, getattr(zero, attr))

    @classmethod
    def decode(cls: Type[_S], data: Dict[str, Any]) -> _S:
        """An instance from a decoded JSON object (raises ValidationError as Go would fail)."""
        try:
            return cls._fast(data)
        except _Slow:
            return cls._decode_slow(data)

    @classmethod
    def _decode_slow(cls: Type[_S], data: Dict[str, Any]) -> _S:
        target = cls()
        _decode_into(target, data)
        return target

    def to_go_json(self) -> Dict[str, Any]:
        """The struct as Go's ``json.Marshal`` writes it: every field, in field order."""
        out: Dict[str, Any] = {}
        for name, attr, kind in self.FIELDS:
            value = getattr(self, attr)
            if isinstance(kind, list):
                value = None if value is None else [v.to_go_json() for v in value]
            elif isinstance(kind, type):
                value = value.to_go_json()
            elif kind == ANY_LIST:
                value = None if value is None else [_go_value(v) for v in value]
            out[name] = value
        return out

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, a) == getattr(other, a) for _, a, _ in self.FIELDS)

    def __repr__(self) -> str:
        inner = ", ".join(f"{a}={getattr(self, a)!r}" for _, a, _ in self.FIELDS)
        return f"{type(self).__name__}({inner})"


_S = TypeVar("_S", bound=_Struct)
_EMPTY: Dict[str, Any] = {}
_MISSING = object()


def _all_str(values: List[Any]) -> bool:
    return all(v.__class__ is str for v in values)


def _generate_fast(cls: Any) -> Callable[[Dict[str, Any]], Any]:
    """Source of ``cls._fast``, built from the class's own constant FIELDS (nothing external)."""
    env: Dict[str, Any] = {"_new": object.__new__, "cls": cls, "_M": _MISSING, "_Slow": _Slow, "_allstr": _all_str,
                           "_fold": _fold, "LO": INT64_MIN, "HI": INT64_MAX}
    lines = ["def _fast(d):", "    self = _new(cls)", "    n = 0"]
    for i, (name, attr, kind) in enumerate(cls.FIELDS):
        lines.append(f"    v = d.get({name!r}, _M)")
        if kind in (STR, BOOL, INT, ANY_LIST):
            py = {STR: "str", BOOL: "bool", INT: "int", ANY_LIST: "list"}[kind]
            check = f"v.__class__ is {py}" + (" and LO <= v <= HI" if kind == INT else "")
            if kind == ANY_LIST:  # values other than strings take the slow path, which checks their depth
                check += " and _allstr(v)"
            lines += [f"    if {check}:", f"        self.{attr} = v", "        n += 1",
                      "    elif v is _M or v is None:", f"        self.{attr} = {_zero(kind)!r}",
                      "    else:", "        raise _Slow"]
        elif isinstance(kind, list):
            env[f"k{i}"] = kind[0]
            lines += ["    if v.__class__ is list:",
                      f"        self.{attr} = [k{i}._fast(x) if x.__class__ is dict else _elem(k{i}, x) for x in v]",
                      "        n += 1",
                      "    elif v is _M or v is None:", f"        self.{attr} = None",
                      "    else:", "        raise _Slow"]
        else:
            env[f"k{i}"] = kind
            lines += ["    if v.__class__ is dict:", f"        self.{attr} = k{i}._fast(v)", "        n += 1",
                      "    elif v is _M or v is None:", f"        self.{attr} = k{i}._fast(_EMPTY)",
                      "    else:", "        raise _Slow"]
    attrs = {attr for _, attr, _ in cls.FIELDS}
    lines += [f"    self.{extra} = False" for extra in cls.__slots__ if extra not in attrs]
    # Other keys: fine if unknown, but a known field in other letter case needs the slow path.
    # Keys found to be unknown are remembered (a few dozen at most), so that the panel's
    # options the server does not read cost no case folding on every request.
    lines += ["    if len(d) != n:", "        for k in d:",
              "            if k not in EXACT and k not in UNKNOWN:",
              "                if _fold(k) in FOLDED:", "                    raise _Slow",
              "                if len(UNKNOWN) < 64:", "                    UNKNOWN.add(k)",
              "    return self"]
    env["EXACT"], env["FOLDED"], env["_EMPTY"], env["UNKNOWN"] = cls._EXACT, cls._FOLDED, _EMPTY, set()
    env["_elem"] = _null_element
    exec("\n".join(lines), env)
    fast: Callable[[Dict[str, Any]], Any] = env["_fast"]
    return fast


def _null_element(cls: Any, item: Any) -> Any:
    if item is None:
        return cls._fast(_EMPTY)  # a null element is a zero struct in Go
    raise _Slow


def _zero(kind: Any) -> Any:
    if kind == STR:
        return ""
    if kind == BOOL:
        return False
    if kind == INT:
        return 0
    return None  # slices: nil until given


def _decode_into(target: _Struct, data: Dict[str, Any]) -> None:
    """Set ``target``'s fields from ``data`` one key at a time, as Go's decoder does: keys in
    any letter case, nulls, repeated keys (a struct given twice merges)."""
    by_name = target._BY_NAME
    for key, value in data.items():
        spec = by_name.get(key)
        if spec is None:
            spec = by_name.get(_fold(key))
            if spec is None:
                continue  # unknown keys are ignored, whatever their value
        attr, kind = spec
        if value is None:
            if kind == ANY_LIST or isinstance(kind, list):
                setattr(target, attr, None)  # null makes a Go slice nil; other fields keep their value
            continue
        vtype = type(value)
        if kind == STR or kind == BOOL:
            if vtype is not (str if kind == STR else bool):
                raise _type_error(key, kind, value)
        elif kind == INT:
            if vtype is not int or not INT64_MIN <= value <= INT64_MAX:
                raise _type_error(key, kind, value)
        elif kind == ANY_LIST:
            if vtype is not list:
                raise _type_error(key, kind, value)
            if not _all_str(value):  # the panel sends strings: skip the walk
                _check_depth(value)
        elif vtype is not (list if isinstance(kind, list) else dict):
            raise _type_error(key, kind, value)
        else:
            try:
                if isinstance(kind, list):
                    value = [_decode_element(kind[0], item, i) for i, item in enumerate(value)]
                else:
                    # Go decodes into the existing struct: a key repeated in other letter case merges.
                    _decode_into(getattr(target, attr), value)
                    continue
            except ValidationError as exc:
                raise _within(exc, key) from None
        setattr(target, attr, value)


def _decode_element(cls: Any, item: Any, index: int) -> _Struct:
    if item is None:
        return cls()  # a null element is a zero struct in Go
    if type(item) is not dict:
        raise ValidationError(f"payload field {index}: expected an object, got {_json_type(item)}", field=str(index))
    try:
        return cls.decode(item)
    except ValidationError as exc:
        raise _within(exc, str(index)) from None


def _type_error(key: str, kind: Any, value: Any) -> ValidationError:
    if isinstance(kind, type):
        expected = "an object"
    elif isinstance(kind, list) or kind == ANY_LIST:
        expected = "an array"
    else:
        expected = ("an " if kind == INT else "a ") + kind
    got = _json_type(value)
    if kind == INT and type(value) in (int, float):
        got = "a number that is not a 64-bit integer"
    return ValidationError(f"payload field {key}: expected {expected}, got {got}", field=key)


def _within(exc: ValidationError, key: str) -> ValidationError:
    """The same error, its field path prefixed with the enclosing key."""
    field = f"{key}.{exc.field}" if exc.field else key
    message = exc.message.replace(f"payload field {exc.field}:", f"payload field {field}:", 1)
    return ValidationError(message, field=field)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    names: Dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- values


def value_text(value: Any) -> str:
    """A variable value as text: strings as they are, ``null`` as "", numbers and booleans as
    JSON writes them, arrays and objects as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return _go_number_text(value)
    return json.dumps(_go_value(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _go_number_text(value: Any) -> str:
    go = _go_value(value)
    if isinstance(go, float):
        text = repr(go)
        return text.replace("e-0", "e-").replace("e+0", "e+") if "e" in text else text
    return str(go)


def _go_value(value: Any) -> Any:
    """A decoded ``interface{}`` value as Go would write it back: numbers are float64, so
    ``1.0`` prints as ``1``; object keys come out sorted."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        as_float = float(value)  # float64 in Go: big integers lose their low digits
        return int(as_float) if abs(as_float) < 1e21 else as_float
    if isinstance(value, list):
        return [_go_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _go_value(value[k]) for k in sorted(value)}
    return value


def _check_depth(data: Any) -> None:
    """Refuse variable values nested deeper than MAX_DEPTH (the only part of a payload kept
    as free JSON; the panel sends strings): the log formatters walk them recursively.
    Iterative, so it cannot overflow the stack itself."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValidationError(f"payload nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
