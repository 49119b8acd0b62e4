"""Saving and loading a fitted :class:`GrokForecaster` without pickle.

A model file is a numpy ``.npz`` (read with ``allow_pickle=False``, so loading a file from an
arbitrary path can never execute code) holding the fitted arrays and one JSON string::

    meta            JSON: format, format_version, feature_schema (version + feature names),
                    hyperparameters, fitted scalars (intercepts, thresholds), the fit report,
                    library versions
    center scale knots coef feature_weight classes time_mask
    calibration     (2, K) knots of the probability map
    tree_*          the classifier's trees (``classifier="trees"``)
    time_tree_*     the hazard model's trees (:mod:`.hazard`), when the model has a time model

Version 2 (forecaster v2): the time model is the hazard model. Files of version 1 (a time
regression with an interval from its residual quantiles) are refused: refit them.

Loading checks the format version and the feature schema (:data:`~.features.SCHEMA_VERSION`
and the exact feature names, in order): a model fitted on other features raises
:class:`~grokwatch.exceptions.SchemaError` naming both schemas, rather than forecasting
nonsense. The fitted model that ships with grokwatch is :func:`load_default`.
"""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Mapping
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.exceptions import SchemaError
from grokwatch.forecast.features import FEATURE_NAMES, SCHEMA_VERSION
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.trees import TreeEnsemble

__all__ = ["DEFAULT_MODEL", "FORMAT", "FORMAT_VERSION", "load", "load_default", "save"]

FORMAT = "grokwatch-forecaster"
FORMAT_VERSION = 2
DEFAULT_MODEL = "grokforecaster.npz"
"""File name of the shipped model inside ``grokwatch/forecast/model/``."""

_ARRAYS = (
    "center_",
    "scale_",
    "knots_",
    "coef_",
    "feature_weight_",
    "classes_",
    "time_mask_",
)
_SCALARS = (
    "intercept_",
    "alert_threshold_",
    "hopeless_threshold_",
    "n_iter_",
    "n_features_in_",
)


def save(
    model: GrokForecaster, path: str | Path, *, report: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` (fitted on :data:`FEATURE_NAMES`) to ``path``; returns the path."""
    if getattr(model, "coef_", None) is None:
        raise ValueError("only a fitted GrokForecaster can be saved")
    if model.n_features_in_ != len(FEATURE_NAMES):
        raise ValueError(
            f"the model has {model.n_features_in_} features, the feature schema "
            f"{len(FEATURE_NAMES)}: it was not fitted on grokwatch features"
        )
    import sklearn

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "feature_schema": {"version": SCHEMA_VERSION, "names": list(FEATURE_NAMES)},
        "params": model.get_params(),
        "scalars": {k: _plain(getattr(model, k, None)) for k in _SCALARS},
        "has_time_model": model.time_trees_ is not None,
        "report": dict(report or {}),
        "versions": {
            "grokwatch": metadata.version("grokwatch"),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    arrays = {k.rstrip("_"): np.asarray(getattr(model, k)) for k in _ARRAYS}
    if model.trees_ is not None:
        arrays.update(model.trees_.to_arrays())
    if model.time_trees_ is not None:
        arrays.update(model.time_trees_.to_arrays("time_tree_"))
    arrays["calibration"] = np.asarray(getattr(model, "calibration_", np.zeros((2, 0))), float)
    if arrays["classes"].dtype == object:
        arrays["classes"] = arrays["classes"].astype(np.str_)
    buf = io.BytesIO()
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez_compressed(buf, allow_pickle=False, **arrays)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


def load(path: str | Path) -> GrokForecaster:
    """Read a model written by :func:`save`; raises :class:`SchemaError` on a format or
    feature-schema mismatch and on files that are not grokwatch models."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError) as exc:
        raise SchemaError(f"{path}: not a readable grokwatch forecaster file: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise SchemaError(f"{path}: format is {meta.get('format')!r}, not {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise SchemaError(
            f"{path}: forecaster file version {meta.get('format_version')!r} is not supported "
            f"(this grokwatch reads version {FORMAT_VERSION})"
        )
    schema = meta.get("feature_schema") or {}
    names = tuple(schema.get("names") or ())
    if schema.get("version") != SCHEMA_VERSION or names != FEATURE_NAMES:
        diff = sorted(set(names) ^ set(FEATURE_NAMES))
        raise SchemaError(
            f"{path}: the model was fitted on feature schema {schema.get('version')!r} "
            f"({len(names)} features) but this grokwatch computes schema {SCHEMA_VERSION} "
            f"({len(FEATURE_NAMES)} features)"
            + (f"; differing features: {', '.join(diff[:8])}" if diff else "; order differs")
            + ". Refit it with `grokwatch fit`."
        )
    missing = [k for k in (*(a.rstrip("_") for a in _ARRAYS), "calibration") if k not in arrays]
    if missing or "params" not in meta or "scalars" not in meta:
        raise SchemaError(f"{path}: incomplete forecaster file (missing {missing or 'meta'})")
    # "monotone" (a constraint on fitting the trees, removed after 110b577) is in the params of
    # files saved before; the trees it shaped predict without it
    model = GrokForecaster(**{k: v for k, v in meta["params"].items() if k != "monotone"})
    for key in _ARRAYS:
        setattr(model, key, arrays[key.rstrip("_")])
    model.calibration_ = arrays["calibration"]
    model.trees_ = None
    model.time_trees_ = None
    try:
        if model.classifier == "trees":
            model.trees_ = TreeEnsemble.from_arrays(arrays)
        if meta.get("has_time_model"):
            model.time_trees_ = TreeEnsemble.from_arrays(arrays, "time_tree_")
    except KeyError as exc:
        raise SchemaError(f"{path}: a tree model without its trees ({exc})") from exc
    for key, value in meta["scalars"].items():
        setattr(model, key, value)
    model.fit_report_ = meta.get("report", {})
    return model


@functools.cache
def load_default() -> GrokForecaster:
    """The fitted model shipped in ``grokwatch/forecast/model/`` (loaded once per process)."""
    ref = resources.files("grokwatch.forecast").joinpath("model", DEFAULT_MODEL)
    with resources.as_file(ref) as path:
        return load(path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
