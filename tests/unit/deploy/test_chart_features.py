"""What a platform team installs the chart for, checked on real renders (Helm v4 library):
monitors that never scrape a pod twice, a teacher KEDA can bring back from zero, model sources
materialized by an init container, per-component pod settings, training as KubeRay RayJobs, the
pipeline as a Job, the vLLM server on GPUs, and `helm test` pods that call every service.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy import scrape
from tests.unit.deploy.chart import (
    CHART,
    NAMESPACE,
    PROFILES,
    RELEASE,
    metric_names,
    objects,
    of_kind,
    pod_templates,
    profile_values,
    render,
    render_profile,
)

FULL = f"{RELEASE}-cotdistill"
LINKS = "/var/run/cotdistill/models"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def deployment(rendered: dict[str, str], component: str) -> dict[str, Any]:
    return next(d for d in of_kind(rendered, "Deployment") if d["metadata"]["name"] == f"{FULL}-{component}")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# -- 1. monitors: exclusive, and a simulated scrape counts every series once -----------------------


def _monitor_modes(profile: str) -> list[tuple[str, dict[str, Any]]]:
    """The profile as it is, and with each monitor alone."""
    values = profile_values(profile)
    modes = [("as is", values)]
    for kind in ("serviceMonitor", "podMonitor"):
        other = "podMonitor" if kind == "serviceMonitor" else "serviceMonitor"
        modes.append((kind, _merge(values, {"monitoring": {kind: {"enabled": True}, other: {"enabled": False}}})))
    return modes


@pytest.mark.parametrize("profile", PROFILES)
def test_a_simulated_scrape_counts_each_teacher_replica_once(profile: str) -> None:
    for mode, values in _monitor_modes(profile):
        objs = objects(render(values))
        pods = scrape.running_pods(objs)
        found = scrape.targets(objs, pods)
        assert not scrape.scraped_twice(found), f"{profile}/{mode}: scraped by two jobs: {scrape.scraped_twice(found)}"
        monitors = values.get("monitoring", {})
        if not any(monitors.get(kind, {}).get("enabled") for kind in ("podMonitor", "serviceMonitor")):
            assert not found  # no monitor, no target
            continue
        teachers = [p for p in pods if p.labels.get("app.kubernetes.io/component") == "teacher"]
        expected = sum(float(p.env["COTDISTILL_TEACHER_MAX_IN_FLIGHT"]) for p in teachers)
        got = scrape.query_sum(found, pods, "cotdistill_teacher_max_in_flight_requests")
        assert got == expected, f"{profile}/{mode}: sum(max_in_flight) reads {got}, the replicas hold {expected}"
        # Every service pod is a target; the PodMonitor also reaches the Ray pods KubeRay relabelled.
        scraped_pods = {t.pod for t in found}
        for pod in pods:
            component = pod.labels.get("app.kubernetes.io/component")
            if component in ("teacher", "trainer", "evaluator", "server", "pipeline"):
                assert pod.name in scraped_pods, f"{profile}/{mode}: {pod.name} is not scraped"
            if component == "ray" and mode == "podMonitor":
                assert pod.name in scraped_pods, f"{profile}/{mode}: Ray pod {pod.name} is not scraped"


def test_the_simulation_sees_the_double_count_both_monitors_made() -> None:
    """The issue's reading (128 for 64 per replica) comes back if both monitors select the same pods."""
    values = profile_values("full")
    with_sm = objects(
        render(_merge(values, {"monitoring": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": False}}}))
    )
    both = objects(render(values)) + [o for o in with_sm if o["kind"] == "ServiceMonitor"]
    pods = scrape.running_pods(both)
    found = scrape.targets(both, pods)
    teachers = [p for p in pods if p.labels.get("app.kubernetes.io/component") == "teacher"]
    assert scrape.scraped_twice(found)
    assert scrape.query_sum(found, pods, "cotdistill_teacher_max_in_flight_requests") == 2 * 64 * len(teachers)
    assert scrape.query_sum(found, pods, "cotdistill_sampling_units_pending") == 2 * scrape.SAMPLING_UNITS


def test_the_schema_refuses_both_monitors_naming_the_field() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="podMonitor"):
        render({"monitoring": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}})


# -- 2. KEDA: the teacher comes back from zero on the driver's backlog ---------------------------


def test_keda_wakes_a_teacher_scaled_to_zero_on_the_sampling_backlog() -> None:
    rendered = render_profile("full")
    (scaled,) = of_kind(rendered, "ScaledObject")
    assert scaled["spec"]["minReplicaCount"] == 0
    triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
    backlog = triggers["sampling-backlog"]["metadata"]
    # The metric the driver exports while no teacher runs (not one only teacher pods emit).
    assert metric_names(backlog["query"]) == {"cotdistill_sampling_units_pending"}
    assert f'namespace="{NAMESPACE}"' in backlog["query"]
    assert backlog["activationThreshold"] == "0" and backlog["ignoreNullValues"] == "true"
    assert backlog["query"].startswith("clamp_max(") and backlog["query"].endswith(", 2)")  # replicasWhileSampling
    # The driver runs in the pipeline Job, exports on a named port, and Prometheus scrapes it once.
    objs = objects(rendered)
    pods = scrape.running_pods(objs)
    found = scrape.targets(objs, pods)
    assert scrape.query_sum(found, pods, "cotdistill_sampling_units_pending") == scrape.SAMPLING_UNITS
    (job,) = of_kind(rendered, "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    assert env["COTDISTILL_PIPELINE_METRICS_PORT"] == str(port) and env["COTDISTILL_PIPELINE_METRICS_HOST"] == "0.0.0.0"
    # While the teacher starts from zero, the sampling stage waits (not the recipe's 120 s default).
    assert "teacher.connect_timeout_s=1800" in container["args"]


def test_the_backlog_metric_is_the_one_the_driver_defines() -> None:
    from prometheus_client import generate_latest

    from cotdistill.common.metrics import new_registry
    from cotdistill.pipeline.sampling.metrics import SamplingMetrics

    exported = generate_latest(SamplingMetrics(new_registry(), "r").registry).decode()
    assert "cotdistill_sampling_units_pending" in exported


def test_scale_to_zero_without_a_monitor_is_refused_with_the_reason() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match=r"teacher.keda.minReplicas: 0 needs monitoring.podMonitor"):
        render({"teacher": {"keda": {"enabled": True, "minReplicas": 0}}})
    # minReplicas 1 without a monitor stays allowed (queue depth needs one too, but not to start).
    assert of_kind(render({"teacher": {"keda": {"enabled": True}}}), "ScaledObject")


# -- 3. models: sources materialized by an init container ----------------------------------------


ARTIFACT = "/var/lib/cotdistill/artifacts/runs/r/selected"
ON_CLAIM = "/var/lib/cotdistill/model-sources/weights"
SOURCE_CASES = [
    ("registry name", "smollm2-135m-instruct", "smollm2-135m-instruct", f"{LINKS}/smollm2-135m-instruct", None),
    ("hub id", "hf://Qwen/Qwen2.5-0.5B", "hf://Qwen/Qwen2.5-0.5B", f"{LINKS}/hf-Qwen-Qwen2.5-0.5B", None),
    ("object store", "s3://models/students/x", "s3://models/students/x", f"{LINKS}/s3-models-students-x", None),
    ("directory on a claim", "pvc://weights/qwen", None, f"{ON_CLAIM}/qwen", "weights"),
    ("GGUF file on a claim", "pvc://weights/q.gguf", f"{ON_CLAIM}/q.gguf", f"{LINKS}/pvc-weights-q.gguf", "weights"),
    ("checkpoint on the artifacts volume", ARTIFACT, None, ARTIFACT, None),
]


@pytest.mark.parametrize(("case", "source", "pulled", "path", "claim"), SOURCE_CASES, ids=[c[0] for c in SOURCE_CASES])
def test_each_kind_of_model_source(case: str, source: str, pulled: str | None, path: str, claim: str | None) -> None:
    values = {
        "server": {"model": source},
        "models": {
            "hfToken": {"secretName": "hf"},
            "s3": {"credentialsSecret": "s3-creds", "endpointUrl": "http://minio:9000"},
        },
    }
    server = deployment(render(values), "server")
    spec = server["spec"]["template"]["spec"]
    main = spec["containers"][0]
    assert env_of(main)["COTDISTILL_SERVER_MODEL"] == path
    assert env_of(main)["COTDISTILL_MODELS_CACHE"] == "/var/cache/cotdistill/models"
    volumes = {v["name"]: v for v in spec["volumes"]}
    if claim:
        assert volumes[f"model-src-{claim}"]["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    inits = spec.get("initContainers", [])
    if pulled is None:
        assert not inits, f"{case}: nothing to pull, no init container"
        assert "cotdistill.io/models-pull" not in server["spec"]["template"]["metadata"]["labels"]
        return
    (init,) = inits
    script = init["args"][0]
    assert f"pull '{pulled}' '{path.rsplit('/', 1)[1]}'" in script  # single-quoted for sh
    assert 'cotdistill models pull "$1" --cache-dir "$COTDISTILL_MODELS_CACHE"' in script
    assert server["spec"]["template"]["metadata"]["labels"]["cotdistill.io/models-pull"] == "true"
    # The credentials reach the pull container only, never the serving one.
    assert env_of(init)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert init["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert env_of(init)["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert "HF_TOKEN" not in env_of(main) and "envFrom" not in main
    # The init container writes the cache and the links; the server reads them.
    init_mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    main_mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    for where in ("/var/cache/cotdistill/models", LINKS):
        assert not init_mounts[where].get("readOnly") and main_mounts[where]["readOnly"] is True


def test_the_minimal_profile_installs_a_server_that_pulls_a_registry_model() -> None:
    rendered = render_profile("minimal")
    spec = deployment(rendered, "server")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    assert "pull 'smollm2-135m-instruct' 'smollm2-135m-instruct'" in init["args"][0]
    assert init["image"] == spec["containers"][0]["image"]  # the CLI ships in every image
    assert env_of(spec["containers"][0])["COTDISTILL_SERVER_MODEL"] == f"{LINKS}/smollm2-135m-instruct"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["models-cache"]  # no storage class needed
    assert not of_kind(rendered, "PersistentVolumeClaim")


def test_the_pull_script_runs_in_a_shell_and_links_what_pull_printed(tmp_path: Path) -> None:
    """The rendered init script, run by /bin/sh against a stand-in `cotdistill` on PATH (the
    models CLI's interface: pull SOURCE --cache-dir DIR; path SOURCE prints the directory)."""
    import subprocess

    values = {
        "server": {
            "backend": "vllm",
            "model": "smollm2-135m-instruct",
            "loraAdapters": [{"name": "math", "source": "hf://org/math-lora"}],
        }
    }
    init = deployment(render(values), "server")["spec"]["template"]["spec"]["initContainers"][0]
    links = tmp_path / "links"
    links.mkdir()
    script = init["args"][0].replace(LINKS, str(links))
    cache = tmp_path / "cache"
    fake = tmp_path / "bin" / "cotdistill"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$COTDISTILL_MODELS_CACHE/calls"\n'
        'if [ "$1 $2" = "models path" ]; then echo "$COTDISTILL_MODELS_CACHE/by-source/$(echo "$3" | tr :/ __)"; fi\n'
    )
    fake.chmod(0o755)
    cache.mkdir()
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "COTDISTILL_MODELS_CACHE": str(cache)}
    done = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    calls = (cache / "calls").read_text().splitlines()
    assert calls == [
        f"models pull smollm2-135m-instruct --cache-dir {cache}",
        "models path smollm2-135m-instruct",
        f"models pull hf://org/math-lora --cache-dir {cache}",
        "models path hf://org/math-lora",
    ]
    assert (links / "smollm2-135m-instruct").readlink() == cache / "by-source" / "smollm2-135m-instruct"
    assert (links / "hf-org-math-lora").readlink() == cache / "by-source" / "hf___org_math-lora"
    # A failed pull stops the pod from starting (sh -e), with the source in the log.
    fake.write_text("#!/bin/sh\necho 'no such model' >&2\nexit 3\n")
    failed = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 3 and "pulling smollm2-135m-instruct" in failed.stdout


def test_pulling_pods_get_https_egress_and_only_they() -> None:
    rendered = render_profile("gpu")
    (policy,) = [p for p in of_kind(rendered, "NetworkPolicy") if p["metadata"]["name"].endswith("-models-egress")]
    assert policy["spec"]["podSelector"]["matchLabels"]["cotdistill.io/models-pull"] == "true"
    assert policy["spec"]["egress"] == [{"ports": [{"port": 443, "protocol": "TCP"}]}]
    pulling = {
        w for obj in objects(rendered) for w, _, labels in pod_templates(obj) if "cotdistill.io/models-pull" in labels
    }
    assert pulling == {
        f"Deployment/{FULL}-teacher", f"Deployment/{FULL}-trainer", f"Deployment/{FULL}-server",
        f"RayCluster/{FULL}-ray/head", f"RayCluster/{FULL}-ray/gpu-workers",
    }  # fmt: skip


def test_trainer_models_reach_every_ray_pod() -> None:
    (ray,) = of_kind(render_profile("gpu"), "RayCluster")
    for where, spec, _ in pod_templates(ray):
        (init,) = spec["initContainers"]
        assert "pull 'smollm2-135m-instruct'" in init["args"][0], where
        claim = next(v for v in spec["volumes"] if v["name"] == "models-cache")["persistentVolumeClaim"]["claimName"]
        assert claim == f"{FULL}-models", where


# -- per-component pod settings ------------------------------------------------------------------

COMPONENTS = ("teacher", "trainer", "evaluator", "server", "pipeline")


def _extras(component: str) -> dict[str, Any]:
    return {
        "extraEnv": [{"name": f"X_{component.upper()}", "value": "1"}],
        "envFrom": [{"secretRef": {"name": f"{component}-env"}}],
        "extraVolumes": [{"name": "extra", "configMap": {"name": f"{component}-extra"}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/etc/extra", "readOnly": True}],
        "nodeSelector": {"pool": component},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": component, "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": [component]}]},
                    }
                ]
            }
        },
        "priorityClassName": f"{component}-priority",
    }


