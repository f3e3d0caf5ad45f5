"""Hypothesis profiles, loaded before any test module builds its own `settings(...)` (those inherit
from the profile loaded here, so their max_examples stay and derandomize comes from here).

- "ci" (chosen when CI=true, as CI systems set it): derandomize=True, so every run of a test
  draws the same examples (seeded from the test itself) and a CI failure reproduces locally
  with `CI=true pytest ...`; no example database, which a fresh CI machine would not have anyway.
- "dev" (otherwise): random examples, and the example database replays past failures.
HYPOTHESIS_PROFILE=ci|dev overrides the choice. Either way a failure prints a reproduction blob.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)


def _profile() -> str:
    chosen = os.environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    return "ci" if os.environ.get("CI", "").lower() in ("true", "1", "yes") else "dev"


settings.load_profile(_profile())
