"""config/linegate.toml is the commented reference: every key of the schema appears in it, set or
commented out, under its own section (the README sends operators there for "every key")."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator

from pydantic import BaseModel

from linegate.config.schema import Config
from tests.conftest import REFERENCE_CONFIG

HEADER = re.compile(r"^#?\s*\[\[?([\w.]+)\]\]?")


def section_bodies(text: str) -> dict[str, str]:
    """Section name (set or commented out, ``[[x]]`` as ``x``) -> the lines under its header."""
    bodies: dict[str, str] = {"": ""}
    current = ""
    for line in text.splitlines():
        header = HEADER.match(line)
        if header:
            current = header.group(1)
            bodies.setdefault(current, "")
        else:
            bodies[current] += line + "\n"
    return bodies


def sub_model(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The model type inside *annotation* (plain, optional, dict of or list of), and whether it is a
    collection (``[recipes.N]``, ``[[stages]]``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation) or (annotation,)
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, origin in (dict, list)
    return None, False


def missing_keys(model: type[BaseModel], path: str, bodies: dict[str, str]) -> Iterator[str]:
    body = bodies.get(path, "")
    for name, field in model.model_fields.items():
        key = field.alias or name
        child, collection = sub_model(field.annotation)
        where = f"{path}.{key}" if path else key
        if child is None:
            if not re.search(rf"^\s*#?\s*{key}\s*=", body, re.M):
                yield where
        elif collection:
            # A recipe or stage holds a whole [model]: its own keys are listed, the model's are above.
            block = "".join(v for k, v in bodies.items() if k == key or k.startswith(f"{key}."))
            if not block:
                yield f"[{where}] (an example section)"
            for inner in child.model_fields:
                if not re.search(rf"^\s*#?\s*{inner}\s*=", block, re.M):
                    yield f"{where}.{inner}"
        elif where in bodies:
            yield from missing_keys(child, where, bodies)
        elif re.search(rf"^\s*#?\s*{key}\s*=", body, re.M):  # an inline table: its keys named beside it
            yield from (f"{where}.{inner}" for inner in child.model_fields if inner not in body)
        else:
            yield f"[{where}]"


def test_every_schema_key_is_in_the_reference_config() -> None:
    """Each key the schema accepts has a line (set or commented out) in the reference's section."""
    bodies = section_bodies(REFERENCE_CONFIG.read_text())
    assert list(missing_keys(Config, "", bodies)) == []


def test_the_check_finds_a_key_left_out() -> None:
    """The walk above is not vacuous: dropping one key's line from the reference is reported."""
    text = REFERENCE_CONFIG.read_text()
    line = next(x for x in text.splitlines() if x.startswith("max_late_ms"))
    bodies = section_bodies(text.replace(line + "\n", ""))
    assert list(missing_keys(Config, "", bodies)) == ["plc.max_late_ms"]
