"""Structure of the input embedding: cosine bands, bimodal values, Fourier sparsity.

All three read the weight of ``ctx.layout.embedding`` (an ``nn.Embedding``; not applicable
without one). When ``ctx.modulus`` is set only its first ``modulus`` rows are used, so extra
tokens (a transformer's "=") do not break the residue structure. Computed in float64 on the
model's device. A quantity that is undefined on the embedding (all rows equal, no variance) is
reported as NaN, so the result carries status ``non_finite``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from grokwatch.exceptions import ConfigError, ProbeNotApplicable
from grokwatch.probes.base import Probe, ProbeContext, Value
from grokwatch.probes.registry import register

#: Above this many rows the n x n cosine matrix is not worth building (set ``modulus``).
MAX_ROWS = 4096


def embedding_rows(ctx: ProbeContext, *, minimum: int, maximum: int | None = None) -> torch.Tensor:
    """The embedding matrix ``(n, d)`` in float64, cut to ``ctx.modulus`` rows when set."""
    module = ctx.module(ctx.layout.embedding, "embedding")
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ProbeNotApplicable(f"module {ctx.layout.embedding!r} has no 2-D weight")
    rows = weight.detach()
    if ctx.modulus is not None:
        if not 0 < ctx.modulus <= rows.shape[0]:
            raise ConfigError(
                f"modulus must be in [1, {rows.shape[0]}] (the embedding rows), got {ctx.modulus=}"
            )
        rows = rows[: ctx.modulus]
    if rows.shape[0] < minimum:
        raise ProbeNotApplicable(f"needs at least {minimum} embedding rows, got {rows.shape[0]}")
    if maximum is not None and rows.shape[0] > maximum:
        raise ProbeNotApplicable(
            f"needs at most {maximum} embedding rows (set the modulus), got {rows.shape[0]}"
        )
    return rows.double()


def cosine_matrix(rows: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity ``(n, n)`` of the rows; an all-zero row has cosine 0."""
    unit = torch.nn.functional.normalize(rows, dim=1, eps=1e-300)
    cosine: torch.Tensor = unit @ unit.T
    return cosine


def band_score(cosine: torch.Tensor) -> torch.Tensor:
    """Fraction of the off-diagonal variance of ``cosine`` explained by its circulant projection.

    Entry ``(i, j)`` lies on band ``d = (j - i) mod n``; the circulant projection replaces every
    entry by its band's mean. Over the off-diagonal entries (bands 1..n-1),
    ``1 - |C - C~|^2 / |C - mean C|^2``, clipped to [0, 1]. NaN when the off-diagonal entries
    have (numerically) no variance.
    """
    n = cosine.shape[0]
    offsets = torch.arange(n, device=cosine.device)
    index = (offsets[:, None] + offsets[None, :]) % n  # index[i, d] = (i + d) mod n
    bands = cosine.gather(1, index)[:, 1:]  # (n, n-1): bands[i, d-1] = C[i, (i + d) mod n]
    residual = (bands - bands.mean(0)).square().sum()
    total = (bands - bands.mean()).square().sum()
    score = (1.0 - residual / total).clamp(0.0, 1.0)
    degenerate = total <= 1e-12 * bands.numel()
    return torch.where(degenerate, torch.full_like(score, math.nan), score)