def test_every_component_takes_env_volumes_and_scheduling() -> None:
    values: dict[str, Any] = {c: _extras(c) for c in COMPONENTS}
    values["pipeline"]["enabled"] = True
    values["pipeline"]["recipe"] = "name: x\n"
    values["trainer"]["rayJobs"] = [{"name": "r1", "recipe": "name: x\n"}]
    rendered = render(values)
    seen = set()
    for obj in objects(rendered):
        for where, spec, labels in pod_templates(obj):
            component = labels.get("app.kubernetes.io/component")
            if component not in COMPONENTS:
                continue
            seen.add(component)
            extras = _extras(component)
            main = spec["containers"][0]
            assert env_of(main)[f"X_{component.upper()}"] == "1", where
            assert main["envFrom"] == extras["envFrom"], where
            assert {"name": "extra", "mountPath": "/etc/extra", "readOnly": True} in main["volumeMounts"], where
            assert extras["extraVolumes"][0] in spec["volumes"], where
            for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
                assert spec[key] == extras[key], f"{where}: {key}"
    assert seen == set(COMPONENTS)
    # The trainer's env, env sources and volumes follow its runs onto the Ray pods.
    (job,) = of_kind(rendered, "RayJob")
    for where, spec, _ in pod_templates(job):
        if where.endswith("/submitter"):
            continue
        assert env_of(spec["containers"][0])["X_TRAINER"] == "1", where
        assert _extras("trainer")["extraVolumes"][0] in spec["volumes"], where


