"""One description per API field drives decoding, validation and the CRD's OpenAPI schema.

Each field of an API dataclass carries a `Prop` (its JSON name, description, constraints and CEL
rules). Keeping the Python checks and the admission rules side by side in one place is what keeps
`validate()` and the API server from disagreeing.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar, dataclass_transform

JSONObject = dict[str, Any]
"""A JSON object passed through unchanged (Kubernetes types we do not re-model, e.g. affinity)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Rule:
    """A constraint checked in Python by `check` and by the API server at admission by `cel`.

    `message` is shared by both, so the person sees the same words either way.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    show_value: bool = True
    transition: bool = False
    """A rule on a change (its CEL uses oldSelf): CHECK takes (old, new) and `validate()`, which
    sees one object, skips it; callers that know the old value use `check_transition`."""


@dataclass(frozen=True)
class Prop:
    """What the schema and the validator need to know about one field."""

    description: str
    json_name: str | None = None
    rules: tuple[Rule, ...] = ()
    max_length: int | None = None
    enum: tuple[str, ...] | None = None
    schema_default: Any = None
    int_format: str = "int32"
    string_format: str | None = None
    list_map_keys: tuple[str, ...] | None = None


_NO_DEFAULT: Any = dataclasses.MISSING


def prop(
    description: str,
    *,
    default: Any = _NO_DEFAULT,
    default_factory: Callable[[], Any] | None = None,
    json_name: str | None = None,
    rules: tuple[Rule, ...] = (),
    max_length: int | None = None,
    enum: tuple[str, ...] | None = None,
    schema_default: Any = None,
    int_format: str = "int32",
    string_format: str | None = None,
    list_map_keys: tuple[str, ...] | None = None,
) -> Any:
    """Declare an API field: `dataclasses.field` plus the metadata the schema needs."""
    meta = {
        "etcdop": Prop(
            description=description,
            json_name=json_name,
            rules=rules,
            max_length=max_length,
            enum=enum,
            schema_default=schema_default,
            int_format=int_format,
            string_format=string_format,
            list_map_keys=list_map_keys,
        )
    }
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(prop,))
def api_type(cls: type[T]) -> type[T]:
    """Make an API dataclass: frozen, keyword-only, every field declared with `prop`."""
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


class HasRules:
    """Mixin for API types with rules spanning several fields (checked on the whole object)."""

    RULES: ClassVar[tuple[Rule, ...]] = ()


class StoredStatus:
    """Mixin for a kind's status: `to_dict` for a status patch, `from_dict` for what was read.
    A status that does not decode reads as empty: the reconciler rewrites it anyway."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = encode(self)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Self:
        if not data:
            return cls()
        try:
            return decode(cls, dict(data), cls.__name__, "status")
        except ValueError:
            return cls()


@dataclass(frozen=True)
class FieldError:
    """A problem with one field, printed as `spec.size: must be between 1 and 9, got 12`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidObject(ValueError):
    """The object cannot be read as its kind; `errors` names every bad field."""

    def __init__(self, kind: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.errors = errors
        super().__init__(f"invalid {kind}: " + "; ".join(str(e) for e in errors))


def json_name(f: dataclasses.Field[Any]) -> str:
    p = field_prop(f)
    if p.json_name:
        return p.json_name
    head, *rest = f.name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def field_prop(f: dataclasses.Field[Any]) -> Prop:
    p = f.metadata.get("etcdop")
    if not isinstance(p, Prop):
        raise TypeError(f"field {f.name} must be declared with etcdop.api.schema.prop()")
    return p


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(tp: Any) -> Any | None:
    """X for `X | None`, else None."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _is_json_object(tp: Any) -> bool:
    return typing.get_origin(tp) is dict and typing.get_args(tp) == (str, Any)


def _is_str_map(tp: Any) -> bool:
    return typing.get_origin(tp) in (dict, Mapping) and typing.get_args(tp) == (str, str)


def _tuple_item(tp: Any) -> Any | None:
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# ---------------------------------------------------------------- decoding


def decode(cls: type[T], data: object, kind: str, path: str = "") -> T:
    """Read `data` (JSON as the API server returns it) as `cls`, applying defaults.

    Raises InvalidObject naming every field of the wrong type or missing.
    """
    errors: list[FieldError] = []
    value = _decode(cls, data, path, errors)
    if errors:
        raise InvalidObject(kind, errors)
    return typing.cast(T, value)


