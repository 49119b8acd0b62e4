"""Embedding probes on embeddings whose answer is known: circles, random, one-frequency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from grokwatch.probes import Layout, ProbeContext, run_probe
from grokwatch.probes.embedding import (
    MAX_ROWS,
    EmbeddingBimodality,
    EmbeddingStructure,
    FourierSparsity,
    band_score,
    cosine_matrix,
    fourier_power,
    gini,
    inverse_participation,
    sarle_bimodality,
)


class Embedded(nn.Module):
    """Just an embedding with a given weight, and a head so it is a model."""

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.embed = nn.Embedding(*weight.shape)
        with torch.no_grad():
            self.embed.weight.copy_(torch.from_numpy(weight))
        self.head = nn.Linear(weight.shape[1], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def ctx_for(weight: np.ndarray, *, modulus: int | None = None, snapshot: bool = True):  # type: ignore[no-untyped-def]
    model = Embedded(weight)
    return ProbeContext(
        model, step=0, layout=Layout.discover(model), modulus=modulus, snapshot=snapshot
    )


def circle_embedding(p: int, freqs: tuple[int, ...] = (1,), dim: int = 16) -> np.ndarray:
    """Residues on circles: E[a] = (cos w a, sin w a) per key frequency, random rotation."""
    a = np.arange(p)[:, None]
    w = 2 * np.pi * np.asarray(freqs)[None, :] / p
    circles = np.concatenate([np.cos(w * a), np.sin(w * a)], axis=1)  # (p, 2F)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))[0]
    return circles @ rotation[: circles.shape[1]]  # (p, dim)


def numpy_band_score(c: np.ndarray) -> float:
    """Independent version: build the circulant projection entry by entry."""
    n = len(c)
    band_mean = [np.mean([c[i, (i + d) % n] for i in range(n)]) for d in range(n)]
    fitted = np.array([[band_mean[(j - i) % n] for j in range(n)] for i in range(n)])
    off = ~np.eye(n, dtype=bool)
    residual = ((c - fitted)[off] ** 2).sum()
    total = ((c[off] - c[off].mean()) ** 2).sum()
    return float(np.clip(1 - residual / total, 0, 1))


# -- embedding_structure ------------------------------------------------------------------------


@pytest.mark.parametrize("freqs", [(1,), (3,), (2, 5, 7)])
def test_band_score_is_one_for_residues_on_circles(freqs: tuple[int, ...]) -> None:
    result = run_probe(EmbeddingStructure(), ctx_for(circle_embedding(23, freqs)))
    assert result.status == "ok"
    assert result.values["embedding_band_score"] == pytest.approx(1.0, abs=1e-9)
    cos = result.arrays["embedding_cosine"]
    assert cos.shape == (23, 23) and cos.dtype == np.float32
    np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-6)


def test_band_score_is_near_zero_for_random_embeddings() -> None:
    weight = np.random.default_rng(1).normal(size=(53, 128))
    out = run_probe(EmbeddingStructure(), ctx_for(weight)).values
    assert out["embedding_band_score"] < 0.1  # about 1/n of the variance by chance
    c = cosine_matrix(torch.from_numpy(weight)).numpy()
    assert out["embedding_band_score"] == pytest.approx(numpy_band_score(c), abs=1e-9)
    off = c[~np.eye(53, dtype=bool)]
    assert out["embedding_cosine_offdiag_mean_abs"] == pytest.approx(np.abs(off).mean())


def test_modulus_ignores_extra_rows() -> None:
    weight = np.concatenate([circle_embedding(13), np.full((1, 16), 0.7)])  # an "=" token
    with_extra = run_probe(EmbeddingStructure(), ctx_for(weight))
    assert with_extra.values["embedding_band_score"] < 0.99
    cut = run_probe(EmbeddingStructure(), ctx_for(weight, modulus=13))
    assert cut.values["embedding_band_score"] == pytest.approx(1.0, abs=1e-9)
    assert cut.arrays["embedding_cosine"].shape == (13, 13)
    too_big = run_probe(EmbeddingStructure(), ctx_for(weight, modulus=15))
    assert too_big.status == "error" and "modulus" in too_big.reason


def test_degenerate_embeddings() -> None:
    same_rows = run_probe(EmbeddingStructure(), ctx_for(np.ones((5, 3))))
    assert same_rows.status == "non_finite"  # no off-diagonal variance: no score
    assert run_probe(EmbeddingStructure(), ctx_for(np.ones((2, 3)))).status == "not_applicable"
    vocabulary = ctx_for(np.random.default_rng(0).normal(size=(MAX_ROWS + 1, 2)))
    assert run_probe(EmbeddingStructure(), vocabulary).status == "not_applicable"
    assert run_probe(EmbeddingBimodality(), vocabulary).status == "ok"


def test_no_embedding_layer_is_not_applicable() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    ctx = ProbeContext(model, step=0, layout=Layout.discover(model))
    for probe in (EmbeddingStructure(), EmbeddingBimodality(), FourierSparsity()):
        assert run_probe(probe, ctx).status == "not_applicable"


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (7, 4), elements=st.floats(-5, 5)))
def test_band_score_is_in_unit_interval(weight: np.ndarray) -> None:
    c = cosine_matrix(torch.from_numpy(weight))
    value = band_score(c).item()
    assert math.isnan(value) or 0.0 <= value <= 1.0


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, 6, elements=st.floats(-1, 1)))
def test_band_score_of_any_circulant_matrix_is_one(first_row: np.ndarray) -> None:
    n = len(first_row)
    c = torch.from_numpy(np.array([np.roll(first_row, i) for i in range(n)]))
    value = band_score(c).item()
    assert math.isnan(value) or value == pytest.approx(1.0, abs=1e-9)


# -- embedding_bimodality -----------------------------------------------------------------------


def scipy_sarle(x: np.ndarray) -> float:
    n = x.size
    g = scipy.stats.skew(x, bias=False)
    k = scipy.stats.kurtosis(x, bias=False)
    return float((g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def test_bimodality_matches_scipy() -> None:
    weight = np.random.default_rng(2).gamma(2.0, size=(9, 7))
    out = run_probe(EmbeddingBimodality(), ctx_for(weight)).values
    flat = weight.astype(np.float32).astype(np.float64).ravel()  # as stored in the model
    assert out["embedding_bimodality"] == pytest.approx(scipy_sarle(flat), rel=1e-9)
    assert out["embedding_skewness"] == pytest.approx(scipy.stats.skew(flat, bias=False))
    assert out["embedding_excess_kurtosis"] == pytest.approx(scipy.stats.kurtosis(flat, bias=False))


def test_bimodality_gaussian_versus_two_peaks() -> None:
    rng = np.random.default_rng(3)
    gaussian = run_probe(EmbeddingBimodality(), ctx_for(rng.normal(size=(53, 128))))
    assert gaussian.values["embedding_bimodality"] == pytest.approx(1 / 3, abs=0.03)
    peaks = rng.choice([-0.4, 0.4], size=(53, 128)) + rng.normal(scale=0.05, size=(53, 128))
    result = run_probe(EmbeddingBimodality(), ctx_for(peaks))
    assert result.values["embedding_bimodality"] > 0.9 > 5 / 9
    values = result.arrays["embedding_values"]
    assert values.dtype == np.float32 and values.shape == (53 * 128,)


def test_bimodality_of_constant_values_is_non_finite() -> None:
    assert run_probe(EmbeddingBimodality(), ctx_for(np.zeros((4, 3)))).status == "non_finite"
    assert math.isnan(sarle_bimodality(torch.zeros(10))[0].item())


# -- fourier_sparsity ---------------------------------------------------------------------------


def test_fourier_single_frequency_is_maximally_sparse() -> None:
    p = 17  # m = 8 folded frequencies
    result = run_probe(FourierSparsity(), ctx_for(circle_embedding(p, (3,))))
    assert result.values["fourier_gini"] == pytest.approx(1 - 1 / 8)
    assert result.values["fourier_ipr"] == pytest.approx(1.0)
    power = result.arrays["fourier_power"]
    assert power.shape == (8,) and np.argmax(power) == 2
    np.testing.assert_array_equal(result.arrays["fourier_frequencies"], np.arange(1, 9))


def test_fourier_identity_embedding_uses_every_frequency_equally() -> None:
    out = run_probe(FourierSparsity(), ctx_for(np.eye(7))).values  # |DFT of e_j| = 1 everywhere
    assert out["fourier_gini"] == pytest.approx(0.0, abs=1e-12)
    assert out["fourier_ipr"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("n", [6, 7])
def test_fourier_power_matches_numpy_with_folding(n: int) -> None:
    weight = np.random.default_rng(n).normal(size=(n, 5))
    full = (np.abs(np.fft.fft(weight, axis=0)) ** 2).sum(1)  # k = 0..n-1
    expected = [full[k] + full[n - k] if k != n - k else full[k] for k in range(1, n // 2 + 1)]
    np.testing.assert_allclose(fourier_power(torch.from_numpy(weight)).numpy(), expected)


def test_fourier_of_equal_rows_is_non_finite() -> None:
    rows = np.tile(np.random.default_rng(4).normal(size=(1, 6)), (9, 1))
    assert run_probe(FourierSparsity(), ctx_for(rows)).status == "non_finite"


def test_fourier_uses_modulus_rows() -> None:
    weight = np.concatenate([circle_embedding(11, (2,)), np.ones((1, 16))])
    out = run_probe(FourierSparsity(), ctx_for(weight, modulus=11)).values
    assert out["fourier_ipr"] == pytest.approx(1.0)


def test_gini_and_ipr_by_hand() -> None:
    one_hot = torch.tensor([0.0, 0.0, 3.0, 0.0])
    assert gini(one_hot).item() == pytest.approx(0.75)
    assert inverse_participation(one_hot).item() == pytest.approx(1.0)
    assert gini(torch.ones(5)).item() == pytest.approx(0.0)
    assert inverse_participation(torch.ones(5)).item() == pytest.approx(0.2)
    # sorted 1, 2, 3: sum (2i - m - 1) x_i / (m sum x) = (-2 + 0 + 6) / 18
    assert gini(torch.tensor([3.0, 1.0, 2.0])).item() == pytest.approx(4 / 18)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 12), elements=st.floats(0, 1e3)))
def test_gini_and_ipr_ranges(values: np.ndarray) -> None:
    x = torch.from_numpy(values)
    if values.sum() == 0:
        return
    m = values.size
    assert -1e-12 <= gini(x).item() <= 1 - 1 / m + 1e-12
    assert 1 / m - 1e-12 <= inverse_participation(x).item() <= 1 + 1e-12
    assert gini(x * 7.5).item() == pytest.approx(gini(x).item(), abs=1e-12)
    assert gini(x.flip(0)).item() == pytest.approx(gini(x).item(), abs=1e-12)
