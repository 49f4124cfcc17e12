"""Rendering helpers for the chart tests (and the generator of deploy/prometheus/alerts.yml).

.venv/bin/python -m tests.unit.deploy.chart   # rewrite deploy/prometheus/alerts.yml from the chart
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "cotdistill"
ALERTS_FILE = REPO / "deploy" / "prometheus" / "alerts.yml"
PROFILES = ("default", "gpu", "full", "minimal", "gpu-server")
RELEASE, NAMESPACE = "distill", "ml"
# Labels KubeRay sets on every Ray pod, over the template's own (its labelPod keeps these).
KUBERAY_POD_LABELS = {"app.kubernetes.io/name": "kuberay", "app.kubernetes.io/created-by": "kuberay-operator"}
ALERTS_HEADER = (
    "# Generated from charts/cotdistill/files/alerts.yaml with the chart's default thresholds by\n"
    "# `.venv/bin/python -m tests.unit.deploy.chart`; do not edit (a test checks it is current).\n"
)


# libyaml parses a render (the dashboard ConfigMap is 1,000 lines) ~30x faster than pure Python.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def profile_values(profile: str) -> dict[str, Any]:
    """Values of a CI profile (``default`` is the chart's own values.yaml)."""
    if profile == "default":
        return {}
    return dict(yaml.safe_load((CHART / "ci" / f"{profile}-values.yaml").read_text()) or {})


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Render the chart like `helm template` (values.schema.json is enforced): {template: text}."""
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        return dict(chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE))


@functools.cache
def render_profile(profile: str) -> dict[str, str]:
    return render(profile_values(profile))


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render (NOTES.txt left out)."""
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.load_all(text, Loader=_LOADER):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", None)
                if doc["metadata"]["annotations"] is None:
                    del doc["metadata"]["annotations"]
                out.append(doc)
    return out


def of_kind(rendered: dict[str, str], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects(rendered) if o["kind"] == kind]


def pod_specs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, pod spec) of every pod a workload object runs."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [(f"{kind}/{name}", obj["spec"]["template"]["spec"])]
    if kind == "Pod":
        return [(f"Pod/{name}", obj["spec"])]
    if kind in ("RayCluster", "RayJob"):
        cluster = obj["spec"] if kind == "RayCluster" else obj["spec"]["rayClusterSpec"]
        specs = [(f"{kind}/{name}/head", cluster["headGroupSpec"]["template"]["spec"])]
        for group in cluster.get("workerGroupSpecs", []):
            specs.append((f"{kind}/{name}/{group['groupName']}", group["template"]["spec"]))
        if kind == "RayJob" and "submitterPodTemplate" in obj["spec"]:
            specs.append((f"{kind}/{name}/submitter", obj["spec"]["submitterPodTemplate"]["spec"]))
        return specs
    return []


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(label, pod spec, pod labels) of every pod a workload object runs."""
    kind = obj["kind"]
    if kind == "Pod":
        return [(where, spec, obj["metadata"].get("labels", {})) for where, spec in pod_specs(obj)]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        return [(where, spec, labels) for where, spec in pod_specs(obj)]
    if kind in ("RayCluster", "RayJob"):
        cluster = obj["spec"] if kind == "RayCluster" else obj["spec"]["rayClusterSpec"]
        templates = [cluster["headGroupSpec"]["template"]] + [
            g["template"] for g in cluster.get("workerGroupSpecs", [])
        ]
        if kind == "RayJob" and "submitterPodTemplate" in obj["spec"]:
            templates.append(obj["spec"]["submitterPodTemplate"])
        return [
            (where, spec, template["metadata"].get("labels", {}))
            for (where, spec), template in zip(pod_specs(obj), templates, strict=True)
        ]
    return []


def alert_rules_text(values: dict[str, Any] | None = None) -> str:
    """The rule groups of the PrometheusRule, as a Prometheus rules file."""
    merged = {**(values or {})}
    merged.setdefault("monitoring", {}).setdefault("prometheusRule", {})["enabled"] = True
    rules = of_kind(render(merged), "PrometheusRule")
    assert len(rules) == 1, "expected one PrometheusRule"
    return yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False, width=120)


# -- PromQL: the metric names an expression reads ------------------------------------------------
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range / subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\boffset\s+-?[0-9smhdwy]+", " ", text)  # offset modifiers
    text = re.sub(r"\$__\w+|\$\w+", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = match.group(0), text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        if re.fullmatch(r"e\d*", word) and match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # exponent of a float literal
        names.add(word)
    return names


def dashboard() -> dict[str, Any]:
    import json

    return dict(json.loads((CHART / "files" / "dashboards" / "cotdistill.json").read_text()))


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the Grafana dashboard."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def alert_queries() -> list[tuple[str, str]]:
    """(alert name, expr) of every alert rule."""
    groups = yaml.safe_load(alert_rules_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def main() -> None:
    ALERTS_FILE.write_text(ALERTS_HEADER + alert_rules_text())
    print(f"wrote {ALERTS_FILE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