def _decode(tp: Any, value: object, path: str, errors: list[FieldError]) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _decode(inner, value, path, errors)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _decode_dataclass(tp, value, path, errors)
    expected: str
    if tp is bool:
        if isinstance(value, bool):
            return value
        expected = "boolean"
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expected = "integer"
    elif tp is str:
        if isinstance(value, str):
            return value
        expected = "string"
    elif _is_json_object(tp):
        if isinstance(value, dict):
            return value
        expected = "object"
    elif _is_str_map(tp):
        if isinstance(value, dict):
            bad = [k for k, v in value.items() if not isinstance(v, str)]
            for k in bad:
                errors.append(
                    FieldError(f"{path}.{k}", f"must be a string, got {_type_name(value[k])}")
                )
            return dict(value)
        expected = "object of strings"
    elif (item := _tuple_item(tp)) is not None:
        if isinstance(value, list):
            return tuple(_decode(item, v, f"{path}[{i}]", errors) for i, v in enumerate(value))
        expected = "array"
    else:  # pragma: no cover - a programming error in an API type
        raise TypeError(f"unsupported API field type {tp!r} at {path}")
    errors.append(FieldError(path, f"must be {_article(expected)}, got {_type_name(value)}"))
    return None


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _decode_dataclass(cls: type, value: object, path: str, errors: list[FieldError]) -> Any:
    if not isinstance(value, dict):
        errors.append(FieldError(path or ".", f"must be an object, got {_type_name(value)}"))
        return None
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    errors_before = len(errors)
    for f in dataclasses.fields(cls):
        name = json_name(f)
        sub = f"{path}.{name}" if path else name
        raw = value.get(name)
        if raw is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if _optional_inner(hints[f.name]) is None:
                    errors.append(FieldError(sub, "is required"))
                    continue
                kwargs[f.name] = None
            continue
        kwargs[f.name] = _decode(hints[f.name], raw, sub, errors)
    if len(errors) > errors_before:
        return None  # no half-built objects: the caller raises InvalidObject anyway
    return cls(**kwargs)


# ---------------------------------------------------------------- encoding


def encode(obj: object) -> Any:
    """The JSON form of an API dataclass, leaving out fields that are None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is not None:
                out[json_name(f)] = encode(v)
        return out
    if isinstance(obj, tuple | list):
        return [encode(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: encode(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------- validation


def validate(obj: object, path: str) -> list[FieldError]:
    """Every constraint of `obj` and of its fields that does not hold, by field path."""
    errors: list[FieldError] = []
    _validate(obj, path, errors)
    return errors


def _validate(obj: object, path: str, errors: list[FieldError]) -> None:
    if isinstance(obj, tuple):
        for i, item in enumerate(obj):
            _validate(item, f"{path}[{i}]", errors)
        return
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        return
    for r in getattr(obj, "RULES", ()):
        if not r.check(obj):
            errors.append(FieldError(path, r.message))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        sub = f"{path}.{json_name(f)}"
        if value is None:
            continue
        p = field_prop(f)
        if p.max_length is not None and isinstance(value, str) and len(value) > p.max_length:
            errors.append(FieldError(sub, f"must be at most {p.max_length} characters long"))
            continue
        if p.enum is not None and value not in p.enum:
            allowed = ", ".join(repr(e) for e in p.enum)
            errors.append(FieldError(sub, f"must be one of {allowed}, got {value!r}"))
        for r in p.rules:
            if r.transition:
                continue
            if not r.check(value):
                msg = f"{r.message}, got {value!r}" if r.show_value else r.message
                errors.append(FieldError(sub, msg))
                break
        _validate(value, sub, errors)


def check_transition(rules: tuple[Rule, ...], old: Any, new: Any) -> str | None:
    """The message of the first transition rule the change OLD -> NEW breaks, or None."""
    for r in rules:
        if r.transition and old != new and not r.check((old, new)):
            return r.message
    return None


# ---------------------------------------------------------------- OpenAPI


def openapi(tp: Any, p: Prop | None = None) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of an API type, as a CRD embeds it."""
    inner = _optional_inner(tp)
    if inner is not None:
        return openapi(inner, p)
    out: dict[str, Any]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        out = _openapi_object(tp, p)
    elif tp is bool:
        out = {"type": "boolean"}
    elif tp is int:
        out = {"type": "integer", "format": p.int_format if p else "int32"}
    elif tp is str:
        out = {"type": "string"}
        if p and p.string_format:
            out["format"] = p.string_format
        if p and p.enum is not None:
            out["enum"] = list(p.enum)
        if p and p.max_length is not None:
            out["maxLength"] = p.max_length
    elif _is_json_object(tp):
        out = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    elif _is_str_map(tp):
        out = {"type": "object", "additionalProperties": {"type": "string"}}
    elif (item := _tuple_item(tp)) is not None:
        items = openapi(item)
        items.pop("description", None)
        out = {"type": "array", "items": items}
        if p and p.list_map_keys:
            out["x-kubernetes-list-type"] = "map"
            out["x-kubernetes-list-map-keys"] = list(p.list_map_keys)
    else:  # pragma: no cover
        raise TypeError(f"unsupported API field type {tp!r}")
    if p is not None:
        out = {"description": p.description, **{k: v for k, v in out.items() if k != "description"}}
        if p.schema_default is not None:
            out["default"] = p.schema_default
        if p.rules:
            out["x-kubernetes-validations"] = [
                {"rule": r.cel, "message": r.message} for r in p.rules
            ]
    return out


def _openapi_object(cls: type, p: Prop | None) -> dict[str, Any]:
    hints = _hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        fp = field_prop(f)
        props[json_name(f)] = openapi(hints[f.name], fp)
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and _optional_inner(hints[f.name]) is None:
            required.append(json_name(f))
    out: dict[str, Any] = {"description": _doc(cls), "type": "object", "properties": props}
    if required:
        out["required"] = required
    rules: tuple[Rule, ...] = getattr(cls, "RULES", ())
    if rules:
        out["x-kubernetes-validations"] = [{"rule": r.cel, "message": r.message} for r in rules]
    return out


def _doc(cls: type) -> str:
    return re.sub(r"\s+", " ", (cls.__doc__ or cls.__name__).strip())
