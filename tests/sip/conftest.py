"""Fixtures of the SIP core tests.

pytest (``prepend`` import mode, no ``__init__.py`` here) puts this directory on
``sys.path``, so test modules import the pair helpers as ``helpers``.  The
dotted ``tests.sip.helpers`` cannot work: the ``sippy`` dev dependency installs a
top-level ``tests`` package into site-packages, which shadows ours.
"""

from __future__ import annotations

import pytest
from helpers import EndpointPair


@pytest.fixture
def pair() -> EndpointPair:
    """A UAC and a UAS endpoint over UDP, clock at 0.0."""
    return EndpointPair()


@pytest.fixture
def tcp_pair() -> EndpointPair:
    """The same pair over one TCP connection (reliable: no retransmissions)."""
    return EndpointPair(transport="TCP")
