"""Command-line flags generated from the config models: one flag per scalar field, typed, with the field's help."""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

SCALARS = (bool, int, float, str)


def flag_name(field: str) -> str:
    """The flag that sets a field: `max_steps` -> `--max-steps`."""
    return "--" + field.replace("_", "-")


def scalar_type(annotation: Any) -> tuple[type, tuple | None] | None:
    """(type, choices) of a field a flag can set: a bool, int, float, str or Literal, optional or not; else None."""
    if get_origin(annotation) in (Union, UnionType):
        members = [member for member in get_args(annotation) if member is not NoneType]
        if len(members) != 1:
            return None
        annotation = members[0]
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return type(choices[0]), choices
    return (annotation, None) if annotation in SCALARS else None


@dataclass(frozen=True)
class ConfigFlag:
    """One generated flag: the field it sets (a path into the config's fields) and the configs that have it."""

    path: tuple[str, ...]
    owners: tuple[str, ...]
    kind: type
    choices: tuple | None
    help: str

    @property
    def dest(self) -> str:
        """The argparse destination."""
        return "__".join(self.path)

    @property
    def flag(self) -> str:
        """The command-line spelling."""
        return flag_name(self.path[-1])


def _help(fields: list[tuple[str, FieldInfo]], labelled: bool) -> str:
    """Help of a flag from its fields: the description, then each config's default (or each config's description
    and default where they describe it differently); `labelled` names the configs."""
    descriptions = {info.description for _, info in fields if info.description}
    defaults = ["required" if info.is_required() else f"default {info.default!r}" for _, info in fields]
    if len(descriptions) <= 1:
        listed = "; ".join(f"{label}: {default}" if labelled else default
                           for (label, _), default in zip(fields, defaults, strict=True))
        text = f"{descriptions.pop()} ({listed})" if descriptions else f"({listed})"
    else:
        text = "; ".join(f"{label}: {info.description or ''} ({default})"
                         for (label, info), default in zip(fields, defaults, strict=True))
    return text.replace("%", "%%")


def config_flags(models: Mapping[str, type[BaseModel]], skip: Collection[str] = (),
                 nested: Mapping[str, Collection[str]] | None = None) -> tuple[ConfigFlag, ...]:
    """The flags of the scalar fields of `models` (label -> model), skipping `skip`; `nested` names model-valued
    fields whose own scalar fields also get flags (minus the names given), set under that field."""
    found: dict[tuple[str, ...], list[tuple[str, FieldInfo]]] = {}
    for label, model in models.items():
        for name, info in model.model_fields.items():
            if name in skip:
                continue
            if nested and name in nested:
                inner = info.annotation
                for inner_name, inner_info in inner.model_fields.items():
                    if inner_name not in nested[name] and scalar_type(inner_info.annotation):
                        found.setdefault((name, inner_name), []).append((label, inner_info))
            elif scalar_type(info.annotation):
                found.setdefault((name,), []).append((label, info))
    flags = []
    for path, fields in found.items():
        kinds = {scalar_type(info.annotation) for _, info in fields}
        if len(kinds) != 1:
            raise TypeError(f"field {'.'.join(path)} has different types across {[label for label, _ in fields]}")
        ((kind, choices),) = kinds
        flags.append(ConfigFlag(path, tuple(label for label, _ in fields), kind, choices,
                                _help(fields, len(models) > 1)))
    spellings = [flag.flag for flag in flags]
    if len(set(spellings)) != len(spellings):
        raise TypeError(f"two fields share a flag: {sorted({s for s in spellings if spellings.count(s) > 1})}")
    return tuple(flags)


def add_config_flags(parser: argparse.ArgumentParser, flags: tuple[ConfigFlag, ...]) -> None:
    """Add the flags; each defaults to None so that only the flags given override a config file's fields."""
    for flag in flags:
        if flag.kind is bool:
            parser.add_argument(flag.flag, dest=flag.dest, action=argparse.BooleanOptionalAction, default=None,
                                help=flag.help)
        else:
            parser.add_argument(flag.flag, dest=flag.dest, type=flag.kind, choices=flag.choices, default=None,
                                metavar=None if flag.choices else flag.path[-1].upper(), help=flag.help)


def with_flags(fields: dict, args: argparse.Namespace, flags: tuple[ConfigFlag, ...], owner: str,
               command: str) -> dict:
    """A config's fields with the given flags' values on top (nested fields merged, not replaced); ValueError for a
    given flag that `owner` does not have."""
    given = [flag for flag in flags if getattr(args, flag.dest) is not None]
    foreign = [flag.flag for flag in given if owner not in flag.owners]
    if foreign:
        raise ValueError(f"{', '.join(foreign)} not used by {command}")
    merged = dict(fields)
    for flag in given:
        target = merged
        for part in flag.path[:-1]:
            target[part] = target = dict(target.get(part) or {})
        target[flag.path[-1]] = getattr(args, flag.dest)
    return merged


def json_fields(text: str, what: str) -> dict:
    """The fields of a whole config given as one JSON object (--config-json); ValueError naming `what` otherwise."""
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--config-json is not JSON: {err}") from None
    if not isinstance(fields, dict):
        raise ValueError(f"--config-json must be a mapping of {what} fields")
    return fields
