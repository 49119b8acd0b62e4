"""Print the Markdown table of the alerting rules in grokwatch-rules.yml (docs/monitoring.md).

    python deploy/prometheus/rules_table.py

The table in docs/monitoring.md sits between ``<!-- rules table -->`` markers and a test
checks that it is exactly this output.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parent / "grokwatch-rules.yml"


def readable(template: str) -> str:
    """A summary template with ``{label}`` and ``{value}`` for its Go template actions."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", r"{\1}", template)
    text = re.sub(r"\{\{ \$value[^}]*\}\}", "{value}", text)
    return text.replace("|", "\\|")


def table() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    lines = [
        "| alert | group | severity | for | fires when (summary) |",
        "|---|---|---|---|---|",
    ]
    for group in groups:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            summary = readable(rule["annotations"]["summary"])
            lines.append(
                f"| `{rule['alert']}` | {group['name']} | {rule['labels']['severity']} "
                f"| {rule.get('for', '0s')} | {summary} |"
            )
    lines += ["", "| recording rule | expression |", "|---|---|"]
    for group in groups:
        for rule in group["rules"]:
            if "record" in rule:
                expr = " ".join(rule["expr"].split()).replace("|", "\\|")
                lines.append(f"| `{rule['record']}` | `{expr}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(), end="")
