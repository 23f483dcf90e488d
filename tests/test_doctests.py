"""The docstring examples of the estimators run as doctests against the session's local Spark (none is skipped)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["sparkml_dist.classification.adaboost", "sparkml_dist.classification.cascade_svc",
           "sparkml_dist.clustering.kmeans", "sparkml_dist.clustering.fuzzy", "sparkml_dist.clustering.consensus"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(spark, name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, globs={**vars(module), "spark": spark}) if t.examples]
    examples = [ex for t in tests for ex in t.examples]
    assert examples, f"{name} has no docstring example"
    assert not [ex.source for ex in examples if ex.options.get(doctest.SKIP)], "examples must run, not be skipped"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"
