"""The Helm chart renders, lints and validates offline in every values profile.

Real tools only: the Helm v4 library (helm-python-sdk) renders and lints, kubernetes-validate
checks core kinds against the Kubernetes 1.34 OpenAPI schemas in strict mode, jsonschema checks
custom resources against the upstream CRDs in ../shared/schemas/crds, promtool checks the rules.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.chart import (
    ALERTS_FILE,
    ALERTS_HEADER,
    CHART,
    KUBERAY_POD_LABELS,
    NAMESPACE,
    PROFILES,
    RELEASE,
    REPO,
    alert_queries,
    alert_rules_text,
    dashboard,
    dashboard_queries,
    metric_names,
    objects,
    of_kind,
    pod_specs,
    pod_templates,
    profile_values,
    render,
    render_profile,
)

KUBE_VERSION = "1.34.0"
CRD_DIR = REPO.parent / "shared" / "schemas" / "crds"
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "RayCluster", "RayJob", "ScaledObject"}
WORKLOAD_KINDS = {"Deployment", "RayCluster", "RayJob", "Job", "Pod"}
# Pods that run once (helm test, the pipeline Job, a RayJob's submitter): no probes to answer.
ONE_SHOT = ("Pod/", "Job/", "/submitter")


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_lint_is_clean_in_strict_mode() -> None:
    import helm_python

    for profile in PROFILES:
        report = helm_python.lint(
            str(CHART), profile_values(profile), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"{profile}: {problems}"


def test_profiles_render_what_they_enable() -> None:
    kinds = {p: {(o["kind"], o["metadata"]["name"]) for o in objects(render_profile(p))} for p in PROFILES}
    assert ("Deployment", f"{RELEASE}-cotdistill-teacher") in kinds["default"]
    assert ("Service", f"{RELEASE}-cotdistill-teacher-headless") in kinds["default"]
    assert ("RayCluster", f"{RELEASE}-cotdistill-ray") in kinds["gpu"]
    assert ("HorizontalPodAutoscaler", f"{RELEASE}-cotdistill-teacher") in kinds["gpu"]
    full = {k for k, _ in kinds["full"]}
    assert {"ScaledObject", "PodMonitor", "PrometheusRule", "Ingress", "PodDisruptionBudget", "RayJob", "Job"} <= full
    assert "ServiceMonitor" not in full  # exclusive with the PodMonitor
    # KEDA owns the teacher's HPA when it is on: the chart must not render a second one.
    assert ("HorizontalPodAutoscaler", f"{RELEASE}-cotdistill-teacher") not in kinds["full"]
    # The server, its Service, and its `helm test` pod with the test script.
    assert {k for k, _ in kinds["minimal"]} == {"Deployment", "Service", "Pod", "ConfigMap"}


def test_core_objects_are_valid_kubernetes(profile: str) -> None:
    import kubernetes_validate

    checked = 0
    for obj in objects(render_profile(profile)):
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{profile}: {obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")
        checked += 1
    assert checked >= 3


def _strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it: unknown fields are errors, not pruned silently."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _crd_validators() -> dict[tuple[str, str], Any]:
    import jsonschema

    validators = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 30x faster
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def test_custom_resources_match_their_crds(profile: str) -> None:
    if not CRD_DIR.is_dir():
        pytest.skip(f"CRD schemas not found at {CRD_DIR} (they live in the shared folder beside the checkout)")
    validators = _crd_validators()
    for obj in objects(render_profile(profile)):
        if obj["kind"] not in CUSTOM_KINDS:
            continue
        key = (obj["apiVersion"], obj["kind"])
        assert key in validators, f"no CRD schema for {key}"
        errors = sorted(validators[key].iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{list(e.path)}: {e.message}" for e in errors[:5]
        )


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def test_every_pod_and_container_is_locked_down(profile: str) -> None:
    for obj in objects(render_profile(profile)):
        for where, spec in pod_specs(obj):
            pod_sc = spec.get("securityContext", {})
            assert pod_sc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot"
            assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: pod seccomp"
            assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
            for c in _containers(spec):
                sc = c.get("securityContext", {})
                label = f"{where}/{c['name']}"
                assert sc.get("runAsNonRoot") is True, f"{label}: runAsNonRoot"
                assert sc.get("allowPrivilegeEscalation") is False, f"{label}: allowPrivilegeEscalation"
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: capabilities.drop"
                assert sc.get("readOnlyRootFilesystem") is True, f"{label}: readOnlyRootFilesystem"
                assert sc.get("privileged") is not True, f"{label}: privileged"
                assert ":" in c["image"] and not c["image"].endswith(":latest"), f"{label}: pinned image tag"
                # A read-only root needs a writable /tmp.
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{label}: no writable /tmp"


def test_every_container_has_resources_and_probes(profile: str) -> None:
    for obj in objects(render_profile(profile)):
        for where, spec in pod_specs(obj):
            for c in _containers(spec):
                label = f"{where}/{c['name']}"
                res = c.get("resources", {})
                assert {"cpu", "memory"} <= set(res.get("requests", {})), f"{label}: cpu/memory requests"
                assert "memory" in res.get("limits", {}), f"{label}: memory limit"
            if any(marker in where for marker in ONE_SHOT):
                continue
            for c in spec["containers"]:  # init containers run to completion: no probes
                label = f"{where}/{c['name']}"
                assert "readinessProbe" in c and "livenessProbe" in c, f"{label}: readiness/liveness probes"
                if obj["kind"] == "Deployment":
                    assert "startupProbe" in c, f"{label}: startup probe (model loading is slow)"


def test_grpc_services_use_native_grpc_probes() -> None:
    for obj in of_kind(render_profile("default"), "Deployment"):
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        c = obj["spec"]["template"]["spec"]["containers"][0]
        if component == "server":
            assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
            continue
        port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == port, f"{component}: {probe}"


def test_gpu_teacher_gets_gpus_shm_model_cache_and_scheduling() -> None:
    rendered = render_profile("gpu")
    teacher = next(d for d in of_kind(rendered, "Deployment") if d["metadata"]["name"].endswith("-teacher"))
    spec = teacher["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"].endswith("-cuda")
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["models-cache"]["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-cotdistill-models"
    assert {"/dev/shm", "/var/cache/cotdistill", "/var/cache/cotdistill/models"} <= {
        m["mountPath"] for m in c["volumeMounts"]
    }
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["COTDISTILL_TEACHER_BACKEND"] == "vllm" and env["COTDISTILL_TEACHER_HOST"] == "0.0.0.0"
    # The sampling client's address list resolves every replica through the headless Service.
    headless = next(s for s in of_kind(rendered, "Service") if s["metadata"]["name"].endswith("-teacher-headless"))
    assert headless["spec"]["clusterIP"] == "None"
    notes = rendered["cotdistill/templates/NOTES.txt"]
    assert f"dns:///{RELEASE}-cotdistill-teacher-headless.{NAMESPACE}.svc.cluster.local:50051" in notes
    # Ray GPU workers, the RWX artifacts volume, and the trainer pointed at the cluster.
    ray = of_kind(rendered, "RayCluster")[0]
    worker = ray["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    pvc = next(p for p in of_kind(rendered, "PersistentVolumeClaim") if p["metadata"]["name"].endswith("-artifacts"))
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    trainer = next(d for d in of_kind(rendered, "Deployment") if d["metadata"]["name"].endswith("-trainer"))
    trainer_env = {e["name"]: e.get("value") for e in trainer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (
        trainer_env["COTDISTILL_TRAINER_RAY_ADDRESS"]
        == f"ray://{ray['metadata']['name']}-head-svc.{NAMESPACE}.svc.cluster.local:10001"
    )


def test_keda_scales_the_teacher_on_queue_depth() -> None:
    scaled = of_kind(render_profile("full"), "ScaledObject")[0]
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-cotdistill-teacher"
    trigger = next(t for t in scaled["spec"]["triggers"] if t["name"] == "queue-depth")
    assert trigger["type"] == "prometheus"
    assert metric_names(trigger["metadata"]["query"]) == {"cotdistill_teacher_queue_depth_requests"}
    teacher = next(
        d for d in of_kind(render_profile("full"), "Deployment") if d["metadata"]["name"].endswith("-teacher")
    )
    assert "replicas" not in teacher["spec"], "an autoscaled Deployment must leave replicas to the autoscaler"


def test_services_select_pods_and_name_real_ports(profile: str) -> None:
    rendered = render_profile(profile)
    pods = [
        (spec, d["spec"]["template"]["metadata"]["labels"])
        for d in of_kind(rendered, "Deployment") + of_kind(rendered, "Job")
        for _, spec in pod_specs(d)
    ]
    for svc in of_kind(rendered, "Service"):
        selector = svc["spec"]["selector"]
        matched = [spec for spec, labels in pods if selector.items() <= labels.items()]
        assert matched, f"Service {svc['metadata']['name']} selects no pod"
        ports = {p["name"] for spec in matched for c in spec["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{svc['metadata']['name']}: targetPort {port['targetPort']}"


def test_server_api_keys_come_from_a_secret() -> None:
    rendered = render_profile("full")
    server = next(d for d in of_kind(rendered, "Deployment") if d["metadata"]["name"].endswith("-server"))
    spec = server["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["COTDISTILL_SERVER_API_KEY_FILE"] == "/etc/cotdistill/api-keys/api-keys"
    assert "COTDISTILL_SERVER_ALLOW_UNAUTHENTICATED" not in env
    secret_name = next(v for v in spec["volumes"] if v["name"] == "api-keys")["secret"]["secretName"]
    secret = next(s for s in of_kind(rendered, "Secret") if s["metadata"]["name"] == secret_name)
    import base64

    keys = base64.b64decode(secret["data"]["api-keys"]).decode().splitlines()
    assert keys == profile_values("full")["server"]["apiKeys"]["keys"]
    # Without keys given, the chart generates one strong key (never a fixed default).
    generated = of_kind(render_profile("default"), "Secret")[0]
    assert len(base64.b64decode(generated["data"]["api-keys"]).decode()) == 32


def test_network_policy_denies_by_default_and_opens_the_pipeline_flows() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(render_profile("gpu"), "NetworkPolicy")}
    deny = policies[f"{RELEASE}-cotdistill-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    teacher = policies[f"{RELEASE}-cotdistill-teacher"]
    assert {p["port"] for rule in teacher["ingress"] for p in rule["ports"]} == {50051, 9101}
    server = policies[f"{RELEASE}-cotdistill-server"]
    assert [p["port"] for p in server["ingress"][0]["ports"]] == [8000]
    assert f"{RELEASE}-cotdistill-ray" in policies
    # Every pod of the release is covered by the default deny, Ray pods included after KubeRay
    # relabels them (app.kubernetes.io/name becomes "kuberay").
    selector = deny["podSelector"]["matchLabels"]
    for profile in ("gpu", "full"):
        for obj in objects(render_profile(profile)):
            for where, _, labels in pod_templates(obj):
                if obj["kind"] in ("RayCluster", "RayJob"):
                    labels = {**labels, **KUBERAY_POD_LABELS}
                assert selector.items() <= labels.items(), f"{profile}: {where} escapes the default deny"


def test_dashboard_configmap_has_the_sidecar_label() -> None:
    cm = of_kind(render_profile("default"), "ConfigMap")[0]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    import json

    assert json.loads(cm["data"]["cotdistill.json"])["uid"] == "cotdistill-overview"


def test_dashboard_and_alert_queries_name_cotdistill_metrics() -> None:
    queries = dashboard_queries() + alert_queries()
    assert len(queries) >= 20
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            assert name == "up" or name.startswith("cotdistill_"), f"{where}: {name} is not a cotdistill metric"
    assert {"CotdistillServiceDown", "CotdistillTeacherQueueSaturated", "CotdistillServerP99LatencyHigh",
            "CotdistillTrainingRunFailed"} <= {name for name, _ in alert_queries()}  # fmt: skip
    panel_ids = [p["id"] for p in dashboard()["panels"]]
    assert len(panel_ids) == len(set(panel_ids))


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, service) (rate(cotdistill_x_seconds_bucket{a="b", c=~"d|e"}[5m]))) '
        "/ on(pod) group_left(node) max without (instance) (up offset 1h) > 1e3 and foo:bar_total"
    )
    assert metric_names(expr) == {"cotdistill_x_seconds_bucket", "up", "foo:bar_total"}
    assert metric_names('sum(rate(cotdistill_a_total{namespace=~"$namespace"}[$__rate_interval]))') == {
        "cotdistill_a_total"
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_accepts_the_rules_and_the_compose_config(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules_text(profile_values("full")))
    result = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout
    config = REPO / "deploy" / "prometheus" / "prometheus.yml"
    result = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_unit_tests_fire_each_alert(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules_text())
    tests = tmp_path / "tests.yml"
    tests.write_text((Path(__file__).parent / "alerts_test.yml").read_text())
    result = subprocess.run(
        ["promtool", "test", "rules", str(tests)], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_alert_rules_are_generated_from_the_chart() -> None:
    assert ALERTS_FILE.read_text() == ALERTS_HEADER + alert_rules_text(), (
        "deploy/prometheus/alerts.yml is stale: run `.venv/bin/python -m tests.unit.deploy.chart`"
    )


BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown image variant", {"teacher": {"variant": "gpu"}}, "variant"),
    ("port out of range", {"teacher": {"port": 70000}}, "port"),
    ("negative replicas", {"server": {"replicaCount": -1}}, "replicaCount"),
    ("typo in a key", {"teacher": {"replicas": 3}}, "replicas"),
    ("unknown teacher backend", {"teacher": {"backend": "tgi"}}, "backend"),
    ("API key too short", {"server": {"apiKeys": {"keys": ["short"]}}}, "keys"),
    ("saturation is a fraction", {"monitoring": {"prometheusRule": {"teacherSaturation": 1.5}}}, "teacherSaturation"),
    ("GPU teacher on the CPU image", {"teacher": {"gpu": {"enabled": True}}}, "variant"),
    ("resources without limits", {"server": {"resources": {"limits": None}}}, "limits"),
    ("size is a quantity", {"artifacts": {"size": "lots"}}, "size"),
    ("top-k above 20", {"teacher": {"maxTopK": 50}}, "maxTopK"),
    ("access mode typo", {"artifacts": {"accessModes": ["ReadWriteAll"]}}, "accessModes"),
    (
        "both monitors (every pod scraped twice)",
        {"monitoring": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}},
        "podMonitor",
    ),
    ("a bare hub id (hf:// says where it comes from)", {"server": {"model": "Qwen/Qwen2.5-0.5B"}}, "model"),
    ("a source with a quote", {"teacher": {"model": "/models/x' y"}}, "model"),
    ("a list of sources that is not", {"trainer": {"models": "smollm2-135m-instruct"}}, "models"),
    (
        "LoRA adapters on an engine without them",
        {"server": {"loraAdapters": [{"name": "a", "source": "s3://b/a"}]}},
        "backend",
    ),
    ("an adapter without a source", {"server": {"backend": "vllm", "loraAdapters": [{"name": "a"}]}}, "source"),
    ("a pipeline without a recipe", {"pipeline": {"enabled": True}}, "recipe"),
    (
        "a RayJob name that is no DNS label",
        {"trainer": {"rayJobs": [{"name": "Big_Run", "recipe": "name: x"}]}},
        "name",
    ),
    ("a RayJob without a recipe", {"trainer": {"rayJobs": [{"name": "r1"}]}}, "recipe"),
    ("an env entry without a name", {"server": {"extraEnv": [{"value": "1"}]}}, "name"),
    ("a mount without a path", {"evaluator": {"extraVolumeMounts": [{"name": "x"}]}}, "mountPath"),
]


@pytest.mark.parametrize(("case", "values", "field"), BAD_VALUES, ids=[c for c, _, _ in BAD_VALUES])
def test_values_schema_rejects_bad_values(case: str, values: dict[str, Any], field: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError) as err:
        render(values)
    assert field in str(err.value), f"{case}: the error should name {field!r}: {err.value}"


def test_every_value_has_a_doc_comment() -> None:
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    root = yaml.compose(text)
    missing = []

    def walk(node: yaml.MappingNode, parent_line: int) -> None:
        for key, value in node.value:
            line = key.start_mark.line
            if line == parent_line:  # inside a one-line flow mapping: documented with its parent
                continue
            above = line - 1
            while above >= 0 and lines[above].strip().startswith("#") and not lines[above].strip().startswith("# --"):
                above -= 1
            if above < 0 or not lines[above].strip().startswith("# --"):
                missing.append(f"values.yaml:{line + 1}: {key.value}")
            if isinstance(value, yaml.MappingNode) and not value.flow_style:
                walk(value, line)

    walk(root, -1)
    assert not missing, "values without a `# --` comment:\n" + "\n".join(missing)


def test_every_schema_property_is_a_value_and_the_defaults_validate() -> None:
    import json

    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
    for profile in PROFILES:
        merged = _merge(copy.deepcopy(values), profile_values(profile))
        jsonschema.Draft7Validator(schema).validate(merged)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _settings_classes() -> dict[str, Any]:
    from cotdistill.evaluator.settings import EvaluatorSettings
    from cotdistill.server.settings import ServerSettings
    from cotdistill.teacher.settings import TeacherSettings
    from cotdistill.trainer.settings import TrainerSettings

    return {
        "teacher": TeacherSettings,
        "trainer": TrainerSettings,
        "evaluator": EvaluatorSettings,
        "server": ServerSettings,
    }


# Settings the chart sets ahead of the service that will read them (the chart's side of an
# interface another change provides; docs/deploy.md says which). The chart renders them only when
# their values are set. The test after the next one fails once the service has the setting, so the
# entry goes and the value is parsed like every other.
PENDING_SETTINGS: dict[tuple[str, str], str] = {}


def test_pending_settings_are_still_pending() -> None:
    classes = _settings_classes()
    for (service, field), what in PENDING_SETTINGS.items():
        assert field not in classes[service].model_fields, (
            f"{classes[service].__name__} has {field} now: drop it from PENDING_SETTINGS ({what}) and check the "
            "format the chart renders against the setting's"
        )


def test_service_settings_the_chart_and_images_set_exist_and_parse(profile: str) -> None:
    """A misspelt COTDISTILL_* variable would be ignored silently: check each against the settings."""
    from pydantic import TypeAdapter

    from tests.unit.deploy.dockerfile import parse

    classes = _settings_classes()
    pairs: list[tuple[str, str, str | None]] = []
    for obj in of_kind(render_profile(profile), "Deployment"):
        for where, spec in pod_specs(obj):
            for c in spec["containers"]:
                pairs += [(where, e["name"], e.get("value")) for e in c.get("env", [])]
    if profile == "default":
        for service in classes:
            df = parse(REPO / "deploy" / f"{service}.Dockerfile")
            for stage in ("cpu", "cuda"):
                pairs += [(f"{service}.Dockerfile/{stage}", k, v) for k, v in df.stage(stage).env().items()]
    checked = 0
    for where, name, value in pairs:
        service = name.split("_")[1].lower() if name.startswith("COTDISTILL_") else ""
        if service not in classes:
            continue
        cls = classes[service]
        field = name.removeprefix(f"COTDISTILL_{service.upper()}_").lower()
        if (service, field) in PENDING_SETTINGS:
            continue
        assert field in cls.model_fields, f"{where}: {name} is not a setting of {cls.__name__}"
        if value is not None:
            TypeAdapter(cls.model_fields[field].annotation).validate_strings(value)
        checked += 1
    assert checked >= 10


def test_dashboard_rpc_method_labels_are_real_rpcs() -> None:
    import re

    rpcs = {
        m.group(1)
        for proto in (REPO / "protos" / "cotdistill" / "v1").glob("*.proto")
        for m in re.finditer(r"^\s*rpc\s+(\w+)\s*\(", proto.read_text(), re.M)
    }
    used = {m.group(1) for _, expr in dashboard_queries() for m in re.finditer(r'method="(\w+)"', expr)}
    assert used and used <= rpcs, f"unknown RPCs in the dashboard: {used - rpcs}"


def test_monitors_keep_the_services_own_labels() -> None:
    service_mode = render({**profile_values("full"), "monitoring": {"serviceMonitor": {"enabled": True}}})
    for rendered, kind, key in (
        (service_mode, "ServiceMonitor", "endpoints"),
        (render_profile("full"), "PodMonitor", "podMetricsEndpoints"),
    ):
        (monitor,) = of_kind(rendered, kind)
        assert all(e["honorLabels"] is True for e in monitor["spec"][key]), kind
        assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/part-of", "app.kubernetes.io/component"]
