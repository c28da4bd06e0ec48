"""The Helm chart renders to valid Kubernetes objects that start real code with real settings.

No ``helm`` binary is available, so the chart is rendered by ``tests.support.gotemplate`` (a
subset of Go templates that the chart keeps to) for its default values, for the multi-pool
example, and for a set that switches on what neither of those does. The objects are checked
against the Kubernetes schemas (kubernetes-validate), and against the code: every command parses
with the program it starts, probes call routes the API serves, queues are the ones
``shared.queue`` declares, and settings are the ones ``load_settings`` reads.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from shared.queue import QUEUES
from tests.support.gotemplate import Chart, TemplateError, merge_values
from tests.unit.test_deployment_files import (
    CHECKS,
    ROOT,
    api_serves,
    flower_serves,
    read,
    settings_variables,
)

CHART_DIR = ROOT / "helm" / "llm-council"
MULTIPOOL = yaml.safe_load((CHART_DIR / "values-multipool.yaml").read_text(encoding="utf-8"))
# What neither values file switches on: the chart's own Secret with Flower's credentials, a pool
# on the CPU autoscaler, KEDA reading RabbitMQ, worker metrics without a ServiceMonitor.
OTHERS = {
    "flower": {"enabled": True, "basicAuth": "ops:secret"},
    "secret": {"values": {"BROKER_URL": "amqp://council:secret@rabbitmq:5672//"}},
    "keda": {"trigger": "rabbitmq"},
    "metrics": {"workerPort": 9808},
    "workers": {"pools": {
        "default": {"queues": ["interactive", "webhooks"],
                    "autoscaling": {"enabled": True}},
        "batch": {**MULTIPOOL["workers"]["pools"]["batch"], "nodeSelector": {},
                  "tolerations": []},
    }},
}
VALUE_SETS = {"default": [], "multipool": [MULTIPOOL], "others": [OTHERS]}
# Custom resources whose schemas ship with KEDA and the Prometheus Operator, not Kubernetes.
CUSTOM_KINDS = {"ScaledObject", "ServiceMonitor"}
# Oldest and newest Kubernetes the schemas cover; Chart.yaml's kubeVersion starts at the oldest.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
# Variables the chart sets that the service does not read through ``load_settings``.
NOT_SETTINGS = {
    "FLOWER_BASIC_AUTH",  # read by Flower itself
    "FLOWER_UNAUTHENTICATED_API",
}
VALUES_REFERENCE = re.compile(r"(?:\$|(?<![\w$)]))\.Values((?:\.\w+)+)")
POOL_REFERENCE = re.compile(r"\$pool((?:\.\w+)+)")


@functools.cache
def chart() -> Chart:
    return Chart(CHART_DIR)


@functools.cache
def rendered(label: str) -> dict[str, str]:
    return chart().render(*VALUE_SETS[label])


@functools.cache
def manifests(label: str) -> tuple[dict, ...]:
    """Return every object the chart renders, in file order, as Helm splits them."""
    return tuple(
        document
        for name, text in rendered(label).items()
        if not name.endswith("NOTES.txt")
        for document in yaml.safe_load_all(text)
        if document
    )


def of_kind(label: str, kind: str) -> list[dict]:
    return [document for document in manifests(label) if document["kind"] == kind]


def containers(label: str) -> Iterator[tuple[dict, dict]]:
    for deployment in of_kind(label, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def component(document: dict) -> str:
    return document["metadata"]["labels"]["app.kubernetes.io/component"]


def merged_values(label: str) -> dict:
    values = chart().defaults
    for override in VALUE_SETS[label]:
        values = merge_values(values, override)
    return values


def worker_deployments(label: str) -> list[dict]:
    return [d for d in of_kind(label, "Deployment") if component(d) == "worker"]


def argument_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


LABELS = sorted(VALUE_SETS)


@pytest.mark.parametrize("label", LABELS)
def test_every_template_renders_to_named_objects(label):
    documents = manifests(label)
    assert documents
    for document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), document
    identities = [(d["kind"], d["metadata"]["name"]) for d in documents]
    assert len(identities) == len(set(identities)), "two objects share a kind and a name"
    assert rendered(label)["llm-council/templates/NOTES.txt"].strip()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("label", LABELS)
def test_objects_follow_the_kubernetes_schemas(label, version):
    for document in manifests(label):
        where = f"{document['kind']} {document['metadata']['name']}"
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except SchemaNotFoundError:
            assert document["kind"] in CUSTOM_KINDS, where
        except ValidationError as error:
            pytest.fail(f"{where}: {error.message} at {list(error.absolute_path)}")


def test_the_custom_resources_are_the_ones_the_chart_documents():
    kinds = {document["kind"] for label in LABELS for document in manifests(label)}
    assert CUSTOM_KINDS <= kinds
    assert {d["apiVersion"] for d in of_kind("multipool", "ScaledObject")} == {"keda.sh/v1alpha1"}
    monitors = of_kind("multipool", "ServiceMonitor")
    assert {d["apiVersion"] for d in monitors} == {"monitoring.coreos.com/v1"}


def kubernetes_cluster() -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    answer = subprocess.run([kubectl, "version", "--request-timeout=5s"], capture_output=True,
                            text=True, timeout=30)
    return kubectl if answer.returncode == 0 else None


@pytest.mark.parametrize("label", LABELS)
def test_kubectl_accepts_the_rendered_chart(label, tmp_path):
    kubectl = kubernetes_cluster()
    if kubectl is None:
        pytest.skip("kubectl or a cluster to ask is missing: client dry runs need the API server")
    documents = [d for d in manifests(label) if d["kind"] not in CUSTOM_KINDS]
    path = tmp_path / "chart.yaml"
    path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    applied = subprocess.run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f",
                              str(path)], capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize("label", LABELS)
def test_every_container_starts_real_code(label):
    for deployment, container in containers(label):
        argv = [*container["command"], *container.get("args", [])]
        assert argv[0] in CHECKS, f"{deployment['metadata']['name']} starts {argv[0]!r}"
        CHECKS[argv[0]](argv)
        assert all(isinstance(part, str) for part in argv), argv


@pytest.mark.parametrize("label", LABELS)
def test_probes_call_routes_that_exist(label):
    serves = {"api": api_serves, "flower": flower_serves}
    probed = set()
    for deployment, container in containers(label):
        ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
        for kind in ("livenessProbe", "readinessProbe"):
            if kind not in container:
                continue
            probe = container[kind]["httpGet"]
            assert probe["port"] in ports, f"{kind} names no port of the container"
            assert serves[component(deployment)](probe["path"]), probe["path"]
            probed.add((component(deployment), kind, probe["path"]))
        if component(deployment) == "api":
            bind = argument_after(container["command"], "--bind")
            assert bind == f"0.0.0.0:{ports['http']}"
    assert {("api", "livenessProbe", "/health"), ("api", "readinessProbe", "/ready")} <= probed


def test_flower_is_probed_and_served_when_enabled():
    [flower] = [c for d, c in containers("multipool") if component(d) == "flower"]
    assert flower["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    port = flower["ports"][0]["containerPort"]
    assert f"--port={port}" in flower["command"]


def test_every_value_a_template_reads_is_declared_in_values_yaml():
    missing = set()
    for name, source in chart().sources.items():
        for match in VALUES_REFERENCE.finditer(source):
            node = chart().defaults
            for key in match[1].strip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.add(f"{name}: .Values{match[1]}")
                    break
                node = node[key]
    assert not missing, sorted(missing)


@pytest.mark.parametrize("label", LABELS)
def test_every_pool_sets_every_field_the_template_reads(label):
    fields = {match[1].strip(".") for match in POOL_REFERENCE.finditer(
        chart().sources["llm-council/templates/workers.yaml"])}
    assert {"queues", "concurrency", "replicas", "keda.enabled"} <= fields
    for name, pool in merged_values(label)["workers"]["pools"].items():
        for path in fields:
            node = pool
            for key in path.split("."):
                assert key in node, f"pool {name} has no {path}"
                node = node[key]


@pytest.mark.parametrize("label", LABELS)
def test_worker_pools_consume_declared_queues_and_every_queue(label):
    consumed = []
    for deployment in worker_deployments(label):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        argv = container["command"]
        pool = deployment["metadata"]["labels"]["llm-council/pool"]
        consumed += argument_after(argv, "-Q").split(",")
        assert argument_after(argv, "--hostname") == f"{pool}@%h"
        environment = {item["name"]: item.get("value") for item in container["env"]}
        assert environment["WORKER_CONCURRENCY"] == argument_after(argv, "--concurrency")
    assert set(consumed) <= set(QUEUES)
    assert set(consumed) == set(QUEUES), "a queue no pool consumes would never be worked"


def test_the_multipool_example_gives_each_queue_its_own_pool():
    deployments = worker_deployments("multipool")
    pools = {d["metadata"]["labels"]["llm-council/pool"]: d for d in deployments}
    assert set(pools) == set(QUEUES)
    for name, deployment in pools.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert argument_after(container["command"], "-Q") == name


@pytest.mark.parametrize("label", LABELS)
def test_beat_runs_exactly_once(label):
    [beat] = [d for d in of_kind(label, "Deployment") if component(d) == "beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    scaled = {scaler_target(d) for d in manifests(label) if scaler_target(d)}
    assert beat["metadata"]["name"] not in scaled


def scaler_target(document: dict) -> str | None:
    if document["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
        return document["spec"]["scaleTargetRef"]["name"]
    return None


@pytest.mark.parametrize("label", LABELS)
def test_autoscaled_deployments_leave_the_replica_count_to_their_scaler(label):
    deployments = {d["metadata"]["name"]: d for d in of_kind(label, "Deployment")}
    targets = [scaler_target(d) for d in manifests(label) if scaler_target(d)]
    assert len(targets) == len(set(targets)), "two scalers fight over one Deployment"
    for target in targets:
        assert "replicas" not in deployments[target]["spec"], target
    for name, deployment in deployments.items():
        if name not in targets:
            assert deployment["spec"]["replicas"] >= 1, name


def test_the_api_scales_on_cpu():
    [hpa] = [d for d in of_kind("default", "HorizontalPodAutoscaler") if component(d) == "api"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


@pytest.mark.parametrize("label", ["multipool", "others"])
def test_keda_scales_each_pool_on_the_lengths_of_its_own_queues(label):
    values = merged_values(label)
    deployments = {d["metadata"]["name"]: d for d in worker_deployments(label)}
    objects = of_kind(label, "ScaledObject")
    assert objects
    for scaled in objects:
        [container] = deployments[scaler_target(scaled)]["spec"]["template"]["spec"]["containers"]
        queues = argument_after(container["command"], "-Q").split(",")
        triggers = scaled["spec"]["triggers"]
        kind = values["keda"]["trigger"]
        assert {trigger["type"] for trigger in triggers} == {kind}
        name_key = "listName" if kind == "redis" else "queueName"
        assert sorted(t["metadata"][name_key] for t in triggers) == sorted(queues)
        if kind == "rabbitmq":
            variables = {item["name"] for item in container["env"]}
            assert {t["metadata"]["hostFromEnv"] for t in triggers} <= variables


def test_a_pool_may_scale_to_zero_with_keda():
    [batch] = [d for d in of_kind("multipool", "ScaledObject") if "batch" in d["metadata"]["name"]]
    assert batch["spec"]["minReplicaCount"] == 0


@pytest.mark.parametrize("label", LABELS)
def test_every_name_the_chart_sets_is_a_setting(label):
    known = settings_variables() | NOT_SETTINGS
    [config] = of_kind(label, "ConfigMap")
    named = set(config["data"])
    for secret in of_kind(label, "Secret"):
        named |= set(secret["data"])
    for _, container in containers(label):
        named |= {item["name"] for item in container.get("env", [])}
    assert named - known == set()
    assert {"REDIS_URL", "MONGODB_URL", "BROKER_URL", "OPENROUTER_API_KEY"} <= named


@pytest.mark.parametrize("label", LABELS)
def test_every_process_reads_the_settings(label):
    values = merged_values(label)
    [config] = of_kind(label, "ConfigMap")
    secrets = of_kind(label, "Secret")
    secret_name = values["secret"]["existingSecret"] or secrets[0]["metadata"]["name"]
    assert bool(secrets) != bool(values["secret"]["existingSecret"])
    for deployment, container in containers(label):
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        references = {item["name"]: item["valueFrom"]["secretKeyRef"]
                      for item in container["env"] if "valueFrom" in item}
        assert set(values["secret"]["values"]) <= set(references), deployment["metadata"]["name"]
        assert {ref["name"] for ref in references.values()} == {secret_name}
        assert all(ref["key"] == name for name, ref in references.items())
        only_flower = "FLOWER_BASIC_AUTH" in references
        assert only_flower == (component(deployment) == "flower")


def test_flower_needs_basic_auth_when_the_chart_makes_the_secret():
    with pytest.raises(TemplateError, match="flower.basicAuth"):
        chart().render({"flower": {"enabled": True}})
    [secret] = of_kind("others", "Secret")
    assert "FLOWER_BASIC_AUTH" in secret["data"]


def test_the_config_map_leaves_empty_settings_to_their_defaults():
    [config] = of_kind("default", "ConfigMap")
    assert all(value != "" for value in config["data"].values())
    assert "COUNCIL_MEMBERS" not in config["data"]
    assert all(isinstance(value, str) for value in config["data"].values())


@pytest.mark.parametrize("label", LABELS)
def test_selectors_pick_their_own_pods(label):
    deployments = of_kind(label, "Deployment")
    selectable = [*of_kind(label, "PodDisruptionBudget"), *of_kind(label, "Service")]
    for selector_of in selectable:
        selector = selector_of["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [d for d in deployments if selector.items()
                   <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matched, f"{selector_of['kind']} {selector_of['metadata']['name']} selects nothing"
        if selector_of["kind"] == "PodDisruptionBudget":
            assert len(matched) == 1, selector_of["metadata"]["name"]
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("label", LABELS)
def test_every_scaled_deployment_has_a_disruption_budget(label):
    budgets = of_kind(label, "PodDisruptionBudget")
    for deployment in of_kind(label, "Deployment"):
        if component(deployment) in ("api", "worker"):
            name = deployment["metadata"]["name"]
            assert name in {b["metadata"]["name"] for b in budgets}, name


@pytest.mark.parametrize("label", LABELS)
def test_workers_get_longer_to_stop_than_the_api(label):
    [api] = [d for d in of_kind(label, "Deployment") if component(d) == "api"]
    api_grace = api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    for deployment in worker_deployments(label):
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > max(api_grace, 30), deployment["metadata"]["name"]


def test_the_pods_run_as_the_image_user():
    uid = int(re.search(r"--uid (\d+)", read("Dockerfile"))[1])
    for deployment in of_kind("default", "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert "/tmp" in mounts, "beat's schedule and gunicorn's heartbeat files live in /tmp"


def test_worker_metrics_are_exposed_and_scraped_when_a_port_is_set():
    for deployment in worker_deployments("multipool"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert {"name": "WORKER_METRICS_PORT", "value": "9808"} in container["env"]
        assert container["ports"] == [{"name": "metrics", "containerPort": 9808,
                                       "protocol": "TCP"}]
    endpoints = [e for m in of_kind("multipool", "ServiceMonitor") for e in m["spec"]["endpoints"]]
    assert {(e["port"], e["path"]) for e in endpoints} == {("http", "/metrics"),
                                                           ("metrics", "/metrics")}


def test_the_chart_readme_explains_every_top_level_value():
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    missing = [key for key in chart().defaults if f"`{key}" not in readme]
    assert not missing, f"helm/llm-council/README.md does not explain {missing}"
