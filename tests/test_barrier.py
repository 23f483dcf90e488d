"""Barrier collectives on real Spark barrier tasks."""

import time

import numpy as np
import pytest

from sparkml_dist.runtime.barrier import BarrierTaskError, InsufficientSlotsError, available_slots, run_barrier


def test_collectives_give_every_rank_the_same_answer(spark):
    def fn(ctx):
        small = ctx.allreduce(np.arange(4, dtype=np.float64) * (ctx.rank + 1))
        big = ctx.allreduce(np.full(500_000, float(ctx.rank + 1)))  # 4 MB
        mx = ctx.allreduce(np.array([ctx.rank, -ctx.rank]), op="max")
        # small arrays are gathered and reduced in rank order; dtype and shape as the ring allreduce's
        ints = ctx.allreduce(np.full((2, 3), ctx.rank + 1, dtype=np.int32))
        mn = ctx.allreduce(np.array([[0.5 * ctx.rank, -1.0 * ctx.rank]]), op="min")
        gathered = ctx.allgather({"rank": ctx.rank})
        value = ctx.broadcast("from-root" if ctx.rank == 1 else None, root=1)
        ctx.barrier()
        return small, float(big.sum()), mx, gathered, value, ctx.world_size, ints, mn

    results = run_barrier(fn, 2, spark=spark)
    assert len(results) == 2
    for small, big_sum, mx, gathered, value, world, ints, mn in results:
        assert ints.dtype == np.int32 and ints.shape == (2, 3) and (ints == 3).all()
        np.testing.assert_array_equal(mn, [[0.0, -1.0]])
        np.testing.assert_allclose(small, np.arange(4) * 3.0)
        assert big_sum == pytest.approx(500_000 * 3.0)
        np.testing.assert_array_equal(mx, [1, 0])
        assert gathered == [{"rank": 0}, {"rank": 1}]
        assert value == "from-root" and world == 2
    assert [s["rank"] for s in results.stats] == [0, 1]
    assert all(s["bytes_sent"] > 4_000_000 for s in results.stats)  # the big allreduce is accounted


def test_allreduce_does_not_modify_the_callers_array(spark):
    def fn(ctx):
        local = np.ones(3)
        total = ctx.allreduce(local)
        return local, total

    for local, total in run_barrier(fn, 2, spark=spark):
        np.testing.assert_array_equal(local, np.ones(3))
        np.testing.assert_array_equal(total, np.full(3, 2.0))


def test_each_rank_reads_its_own_partition(spark):
    df = spark.range(0, 1000, 1, 3).selectExpr("id", "cast(id as double) as x")

    def fn(ctx):
        rows = sum(b.num_rows for b in ctx.batches())
        return rows, ctx.allreduce(np.array([rows]))[0]

    results = run_barrier(fn, 2, spark=spark, df=df)  # repartitioned to the world size
    assert sum(r[0] for r in results) == 1000
    assert all(r[1] == 1000 for r in results)


def test_exception_on_one_rank_fails_with_that_ranks_traceback(spark):
    def fn(ctx):
        if ctx.rank == 1:
            raise ValueError("rank one is broken")
        ctx.barrier()  # rank 0 would wait for rank 1 forever without the failure propagation
        return "unreachable"

    with pytest.raises(BarrierTaskError, match="rank 1 of 2 failed") as info:
        run_barrier(fn, 2, spark=spark, timeout=120)
    assert info.value.rank == 1
    assert "ValueError: rank one is broken" in info.value.remote_traceback


def test_timeout_turns_a_hang_into_an_error(spark):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 3 s"):
        run_barrier(lambda ctx: time.sleep(120), 2, spark=spark, timeout=3)
    assert time.monotonic() - start < 60
    # the session is still usable afterwards
    assert run_barrier(lambda ctx: ctx.rank, 2, spark=spark) == [0, 1]


def test_more_tasks_than_slots_is_a_clear_error(spark):
    assert available_slots(spark) == 2
    start = time.monotonic()
    with pytest.raises(InsufficientSlotsError, match="needs 3 concurrent task slots but the cluster .* has 2"):
        run_barrier(lambda ctx: ctx.rank, 3, spark=spark, slot_wait=0)
    assert time.monotonic() - start < 10


def test_spark_rendezvous_fallback(spark):
    results = run_barrier(lambda ctx: ctx.allreduce(np.ones(2)).tolist(), 2, spark=spark, rendezvous="spark")
    assert results == [[2.0, 2.0], [2.0, 2.0]]


