"""The torch launcher on real Spark barrier tasks: every rank's result, torchrun's environment, errors, scripts."""

import os
import sys
import textwrap

import pytest

from sparkml_dist.deep import Distributor, get_context, run
from sparkml_dist.runtime.barrier import BarrierTaskError, InsufficientSlotsError

# Training functions are defined inside the tests: cloudpickle ships closures by value, while module-level functions
# of a test module would be pickled by reference and the Python workers cannot import this file.


def test_run_returns_every_ranks_result_with_torchrun_env(spark):
    def allreduce_rank(offset):
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(dist.get_rank()) + offset])
        dist.all_reduce(t)  # the default group is up without init_process_group
        env = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
        ctx = get_context()
        return {"sum": t.item(), "env": env, "rank": ctx.rank, "world": ctx.world_size, "device": str(ctx.device),
                "threads": torch.get_num_threads()}

    results = run(allreduce_rank, 10.0, numWorkers=2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["sum"] == 0 + 1 + 2 * 10.0 for r in results)  # a real allreduce over both ranks
    for rank, r in enumerate(results):
        assert r["env"]["RANK"] == str(rank) and r["env"]["WORLD_SIZE"] == "2" and r["env"]["LOCAL_RANK"] == "0"
        assert r["device"] == "cpu" and r["threads"] == 1
    assert results[0]["env"]["MASTER_ADDR"] == results[1]["env"]["MASTER_ADDR"]
    assert results[0]["env"]["MASTER_PORT"] == results[1]["env"]["MASTER_PORT"]
    assert "RANK" not in os.environ  # the driver's environment is untouched


def test_raising_rank_fails_the_call_with_its_traceback(spark):
    def fn():
        import torch.distributed as dist

        if dist.get_rank() == 1:
            raise ValueError("rank one diverged")
        dist.barrier()
        return "unreachable"

    with pytest.raises(BarrierTaskError) as info:
        run(fn, numWorkers=2, timeout=120)
    assert info.value.rank == 1
    assert "rank one diverged" in info.value.remote_traceback and "ValueError" in info.value.remote_traceback


def test_hang_ends_in_timeout_error(spark):
    def fn():
        import time

        time.sleep(60)

    with pytest.raises(TimeoutError):
        run(fn, numWorkers=2, timeout=3)


def test_bad_requests_fail_before_any_task(spark):
    with pytest.raises(InsufficientSlotsError, match="3 concurrent task slots"):
        run(lambda: 0, numWorkers=3, timeout=30)
    with pytest.raises(ValueError, match="numWorkers"):
        run(lambda: 0, numWorkers=0)
    with pytest.raises(FileNotFoundError, match="no_such_script.py"):
        run("/nonexistent/no_such_script.py", numWorkers=2)
    import threading

    lock = threading.Lock()
    with pytest.raises(TypeError, match="cannot be pickled"):
        run(lambda: lock.locked(), numWorkers=2)
    with pytest.raises(RuntimeError, match="spark.task.resource.gpu.amount"):
        run(lambda: 0, numWorkers=2, useGpu=True)


def test_one_task_with_two_local_ranks_returns_both_with_torchrun_env(spark):
    def local(offset):
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(dist.get_rank()) + offset])
        dist.all_reduce(t)  # one group over the task's two spawned processes
        ctx = get_context()
        env = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                                          "MASTER_ADDR", "MASTER_PORT")}
        return {"sum": t.item(), "env": env, "rank": ctx.rank, "local_rank": ctx.local_rank, "pid": os.getpid(),
                "ppid": os.getppid(), "world": dist.get_world_size()}

    results = run(local, 10.0, numWorkers=1, processesPerTask=2, timeout=180)
    assert len(results) == 2
    for i, r in enumerate(results):
        assert r["rank"] == r["local_rank"] == i and r["world"] == 2
        assert r["env"] == {"RANK": str(i), "WORLD_SIZE": "2", "LOCAL_RANK": str(i), "LOCAL_WORLD_SIZE": "2",
                            "GROUP_RANK": "0", "MASTER_ADDR": results[0]["env"]["MASTER_ADDR"],
                            "MASTER_PORT": results[0]["env"]["MASTER_PORT"]}
        assert r["sum"] == 0 + 1 + 2 * 10.0
    assert results[0]["pid"] != results[1]["pid"] and results[0]["ppid"] == results[1]["ppid"]  # one task's children
    assert os.getpid() not in (results[0]["pid"], results[0]["ppid"])


