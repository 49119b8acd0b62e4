"""Fuzz: after any write the service accepts, a full scrape and a read of every endpoint never
answer 5xx, and the scrape parses.

This looks for the class of bug the outside probe found (an accepted ``dropped`` of 10**400
made every later ``GET /metrics`` answer 500): extreme numbers (huge and negative integers,
big floats, NaN spellings), odd strings and nesting in every field of every write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from grokwatch.service import ServiceSettings, create_app
from grokwatch.store import MemoryStore

RUN_IDS = ["r0", "r1", "run-2"]
NAMES = ["test_accuracy", "train_accuracy", "train_loss", "test_loss", "weight_norm", "x"]

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**53 - 2, max_value=2**1024),
    st.integers(min_value=2**1024, max_value=2**1400),  # beyond the double range
    st.integers(min_value=-(2**1100), max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 2**53 - 1, 2**53, 2**63, 2**64, 10**308, 1e308, -1e308]),
)
scalars = st.one_of(
    numbers, st.booleans(), st.none(), st.text(max_size=8), st.sampled_from(["nan", "inf", "-inf"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
counts = st.one_of(numbers, st.none())
summaries = st.fixed_dictionaries(
    {},
    optional={
        "agent_errors": st.one_of(numbers, json_values),
        "transport_dropped": st.one_of(numbers, json_values),
        "other": json_values,
    },
)
# mostly valid values, so that most batches are accepted and their numbers reach the scrape
measured = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.sampled_from(["nan", "inf", "-inf"]),
    scalars,
)


@st.composite
def writes(draw: st.DrawFn) -> tuple[str, str, Any]:
    run_id = draw(st.sampled_from(RUN_IDS))
    kind = draw(st.sampled_from(["register", "points", "points", "finish"]))
    if kind == "register":
        body: dict[str, Any] = {"run_id": run_id}
        for key, strategy in (
            ("budget", counts),
            ("labels", st.dictionaries(st.sampled_from(["team", "experiment"]), st.text())),
            ("hyperparameters", st.dictionaries(st.text(max_size=4), json_values, max_size=3)),
            ("task", st.one_of(st.none(), st.text(max_size=10))),
        ):
            if draw(st.booleans()):
                body[key] = draw(strategy)
        return "/v1/runs", run_id, body
    if kind == "finish":
        return f"/v1/runs/{run_id}/finish", run_id, {"summary": draw(summaries)}
    points = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "step": st.one_of(st.integers(0, 10_000), st.integers(0, 10_000), numbers),
                    "values": st.dictionaries(st.sampled_from(NAMES), measured, max_size=4),
                }
            ),
            min_size=1,
            max_size=4,
        )
    )
    body = {"points": points}
    if draw(st.booleans()):
        body["dropped"] = draw(counts)
    return f"/v1/runs/{run_id}/points", run_id, body


def encode(body: Any) -> bytes:
    """JSON as a client would send it; Python's json writes any int and NaN/Infinity tokens."""
    return json.dumps(body).encode()


def test_no_accepted_write_makes_any_read_fail(tmp_path: Path) -> None:
    app = create_app(ServiceSettings(db_path=tmp_path / "db"), store=MemoryStore())
    accepted = 0
    with TestClient(app, raise_server_exceptions=False) as client:
        for rid in RUN_IDS:  # registered up front: most writes then reach a run
            assert client.post("/v1/runs", json={"run_id": rid}).status_code == 201

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(writes(), min_size=1, max_size=5))
        def check(batch: list[tuple[str, str, Any]]) -> None:
            nonlocal accepted
            for path, _run_id, body in batch:
                r = client.post(
                    path, content=encode(body), headers={"content-type": "application/json"}
                )
                assert r.status_code < 500, (path, body, r.text)
                if r.status_code >= 300:
                    continue
                accepted += 1
                scrape = client.get("/metrics")
                assert scrape.status_code == 200, scrape.text
                list(text_string_to_metric_families(scrape.text))  # parses
                for read in ("/healthz", "/readyz", "/v1/runs", "/openapi.json", "/docs"):
                    assert client.get(read).status_code < 500, read
                for rid in RUN_IDS:
                    r = client.get(f"/v1/runs/{rid}")
                    assert r.status_code < 500, (rid, r.text)

        check()
    assert accepted > 50  # the fuzz reached the reads (most writes were accepted)
