"""Shared pytest set-up: hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (set by ``make test``) runs 10,000 examples per property; the default
``dev`` profile runs 200 so a local run stays quick.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=10_000,
    deadline=None,
    # 10,000 examples of a slow strategy trip the too_slow check without being a problem.
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