def sarle_bimodality(values: torch.Tensor) -> torch.Tensor:
    """``[b, G1, G2]``: Sarle's bimodality coefficient, sample skewness and excess kurtosis.

    ``G1`` and ``G2`` are the bias-corrected sample skewness and excess kurtosis (as
    ``scipy.stats.skew`` / ``kurtosis`` with ``bias=False``), and
    ``b = (G1^2 + 1) / (G2 + 3 (n-1)^2 / ((n-2)(n-3)))``. Needs ``n >= 4`` values; NaN when they
    are all equal.
    """
    x = values.detach().double().flatten()
    n = x.numel()
    dev = x - x.mean()
    m2, m3, m4 = dev.square().mean(), dev.pow(3).mean(), dev.pow(4).mean()
    g1 = m3 / m2.pow(1.5)
    g2 = m4 / m2.square() - 3.0
    skew = g1 * math.sqrt(n * (n - 1)) / (n - 2)
    kurt = ((n + 1) * g2 + 6.0) * (n - 1) / ((n - 2) * (n - 3))
    b = (skew.square() + 1.0) / (kurt + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    return torch.stack([b, skew, kurt])


def fourier_power(rows: torch.Tensor) -> torch.Tensor:
    """Power of the embedding at each frequency ``k = 1..floor(n/2)`` of Z_n, ``(floor(n/2),)``.

    The DFT runs along the residue axis (rows); ``power_k = sum_d |F[k, d]|^2``. For real rows
    ``|F[n-k]| = |F[k]|``, so k and n-k are folded into one frequency (counted twice, except
    ``k = n/2`` for even n). ``k = 0`` (the mean over residues) is dropped.
    """
    n = rows.shape[0]
    spectrum: torch.Tensor = torch.fft.rfft(rows, dim=0)[1:]  # (floor(n/2), d), k = 1..n/2
    power = spectrum.abs().square().sum(1)
    fold = torch.full_like(power, 2.0)
    if n % 2 == 0:
        fold[-1] = 1.0
    return power * fold


def gini(values: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of non-negative values: 0 when all equal, ``1 - 1/m`` for a one-hot."""
    ordered = values.flatten().sort().values  # ascending
    m = ordered.numel()
    rank = torch.arange(1, m + 1, device=values.device, dtype=ordered.dtype)
    return ((2.0 * rank - m - 1.0) * ordered).sum() / (m * ordered.sum())


def inverse_participation(power: torch.Tensor) -> torch.Tensor:
    """``sum q^2 / (sum q)^2``: 1 when one entry holds everything, ``1/m`` when all are equal."""
    share = power / power.sum()
    return share.square().sum()


@register
class EmbeddingStructure(Probe):
    """Diagonal-band structure of the embedding cosine-similarity matrix.

    ``C[i, j]`` is the cosine similarity of embedding rows i and j. A network that generalizes on
    modular arithmetic places the residues on circles, ``E[a] ~ sum_k (cos w_k a, sin w_k a)``
    (Nanda et al. 2023, arXiv 2301.05217), so ``C[a, b]`` depends only on ``(a - b) mod p``: C is
    circulant, and its heat map shows the diagonal bands that appear with generalization (Salah
    & Yevick 2025, arXiv 2507.11645, their figures). ``embedding_band_score`` measures that:
    the fraction of the off-diagonal variance of C explained by its circulant projection (the
    mean of each band ``C[i, (i+d) mod n]``), ``1 - |C - C~|^2 / |C - mean C|^2`` over the
    off-diagonal entries, clipped to [0, 1]. An exactly circulant C scores 1; random embeddings
    score about ``1/n`` (the n/2 band means fit only chance structure), i.e. ~0.

    Keys: ``embedding_band_score``, ``embedding_cosine_offdiag_mean_abs`` (mean ``|C[i, j]|``,
    ``i != j``); snapshot array ``embedding_cosine`` ``(n, n)`` float32.
    """

    name = "embedding_structure"
    requires = ("embedding",)

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        cosine = cosine_matrix(embedding_rows(ctx, minimum=3, maximum=MAX_ROWS))  # (n, n)
        n = cosine.shape[0]
        offdiag_abs = (cosine.abs().sum() - cosine.diagonal().abs().sum()) / (n * (n - 1))
        packed = torch.stack([band_score(cosine), offdiag_abs])
        if ctx.snapshot:
            packed = torch.cat([packed, cosine.flatten()])
        host = packed.cpu().numpy()  # sync
        out: dict[str, Value] = {
            "embedding_band_score": float(host[0]),
            "embedding_cosine_offdiag_mean_abs": float(host[1]),
        }
        if ctx.snapshot:
            out["embedding_cosine"] = host[2:].reshape(n, n).astype(np.float32)
        return out


@register
class EmbeddingBimodality(Probe):
    """Sarle's bimodality coefficient of all embedding values.

    ``b = (g^2 + 1) / (kappa + 3 (n-1)^2 / ((n-2)(n-3)))`` with g the sample skewness and kappa
    the sample excess kurtosis (bias-corrected), n the number of values. A Gaussian gives about
    1/3, a uniform 5/9; ``b > 5/9`` suggests bimodality. Salah & Yevick (2025, arXiv
    2507.11645) saw the embedding values turn from Gaussian to bimodal (peaks near +-0.4) with
    generalization.

    Keys: ``embedding_bimodality``, ``embedding_skewness``, ``embedding_excess_kurtosis``;
    snapshot array ``embedding_values`` (all values, flattened, float32).
    """

    name = "embedding_bimodality"
    requires = ("embedding",)

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        rows = embedding_rows(ctx, minimum=1)
        if rows.numel() < 4:
            raise ProbeNotApplicable(f"needs at least 4 embedding values, got {rows.numel()}")
        packed = sarle_bimodality(rows)
        if ctx.snapshot:
            packed = torch.cat([packed, rows.flatten()])
        host = packed.cpu().numpy()  # sync
        out: dict[str, Value] = {
            "embedding_bimodality": float(host[0]),
            "embedding_skewness": float(host[1]),
            "embedding_excess_kurtosis": float(host[2]),
        }
        if ctx.snapshot:
            out["embedding_values"] = host[3:].astype(np.float32)
        return out


@register
class FourierSparsity(Probe):
    """How few frequencies of Z_n the embedding uses.

    With ``q_k`` the power of the embedding at frequency k (DFT along the residue axis over
    Z_n, n = ``ctx.modulus`` or the number of rows; k and n-k folded together, k = 0 dropped;
    see :func:`fourier_power`) and ``a_k = sqrt(q_k)`` the norm of the Fourier component:

    - ``fourier_gini``: Gini coefficient of the norms ``a_k``, from 0 (all frequencies equally
      used, as in a random embedding) to ``1 - 1/m`` (one frequency), ``m = floor(n/2)``;
    - ``fourier_ipr``: inverse participation ratio of the powers, ``sum q^2 / (sum q)^2``, from
      ``1/m`` to 1; ``1 / fourier_ipr`` is the effective number of frequencies used.

    Both are NaN when all rows are equal (no frequency but k = 0 is used).

    Generalizing solutions to modular addition are sparse in this basis: a handful of key
    frequencies (Nanda et al. 2023, arXiv 2301.05217; Gromov 2023, arXiv 2301.02679).
    Snapshot arrays: ``fourier_power`` ``(m,)`` and ``fourier_frequencies`` ``(m,)`` (k = 1..m).
    """

    name = "fourier_sparsity"
    requires = ("embedding",)

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        rows = embedding_rows(ctx, minimum=3)
        power = fourier_power(rows)  # (m,)
        stats = torch.stack([gini(power.sqrt()), inverse_participation(power)])
        # Parseval: the powers sum to n * sum(rows^2) minus the mean's share; all rows equal
        # (up to rounding) leaves no non-constant component to be sparse or not
        flat = power.sum() <= 1e-20 * rows.shape[0] * rows.square().sum()
        packed = torch.where(flat, torch.full_like(stats, math.nan), stats)
        if ctx.snapshot:
            packed = torch.cat([packed, power])
        host = packed.cpu().numpy()  # sync
        out: dict[str, Value] = {"fourier_gini": float(host[0]), "fourier_ipr": float(host[1])}
        if ctx.snapshot:
            out["fourier_power"] = host[2:].copy()
            out["fourier_frequencies"] = np.arange(1, host.size - 1, dtype=np.int64)
        return out
