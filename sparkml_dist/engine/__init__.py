"""The one execution layer every classical family uses (clustering, classification).

* :mod:`.data` -- the data interface (``sum``, ``gather``, ``reduce``, ``merge_tree``, ``on_root``) and its three
  implementations: :class:`MapReduceData` (resident blocks, one Spark job per call), :class:`BarrierData` (one
  barrier stage, gloo collectives), :class:`LocalData` (in memory);
* :mod:`.launch` -- :func:`launch`, the one launch path: validate, build the data, run the body, one result;
* :mod:`.state` -- :class:`RebuildableState`, per-partition state that survives executor loss;
* :class:`Layout` (from :mod:`sparkml_dist.runtime.layout`) -- world size and which partitions each rank hosts.

Write an algorithm once as ``body(data, *args)`` against the data interface, with per-partition work in
module-level functions ``fn(block, *args)``; call ``launch(engine, df, spec, body, args, check)`` from ``_fit``.
``sparkml_dist.clustering.lloyd`` is the smallest complete example.
"""

from sparkml_dist.engine.data import BarrierData, LocalData, MapReduceData
from sparkml_dist.engine.launch import ENGINES, EngineRun, check_engine, launch, load_rank, spec_for
from sparkml_dist.engine.state import RebuildableState, StateLostError, require_state
from sparkml_dist.runtime.barrier import BarrierTaskError, RankFailure
from sparkml_dist.runtime.layout import Layout, LayoutError

__all__ = ["ENGINES", "BarrierData", "BarrierTaskError", "EngineRun", "Layout", "LayoutError", "LocalData",
           "MapReduceData", "RankFailure", "RebuildableState", "StateLostError", "check_engine", "launch",
           "load_rank", "require_state", "spec_for"]
