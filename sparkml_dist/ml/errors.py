"""The error a fit raises when the data admit no model (not a bad input, not a crash).

``FitError`` is a ``ValueError`` (what callers catch for "these data/Params cannot be fitted") that says
``retryable = False``: inside a barrier stage the engine's one error protocol then cancels the stage and re-raises it
on the driver as itself instead of retrying an attempt that would fail the same way
(:mod:`sparkml_dist.runtime.barrier`).
"""

from __future__ import annotations


class FitError(ValueError):
    """No model can be fitted to these data with these Params (e.g. no stump beats chance)."""

    retryable = False
