"""Refuse to run a compiled module whose ``.py`` changed since it was compiled.

``build_compiled.py`` compiles some modules of ``sip`` and ``media`` with mypyc, in place: the
extension module (``headers.cpython-311-x86_64-linux-gnu.so``) sits beside ``headers.py`` and
Python's import system picks the extension first. Editing ``headers.py`` afterwards would change
nothing at run time — the worst kind of surprise. So each build writes a manifest (module ->
sha256 of the source it compiled) and the package's ``__init__`` calls ``verify_compiled`` before
anything of the package is imported: every extension module in the package directory must be
listed with the hash of its current source, or the import fails naming the module and the fix.

Never compiled itself (nor the ``__init__`` modules that call it). Standard library only; hashing
the ~16 compiled sources costs well under a millisecond.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os

# build_compiled.py writes it (its MANIFEST_NAME); per package directory.
MANIFEST_NAME = "compiled-manifest.json"
FIX = "run `make compiled` to rebuild, or `make uncompiled` to remove the compiled modules"

# mypyc's shared library of the build (build_compiled.py GROUP_NAME "sip.native"): the code of
# every compiled module, built with them; their shims, which the manifests pin, load it.
SHARED_LIBRARY = "native__mypyc"

# Package -> its compiled modules, as verified in this process (for the server's start log line).
_verified: dict[str, tuple[str, ...]] = {}


class StaleCompiledModule(ImportError):
    """A compiled module does not match its source (or is not in the build's manifest)."""


def _extension_stems(directory: str) -> dict[str, str]:
    """Module name -> file name of every extension module in ``directory``."""
    # Longest first: ".cpython-311-x86_64-linux-gnu.so" before ".so".
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    found: dict[str, str] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            for suffix in suffixes:
                if entry.name.endswith(suffix):
                    found[entry.name[: -len(suffix)]] = entry.name
                    break
    return found


def verify_compiled(package_dir: str, package: str, *, record: bool = True) -> tuple[str, ...]:
    """Check the compiled modules of one package against the manifest; their names, sorted.

    ``package_dir`` is the package's directory, ``package`` its dotted name; ``record``: count
    them in ``compiled_modules()`` (a package's ``__init__`` does). Raises
    ``StaleCompiledModule`` (an ImportError) naming the first module whose extension was not
    built from the current source: edited since, missing from the manifest, or without source.
    """
    names = _verified_names(package_dir, package)
    if record:
        _verified[package] = names
    return names


def _verified_names(package_dir: str, package: str) -> tuple[str, ...]:
    extensions = _extension_stems(package_dir)
    extensions.pop(SHARED_LIBRARY, None)  # not a module of its own: the shims load it
    if not extensions:
        return ()
    manifest_path = os.path.join(package_dir, MANIFEST_NAME)
    try:
        with open(manifest_path, encoding="utf-8") as manifest_file:
            modules: dict[str, str] = json.load(manifest_file)["modules"]
    except (OSError, ValueError, KeyError, TypeError):
        modules = {}
    names = []
    for stem, file_name in sorted(extensions.items()):
        module = f"{package}.{stem}"
        source = os.path.join(package_dir, f"{stem}.py")
        expected = modules.get(module)
        if expected is None:
            problem = f"is not in {manifest_path} (a build that did not finish?)"
        elif not os.path.exists(source):
            problem = f"has no source {source} any more"
        else:
            with open(source, "rb") as source_file:
                digest = hashlib.sha256(source_file.read()).hexdigest()
            if digest == expected:
                names.append(module)
                continue
            problem = f"was compiled from an older {source} (edited since)"
        raise StaleCompiledModule(f"compiled module {module} ({file_name}) {problem}: {FIX}")
    return tuple(names)


def compiled_modules() -> tuple[str, ...]:
    """The compiled modules of every package whose ``__init__`` has run, sorted."""
    return tuple(sorted(name for names in _verified.values() for name in names))
