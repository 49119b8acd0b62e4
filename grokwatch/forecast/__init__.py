"""Forecasting grokking: change points, causal features and the :class:`GrokForecaster`.

=====================  ======================================================================
module                 what it holds
=====================  ======================================================================
``changepoints``       log-time slope streams, online Bayesian and windowed kernel CPD
``features``           :class:`FeatureState`: causal, scale-free features up to step t
``forecaster``         :class:`GrokForecaster`, the scikit-learn estimator
``hazard``             the discrete-time hazard model of when a run groks (``t_grok``)
``online``             per-run forecasting state, the null and constant forecasters
``io``                 save/load without pickle, the shipped model
``replay``             a stored run replayed into feature rows (shared by fit and evaluate)
``training``           grouped cross-validation, thresholds (``grokwatch fit``)
``transfer``           rules for families the model never saw (thresholds, weights)
``lofo``               leave one family out (``grokwatch evaluate --lofo``)
``calibration``        reliability and expected calibration error
``baselines``          the published signals the forecast is measured against
``evaluate``           ``grokwatch evaluate``: recall, false alarms, lead, AUROC, t_grok error
``plots``              lead-vs-false-alarm curves and per-run timelines
=====================  ======================================================================

Method, numbers and how to reproduce them: docs/forecaster.md and docs/evaluation.md.
"""

from grokwatch.forecast.changepoints import BayesianOnlineCPD, LogTimeSlopes, WindowKernelCPD
from grokwatch.forecast.features import FEATURE_NAMES, SCHEMA_VERSION, FeatureState
from grokwatch.forecast.forecaster import DEFAULT_HORIZON, GrokForecaster
from grokwatch.forecast.io import load, load_default, save
from grokwatch.forecast.online import (
    ConstantForecaster,
    Forecaster,
    GrokRunForecaster,
    NullForecaster,
    RunForecaster,
)

__all__ = [
    "DEFAULT_HORIZON",
    "FEATURE_NAMES",
    "SCHEMA_VERSION",
    "BayesianOnlineCPD",
    "ConstantForecaster",
    "FeatureState",
    "Forecaster",
    "GrokForecaster",
    "GrokRunForecaster",
    "LogTimeSlopes",
    "NullForecaster",
    "RunForecaster",
    "WindowKernelCPD",
    "load",
    "load_default",
    "save",
]
