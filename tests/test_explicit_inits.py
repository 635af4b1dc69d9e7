"""Dataclasses that write their ``__init__`` out (``init=False``, so that mypyc compiles it):
the written ``__init__`` takes exactly the fields, in order — a field added to the class but
not to its ``__init__`` would otherwise be left unset."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest

import build_compiled
import sip


def _modules() -> list[str]:
    # The modules with a source file (not mypyc's shared library, which is no module to import):
    # every one of sip/, and the others that build_compiled.py compiles.
    folder = Path(sip.__file__).parent
    names = {f"sip.{path.stem}" for path in folder.glob("*.py") if path.stem != "__init__"}
    return sorted(names | set(build_compiled.COMPILED_MODULES))


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
    assert {"Leg", "Call", "_MediaState"} <= names  # one or two per call in the engine


_NO_DEFAULT = object()


def _written_parameters(cls: type) -> list[tuple[str, object]]:
    """(name, default) of each parameter of the class's written ``__init__`` (positional, then
    keyword-only), read from its source: a compiled ``__init__`` may show no signature but
    ``(*args, **kwargs)``."""
    module = importlib.import_module(cls.__module__)
    tree = ast.parse(build_compiled.source_path(cls.__module__).read_text(encoding="utf-8"))
    [class_def] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__]
    [init] = [n for n in class_def.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    arguments = init.args
    assert arguments.vararg is None and arguments.kwarg is None
    positional = arguments.args[1:]  # after self
    nodes: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults))
    nodes += [*arguments.defaults, *arguments.kw_defaults]  # kw_defaults: None for no default
    names = [arg.arg for arg in (*positional, *arguments.kwonlyargs)]
    defaults = [
        _NO_DEFAULT if node is None else eval(ast.unparse(node), vars(module)) for node in nodes
    ]
    return list(zip(names, defaults, strict=True))


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda cls: cls.__name__)
def test_the_written_init_takes_the_fields_in_order(cls: type) -> None:
    fields = [field for field in dataclasses.fields(cls) if field.init]
    parameters = _written_parameters(cls)
    assert [name for name, _ in parameters] == [field.name for field in fields]
    for (_, default), field in zip(parameters, fields, strict=True):
        if field.default_factory is not dataclasses.MISSING:
            assert default is None  # None stands for a fresh factory value
        elif field.default is dataclasses.MISSING:
            assert default is _NO_DEFAULT
        else:
            assert default == field.default
