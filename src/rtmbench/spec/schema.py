"""Strict YAML -> pydantic loading with errors that name the file, line, field and fix."""

from __future__ import annotations

import re
import types
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ..errors import InputError

T = TypeVar("T", bound=BaseModel)


class _DecimalLoader(yaml.SafeLoader):
    """Reads YAML floats as Decimal, so '3.10' keeps the precision it was published with."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal | float:
    text = loader.construct_scalar(node).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:  # .inf, .nan
        return yaml.SafeLoader.construct_yaml_float(loader, node)


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def _construct_mapping_once(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False
                            ) -> dict:
    """A mapping whose keys are each given once: YAML would keep the last of two silently."""
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool, Decimal)):
            continue  # an unhashable key: construct_mapping says what is wrong with it
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"found the key {key!r} twice in one mapping (YAML would silently keep the "
                f"last one); keep one", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_DecimalLoader.add_constructor("tag:yaml.org,2002:map", lambda loader, node: (
    _construct_mapping_once(loader, node)))


# A name that becomes part of a file or directory name (a model's name and size, a weights id,
# a suite's name): one plain path component, never a path. The same characters as a run id.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 128


def plain_name_problem(name: object, max_length: int = MAX_NAME) -> str | None:
    """Why ``name`` cannot be part of a file name; None when it can."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name) or len(name) > max_length:
        return (f"{name!r} must be a plain name: letters, digits, '.', '_' and '-', starting "
                f"with a letter or digit, at most {max_length} characters (no '/', '\\' or spaces, "
                f"not '.' or '..'): it becomes part of file and folder names")
    return None


def _plain_name(max_length: int):
    def check(value: str) -> str:
        if problem := plain_name_problem(value, max_length):
            raise ValueError(problem)
        return value

    return AfterValidator(check)


PlainName = Annotated[str, _plain_name(MAX_NAME)]
# A suite's name goes into the default run id (date, name and host: at most 128 characters).
SuiteName = Annotated[str, _plain_name(64)]


def _members(annotation: Any) -> list[Any]:
    """The types an annotation admits, Annotated metadata and unions unwrapped."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


NUMBER_TYPES = (int, float, Decimal)


def _item_annotation(member: Any, index: int) -> Any | None:
    args = get_args(member)
    if get_origin(member) is tuple and args and args[-1] is not Ellipsis:
        return args[index] if index < len(args) else None
    return args[0] if args else None


def coercion_problem(value: Any, annotation: Any, where: str = "") -> str | None:
    """Why ``value`` would be coerced between a boolean and a number to fit ``annotation``
    (pydantic's lax mode reads ``true`` as 1 and ``1`` or ``'no'`` as booleans); None when it
    would not. Items of lists, tuples and dicts are looked at too (``where`` names them)."""
    members = [m for m in _members(annotation) if m is not type(None)]
    if Any in members:
        return None
    if isinstance(value, bool):
        if bool not in members and any(m in NUMBER_TYPES for m in members):
            return (f"{where}{str(value).lower()} is a boolean (true or false), not a number: "
                    f"give a number")
        return None
    if (value is not None and bool in members
            and not any(m in NUMBER_TYPES or m is str for m in members)
            and isinstance(value, (int, float, Decimal, str))):
        return f"{where}{value!r} is not a boolean: give true or false"
    for member in members:
        origin = get_origin(member)
        if isinstance(value, (list, tuple)) and origin in (list, tuple):
            for i, item in enumerate(value):
                inner = _item_annotation(member, i)
                if inner is not None and (problem := coercion_problem(item, inner,
                                                                      f"{where}[{i}] ")):
                    return problem
        elif isinstance(value, dict) and origin is dict and len(get_args(member)) == 2:
            for key, item in value.items():
                if problem := coercion_problem(item, get_args(member)[1], f"{where}[{key!r}] "):
                    return problem
    return None


class Strict(BaseModel):
    """Base of every file schema: unknown keys are errors, values are not coerced silently
    (a boolean is never read as a number, nor a number or a word as a boolean)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_number_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and (problem := coercion_problem(value, field.annotation)):
            raise ValueError(problem)
        return value


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    node, line = root, None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal",
                "finite_number", "too_short", "too_long")


def _shown(value: Any) -> str:
    return str(value) if isinstance(value, Decimal) else repr(value)


def _fix_for(error: dict[str, Any], model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind in BOUND_ERRORS:
        return f"give a value within the bounds (input was {_shown(error.get('input'))})"
    if kind == "extra_forbidden":
        return "remove this key or correct its spelling (allowed keys are in the schema)"
    if kind == "missing":
        return "add this field"
    if kind.startswith("literal_error") or kind == "enum":
        return f"use one of the allowed values ({error.get('ctx', {}).get('expected', '')})"
    if kind == "value_error":  # the type is right and the value is not: the message says why
        return "correct the value as the message says"
    return f"give a value of the expected type (input was {_shown(error.get('input'))})"


def describe_loc(loc: tuple[Any, ...], data: Any) -> str:
    """``models[2] (rtmdet-m).claims[1].unit``: list items named by their 'name' when present."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int):
            label = f"[{key}]"
            if isinstance(node, list) and key < len(node):
                node = node[key]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    label += f" ({node['name']})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def load_yaml(path: str | Path, model: type[T], what: str) -> T:
    """Parse ``path`` into ``model``; any problem raises InputError naming file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{what} file {path} cannot be read: {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} file {path} is not UTF-8 text (byte "
                         f"{exc.object[exc.start]:#04x} at offset {exc.start}); save it as "
                         f"UTF-8.") from None
    try:
        data = yaml.load(text, Loader=_DecimalLoader)  # noqa: S506 - a SafeLoader subclass
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: not a {what} file: its YAML is nested too deeply to "
                         f"read.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a {what} file must be a YAML mapping at the top level.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _node_line(root, loc)
            where = f"{path}:{line}" if line else str(path)
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {describe_loc(loc, data)}: {message}. Fix: "
                         f"{_fix_for(err, model)}.")
        raise InputError(f"invalid {what} file {path}:\n  " + "\n  ".join(lines)) from None
