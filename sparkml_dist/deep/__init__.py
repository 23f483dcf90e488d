"""Deep learning on Spark: launch torch ranks in one barrier stage, feed them DataFrames, train and serve models.

* :func:`run` / :class:`Distributor` -- the launcher (every rank's result / TorchDistributor's API);
* :class:`TorchEstimator` / :class:`TorchModel` -- a pyspark.ml estimator that trains with a strategy (``ddp``) and a
  model whose ``transform`` runs batched inference in Arrow UDFs;
* :mod:`sparkml_dist.deep.checkpoint` -- ``torch.distributed.checkpoint`` every N steps, resumed by a retried stage.

The DataFrame feeds live in :mod:`sparkml_dist.data.feed` (streamed per partition) and
:mod:`sparkml_dist.data.converter` (petastorm's ``make_spark_converter``).
"""

from sparkml_dist.deep.estimator import TorchEstimator, TorchModel
from sparkml_dist.deep.launcher import Distributor, TorchContext, get_context, run

__all__ = ["Distributor", "TorchContext", "TorchEstimator", "TorchModel", "get_context", "run"]