def test_raising_local_rank_fails_the_call_with_its_traceback(spark):
    def fn():
        import torch.distributed as dist

        if dist.get_rank() == 1:
            raise ValueError("local rank one diverged")
        dist.barrier()
        return "unreachable"

    with pytest.raises(BarrierTaskError) as info:
        run(fn, numWorkers=1, processesPerTask=2, timeout=180)
    assert info.value.rank == 1 and info.value.world_size == 2  # the global rank of the local rank that raised
    assert "local rank one diverged" in info.value.remote_traceback
    assert "in _local_rank_entry" in info.value.remote_traceback and "in fn" in info.value.remote_traceback
    assert isinstance(info.value.exception, ValueError)
    with pytest.raises(ValueError, match="processesPerTask=0"):
        run(lambda: 0, numWorkers=1, processesPerTask=0)


SCRIPT = textwrap.dedent("""
    import os, sys
    import torch, torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo")          # torchrun-style: env:// from RANK/WORLD_SIZE/MASTER_*
    t = torch.tensor([float(sys.argv[1]) * (dist.get_rank() + 1)])
    dist.all_reduce(t)
    print(f"rank={os.environ['RANK']} world={os.environ['WORLD_SIZE']} args={sys.argv[1:]} sum={t.item()}")
    dist.destroy_process_group()
""")


def test_script_mode_passes_arguments_and_environment(spark, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    outputs = run(str(script), 2.5, "--flag", numWorkers=2, timeout=120)
    assert [o.strip() for o in outputs] == [f"rank={r} world=2 args=['2.5', '--flag'] sum=7.5" for r in (0, 1)]
    assert Distributor(2, local_mode=False, use_gpu=False).run(str(script), 1, "x") is None  # TorchDistributor's


def test_failing_script_reports_its_output(spark, tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("import os\nprint('about to fail on', os.environ['RANK'])\nraise SystemExit(3)\n")
    with pytest.raises(BarrierTaskError, match="exited with status 3") as info:
        run(str(script), numWorkers=2, timeout=120)
    assert "about to fail on" in info.value.remote_traceback


def test_distributor_returns_what_torchdistributor_returns(spark):
    from pyspark.ml.torch.distributor import TorchDistributor

    def torchdistributor_style(scale):
        """A TorchDistributor training function: initialises and destroys its own group."""
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group("gloo")
        t = torch.tensor([scale * (dist.get_rank() + 1)])
        dist.all_reduce(t)
        rank = dist.get_rank()
        dist.destroy_process_group()
        return {"rank": rank, "sum": t.item()}

    ours = Distributor(num_processes=2, local_mode=False, use_gpu=False).run(torchdistributor_style, 2.0)
    theirs = TorchDistributor(num_processes=2, local_mode=False, use_gpu=False).run(torchdistributor_style, 2.0)
    assert ours == theirs == {"rank": 0, "sum": 6.0}


def test_distributor_keeps_torchdistributor_signature():
    import inspect

    from pyspark.ml.torch.distributor import TorchDistributor

    ours = inspect.signature(Distributor.__init__).parameters
    theirs = inspect.signature(TorchDistributor.__init__).parameters
    for name in ("num_processes", "local_mode", "use_gpu"):
        assert ours[name].default == theirs[name].default
    assert list(inspect.signature(Distributor.run).parameters)[:2] == ["self", "train_object"]


@pytest.mark.gpu
def test_gpu_rank_trains_on_its_spark_gpu(spark):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if float(spark.sparkContext.getConf().get("spark.task.resource.gpu.amount", "0")) <= 0:
        pytest.skip("the session assigns no GPUs to tasks")

    def fn():
        import torch
        import torch.distributed as dist

        t = torch.ones(1, device="cuda")
        dist.all_reduce(t)  # NCCL
        return os.environ["CUDA_VISIBLE_DEVICES"], t.item(), str(get_context().device)

    results = run(fn, numWorkers=1, useGpu=True, timeout=300)
    assert results[0][1] == 1.0 and results[0][2].startswith("cuda")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
