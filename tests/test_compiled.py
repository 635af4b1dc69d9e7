"""The mypyc build (build_compiled.py) and the staleness guard of the compiled modules.

Runs the same whether the modules are compiled (`make compiled`) or pure (`make uncompiled`):
what is checked is that whatever the manifests say is what is imported, and that a compiled
module whose source changed cannot be imported at all.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import build_compiled
import sip
from sip.compiled_guard import (
    MANIFEST_NAME,
    SHARED_LIBRARY,
    StaleCompiledModule,
    compiled_modules,
    verify_compiled,
)

REPO_ROOT = Path(build_compiled.__file__).resolve().parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so


def write_manifest(directory: Path, modules: dict[str, str]) -> None:
    (directory / MANIFEST_NAME).write_text(json.dumps({"modules": modules}), encoding="utf-8")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A package directory with one module ``fast`` "compiled" from its current source.

    The extension file is a placeholder: the guard reads names and hashes, it never loads one.
    """
    directory = tmp_path / "pkg"
    directory.mkdir()
    (directory / "fast.py").write_text("VALUE = 1\n", encoding="utf-8")
    (directory / "slow.py").write_text("VALUE = 2\n", encoding="utf-8")  # not compiled
    (directory / f"fast{SUFFIX}").write_bytes(b"")
    write_manifest(directory, {"pkg.fast": sha256_of(directory / "fast.py")})
    return directory


# --- the guard ----------------------------------------------------------------------------


def test_a_module_compiled_from_its_current_source_passes(package: Path) -> None:
    assert verify_compiled(str(package), "pkg", record=False) == ("pkg.fast",)


def test_an_edited_source_is_refused_naming_the_module_and_the_fix(package: Path) -> None:
    (package / "fast.py").write_text("VALUE = 3  # edited after the build\n", encoding="utf-8")
    with pytest.raises(StaleCompiledModule) as refused:
        verify_compiled(str(package), "pkg", record=False)
    message = str(refused.value)
    assert "pkg.fast" in message
    assert "edited since" in message
    assert "make compiled" in message and "make uncompiled" in message
    assert isinstance(refused.value, ImportError)


def test_an_extension_missing_from_the_manifest_is_refused(package: Path) -> None:
    (package / f"slow{SUFFIX}").write_bytes(b"")  # e.g. a build that stopped half-way
    with pytest.raises(StaleCompiledModule, match=r"pkg\.slow .*is not in"):
        verify_compiled(str(package), "pkg", record=False)


def test_an_extension_without_a_manifest_is_refused(package: Path) -> None:
    (package / MANIFEST_NAME).unlink()
    with pytest.raises(StaleCompiledModule, match=r"pkg\.fast"):
        verify_compiled(str(package), "pkg", record=False)