# -- 4. training as a KubeRay RayJob ------------------------------------------------------------


def test_a_rayjob_trains_the_recipe_with_checkpoints_on_the_artifacts_volume() -> None:
    from cotdistill.common.config import load_config
    from cotdistill.pipeline.run_config import RunConfig

    rendered = render_profile("full")
    (job,) = of_kind(rendered, "RayJob")
    name = f"{FULL}-train-gsm8k-kd"
    assert job["metadata"]["name"] == name
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["suspend"] is True  # Kueue admits it
    assert spec["submissionMode"] == "K8sJobMode"
    (config_map,) = [c for c in of_kind(rendered, "ConfigMap") if c["metadata"]["name"] == name]
    assert config_map["data"]["rayjob_train.py"] == (CHART / "files" / "rayjob_train.py").read_text()
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "/etc/cotdistill/rayjob/rayjob_train.py", "/etc/cotdistill/rayjob/recipe.yaml"]
    assert argv[3:5] == ["--artifacts-dir", "/var/lib/cotdistill/artifacts"]
    overrides = argv[5:]
    assert overrides == [
        "output_dir=/var/lib/cotdistill/artifacts/pipeline",
        "training.hyperparameters.learning_rate=5e-5",
    ]
    # The recipe in the ConfigMap, with the entrypoint's overrides, is a valid recipe.
    recipe = Path(__file__).parent / "_rayjob_recipe.yaml"
    try:
        recipe.write_text(config_map["data"]["recipe.yaml"])
        config = load_config(RunConfig, recipe, overrides)
    finally:
        recipe.unlink(missing_ok=True)
    assert config.stages == ["train"] and config.output_dir == "/var/lib/cotdistill/artifacts/pipeline"
    # Head and workers share the artifacts volume (rank 0 writes checkpoints, a restart reads them)
    # and the head has the recipe.
    for where, pod, _ in pod_templates(job):
        if where.endswith("/submitter"):
            assert pod["containers"][0]["image"].endswith("/trainer:0.1.0-cuda")
            continue
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["artifacts"]["persistentVolumeClaim"]["claimName"] == "cotdistill-artifacts", where
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert "/var/lib/cotdistill/artifacts" in mounts, where
        if where.endswith("/head"):
            assert volumes["rayjob"]["configMap"]["name"] == name and "/etc/cotdistill/rayjob" in mounts


