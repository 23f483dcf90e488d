"""The site-ensemble algorithms against independent re-implementations written here, on the same per-site data.

* AdaBoost ``lazarevic`` (Lazarevic & Obradovic, KDD 2001) and ``pl`` (AdaBoost.PL, Palit & Reddy, TKDE 2012):
  each site's hypotheses come from scikit-learn (``DecisionTreeClassifier(max_depth=1)`` / ``AdaBoostClassifier``)
  on that site's rows, and each paper's merge / vote rule is written out below in numpy. ``maxBins=0`` makes our
  site stumps scikit-learn's (``test_adaboost`` checks that stump by stump), so the two must agree to rounding.
* ``ConsensusClustering`` (Vendramin et al., DCAI 2011): per-site FCM with Xie-Beni over ``localKRange`` and the
  driver's weighted FCM over the sites' prototypes, written out below from the formulas and compared up to a
  relabelling of the clusters (optimal matching of centres, not a per-column sort).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.ensemble import AdaBoostClassifier as SkAdaBoost
from sklearn.tree import DecisionTreeClassifier

from sparkml_dist.classification import AdaBoostClassifier
from sparkml_dist.clustering import ConsensusClustering
from sparkml_dist.data.sources import from_numpy


def sites_of(df) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(X, y) of partition 0, of partition 1, ...]`` in row order (what each site sees)."""
    from pyspark.sql.functions import spark_partition_id

    rows = df.withColumn("_p", spark_partition_id()).select("_p", "features", "label").collect()
    out = []
    for p in sorted({r["_p"] for r in rows}):
        part = [r for r in rows if r["_p"] == p]
        out.append((np.array([r["features"].toArray() for r in part]), np.array([r["label"] for r in part])))
    return out


def sklearn_tree_seeds(random_state: int, n: int) -> list[int]:
    """The integer ``random_state`` scikit-learn's AdaBoost gives its ``n`` trees (``_set_random_states``)."""
    rs = np.random.RandomState(random_state)
    return [int(rs.randint(np.iinfo(np.int32).max)) for _ in range(n)]


def samme_alpha(err: float, K: int) -> float:
    return float(np.log((1.0 - err) / err) + np.log(K - 1.0))


