"""DDP over the launcher equals single-process training; checkpoints resume a failed or repeated fit exactly."""

import copy
import os

import numpy as np
import pytest
import torch

from sparkml_dist.deep import TorchEstimator
from sparkml_dist.deep.models import MLP

ROWS, PER_RANK_BATCH = 320, 8  # 2 ranks x 160 rows: 20 steps per epoch


def _diabetes(spark):
    from pyspark.ml.linalg import Vectors
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = X[:ROWS].astype(np.float32) * 10
    y = ((y[:ROWS] - y.mean()) / y.std()).astype(np.float32)
    # createDataFrame slices the list into contiguous halves: rank 0 gets rows 0..159, rank 1 rows 160..319
    rows = [(Vectors.dense(a.tolist()), float(b)) for a, b in zip(X, y, strict=True)]
    df = spark.createDataFrame(rows, ["features", "label"])
    assert df.rdd.getNumPartitions() == 2
    return df, X, y


def _single_process(module, X, y, steps, lr):
    """The reference: one process, global batch = both ranks' batches of the same step, SGD on the mean loss."""
    model = copy.deepcopy(module)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    half = ROWS // 2
    per_epoch = half // PER_RANK_BATCH
    for step in range(steps):
        s = (step % per_epoch) * PER_RANK_BATCH
        idx = np.r_[s:s + PER_RANK_BATCH, half + s:half + s + PER_RANK_BATCH]
        opt.zero_grad()
        out = model(torch.from_numpy(X[idx]))
        loss = torch.nn.functional.mse_loss(out, torch.from_numpy(y[idx]).unsqueeze(1))
        loss.backward()
        opt.step()
    return model


def _estimator(module, numWorkers=2, **kw):
    return TorchEstimator(model=module, loss="mse", optimizer="sgd", lr=0.05, batchSize=2 * PER_RANK_BATCH,
                          numWorkers=numWorkers, shuffle=False, **kw)


def _assert_same_params(a, b, atol=1e-5):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_allclose(p.numpy(), q.numpy(), atol=atol, rtol=0, err_msg=name)


def test_ddp_on_two_ranks_equals_single_process_training(spark):
    df, X, y = _diabetes(spark)
    torch.manual_seed(0)
    module = MLP(10, (16,), 1)
    model = _estimator(copy.deepcopy(module), epochs=2).fit(df)  # 40 steps
    reference = _single_process(module, X, y, steps=40, lr=0.05)
    _assert_same_params(model.module, reference)
    assert [h["steps"] for h in model.history] == [20, 20]
    assert model.history[1]["loss"] < model.history[0]["loss"]


def test_ddp_on_one_task_with_two_local_ranks_equals_single_process_training(spark):
    # one barrier task hosting both partitions starts two local ranks; each takes half of the task's rows in order,
    # which is the split two tasks would have, so the same single-process reference applies
    df, X, y = _diabetes(spark)
    torch.manual_seed(3)
    module = MLP(10, (16,), 1)
    model = _estimator(copy.deepcopy(module), numWorkers=1, processesPerTask=2, epochs=1).fit(df)  # 20 steps
    _assert_same_params(model.module, _single_process(module, X, y, steps=20, lr=0.05))
    assert [h["steps"] for h in model.history] == [20]


def test_fit_with_an_existing_checkpoint_dir_resumes(spark, tmp_path):
    df, X, y = _diabetes(spark)
    torch.manual_seed(1)
    module = MLP(10, (16,), 1)
    ckpt = str(tmp_path / "ckpt")
    first = _estimator(copy.deepcopy(module), epochs=1, checkpointDir=ckpt).fit(df)
    assert os.listdir(ckpt) == ["step-000020"]
    resumed = _estimator(copy.deepcopy(module), epochs=2, checkpointDir=ckpt).fit(df)
    assert resumed.resumedFrom.endswith("step-000020") and len(resumed.history) == 1  # only epoch 2 ran
    _assert_same_params(resumed.module, _single_process(module, X, y, steps=40, lr=0.05))
    assert first.resumedFrom is None