def test_ray_network_policy_covers_rayjob_clusters_and_the_submitter() -> None:
    rendered = render_profile("full")
    (ray,) = [p for p in of_kind(rendered, "NetworkPolicy") if p["metadata"]["name"] == f"{FULL}-ray"]
    selector = ray["spec"]["podSelector"]["matchLabels"]
    (job,) = of_kind(rendered, "RayJob")
    for where, _, labels in pod_templates(job):
        relabelled = {**labels, **scrape.KUBERAY_POD_LABELS}
        if where.endswith("/submitter"):
            assert any(
                rule["from"][0].get("podSelector", {}).get("matchLabels", {}).items() <= relabelled.items()
                and {"port": 8265, "protocol": "TCP"} in rule.get("ports", [])
                for rule in ray["spec"]["ingress"]
            ), "the submitter cannot reach the dashboard"
        else:
            assert selector.items() <= relabelled.items(), f"{where} is not covered by the Ray policy"


# -- the pipeline as a Job -----------------------------------------------------------------------


def test_the_pipeline_job_runs_the_recipe_against_the_release(tmp_path: Path) -> None:
    from cotdistill.common.config import load_config
    from cotdistill.pipeline.run_config import RunConfig

    rendered = render_profile("full")
    (job,) = of_kind(rendered, "Job")
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["cotdistill.io/client"] == "true"  # NetworkPolicy admits it
    container = pod["spec"]["containers"][0]
    (config_map,) = [c for c in of_kind(rendered, "ConfigMap") if c["metadata"]["name"] == job["metadata"]["name"]]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(config_map["data"]["recipe.yaml"])
    config = load_config(RunConfig, recipe, container["args"])
    services = {s["metadata"]["name"]: s for s in of_kind(rendered, "Service")}

    def port_of(service: str, name: str) -> int:
        return next(p["port"] for p in services[service]["spec"]["ports"] if p["name"] == name)

    assert config.teacher.addresses == [
        f"dns:///{FULL}-teacher-headless.{NAMESPACE}.svc.cluster.local:{port_of(f'{FULL}-teacher-headless', 'grpc')}"
    ]
    assert (
        config.training.trainer_address
        == f"{FULL}-trainer.{NAMESPACE}.svc.cluster.local:{port_of(f'{FULL}-trainer', 'grpc')}"
    )
    assert (
        config.evaluation.evaluator_address
        == f"{FULL}-evaluator.{NAMESPACE}.svc.cluster.local:{port_of(f'{FULL}-evaluator', 'grpc')}"
    )
    assert (
        config.serving.url == f"http://{FULL}-server.{NAMESPACE}.svc.cluster.local:{port_of(f'{FULL}-server', 'http')}"
    )
    assert config.sampling.concurrency == 32  # the user's override wins
    assert config.output_dir == "/var/lib/cotdistill/artifacts/pipeline"
    key = env_of(container)["COTDISTILL_API_KEY"]["secretKeyRef"]
    assert key == {"name": f"{FULL}-server-api-keys", "key": "client-api-key"}
    secret = next(s for s in of_kind(rendered, "Secret") if s["metadata"]["name"] == key["name"])
    assert "client-api-key" in secret["data"]
    # A changed recipe is a new Job (a Job's template is immutable).
    values = _merge(profile_values("full"), {"pipeline": {"overrides": ["sampling.concurrency=16"]}})
    (other,) = of_kind(render(values), "Job")
    assert other["metadata"]["name"] != job["metadata"]["name"]