def weighted_vote(preds: list[np.ndarray], votes: list[float], K: int) -> np.ndarray:
    """Class with the largest summed vote per row; -1 (abstain) where the top vote is tied."""
    tally = np.zeros((len(preds[0]), K))
    for p, v in zip(preds, votes, strict=True):
        tally[np.arange(len(p)), p.astype(int)] += v
    best = tally.argmax(axis=1)
    tied = (tally == tally.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return np.where(tied, -1, best)


def samme_decision(hyp_preds: list[np.ndarray], alphas: list[float], K: int) -> np.ndarray:
    """SAMME's ``sum_t alpha_t [h_t(x) == k] - alpha_t / (K - 1) [h_t(x) != k]`` (abstaining rows add nothing)."""
    out = np.zeros((len(hyp_preds[0]), K))
    for h, a in zip(hyp_preds, alphas, strict=True):
        onehot = h[:, None] == np.arange(K)[None, :]
        out += np.where(h[:, None] >= 0, np.where(onehot, a, -a / (K - 1)), 0.0)
    return out


@pytest.fixture(scope="module")
def cancer_sites(spark):
    """breast_cancer on three partitions (sites), and all its rows to evaluate on."""
    from sparkml_dist.data.sources import bundled_arrays

    X, y = bundled_arrays("breast_cancer")
    train = from_numpy(spark, X, y, num_partitions=3).cache()
    return train, sites_of(train), X


def lazarevic_reference(sites, K: int, rounds: int, seed: int):
    """Lazarevic & Obradovic's distributed boosting, written out: every site fits a stump to its share of the global
    weight distribution; the round's hypothesis is the vote of all sites' stumps (each weighted by its SAMME weight
    on its own data); its error and weight are global; every site reweights by the global hypothesis' misses."""
    total = sum(len(y) for _, y in sites)
    w = [np.full(len(y), 1.0 / total) for _, y in sites]
    seeds = sklearn_tree_seeds(seed, rounds)
    rounds_out = []
    for t in range(rounds):
        trees, votes = [], []
        for (X, y), ws in zip(sites, w, strict=True):
            tree = DecisionTreeClassifier(max_depth=1, random_state=seeds[t]).fit(X.astype(np.float32), y, ws)
            local_err = ws[tree.predict(X.astype(np.float32)) != y].sum() / ws.sum()
            trees.append(tree)
            votes.append(samme_alpha(max(local_err, 1e-10), K) if local_err < 1 - 1 / K else 0.0)

        def hypothesis(X, trees=trees, votes=votes):
            return weighted_vote([tr.predict(X.astype(np.float32)) for tr in trees], votes, K)

        miss = [hypothesis(X) != y for X, y in sites]
        err = sum(ws[m].sum() for ws, m in zip(w, miss, strict=True)) / sum(ws.sum() for ws in w)
        if err >= 1 - 1 / K - 1e-12:  # SAMME's stop: no better than chance (to rounding: sum order differs)
            break
        alpha = samme_alpha(err, K)
        rounds_out.append((trees, votes, alpha, err, hypothesis))
        w = [ws * np.exp(alpha * m) for ws, m in zip(w, miss, strict=True)]
        norm = sum(ws.sum() for ws in w)
        w = [ws / norm for ws in w]
    return rounds_out


def test_lazarevic_equals_its_paper_rule_on_the_same_sites(cancer_sites):
    train, sites, Xte = cancer_sites
    rounds, K = 8, 2
    model = AdaBoostClassifier(algorithm="lazarevic", maxIter=rounds, maxBins=0, seed=7).fit(train)
    ref = lazarevic_reference(sites, K, rounds, seed=7)
    assert len(model.estimatorWeights) == len(ref) >= 4
    np.testing.assert_allclose(model.estimatorWeights, [r[2] for r in ref], rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.estimatorErrors, [r[3] for r in ref], rtol=0, atol=1e-9)
    stumps = model.stumps
    for t, (trees, votes, *_rest) in enumerate(ref):
        mine = [s for s in stumps if s["hypothesis"] == t]
        assert [s["feature"] for s in mine] == [int(tr.tree_.feature[0]) for tr in trees]
        np.testing.assert_array_equal([s["threshold"] for s in mine], [tr.tree_.threshold[0] for tr in trees])
        np.testing.assert_allclose([s["vote"] for s in mine], votes, rtol=0, atol=1e-9)
    decision = samme_decision([r[4](Xte) for r in ref], [r[2] for r in ref], K)
    np.testing.assert_array_equal(model.predict_numpy(Xte)[2], decision.argmax(axis=1))
    raw = model.predict_numpy(Xte)[0]
    np.testing.assert_allclose(raw[:, 1], (decision[:, 1] - decision[:, 0]) / sum(r[2] for r in ref), atol=1e-9)
    assert len(stumps) == 3 * len(ref)  # a stump per site and round


def test_pl_equals_its_paper_rule_on_the_same_sites(cancer_sites):
    """AdaBoost.PL: every site boosts alone; each site's hypotheses are sorted by weight, merged hypothesis t is the
    plurality (binary: sign of the sum) of the sites' t-th ones, a tie abstains, and its weight the sites' mean."""
    train, _, Xte = cancer_sites
    train = train.coalesce(2)  # two sites: a binary vote can tie, and a tie must abstain
    sites = sites_of(train)
    rounds = 8
    model = AdaBoostClassifier(algorithm="pl", maxIter=rounds, maxBins=0, seed=3).fit(train)
    local = []
    for X, y in sites:
        sk = SkAdaBoost(n_estimators=rounds, random_state=3).fit(X, y)
        n = len(sk.estimators_)
        order = np.argsort(-sk.estimator_weights_[:n], kind="stable")
        local.append([(sk.estimators_[i], sk.estimator_weights_[i]) for i in order])
    depth = min(len(h) for h in local)
    alphas = [float(np.mean([h[t][1] for h in local])) for t in range(depth)]
    np.testing.assert_allclose(model.estimatorWeights, alphas, rtol=0, atol=1e-9)
    # binary case of the paper: h_t(x) = sign(sum_p h_t^p(x)) in {-1, 0, +1}, H(x) = sign(sum_t alpha_t h_t(x))
    signed = [np.sign(sum(2 * h[t][0].predict(Xte) - 1 for h in local)) for t in range(depth)]
    F = sum(a * s for a, s in zip(alphas, signed, strict=True))
    raw, _, pred = model.predict_numpy(Xte)
    decided = F != 0
    np.testing.assert_array_equal(pred[decided], (F[decided] > 0).astype(float))
    np.testing.assert_allclose(raw[:, 1], 2 * F / sum(alphas), atol=1e-9)  # SAMME's K=2 scale: 2 F / sum(alpha)
    assert (np.array(signed) == 0).any()  # the sites disagreed somewhere: tied votes were exercised


# --- consensus clustering ---------------------------------------------------------------------------------------
def fcm(X: np.ndarray, w: np.ndarray, V: np.ndarray, m: float = 2.0, tol: float = 1e-10, max_iter: int = 2000):
    """Weighted fuzzy c-means (Bezdek) from prototypes ``V`` to convergence; ``(V, U, J_m)``."""
    for _ in range(max_iter):
        D = np.maximum(((X[:, None, :] - V[None]) ** 2).sum(-1), 1e-300)
        U = 1.0 / ((D[:, :, None] / D[:, None, :]) ** (1.0 / (m - 1))).sum(-1)
        um = U ** m * w[:, None]
        V_new = um.T @ X / um.sum(0)[:, None]
        moved = np.abs(V_new - V).max()
        V = V_new
        if moved < tol:
            break
    D = np.maximum(((X[:, None, :] - V[None]) ** 2).sum(-1), 1e-300)
    U = 1.0 / ((D[:, :, None] / D[:, None, :]) ** (1.0 / (m - 1))).sum(-1)
    return V, U, float((U ** m * w[:, None] * D).sum())


def xb_choice(X: np.ndarray, w: np.ndarray, ks: list[int]):
    """FCM for every k (started from scikit-learn's k-means centres), keep the smallest Xie-Beni
    ``J_m / (sum w * min_{i != k} ||v_i - v_k||^2)``; ``(V, U)`` of the chosen k."""
    from sklearn.cluster import KMeans as SkKMeans

    best = None
    for k in ks:
        V0 = SkKMeans(n_clusters=k, n_init=10, random_state=0).fit(X, sample_weight=w).cluster_centers_
        V, U, J = fcm(X, w, V0)
        sep = min(((V[i] - V[j]) ** 2).sum() for i in range(k) for j in range(k) if i != j)
        xb = J / (w.sum() * sep)
        if best is None or xb < best[0]:
            best = (xb, V, U)
    return best[1], best[2]


def matched_gap(A: np.ndarray, B: np.ndarray) -> float:
    """Largest coordinate gap between two centre sets after the best one-to-one relabelling (Hungarian matching)."""
    assert A.shape == B.shape, (A.shape, B.shape)
    rows, cols = linear_sum_assignment(((A[:, None, :] - B[None]) ** 2).sum(-1))
    return float(np.abs(A[rows] - B[cols]).max())


def test_consensus_equals_site_fcm_plus_driver_fcm_written_out(spark):
    """Vendramin et al.: every site (partition) runs FCM for each k of localKRange and keeps the smallest Xie-Beni;
    the driver runs weighted FCM (weights: the prototypes' fuzzy cardinalities sum_j u_ij) over all sites'
    prototypes for each k of kRange and keeps the smallest Xie-Beni; rows get the nearest consensus prototype."""
    from sklearn.metrics import adjusted_rand_score
    from test_clustering_fuzzy import separated_blobs  # pytest puts tests/ on sys.path

    X, y = separated_blobs(6, 900, 3, seed=21, std=0.6, min_gap=8.0)
    site = np.where(y <= 1, 0, np.where(y >= 4, 2, 1))  # three sites, each sees two blobs, blob 2-3 on site 1
    site = np.where((y == 2) & (np.arange(len(y)) % 2 == 0), 0, site)  # ... and half of blob 2 on site 0
    order = np.argsort(site, kind="stable")
    df = from_numpy(spark, X[order], y[order], extra={"site": site[order]}).repartitionByRange(3, "site").cache()
    sites = sites_of(df)
    assert len(sites) == 3
    model = ConsensusClustering(kRange=[2, 8], localKRange=[2, 4], tol=1e-8, maxIter=300, seed=1).fit(df)

    local = [xb_choice(Xs, np.ones(len(Xs)), [2, 3, 4]) for Xs, _ in sites]
    assert model.localK() == [len(V) for V, _ in local]
    for mine, (V, _) in zip(model.localCenters(), local, strict=True):
        assert matched_gap(mine, V) < 1e-4
    P = np.vstack([V for V, _ in local])
    W = np.concatenate([U.sum(axis=0) for _, U in local])
    V_global, _ = xb_choice(P, W, [k for k in range(2, 9) if k < len(P)])
    assert model.getK() == len(V_global) == 6
    assert matched_gap(model.centers, V_global) < 1e-4
    pred = np.array([r[0] for r in model.transform(df).select("prediction").collect()])
    Xd = np.array([r[0].toArray() for r in df.select("features").collect()])
    ref_pred = ((Xd[:, None, :] - V_global[None]) ** 2).sum(-1).argmin(axis=1)
    assert adjusted_rand_score(ref_pred, pred) == 1.0  # the same partition of the rows, whatever the labels
