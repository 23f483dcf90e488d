"""Spark profiles and their precedence (explicit > environment > profile file > defaults)."""

import pytest

from sparkml_dist.runtime.session import DEFAULTS, get_spark, load_profile, parse_conf_pairs, resolve_settings


def test_profiles_exist_for_every_runtime():
    for name in ("local", "standalone", "yarn", "k8s", "databricks"):
        settings = load_profile(name)
        assert settings["profile"] == name
    assert load_profile("local")["master"] == "local[*]"
    assert load_profile("local")["conf"]["spark.ui.enabled"] == "false"
    assert load_profile("standalone")["master"].startswith("spark://127.0.0.1:")
    databricks = load_profile("databricks")
    assert databricks["master"] is None and databricks["reuse_active"] is True


def test_precedence_explicit_over_env_over_profile(monkeypatch):
    monkeypatch.delenv("SPARKML_DIST_MASTER", raising=False)
    monkeypatch.delenv("SPARKML_DIST_CONF", raising=False)
    base = resolve_settings("local")
    assert base["conf"]["spark.sql.shuffle.partitions"] == "8"  # from conf/spark/local.yaml
    assert base["conf"]["spark.python.worker.reuse"] == DEFAULTS["conf"]["spark.python.worker.reuse"]

    monkeypatch.setenv("SPARKML_DIST_MASTER", "local[3]")
    monkeypatch.setenv("SPARKML_DIST_CONF", "spark.sql.shuffle.partitions=5;spark.x.y=1")
    env = resolve_settings("local")
    assert env["master"] == "local[3]"
    assert env["conf"]["spark.sql.shuffle.partitions"] == "5"
    assert env["conf"]["spark.x.y"] == "1"

    explicit = resolve_settings("local", master="local[1]", conf={"spark.sql.shuffle.partitions": 7})
    assert explicit["master"] == "local[1]"
    assert explicit["conf"]["spark.sql.shuffle.partitions"] == "7"


def test_driver_memory_auto_is_sized_for_this_machine():
    memory = resolve_settings("local")["driver_memory"]
    assert memory.endswith("g") and 1 <= int(memory[:-1]) <= 16


def test_unknown_profile_and_bad_conf_pairs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown Spark profile 'nope'.*known: .*local"):
        load_profile("nope")
    with pytest.raises(ValueError, match="--conf expects key=value, got 'novalue'"):
        parse_conf_pairs(["novalue"])


def test_session_fixture_has_the_profile_settings(spark):
    conf = spark.sparkContext.getConf()
    assert spark.version.startswith("4.")
    assert conf.get("spark.ui.enabled") == "false"
    assert conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert spark.sparkContext.master == "local[2,2]"  # 2 slots, task attempts 2 (retries on, as on a cluster)
    # the fixture's own settings arrive too (conf={...} used to become one ignored setting named "conf")
    assert conf.get("spark.sql.shuffle.partitions") == "4" and conf.get("spark.driver.memory") == "4g"
    with pytest.raises(ValueError, match=r"get_spark: \['shuffle_partitions'\] are not Spark settings"):
        get_spark("local", shuffle_partitions=4)


def test_databricks_profile_reuses_the_active_session(spark):
    from sparkml_dist.runtime import get_spark

    assert get_spark("databricks") is spark


def test_a_conflicting_master_is_refused_not_silently_ignored(spark):
    from sparkml_dist.runtime.session import SessionConflictError

    # the README's order: a local session first, then the cluster; Spark alone would hand back the local session
    with pytest.raises(SessionConflictError, match=r"asks for master spark://127.0.0.1:7077, but this process "
                                                   r"already runs a SparkSession on local\[2,2\].*"
                                                   r"spark.stop\(\) first"):
        get_spark("standalone", master="spark://127.0.0.1:7077")
    assert get_spark("local") is spark  # local[*] accepts the running local session (a notebook's, a test's)


def test_local_standalone_master_is_the_recorded_cluster(tmp_path, monkeypatch):
    import json
    import os

    from sparkml_dist.runtime.cluster import ClusterState

    monkeypatch.setenv("SPARKML_DIST_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("SPARKML_DIST_MASTER", raising=False)
    with pytest.raises(FileNotFoundError, match="no cluster recorded"):
        resolve_settings("standalone", master="local-standalone")
    state = ClusterState(45123, 45124, 1, 1, "1g", str(tmp_path), pids={"master": os.getpid()})
    (tmp_path / "cluster.json").write_text(json.dumps(state.__dict__))
    assert resolve_settings("standalone", master="local-standalone")["master"] == "spark://127.0.0.1:45123"
    monkeypatch.setenv("SPARKML_DIST_MASTER", "local-standalone")
    assert resolve_settings("standalone")["master"] == "spark://127.0.0.1:45123"