# -- 5. the server with vLLM on GPUs, LoRA adapters by name ---------------------------------------


def test_the_gpu_server_profile_runs_vllm_with_adapters_by_name() -> None:
    rendered = render_profile("gpu-server")
    server = deployment(rendered, "server")
    spec = server["spec"]["template"]["spec"]
    main = spec["containers"][0]
    env = env_of(main)
    assert main["image"].endswith("/server:0.1.0-cuda")
    assert env["COTDISTILL_SERVER_BACKEND"] == "vllm" and env["COTDISTILL_SERVER_DTYPE"] == "bfloat16"
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["runtimeClassName"] == "nvidia" and spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"/dev/shm"} <= {m["mountPath"] for m in main["volumeMounts"]}
    assert env["COTDISTILL_SERVER_LORA_ADAPTERS"] == (
        f"gsm8k-cot={LINKS}/s3-models-adapters-qwen-gsm8k-cot,svamp-cot={LINKS}/hf-cotdistill-qwen2.5-0.5b-svamp-lora"
    )
    # the server reads the rendered value as {name: adapter directory}
    from cotdistill.server.settings import ServerSettings

    read = ServerSettings(
        backend="vllm", lora_adapters=env["COTDISTILL_SERVER_LORA_ADAPTERS"], allow_unauthenticated=True
    ).adapters()
    assert read == {
        "gsm8k-cot": f"{LINKS}/s3-models-adapters-qwen-gsm8k-cot",
        "svamp-cot": f"{LINKS}/hf-cotdistill-qwen2.5-0.5b-svamp-lora",
    }
    script = spec["initContainers"][0]["args"][0]
    for source in (
        "qwen2.5-coder-0.5b-instruct",
        "s3://models/adapters/qwen-gsm8k-cot",
        "hf://cotdistill/qwen2.5-0.5b-svamp-lora",
    ):
        assert f"pull '{source}' " in script


