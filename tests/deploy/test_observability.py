"""deploy/grafana and deploy/prometheus: every metric a dashboard or an alert rule names is
really exported by a service, with the labels the queries match on; the rules pass promtool.

Coverage: each service under services/ with a console script is started as far as its
metrics go: a subprocess imports its composition root (the console-script module, plus
``<package>.app``), starts the runtime's HealthServer and the test reads ``/metrics`` over
HTTP. The exchange simulator exports no metrics (it has no health server) and is covered by
nothing here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import deploy_promql
import deploy_services
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GRAFANA = ROOT / "deploy" / "grafana"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "marketbot.rules.yaml"
# Labels the scrape adds (podmonitor.yaml / scrape-config.yaml), plus Prometheus' own.
SCRAPE_LABELS = {"service", "pod", "namespace", "instance", "job", "container"}
# Series Prometheus makes itself, not a service.
SYNTHETIC = {"up"}


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(GRAFANA.glob("*.json"))}


def dashboard_queries(board: dict) -> list[str]:
    return [
        target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


class Exported:
    """What each service's /metrics exposes: sample names and each family's label names."""

    def __init__(self, per_service: dict[str, dict]) -> None:
        self.samples: dict[str, dict[str, str]] = {}
        self.labels: dict[str, dict[str, set[str]]] = {}
        for service, data in per_service.items():
            self.samples[service] = deploy_promql.parse_exposition(data["exposition"])
            self.labels[service] = {k: set(v) for k, v in data["labels"].items()}

    def services_exporting(self, sample: str) -> list[str]:
        return [s for s, samples in self.samples.items() if sample in samples]

    def label_names(self, sample: str) -> set[str]:
        names: set[str] = set()
        for service in self.services_exporting(sample):
            family = self.samples[service][sample]
            base = family.removesuffix("_total")
            names |= self.labels[service].get(base, set()) | self.labels[service].get(family, set())
        return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    services = deploy_services.services()
    plan = {name: svc.composition_modules() for name, svc in services.items()}
    out = tmp_path_factory.mktemp("metrics")
    result = subprocess.run(  # noqa: S603 - fixed argv of a known tool
        [sys.executable, str(HERE / "deploy_metrics_probe.py"), json.dumps(plan), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    per_service = {}
    for name in plan:
        file = out / f"{name}.json"
        assert file.exists(), f"{name}: no report\n{result.stderr[-2000:]}"
        data = json.loads(file.read_text())
        assert "error" not in data, f"{name} ({plan[name]}) failed to start:\n{data.get('error')}"
        assert data["healthz"] == 200, name
        per_service[name] = data
    assert result.returncode == 0, result.stderr[-2000:]
    return Exported(per_service)


def all_queries() -> list[tuple[str, str]]:
    queries = [(f"rule in {RULES.name}", q) for q in rule_queries()]
    for name, board in dashboards().items():
        queries.extend((name, q) for q in dashboard_queries(board))
    return queries


def test_every_named_metric_is_exported(exported: Exported) -> None:
    missing = []
    for where, query in all_queries():
        for metric in deploy_promql.analyse(query).metrics - SYNTHETIC:
            if not exported.services_exporting(metric):
                missing.append(f"{where}: {metric}")
    assert not missing, "named but exported by no service:\n" + "\n".join(sorted(set(missing)))


def test_matched_labels_exist_on_the_metrics(exported: Exported) -> None:
    wrong = []
    for where, query in all_queries():
        analysed = deploy_promql.analyse(query)
        known = SCRAPE_LABELS | {"le"}
        for metric in analysed.metrics - SYNTHETIC:
            known |= exported.label_names(metric)
        for metric, labels in analysed.matchers.items():
            if metric in SYNTHETIC:
                continue
            unknown = labels - exported.label_names(metric) - SCRAPE_LABELS
            if unknown:
                wrong.append(f"{where}: {metric} has no label {sorted(unknown)}")
        if analysed.grouping - known:
            wrong.append(f"{where}: grouping by {sorted(analysed.grouping - known)} in {query}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_exchange_dashboard_metrics_come_from_that_executor(
    exported: Exported, exchange: str
) -> None:
    board = dashboards()[f"marketbot-exchange-{exchange}.json"]
    for query in dashboard_queries(board):
        for metric in deploy_promql.analyse(query).metrics - SYNTHETIC:
            assert f"executor-{exchange}" in exported.services_exporting(metric), metric
        assert f'"{exchange}"' in query or f'"executor-{exchange}"' in query, query


def test_pipeline_dashboard_covers_the_issue(exported: Exported) -> None:
    """Signals, decisions, orders by outcome and plan, signal->ack latency, rate-limit
    headroom, breaker states, unknown outcomes, ledger lag."""
    names: set[str] = set()
    for query in dashboard_queries(dashboards()["marketbot-pipeline.json"]):
        names |= deploy_promql.analyse(query).metrics
    assert {
        "marketbot_events_published_total",  # signals (type SignalReceived)
        "marketbot_decision_decisions_total",
        "marketbot_execution_orders_total",  # by outcome and plan
        "marketbot_execution_signal_to_ack_seconds_bucket",
        "marketbot_exchange_rate_limit_headroom_ratio",
        "marketbot_exchange_breaker_state",
        "marketbot_execution_unknown_outcomes_open",
        "marketbot_ledger_consumer_pending_messages",
    } <= names
    assert "plan" in exported.label_names("marketbot_execution_orders_total")


def test_dashboards_are_well_formed() -> None:
    uids = set()
    for name, board in dashboards().items():
        assert board["uid"] not in uids, name
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        variables = {v["name"] for v in board["templating"]["list"]}
        assert "datasource" in variables
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["targets"], (name, panel["title"])
            assert panel["datasource"]["uid"] == "${datasource}"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids))


def test_rules_are_complete_alerts() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"]]
    assert len({a["alert"] for a in alerts}) == len(alerts)
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        assert alert["annotations"]["summary"]
        assert alert["annotations"]["description"]


def test_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (Debian: apt-get install prometheus); rules unchecked")
    result = subprocess.run(  # noqa: S603 - fixed argv of a known tool
        [promtool, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("expr", "metrics", "grouping"),
    [
        (
            'histogram_quantile(0.95, sum by (le, plan) (rate(a_bucket{x="1"}[$__rate_interval])))',
            {"a_bucket"},
            {"le", "plan"},
        ),
        ("max by (c) (a) > 300 and on (c) max by (c) (b) > 0", {"a", "b"}, {"c"}),
        ('count(up{service="x"} == 1) / 1e3', {"up"}, set()),
        ("sum(rate(a[5m])) by (pod) offset 5m", {"a"}, {"pod"}),
    ],
)
def test_promql_reader(expr: str, metrics: set[str], grouping: set[str]) -> None:
    analysed = deploy_promql.analyse(expr)
    assert analysed.metrics == metrics
    assert analysed.grouping == grouping
