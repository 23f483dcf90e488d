"""Distributed classification as pyspark.ml estimators: AdaBoost (exact histogram stumps, Lazarevic-Obradovic,
AdaBoost.PL) and kernel SVM (Cascade, MRSMO, DPSVM)."""

from sparkml_dist.classification.adaboost import AdaBoostClassificationModel, AdaBoostClassifier
from sparkml_dist.classification.cascade_svc import CascadeSVC, CascadeSVCModel

__all__ = ["AdaBoostClassificationModel", "AdaBoostClassifier", "CascadeSVC", "CascadeSVCModel"]
