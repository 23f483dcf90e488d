"""The ``rl`` job: ``sparkml-dist run rl --config conf/jobs/rl_impala.yaml`` (or ``spark-submit jobs/train_rl.py``).

Config::

    job: rl
    algorithm: impala            # dppo | a3c | impala | apex | gorila | seed
    params: {env: CartPole-v1, numActors: 2, envsPerActor: 8, totalSteps: 200000, runner: spark}
    evaluate: {episodes: 10, seed: 10000}
    output: out/rl_impala        # policy/ (policy.pt + run.json) and metrics.json, written atomically
"""

from __future__ import annotations

from sparkml_dist.runner import JobResult, register_job


def build(cfg: dict):
    """The algorithm object of a job config, validated (a bad config fails here, before any actor starts)."""
    from sparkml_dist.rl import ALGORITHMS

    name = cfg.get("algorithm")
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm={name!r}: unknown (known: {', '.join(sorted(ALGORITHMS))})")
    params = cfg.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("params must be a mapping of the algorithm's camelCase parameters")
    algo = ALGORITHMS[name](**params)
    algo.validate()
    return algo


@register_job("rl")
def run(spark, cfg: dict) -> JobResult:
    algo = build(cfg)
    evaluation = dict(cfg.get("evaluate") or {})
    result = algo.train(spark=spark)
    metrics = {"algorithm": algo.name, **result.stats}
    if evaluation.get("episodes", 10):
        metrics["greedy_return"] = result.evaluate(int(evaluation.get("episodes", 10)),
                                                   int(evaluation.get("seed", 10_000)))
    metrics["history"] = result.history
    return JobResult(metrics=metrics, models={"policy": result})
