"""Training strategies: each is ``train(ctx, model, config, feed) -> dict`` run on every rank.

Part 1 ships synchronous data parallelism (``ddp``); the survey's other strategies (parameter server, elastic
averaging, compression, model/pipeline/hybrid parallelism) plug in here under their own names.
"""

from sparkml_dist.deep.strategies import ddp

#: strategy name -> module with ``train``
STRATEGIES = {"ddp": ddp}

__all__ = ["STRATEGIES", "ddp"]