def test_rank_failing_on_the_first_attempt_resumes_from_checkpoint(spark, tmp_path):
    from sparkml_dist.data.feed import feed_frame
    from sparkml_dist.deep.launcher import get_context, launch
    from sparkml_dist.deep.strategies import ddp

    df, X, y = _diabetes(spark)
    torch.manual_seed(2)
    module = MLP(10, (16,), 1)
    marker = str(tmp_path / "failed-once")
    frame = feed_frame(df, ["features", "label"])

    def train(module, ckpt, fail):
        ctx = get_context()

        def crash(step, loss):  # rank 1 dies after step 13 on the first attempt only (a lost executor)
            if fail and ctx.rank == 1 and step == 13 and not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("injected failure")

        config = ddp.TrainConfig(epochs=2, batch_size=PER_RANK_BATCH, lr=0.05, optimizer="sgd", loss="mse",
                                 shuffle=False, checkpoint_dir=ckpt, checkpoint_every=5, callbacks=[crash])
        feed = ctx.feed(PER_RANK_BATCH, ["features", "label"], shuffle=False)
        return ddp.train(ctx, copy.deepcopy(module), config, feed)

    disturbed = launch(train, (module, str(tmp_path / "a"), True), numWorkers=2, df=frame, timeout=300)
    undisturbed = launch(train, (module, str(tmp_path / "b"), False), numWorkers=2, df=frame, timeout=300)
    assert os.path.exists(marker)  # the failure did happen
    assert disturbed[0]["resumed_from"].endswith("step-000010") and undisturbed[0]["resumed_from"] is None
    for name, value in undisturbed[0]["state"].items():
        np.testing.assert_allclose(disturbed[0]["state"][name], value, atol=1e-6, err_msg=name)
    assert disturbed[0]["global_step"] == undisturbed[0]["global_step"] == 40


def test_resumed_run_with_dropout_ends_at_the_undisturbed_parameters(spark, tmp_path):
    # dropout draws from each rank's torch RNG and the feed shuffles: both must continue from the checkpoint exactly
    from sparkml_dist.data.feed import feed_frame
    from sparkml_dist.deep.launcher import get_context, launch
    from sparkml_dist.deep.strategies import ddp

    df, _, _ = _diabetes(spark)
    torch.manual_seed(4)
    module = MLP(10, (32, 16), 1, dropout=0.3)
    marker = str(tmp_path / "failed-once")
    frame = feed_frame(df, ["features", "label"])

    def train(module, ckpt, fail):
        ctx = get_context()

        def crash(step, loss):  # rank 0 dies after step 17, 7 steps past the checkpoint, on attempt 0 only
            if fail and ctx.rank == 0 and step == 17 and ctx.barrier.attempt == 0:
                open(marker, "w").close()
                raise RuntimeError("injected failure")

        config = ddp.TrainConfig(epochs=2, batch_size=PER_RANK_BATCH, lr=0.05, optimizer="adam", loss="mse",
                                 shuffle=True, seed=11, checkpoint_dir=ckpt, checkpoint_every=10, callbacks=[crash])
        feed = ctx.feed(PER_RANK_BATCH, ["features", "label"], shuffle=True, seed=11)
        return ddp.train(ctx, copy.deepcopy(module), config, feed)

    disturbed = launch(train, (module, str(tmp_path / "a"), True), numWorkers=2, df=frame, timeout=300)
    undisturbed = launch(train, (module, str(tmp_path / "b"), False), numWorkers=2, df=frame, timeout=300)
    assert os.path.exists(marker)  # the failure did happen
    assert disturbed[0]["resumed_from"].endswith("step-000010") and undisturbed[0]["resumed_from"] is None
    for name, value in undisturbed[0]["state"].items():
        np.testing.assert_allclose(disturbed[0]["state"][name], value, atol=1e-6, rtol=0, err_msg=name)


def test_bad_input_fails_before_launch(spark):
    df, _, _ = _diabetes(spark)
    module = MLP(10, (4,), 1)
    with pytest.raises(ValueError, match="batchSize=0"):
        TorchEstimator(model=module, batchSize=0).fit(df)
    with pytest.raises(ValueError, match="strategy='hogwild'"):
        TorchEstimator(model=module, strategy="hogwild").fit(df)
    with pytest.raises(ValueError, match="featuresCol='pixels': no such column"):
        TorchEstimator(model=module, featuresCol="pixels").fit(df)
    with pytest.raises(ValueError, match="labelCol='s' has type string"):
        TorchEstimator(model=module, labelCol="s").fit(df.selectExpr("features", "'x' as s"))
    import threading

    class Locked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lock = threading.Lock()

    with pytest.raises(TypeError, match="cannot be pickled"):
        TorchEstimator(model=Locked).fit(df)
    with pytest.raises(Exception, match="numWorkers=3"):
        TorchEstimator(model=module, numWorkers=3).fit(df)
