"""Dataclasses that write their ``__init__`` out (``init=False``, so that mypyc compiles it):
the written ``__init__`` takes exactly the fields, in order — a field added to the class but
not to its ``__init__`` would otherwise be left unset."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

import sip


def _modules() -> list[str]:
    # The modules with a source file (not mypyc's shared library, which is no module to import).
    folder = Path(sip.__file__).parent
    names = [f"sip.{path.stem}" for path in folder.glob("*.py") if path.stem != "__init__"]
    return [*sorted(names), "media.sdp"]


def _written_inits() -> list[type]:
    found: list[type] = []
    for name in _modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == name
                and dataclasses.is_dataclass(value)
                and not value.__dataclass_params__.init  # type: ignore[attr-defined]
            ):
                found.append(value)
    return found


WRITTEN = _written_inits()


def test_the_per_message_classes_are_among_them() -> None:
    names = {cls.__name__ for cls in WRITTEN}
    assert {"Peer", "RequestReceived", "Via", "SipUri", "MediaDescription"} <= names


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda cls: cls.__name__)
def test_the_written_init_takes_the_fields_in_order(cls: type) -> None:
    fields = [field for field in dataclasses.fields(cls) if field.init]
    parameters = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in parameters] == [field.name for field in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        if parameter.default is inspect.Parameter.empty:
            continue  # a compiled __init__'s signature shows no defaults
        if field.default_factory is not dataclasses.MISSING:
            assert parameter.default is None  # None stands for a fresh factory value
        else:
            assert parameter.default == field.default
