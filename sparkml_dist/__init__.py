"""sparkml_dist: distributed machine-learning algorithms on Apache Spark.

Layers (each depends only on those above it): ``runtime`` (SparkSession profiles, local standalone cluster,
barrier collectives, logging/progress), ``data`` (sources, generators, validation, Arrow -> numpy blocks),
then the algorithm families (``clustering``, ``classification``, ...).
"""

__version__ = "0.1.0"
