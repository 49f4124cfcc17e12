"""A simulated scrape of a rendered release: which (pod, port) targets the Prometheus operator
derives from the chart's ServiceMonitor / PodMonitor, and what a query summing over them reads.

No cluster here, so the cluster is modelled from the rendered objects: each Deployment runs its
replicas (autoscaled ones a given count), a Job one pod, a RayCluster or RayJob its head and
workers with the labels KubeRay puts over the template's. Target discovery follows the
operator: a ServiceMonitor selects Services by label, then scrapes every endpoint (ready pod the
Service selects) on the Service port named in each endpoint, at that port's targetPort; a
PodMonitor selects pods by label and scrapes each container port named in each endpoint. Every
(monitor, endpoint) is its own scrape job, so a pod two jobs scrape yields each series twice.

What a target exports is the real thing where it matters for the counts: a teacher pod's metrics
port serves the teacher's own ``TeacherMetrics`` registry (max in flight from the pod's env), the
pipeline driver's serves the driver's ``SamplingMetrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.deploy.chart import KUBERAY_POD_LABELS, NAMESPACE

SAMPLING_UNITS = 10  # the simulated driver's backlog


@dataclass
class Pod:
    name: str
    labels: dict[str, str]
    ports: dict[str, int]  # container port name -> number (main containers)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    job: str  # <kind>/<namespace>/<name>/<endpoint index>, as the operator names scrape jobs
    pod: str
    port: int


def _containers_ports_env(spec: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    ports: dict[str, int] = {}
    env: dict[str, str] = {}
    for c in spec["containers"]:
        ports.update({p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p})
        env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    return ports, env


def running_pods(objects: list[dict[str, Any]], autoscaled_replicas: int = 2) -> list[Pod]:
    """The pods the release runs once every workload is up (hook pods such as `helm test` excluded)."""
    pods: list[Pod] = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            template = obj["spec"]["template"]
            count = obj["spec"].get("replicas", autoscaled_replicas) if kind == "Deployment" else 1
            ports, env = _containers_ports_env(template["spec"])
            pods += [Pod(f"{name}-{i}", dict(template["metadata"]["labels"]), ports, env) for i in range(count)]
        elif kind in ("RayCluster", "RayJob"):
            cluster = obj["spec"] if kind == "RayCluster" else obj["spec"]["rayClusterSpec"]
            groups = [("head", 1, cluster["headGroupSpec"]["template"])]
            groups += [(g["groupName"], g["replicas"], g["template"]) for g in cluster.get("workerGroupSpecs", [])]
            for group, count, template in groups:
                ports, env = _containers_ports_env(template["spec"])
                labels = {**template["metadata"]["labels"], **KUBERAY_POD_LABELS, "ray.io/cluster": name}
                pods += [Pod(f"{name}-{group}-{i}", labels, ports, env) for i in range(count)]
    return pods


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is modelled: {selector}"
    return dict(selector.get("matchLabels", {})).items() <= labels.items()


def targets(objects: list[dict[str, Any]], pods: list[Pod]) -> list[Target]:
    """Every scrape target the release's monitors produce."""
    out: list[Target] = []
    services = [o for o in objects if o["kind"] == "Service"]
    for monitor in (o for o in objects if o["kind"] in ("ServiceMonitor", "PodMonitor")):
        spec, name = monitor["spec"], monitor["metadata"]["name"]
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        if monitor["kind"] == "ServiceMonitor":
            for i, endpoint in enumerate(spec["endpoints"]):
                job = f"serviceMonitor/{NAMESPACE}/{name}/{i}"
                for svc in services:
                    if not _selects(spec["selector"], svc["metadata"].get("labels", {})):
                        continue
                    for svc_port in svc["spec"]["ports"]:
                        if svc_port.get("name") != endpoint["port"]:
                            continue
                        for pod in pods:
                            if dict(svc["spec"]["selector"]).items() <= pod.labels.items():
                                target = svc_port["targetPort"]
                                port = pod.ports[target] if isinstance(target, str) else target
                                out.append(Target(job, pod.name, port))
        else:
            for i, endpoint in enumerate(spec["podMetricsEndpoints"]):
                job = f"podMonitor/{NAMESPACE}/{name}/{i}"
                for pod in pods:
                    if _selects(spec["selector"], pod.labels) and endpoint["port"] in pod.ports:
                        out.append(Target(job, pod.name, pod.ports[endpoint["port"]]))
    return out


def exposition(pod: Pod, port: int) -> str:
    """The /metrics text a pod serves on a port (the services' registries where counts matter)."""
    component = pod.labels.get("app.kubernetes.io/component")
    if component == "teacher" and port == pod.ports.get("metrics"):
        from prometheus_client import CollectorRegistry

        from cotdistill.teacher.metrics import TeacherMetrics

        registry = CollectorRegistry()
        TeacherMetrics(registry).max_in_flight.set(float(pod.env["COTDISTILL_TEACHER_MAX_IN_FLIGHT"]))
        return generate_latest(registry).decode()
    if component == "pipeline" and port == pod.ports.get("metrics"):
        from cotdistill.common.metrics import new_registry
        from cotdistill.pipeline.sampling.metrics import SamplingMetrics

        driver = SamplingMetrics(new_registry(), "sim")
        driver.planned(SAMPLING_UNITS, SAMPLING_UNITS)
        return generate_latest(driver.registry).decode()
    return ""


def query_sum(found: list[Target], pods: list[Pod], metric: str) -> float:
    """`sum(metric)` over everything the targets scraped."""
    by_name = {p.name: p for p in pods}
    total = 0.0
    for target in found:
        for family in text_string_to_metric_families(exposition(by_name[target.pod], target.port)):
            total += sum(s.value for s in family.samples if s.name == metric)
    return total


def scraped_twice(found: list[Target]) -> list[tuple[str, int]]:
    """(pod, port) pairs that more than one scrape job collects."""
    jobs: dict[tuple[str, int], set[str]] = {}
    for t in found:
        jobs.setdefault((t.pod, t.port), set()).add(t.job)
    return sorted(k for k, v in jobs.items() if len(v) > 1)
