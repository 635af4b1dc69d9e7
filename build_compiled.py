"""Compile maskline's hot pure modules in place with mypyc (issue 7: CPU per call).

The modules in ``COMPILED_MODULES`` are compiled to C extension modules that sit next to their
``.py`` (``sip/headers.cpython-311-x86_64-linux-gnu.so`` beside ``sip/headers.py``); Python's
import system prefers the extension, so nothing else changes. The code is the same either way,
only its speed differs, so a machine that cannot compile runs the pure modules.

A compiled module that silently runs old code after its ``.py`` was edited is the failure to
avoid: every build writes, per package, ``compiled-manifest.json`` (module -> sha256 of the
source it compiled), and the package's ``__init__`` (interpreted, never compiled) checks it at
import (``sip.compiled_guard.verify_compiled``), raising ImportError on a mismatch.

Usage (the Makefile's ``make compiled`` / ``make uncompiled`` run these)::

    .venv/bin/python build_compiled.py           # compile COMPILED_MODULES, write the manifests
    .venv/bin/python build_compiled.py --clean   # remove every compiled artefact: pure Python
    .venv/bin/python build_compiled.py --list    # the source files, one a line (make's inputs)

A failed compilation (no compiler, no Python headers, a mypyc error) prints one line, removes
whatever it left, and exits 0: the pure modules then run. ``--strict`` makes it exit 1 instead.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import json
import os
import sys
import sysconfig
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent

# The one list. A module qualifies when it is on the call path, measurably cheaper compiled
# (bench/README.md "Compiled modules"; bench/instructions.py counts what cps.py's CPU seconds
# cannot resolve), and its package's __init__ calls the guard (tests/test_compiled.py checks
# that). Beyond sip/ and media/sdp.py: the B2BUA and its neighbours on every message (engine
# b2bua, calls, signalling, transport: 2.871 → 2.650 M instructions per call on the event loop,
# explicit __init__s included), then the per-call bookkeeping and the media relay (records,
# metrics, overload, logging, routing.numbers, store.cdr, store.outbox, api.reports,
# media.relay: → 2.548 M; the other threads 1.449 → 1.385 M). An edit to any of them needs
# `make compiled` (the guard refuses a stale one). Not compiled, on purpose:
# - the packages' __init__.py: they host the staleness guard, which must run as Python;
# - sip/compiled_guard.py: the guard itself;
# - sip/errors.py: its subclasses override the class attributes status_code/default_reason,
#   which a compiled class reads from its own slots, not from the subclass (and it is cold);
# - routing/index.py, routing/model.py: their memory per binding is tuned on CPython objects;
# - engine/eager.py: its Coroutine adaptor hands futures to asyncio's Task (test it first);
# - the API's HTTP side (FastAPI, pydantic models): not on the call path.
# What mypyc needs of a compiled module, learnt here: no attribute named "_thread" (the C field
# "__thread" is a keyword), "__deletable__" for attributes a method deletes, no "__slots__"
# lookups at run time, no fixed-length float tuples as Final (an inverted "was it set" check).
COMPILED_MODULES: tuple[str, ...] = (
    "sip.auth",
    "sip.builders",
    "sip.dialog",
    "sip.endpoint",
    "sip.events",
    "sip.grammar",
    "sip.headers",
    "sip.message",
    "sip.parser",
    "sip.reliable",
    "sip.session_timer",
    "sip.transaction",
    "sip.transport",
    "sip.uas",
    "sip.uri",
    "media.sdp",
    "engine.b2bua",
    "engine.calls",
    "engine.signalling",
    "engine.transport",
    "engine.records",
    "engine.metrics",
    "engine.overload",
    "engine.logging",
    "media.relay",
    "routing.numbers",
    "store.cdr",
    "store.outbox",
    "api.reports",
)

MANIFEST_NAME = "compiled-manifest.json"  # the guard's copy of the name: sip/compiled_guard.py
# mypyc's shared library of the group (all modules' code; each module's .so is a small shim
# that imports it): sip/native__mypyc.<tag>.so, inside a package, so that every process that can
# import sip finds it — the editable install maps the packages, not the repository's top level
# (a `maskline serve` started from elsewhere failed with "No module named maskline__mypyc").
GROUP_NAME = "sip.native"
SHARED_LIBRARY_STEM = GROUP_NAME.rpartition(".")[2] + "__mypyc"  # sip.compiled_guard.SHARED_LIBRARY
BUILD_DIR = ROOT / "build" / "mypyc"  # generated C, objects, mypy cache: gitignored
# MYPYC_OPT_LEVEL 3 is mypyc's default; said here so the build does not depend on the default.
OPT_LEVEL = "3"


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def packages() -> list[str]:
    return sorted({module.rpartition(".")[0] for module in COMPILED_MODULES})


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_artefacts() -> list[Path]:
    """Every extension module and manifest in the repository's packages, plus the shared library.

    All packages, not only those of ``COMPILED_MODULES``: a module taken off the list must not
    stay compiled (its package's ``__init__`` may no longer run the guard).
    """
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found: list[Path] = []
    for init in sorted(ROOT.glob("*/__init__.py")):
        directory = init.parent
        found.extend(p for p in directory.iterdir() if p.name.endswith(suffixes))
        manifest = directory / MANIFEST_NAME
        if manifest.exists():
            found.append(manifest)
    # Earlier builds put the shared library at the top level (mypyc names it <group>__mypyc).
    found.extend(p for p in ROOT.glob("*__mypyc.*") if p.name.endswith(suffixes))
    return found


def clean() -> list[Path]:
    removed = compiled_artefacts()
    for path in removed:
        path.unlink()
    return removed


def has_python_headers() -> bool:
    return (Path(sysconfig.get_paths()["include"]) / "Python.h").exists()


def write_manifests(hashes: dict[str, str]) -> None:
    by_package: dict[str, dict[str, str]] = defaultdict(dict)
    for module, digest in hashes.items():
        by_package[module.rpartition(".")[0]][module] = digest
    for package, entries in by_package.items():
        manifest = ROOT / package / MANIFEST_NAME
        content = {
            "comment": "written by build_compiled.py; checked by the package __init__",
            "python": sys.implementation.cache_tag,
            "modules": dict(sorted(entries.items())),
        }
        manifest.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def _parallel_build_ext(jobs: int) -> type[Any]:
    """setuptools' build_ext, compiling the C files of one extension ``jobs`` at a time.

    ``build_ext --parallel`` runs extensions side by side, but mypyc puts nearly all the code in
    one extension (the group's shared library), whose C files distutils compiles one by one.
    """
    from setuptools.command.build_ext import (  # type: ignore[import-untyped]  # noqa: PLC0415
        build_ext,
    )

    class ParallelBuildExt(build_ext):  # type: ignore[misc]
        def build_extensions(self) -> None:
            compiler = self.compiler

            # CCompiler.compile with the loop over the sources in a thread pool (gcc processes).
            def compile_sources(
                sources: list[str],
                *,  # build_ext passes them by keyword
                output_dir: str | None = None,
                macros: Any = None,
                include_dirs: Any = None,
                debug: bool = False,
                extra_preargs: Any = None,
                extra_postargs: Any = None,
                depends: Any = None,
            ) -> list[str]:
                _, objects, postargs, pp_opts, build = compiler._setup_compile(
                    output_dir, macros, include_dirs, sources, depends, extra_postargs
                )
                cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)
                todo = [(obj, *build[obj]) for obj in objects if obj in build]
                with ThreadPoolExecutor(max_workers=jobs) as pool:
                    for future in [
                        pool.submit(compiler._compile, obj, src, ext, cc_args, postargs, pp_opts)
                        for obj, src, ext in todo
                    ]:
                        future.result()  # a gcc failure raises CompileError here
                return list(objects)

            compiler.compile = compile_sources
            super().build_extensions()

    return ParallelBuildExt


def compile_modules(*, jobs: int) -> None:
    """Compile ``COMPILED_MODULES`` in place (raises on any failure, leaving a partial build)."""
    # Imported here: --list and --clean work without mypy or setuptools.
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # type: ignore[import-untyped]  # noqa: PLC0415

    # Hashes first: an edit made while the compiler runs then shows as stale, not as fresh.
    hashes = {module: sha256_of(source_path(module)) for module in COMPILED_MODULES}
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)  # mypy resolves the packages and reads [tool.mypy] from the repository root
    extensions = mypycify(
        [
            # mypy's own cache apart from the developer's .mypy_cache (other runs share that).
            "--cache-dir",
            str(BUILD_DIR / "mypy_cache"),
            *(str(source_path(module).relative_to(ROOT)) for module in COMPILED_MODULES),
        ],
        opt_level=OPT_LEVEL,
        target_dir=str(BUILD_DIR / "c"),
        group_name=GROUP_NAME,
        # One C file per module, so gcc runs on every core (one big file would use one).
        multi_file=True,
    )
    # mypyc writes the group's headers under the group's package (c/sip/__native_native.h) but
    # includes them by bare name: their directory must be on the include path too.
    group_headers = str(BUILD_DIR / "c" / GROUP_NAME.rpartition(".")[0].replace(".", os.sep))
    for extension in extensions:
        extension.include_dirs.append(group_headers)
    # A bare Distribution: setup() would also read pyproject.toml's [project] and packages.
    distribution = Distribution(
        {
            "name": "maskline-compiled",
            "ext_modules": extensions,
            "cmdclass": {"build_ext": _parallel_build_ext(jobs)},
        }
    )
    build_ext = distribution.get_command_obj("build_ext")
    build_ext.inplace = True
    build_ext.parallel = jobs
    build_ext.build_temp = str(BUILD_DIR / "temp")
    build_ext.build_lib = str(BUILD_DIR / "lib")
    distribution.run_command("build_ext")
    write_manifests(hashes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--clean", action="store_true", help="remove the compiled artefacts")
    action.add_argument("--list", action="store_true", help="print the compiled sources")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="gcc processes")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when compilation fails (default: go pure)"
    )
    args = parser.parse_args(argv)
    if args.list:
        for module in COMPILED_MODULES:
            print(source_path(module).relative_to(ROOT))
        return 0
    removed = clean()
    if args.clean:
        print(f"compiled modules removed ({len(removed)} files): pure Python")
        return 0
    started = time.monotonic()
    reason = (
        None if has_python_headers() else f"no Python.h under {sysconfig.get_paths()['include']}"
    )
    if reason is None:
        try:
            compile_modules(jobs=args.jobs)
        except (Exception, SystemExit) as error:  # setuptools reports a gcc failure as SystemExit
            last_lines = str(error).strip().splitlines()[-1:]
            reason = f"{type(error).__name__}: {''.join(last_lines) or 'see the output above'}"
    if reason is not None:
        clean()  # nothing half-built may shadow a .py
        print(f"mypyc compilation failed ({reason}); running pure Python (same code, slower)")
        return 1 if args.strict else 0
    print(
        f"compiled {len(COMPILED_MODULES)} modules with mypyc in {time.monotonic() - started:.0f} s"
        f" (opt level {OPT_LEVEL}, {args.jobs} jobs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
