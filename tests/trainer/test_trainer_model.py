"""The seed-000 MLP: the factorized first layer is exact, and the module layout is the contract."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from trainer.model import MLP
from trainer.tasks import make_dataset

P = 17


def twins(**kwargs: object) -> tuple[MLP, MLP]:
    """The same weights in the factorized and the naive form."""
    torch.manual_seed(0)
    fact = MLP(P, d_emb=16, d_hidden=32, factorized=True, **kwargs)  # type: ignore[arg-type]
    naive = copy.deepcopy(fact)
    naive.factorized = False
    return fact, naive


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    data = make_dataset(P, "add", 0.6, data_seed=0)
    return data.train_x, data.train_y


@pytest.mark.parametrize("embedding", [True, False])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("init_scale", [0.5, 1.0, 4.0])
def test_factorized_equals_naive_logits_and_gradients(
    depth: int, init_scale: float, embedding: bool
) -> None:
    fact, naive = twins(depth=depth, init_scale=init_scale, embedding=embedding)
    x, y = inputs()
    logits_f, logits_n = fact(x), naive(x)
    scale = logits_n.abs().max().item()
    torch.testing.assert_close(logits_f, logits_n, atol=1e-5 * max(1.0, scale), rtol=1e-5)

    nn.functional.cross_entropy(logits_f, y).backward()
    nn.functional.cross_entropy(logits_n, y).backward()
    grads_n = dict(naive.named_parameters())
    for name, param in fact.named_parameters():
        assert param.grad is not None, name
        other = grads_n[name].grad
        assert other is not None, name
        atol = 1e-5 * max(1.0, other.abs().max().item())
        torch.testing.assert_close(param.grad, other, atol=atol, rtol=1e-4, msg=name)


def test_factorized_forward_reads_parameters_through_functional_call() -> None:
    # Probes evaluate perturbed weights with torch.func.functional_call: the factorized path
    # must read hidden.weight / embed.weight as attributes so the replacement takes effect.
    fact, naive = twins()
    x, _ = inputs()
    params = {k: v.detach().clone() for k, v in fact.named_parameters()}
    params["hidden.weight"] = params["hidden.weight"] * 0.5
    params["embed.weight"] = params["embed.weight"] + 0.1
    got = torch.func.functional_call(fact, params, (x,))
    want = torch.func.functional_call(naive, params, (x,))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, fact(x))


@pytest.mark.parametrize("factorized", [True, False])
def test_hooks_on_act_and_out_see_hidden_and_penultimate(factorized: bool) -> None:
    torch.manual_seed(0)
    model = MLP(P, d_emb=16, d_hidden=32, factorized=factorized)
    x, _ = inputs()
    seen: dict[str, torch.Tensor] = {}
    h1 = model.act.register_forward_hook(lambda _m, _i, out: seen.update(act=out))
    h2 = model.out.register_forward_pre_hook(lambda _m, args: seen.update(pen=args[0]))
    model(x)
    h1.remove()
    h2.remove()
    assert seen["act"].shape == (len(x), 32)
    assert (seen["act"] >= 0).all()
    assert seen["pen"] is seen["act"]


def test_forward_hook_can_replace_hidden_activations() -> None:
    # Batched MC dropout multiplies the hidden activations inside a hook on `act`.
    torch.manual_seed(0)
    model = MLP(P, d_emb=16, d_hidden=32)
    x, _ = inputs()
    handle = model.act.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    logits = model(x)
    handle.remove()
    torch.testing.assert_close(logits, model.out.bias.expand_as(logits))


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("embedding", [True, False])
def test_layout_generic_tools_rely_on(depth: int, embedding: bool) -> None:
    # First nn.Embedding, last activation module, last nn.Linear (grokwatch's Layout rule).
    model = MLP(P, d_emb=16, d_hidden=32, depth=depth, embedding=embedding)
    modules = list(model.named_modules())
    embeds = [n for n, m in modules if isinstance(m, nn.Embedding)]
    acts = [n for n, m in modules if isinstance(m, nn.ReLU)]
    linears = [n for n, m in modules if isinstance(m, nn.Linear)]
    assert embeds == (["embed"] if embedding else [])
    assert acts[-1] == ("act2" if depth == 2 else "act")
    assert acts[0] == "act"
    assert linears[0] == "hidden"
    assert linears[-1] == "out"
    assert isinstance(model.hidden, nn.Linear)
    assert model.hidden.in_features == 2 * (16 if embedding else P)


def test_init_is_xavier_normal_scaled_with_zero_biases() -> None:
    torch.manual_seed(3)
    base = MLP(P, d_emb=64, d_hidden=128)
    torch.manual_seed(3)
    scaled = MLP(P, d_emb=64, d_hidden=128, init_scale=3.0)
    for (name, p1), (_, p3) in zip(base.named_parameters(), scaled.named_parameters(), strict=True):
        if p1.dim() == 1:
            assert torch.count_nonzero(p1) == 0 == torch.count_nonzero(p3), name
        else:
            torch.testing.assert_close(p3, 3.0 * p1, msg=name)
            fan_out, fan_in = p1.shape
            want = (2.0 / (fan_in + fan_out)) ** 0.5
            assert abs(p1.std().item() / want - 1) < 0.1, name


def test_output_shape_and_bad_depth() -> None:
    model = MLP(P, d_emb=8, d_hidden=16)
    assert model(torch.tensor([[1, 2], [3, 4]])).shape == (2, P)
    with pytest.raises(ValueError, match="depth=3"):
        MLP(P, depth=3)