def test_an_unreadable_manifest_is_refused(package: Path) -> None:
    (package / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(StaleCompiledModule, match=r"pkg\.fast"):
        verify_compiled(str(package), "pkg", record=False)


def test_an_extension_whose_source_was_deleted_is_refused(package: Path) -> None:
    (package / "fast.py").unlink()
    with pytest.raises(StaleCompiledModule, match="no source"):
        verify_compiled(str(package), "pkg", record=False)


def test_a_package_without_extensions_needs_no_manifest(package: Path) -> None:
    (package / f"fast{SUFFIX}").unlink()
    (package / MANIFEST_NAME).unlink()
    assert verify_compiled(str(package), "pkg", record=False) == ()


def test_importing_sip_with_a_stale_compiled_module_fails(tmp_path: Path) -> None:
    """The real package __init__ runs the guard before any of its modules is imported."""
    copy = tmp_path / "sip"
    shutil.copytree(
        Path(sip.__file__).parent,
        copy,
        ignore=shutil.ignore_patterns("__pycache__", f"*{SUFFIX}", MANIFEST_NAME),
    )
    # headers.py "compiled", then edited: the manifest holds the hash of another text.
    (copy / f"headers{SUFFIX}").write_bytes(b"")
    write_manifest(copy, {"sip.headers": hashlib.sha256(b"an older headers.py").hexdigest()})
    done = subprocess.run(
        [sys.executable, "-c", "import sip"],
        cwd=tmp_path,  # first on sys.path: the copy is the sip imported
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "StaleCompiledModule: compiled module sip.headers" in done.stderr
    assert str(copy / "headers.py") in done.stderr
    assert "make compiled" in done.stderr


def test_the_guard_is_cheap(package: Path) -> None:
    """Every import of sip and media pays for it: hashing ~16 sources must stay in the noise."""
    for index in range(16):
        source = package / f"m{index}.py"
        source.write_bytes(b"x = 1\n" * 5_000)  # 30 kB, a large module
        (package / f"m{index}{SUFFIX}").write_bytes(b"")
    hashes = {f"pkg.m{i}": sha256_of(package / f"m{i}.py") for i in range(16)}
    write_manifest(package, {**hashes, "pkg.fast": sha256_of(package / "fast.py")})
    timings_s = []
    for _ in range(5):
        started = time.perf_counter()
        assert len(verify_compiled(str(package), "pkg", record=False)) == 17
        timings_s.append(time.perf_counter() - started)
    assert min(timings_s) < 0.002


# --- the build and what is imported -------------------------------------------------------


def test_the_list_keeps_the_guard_hosts_and_errors_interpreted() -> None:
    listed = set(build_compiled.COMPILED_MODULES)
    assert len(listed) == len(build_compiled.COMPILED_MODULES)
    assert not any(module.endswith(".__init__") for module in listed)
    assert "sip.compiled_guard" not in listed
    assert "sip.errors" not in listed  # subclasses override class attributes
    assert not listed & {"routing.index", "routing.model"}  # memory per binding tuned
    for module in listed:
        assert build_compiled.source_path(module).is_file(), module


# Touches every global of every listed module from Python: the type, whether it is a class,
# its repr, and each attribute an instance of the module's own classes has.
_INSPECT_GLOBALS = """
import importlib, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    for key, value in list(vars(module).items()):
        kind = type(value)
        isinstance(value, type)
        repr(value)
        if kind.__module__ == name and not isinstance(value, type):
            for attribute in getattr(kind, "__slots__", ()) or dir(value):
                getattr(value, attribute, None)
print("inspected", len(sys.argv) - 1)
"""


def test_every_global_of_the_listed_modules_can_be_touched_from_python() -> None:
    # mypyc compiles a class that subclasses threading.local without complaint, but lays its
    # attributes over the C type's own fields: reading the module's instance from Python
    # then crashed the process (sip.builders did that). In a child process, so that such a
    # crash fails this test instead of ending the run.
    modules = list(build_compiled.COMPILED_MODULES)
    result = subprocess.run(
        [sys.executable, "-c", _INSPECT_GLOBALS, *modules],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"inspected {len(modules)}"


@pytest.mark.parametrize("package_name", build_compiled.packages())
def test_every_package_with_compiled_modules_runs_the_guard_first(package_name: str) -> None:
    init = (REPO_ROOT / package_name / "__init__.py").read_text(encoding="utf-8")
    call = "verify_compiled(__path__[0], __name__)"
    assert call in init
    before = init[: init.index(call)]
    assert f"from {package_name}." not in before.replace("from sip.compiled_guard", "")


def test_the_listed_modules_are_the_compiled_ones_when_built() -> None:
    """With a manifest, each listed module is imported from its extension; without, from .py."""
    importlib.import_module("media")
    built = {
        package_name: (REPO_ROOT / package_name / MANIFEST_NAME).exists()
        for package_name in build_compiled.packages()
    }
    for module_name in build_compiled.COMPILED_MODULES:
        module = importlib.import_module(module_name)
        file = module.__file__ or ""
        if built[module_name.rpartition(".")[0]]:
            assert file.endswith(SUFFIX), f"{module_name} is not compiled: {file}"
        else:
            assert file.endswith(".py"), f"{module_name} is compiled without a manifest: {file}"
    expected = tuple(
        sorted(m for m in build_compiled.COMPILED_MODULES if built[m.rpartition(".")[0]])
    )
    assert compiled_modules() == expected


def test_a_manifest_lists_exactly_the_compiled_modules_with_their_hashes() -> None:
    for package_name in build_compiled.packages():
        manifest = REPO_ROOT / package_name / MANIFEST_NAME
        if not manifest.exists():
            continue
        modules = json.loads(manifest.read_text(encoding="utf-8"))["modules"]
        listed = {m for m in build_compiled.COMPILED_MODULES if m.startswith(f"{package_name}.")}
        assert set(modules) == listed
        for module_name, digest in modules.items():
            assert digest == sha256_of(build_compiled.source_path(module_name))


def test_the_build_lists_its_sources_for_make() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "build_compiled.py"), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = done.stdout.split()
    assert listed == [
        str(build_compiled.source_path(m).relative_to(REPO_ROOT))
        for m in build_compiled.COMPILED_MODULES
    ]
    assert "sip/headers.py" in listed and "media/sdp.py" in listed


def test_clean_removes_compiled_modules_of_every_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also of a package no longer on the list: its __init__ may not run the guard any more."""
    for name in ("sip", "routing"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("", encoding="utf-8")
        (tmp_path / name / "mod.py").write_text("", encoding="utf-8")
        (tmp_path / name / f"mod{SUFFIX}").write_bytes(b"")
    write_manifest(tmp_path / "sip", {"sip.mod": "0" * 64})
    shared = tmp_path / "sip" / f"{build_compiled.SHARED_LIBRARY_STEM}{SUFFIX}"
    shared.write_bytes(b"")
    old_shared = tmp_path / f"maskline__mypyc{SUFFIX}"  # where earlier builds put it
    old_shared.write_bytes(b"")
    monkeypatch.setattr(build_compiled, "ROOT", tmp_path)
    removed = build_compiled.clean()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(
        [
            f"sip/mod{SUFFIX}",
            f"sip/{MANIFEST_NAME}",
            f"routing/mod{SUFFIX}",
            f"sip/{shared.name}",
            old_shared.name,
        ]
    )
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "__init__.py",
        "__init__.py",
        "mod.py",
        "mod.py",
    ]


def test_without_python_headers_the_build_says_so_and_leaves_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sip").mkdir()
    (tmp_path / "sip" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "sip" / f"headers{SUFFIX}").write_bytes(b"")  # left by an earlier build
    monkeypatch.setattr(build_compiled, "ROOT", tmp_path)
    monkeypatch.setattr(build_compiled, "has_python_headers", lambda: False)
    assert build_compiled.main([]) == 0  # make goes on, with the pure modules
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("mypyc compilation failed (no Python.h under ")
    assert "running pure Python" in line
    assert not (tmp_path / "sip" / f"headers{SUFFIX}").exists()
    assert build_compiled.main(["--strict"]) == 1


def test_the_shared_library_lives_in_sip_and_is_not_a_module_to_verify(package: Path) -> None:
    """mypyc's group library sits in the sip package (found wherever sip is importable, also by
    a server started outside the checkout); the guard leaves it to the shims it pins."""
    assert build_compiled.GROUP_NAME.startswith("sip.")
    assert build_compiled.SHARED_LIBRARY_STEM == SHARED_LIBRARY
    (package / f"{SHARED_LIBRARY}{SUFFIX}").write_bytes(b"")
    assert verify_compiled(str(package), "pkg", record=False) == ("pkg.fast",)