# -- 7. `helm test`: health and one real call per service ----------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_helm_test_pods_call_every_enabled_service(profile: str) -> None:
    rendered = render_profile(profile)
    hooks = [o for o in objects(rendered) if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    pods = {p["metadata"]["name"]: p for p in hooks if p["kind"] == "Pod"}
    deployed = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in of_kind(rendered, "Deployment")}
    assert {n.removeprefix(f"{FULL}-").removesuffix("-test") for n in pods} == deployed
    (config_map,) = [h for h in hooks if h["kind"] == "ConfigMap"]
    assert config_map["data"]["chart_test.py"] == (CHART / "files" / "chart_test.py").read_text()
    services = {s["metadata"]["name"]: s for s in of_kind(rendered, "Service")}
    for name, pod in pods.items():
        container = pod["spec"]["containers"][0]
        assert container["command"] == ["python", "/etc/cotdistill/test/chart_test.py"]
        _, *args = container["args"]
        flags = dict(zip(args[::2], args[1::2], strict=True))
        target = flags.get("--address") or flags["--url"].removeprefix("http://")
        host, port = target.rsplit(":", 1)
        service = services[host.removesuffix(f".{NAMESPACE}.svc.cluster.local")]
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}, f"{name}: {target}"
        assert pod["metadata"]["labels"]["cotdistill.io/client"] == "true"
    if "evaluator" in deployed and "server" in deployed:
        args = pods[f"{FULL}-evaluator-test"]["spec"]["containers"][0]["args"]
        assert "--server-url" in args  # evaluates the release's own server end to end


def test_chart_files_are_the_ones_the_templates_ship() -> None:
    names = {p.name for p in (CHART / "files").iterdir() if p.suffix == ".py"}
    assert names == {"chart_test.py", "rayjob_train.py"}
    helmignore = (CHART / ".helmignore").read_text().split()
    assert "*.py" not in helmignore and "files/" not in helmignore


def test_values_file_and_profiles_parse_as_yaml() -> None:
    for path in [CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path
