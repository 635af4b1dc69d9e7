"""The engine lifts its soft open-file limit at start (engine.server.raise_open_files_limit)."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from engine.server import raise_open_files_limit


@pytest.fixture
def limits() -> Iterator[tuple[int, int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield soft, hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_lifted_to_the_hard_one(limits: tuple[int, int]) -> None:
    _, hard = limits
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.fail(f"this machine's hard limit ({hard}) leaves nothing to test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    assert raise_open_files_limit() == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_a_soft_limit_at_the_hard_one_is_kept(limits: tuple[int, int]) -> None:
    _, hard = limits
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert raise_open_files_limit() == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
