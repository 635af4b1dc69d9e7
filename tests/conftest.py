"""Shared pytest set-up: hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (set by ``make test``) runs 5,000 examples per property; the default
``dev`` profile runs 200 so a local run stays quick. (The CI profile ran 10,000 until a clean
clone's ``bash .ci/run`` took 13 m 51 s of CI's 15 minutes on a slow machine, ~230 s of it in
the property tests at 10,000 examples.)
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=5_000,
    deadline=None,
    # 5,000 examples of a slow strategy trip the too_slow check without being a problem.
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