def test_bad_arguments(spark):
    with pytest.raises(ValueError, match="num_tasks must be a positive integer"):
        run_barrier(lambda ctx: 0, 0, spark=spark)
    with pytest.raises(ValueError, match="rendezvous must be 'driver' or 'spark'"):
        run_barrier(lambda ctx: 0, 1, spark=spark, rendezvous="zk")


def test_a_rank_failing_on_the_first_attempt_only_is_retried_in_a_fresh_namespace(spark, tmp_path):
    """Retries are on (conftest): Spark re-runs the barrier stage; attempt 1 rendezvouses under its own prefix (the
    stale keys and first_error of attempt 0 are not read) and returns the right results."""
    marker = str(tmp_path / "failed-once")

    def fn(ctx):
        import os

        total = ctx.allreduce(np.array([float(ctx.rank + 1)]))  # attempt 0 builds its group and talks first
        if ctx.rank == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("rank 1 fails on the first attempt only")
        again = ctx.allreduce(np.array([10.0 * (ctx.rank + 1)]))
        return ctx.attempt, float(total[0]), float(again[0]), ctx.allgather(ctx.rank)

    results = run_barrier(fn, 2, spark=spark, timeout=300)
    assert [r[0] for r in results] == [1, 1]  # both ranks ran in the second stage attempt
    assert all(r[1:] == (3.0, 30.0, [0, 1]) for r in results)
    assert [s["attempt"] for s in results.stats] == [1, 1]


def test_retryable_failure_on_every_attempt_reports_the_last_attempt(spark):
    def fn(ctx):
        if ctx.rank == 0:
            raise KeyError(f"attempt {ctx.attempt}")
        ctx.barrier()

    with pytest.raises(BarrierTaskError, match=r"rank 0 of 2 failed \(stage attempt 1\)") as info:
        run_barrier(fn, 2, spark=spark, timeout=300)
    assert isinstance(info.value.exception, KeyError) and info.value.attempt == 1


def test_stage_without_collectives(spark):
    """``collectives=False`` (the RL actors that only act): every rank's result, no gloo group (a collective says
    why it cannot run), and a rank's failure still reaches the driver as that rank's error."""

    def _no_group_task(ctx, fail_rank):
        if ctx.rank == fail_rank:
            raise ValueError(f"rank {ctx.rank} refuses")
        try:
            ctx.allreduce(np.ones(2))
        except RuntimeError as exc:
            return ctx.rank, ctx.world_size, ctx.attempt, str(exc)
        return ctx.rank, ctx.world_size, ctx.attempt, "allreduce ran"

    out = run_barrier(_no_group_task, 2, spark=spark, args=(-1,), collectives=False, timeout=120)
    assert [r[:3] for r in out] == [(0, 2, -1), (1, 2, -1)]
    assert all("collectives=False" in r[3] for r in out)
    with pytest.raises(BarrierTaskError, match="rank 1 refuses") as err:
        run_barrier(_no_group_task, 2, spark=spark, args=(1,), collectives=False, timeout=120)
    assert err.value.rank == 1


def test_small_allreduce_against_numpy_and_a_mismatch_is_named(spark):
    """Small arrays take the TCP star (rank 0 reduces): the result equals numpy's reduction of every rank's array,
    bit for bit on every rank, across calls mixed with gloo collectives; ranks passing different sizes fail with
    an error naming both, instead of hanging."""
    def fn(ctx):
        rng = np.random.default_rng(ctx.rank)
        outs = []
        for i in range(20):
            x = rng.normal(size=(3, 7)).astype(np.float32)
            outs.append((x, ctx.allreduce(x), ctx.allreduce(x, op="max")))
            if i == 10:
                ctx.barrier()  # gloo between star calls
        return outs

    results = run_barrier(fn, 2, spark=spark)
    for i in range(20):
        mine = [r[i][0] for r in results]
        np.testing.assert_array_equal(results[0][i][1], results[1][i][1])
        np.testing.assert_allclose(results[0][i][1], mine[0] + mine[1], rtol=1e-6)
        np.testing.assert_array_equal(results[0][i][2], np.maximum(mine[0], mine[1]))

    def mismatch(ctx):
        return ctx.allreduce(np.ones(3 + ctx.rank))

    with pytest.raises(BarrierTaskError, match="every rank must pass the same shape"):
        run_barrier(mismatch, 2, spark=spark, timeout=120)
