"""The grokwatch Grafana dashboard, as code (grafanalib).

    python deploy/grafana/dashboard.py          # rewrites dashboards/grokwatch.json
    python deploy/grafana/dashboard.py --check  # exit 1 when the committed JSON differs

The committed JSON is what Grafana's file provider loads (provisioning/); a test checks that it
is exactly what :func:`build` makes, so change this file and regenerate, never the JSON.

Layout: a fleet table; per run (variables ``experiment`` and ``run``): accuracies, the
forecast probability against the alert threshold, predicted ``t_grok`` with its interval
against the current step, the phase over time, losses, key measures, the agent's health;
then the service's health. Change points, stop/extend advice and firing alerts are
annotations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    Annotations,
    Dashboard,
    GridPos,
    RowPanel,
    StateTimeline,
    Table,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards" / "grokwatch.json"
UID = "grokwatch-runs"
DATASOURCE = {"type": "prometheus", "uid": "grokwatch-prometheus"}
"""The datasource provisioned in provisioning/datasources/prometheus.yml (same uid)."""
ALERT_THRESHOLD = 0.989
"""P(grok within budget) at which the shipped forecaster alerts (its ``alert_threshold_``,
0.9890, forecaster v2 refitted on the complete corpus; a test keeps the two equal). A
dashboard variable: change it for your own model."""

RUN = 'run_id=~"$run"'
IN_EXPERIMENT = 'grokwatch_run_info{experiment=~"$experiment"}'


def target(expr: str, legend: str = "", ref: str = "A", **kw: Any) -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref, datasource=DATASOURCE, **kw)


def per_run(metric: str) -> str:
    """``metric`` for the runs picked by the variables (all, or those of an experiment)."""
    return f"{metric}{{{RUN}}}"


def fleet_table(y: int) -> Table:
    def column(expr: str, ref: str) -> Target:
        return target(
            f"max by (run_id) ({expr} and on(run_id) {IN_EXPERIMENT})",
            ref=ref,
            format="table",
            instant=True,
        )

    phase = target(
        "max by (run_id, experiment, phase) ((grokwatch_run_phase == 1)"
        f" * on(run_id) group_left(experiment) {IN_EXPERIMENT})",
        ref="A",
        format="table",
        instant=True,
    )
    return Table(
        title="Fleet: every live run",
        description="One row per live run: phase, forecast, predicted t_grok, last step and "
        "last report.",
        dataSource=DATASOURCE,
        targets=[
            phase,
            column("grokwatch_run_grok_probability_ratio", "B"),
            column("grokwatch_run_predicted_grok_step", "C"),
            column("grokwatch_run_step", "D"),
            column("grokwatch_run_last_report_timestamp_seconds * 1000", "E"),
        ],
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value #A": True},
                    "renameByName": {
                        "run_id": "run",
                        "Value #B": "P(grok)",
                        "Value #C": "predicted t_grok",
                        "Value #D": "last step",
                        "Value #E": "last report",
                    },
                },
            },
        ],
        overrides=[
            {
                "matcher": {"id": "byName", "options": "last report"},
                "properties": [{"id": "unit", "value": "dateTimeAsIso"}],
            },
            {
                "matcher": {"id": "byName", "options": "P(grok)"},
                "properties": [{"id": "unit", "value": "percentunit"}],
            },
        ],
        gridPos=GridPos(h=8, w=24, x=0, y=y),
    )


def series(
    title: str, targets: list[Target], pos: tuple[int, int], unit: str = "", **kw: Any
) -> TimeSeries:
    x, y = pos
    return TimeSeries(
        title=title,
        dataSource=DATASOURCE,
        targets=targets,
        unit=unit,
        gridPos=GridPos(h=8, w=12, x=x, y=y),
        **kw,
    )


def run_panels(y: int) -> list[Any]:
    accuracy = series(
        "Train and test accuracy",
        [
            target(per_run("grokwatch_run_train_accuracy_ratio"), "{{run_id}} train", "A"),
            target(per_run("grokwatch_run_test_accuracy_ratio"), "{{run_id}} test", "B"),
        ],
        (0, y),
        unit="percentunit",
        valueMin=0,
        valueMax=1,
    )
    probability = series(
        "P(grok within budget) against the alert threshold",
        [
            target(per_run("grokwatch_run_grok_probability_ratio"), "{{run_id}} P(grok)", "A"),
            target(
                f"0 * {per_run('grokwatch_run_grok_probability_ratio')} + $threshold",
                "alert threshold",
                "B",
            ),
            target(per_run("grokwatch_run_grok_alert"), "{{run_id}} alerting", "C"),
        ],
        (12, y),
        unit="percentunit",
        valueMin=0,
        valueMax=1,
    )
    t_grok = series(
        "Predicted t_grok (with its interval) and the current step",
        [
            target(per_run("grokwatch_run_predicted_grok_step"), "{{run_id}} predicted", "A"),
            target(per_run("grokwatch_run_predicted_grok_low_step"), "{{run_id}} low", "B"),
            target(per_run("grokwatch_run_predicted_grok_high_step"), "{{run_id}} high", "C"),
            target(per_run("grokwatch_run_step"), "{{run_id}} step", "D"),
        ],
        (0, y + 8),
        unit="none",
    )
    phase = StateTimeline(
        title="Phase over time",
        description="One row per run and phase; coloured while the run is in that phase.",
        dataSource=DATASOURCE,
        targets=[target(per_run("grokwatch_run_phase"), "{{run_id}} {{phase}}", "A")],
        mappings=[
            {
                "type": "value",
                "options": {
                    "0": {"text": " ", "color": "transparent", "index": 0},
                    "1": {"text": "in phase", "color": "green", "index": 1},
                },
            }
        ],
        gridPos=GridPos(h=8, w=12, x=12, y=y + 8),
    )
    losses = series(
        "Train and test loss",
        [
            target(per_run("grokwatch_run_train_loss"), "{{run_id}} train", "A"),
            target(per_run("grokwatch_run_test_loss"), "{{run_id}} test", "B"),
        ],
        (0, y + 16),
        unit="none",
        scaleDistributionType="log",
    )
    measures = series(
        "Key measures",
        [
            target(
                f'grokwatch_run_measure{{{RUN}, measure=~"$measure"}}',
                "{{run_id}} {{measure}}",
                "A",
            )
        ],
        (12, y + 16),
    )
    agent = series(
        "Agent: dropped records and internal errors",
        [
            target(per_run("grokwatch_run_dropped_records_total"), "{{run_id}} dropped", "A"),
            target(per_run("grokwatch_run_agent_errors_total"), "{{run_id}} errors", "B"),
            target(per_run("grokwatch_run_refused_values_total"), "{{run_id}} refused", "C"),
        ],
        (0, y + 24),
    )
    forecast = series(
        "Forecast confidence and horizon probability",
        [
            target(per_run("grokwatch_run_forecast_confidence_ratio"), "{{run_id}} confidence"),
            target(
                per_run("grokwatch_run_grok_horizon_probability_ratio"),
                "{{run_id}} P(grok in {{horizon_steps}} steps)",
                "B",
            ),
        ],
        (12, y + 24),
        unit="percentunit",
    )
    return [accuracy, probability, t_grok, phase, losses, measures, agent, forecast]


def service_panels(y: int) -> list[Any]:
    rate = "[$__rate_interval]"
    return [
        series(
            "Ingest rate",
            [
                target(
                    f"sum by (instance) (rate(grokwatch_service_ingested_points_total{rate}))",
                    "{{instance}} points/s",
                    "A",
                ),
                target(
                    f"sum by (instance) (rate(grokwatch_service_ingest_requests_total{rate}))",
                    "{{instance}} batches/s",
                    "B",
                ),
            ],
            (0, y),
            unit="reqps",
        ),
        series(
            "Rejected requests by reason",
            [
                target(
                    "sum by (instance, reason) "
                    f"(rate(grokwatch_service_rejected_requests_total{rate}))",
                    "{{instance}} {{reason}}",
                    "A",
                )
            ],
            (12, y),
            unit="reqps",
        ),
        series(
            "Request latency (p50, p99)",
            [
                target(
                    f"histogram_quantile({q}, sum by (le, handler) "
                    f"(rate(grokwatch_service_request_duration_seconds_bucket{rate})))",
                    f"p{int(q * 100)} {{{{handler}}}}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.99, "B"))
            ],
            (0, y + 8),
            unit="s",
        ),
        series(
            "Forecast backlog and lag",
            [
                target("grokwatch_service_forecast_backlog_runs", "{{instance}} backlog", "A"),
                target(
                    "histogram_quantile(0.99, sum by (le, instance) "
                    f"(rate(grokwatch_service_forecast_lag_seconds_bucket{rate})))",
                    "{{instance}} lag p99 (s)",
                    "B",
                ),
            ],
            (12, y + 8),
        ),
        series(
            "Service: up, ready and live runs",
            [
                target('up{job="grokwatch"}', "{{instance}} up", "A"),
                target("grokwatch_service_ready", "{{instance}} ready", "B"),
                target("grokwatch_service_live_runs", "{{instance}} {{state}} runs", "C"),
            ],
            (0, y + 16),
        ),
        series(
            "Values left out: exposition and per-run measure cap",
            [
                target("grokwatch_exposition_skipped_values_total", "{{instance}} skipped", "A"),
                target("grokwatch_service_refused_values_total", "{{instance}} refused", "B"),
            ],
            (12, y + 16),
        ),
    ]


def new_counts(counter: str) -> str:
    """Where ``counter`` went up in the last 2 minutes, including its first appearance (a
    labelled counter series appears at 1, which ``changes`` alone does not see)."""
    return f"(changes({counter}[2m]) > 0) or ({counter} unless {counter} offset 2m)"


def annotations() -> Annotations:
    def prometheus(name: str, expr: str, title: str, color: str) -> dict[str, Any]:
        return {
            "name": name,
            "datasource": DATASOURCE,
            "enable": True,
            "expr": expr,
            "iconColor": color,
            "step": "15s",
            "titleFormat": title,
            "textFormat": "{{run_id}}",
            "useValueForTime": False,
        }

    return Annotations(
        list=[
            prometheus(
                "Change points",
                new_counts(f"grokwatch_run_measure_change_points_total{{{RUN}}}"),
                "change point: {{measure}} {{direction}}",
                "orange",
            ),
            prometheus(
                "Stop/extend advice",
                new_counts(f'grokwatch_run_actions_total{{{RUN}, action=~"stop|extend"}}'),
                "advice: {{action}} ({{reason}})",
                "red",
            ),
            prometheus(
                "Alerts",
                f'ALERTS{{{RUN}, alertstate="firing"}}',
                "{{alertname}}",
                "purple",
            ),
        ]
    )


def templating() -> Templating:
    def query(name: str, label: str, expr: str, **kw: Any) -> Template:
        return Template(
            name=name,
            label=label,
            query={"query": expr, "refId": name},
            dataSource=DATASOURCE,
            includeAll=True,
            multi=True,
            allValue=".*",
            default="$__all",
            refresh=2,
            **kw,
        )

    return Templating(
        list=[
            query("experiment", "experiment", "label_values(grokwatch_run_info, experiment)"),
            query("run", "run", f"label_values({IN_EXPERIMENT}, run_id)"),
            query(
                "measure",
                "measure",
                f"label_values(grokwatch_run_measure{{{RUN}}}, measure)",
            ),
            Template(
                name="threshold",
                label="alert threshold",
                query=f"{ALERT_THRESHOLD}",
                default=f"{ALERT_THRESHOLD}",
                type="textbox",
            ),
        ]
    )


def build() -> Dashboard:
    panels: list[Any] = [RowPanel(title="Fleet", gridPos=GridPos(h=1, w=24, x=0, y=0))]
    panels.append(fleet_table(1))
    panels.append(RowPanel(title="Runs", gridPos=GridPos(h=1, w=24, x=0, y=9)))
    panels += run_panels(10)
    panels.append(RowPanel(title="Detector service", gridPos=GridPos(h=1, w=24, x=0, y=42)))
    panels += service_panels(43)
    return Dashboard(
        title="grokwatch: grokking runs",
        uid=UID,
        description="Live training runs watched by grokwatch: forecasts of grokking, phases, "
        "measures, and the detector service's health.",
        tags=["grokwatch"],
        panels=panels,
        templating=templating(),
        annotations=annotations(),
        time=Time("now-6h", "now"),
        refresh="30s",
        schemaVersion=39,
        timezone="utc",
    ).auto_panel_ids()


def render() -> str:
    """The dashboard JSON, deterministic (sorted keys, two-space indent, final newline)."""
    data = build().to_json_data()
    return json.dumps(data, cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs from the generator: regenerate it")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
