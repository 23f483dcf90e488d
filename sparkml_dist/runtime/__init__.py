"""Spark runtime: sessions from profiles, the local standalone cluster, barrier collectives, logging."""

from sparkml_dist.runtime.logs import ProgressReporter, setup_logging
from sparkml_dist.runtime.session import get_spark, load_profile

__all__ = ["ProgressReporter", "get_spark", "load_profile", "setup_logging"]
