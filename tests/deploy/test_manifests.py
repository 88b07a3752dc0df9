"""The Kubernetes manifests, rendered by kustomize and checked offline.

Every object ``kubectl kustomize`` renders from deploy/k8s is validated against the schemas of a
current Kubernetes release that the ``kubernetes-validate`` package ships (strict: an unknown or
misspelt field fails, as the API server would reject it). The ServiceMonitor is a Prometheus
Operator CRD, for which no core schema exists: the test asserts that the validator says so, then
checks what matters about it (it selects the Service and names one of its ports) by hand.
Beyond the schema, the tests check what the schema cannot: probes on the right routes, sized
resources, non-root with a read-only root, a grace period longer than the shutdown it covers,
and an HPA, a PDB and a Service that all point at the Deployment's pods. The settings ConfigMap
is fed to a real Gunicorn, which must start and answer the probes' routes.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kv

from tests.server import REPO_ROOT, running_server

K8S = REPO_ROOT / "deploy" / "k8s"
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None,
                                reason="kubectl is not installed (it renders the kustomizations)")
# The newest release the validator ships, and an older one still in wide use.
VERSIONS = (kv.latest_version(), "1.30")
MiB = 2**20


def render(path: Path) -> list[dict]:
    done = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def only(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def quantity_bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    return int(value)


def quantity_cpus(value: str) -> float:
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return render(K8S / "base")


@pytest.fixture(scope="module")
def monitored() -> list[dict]:
    return render(K8S / "overlays" / "monitored")


@pytest.fixture(scope="module")
def locust() -> list[dict]:
    return render(K8S / "locust")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kustomization", ["base", "overlays/monitored", "locust"])
def test_every_object_is_valid_for_the_kubernetes_schema(kustomization: str,
                                                         version: str) -> None:
    objects = render(K8S / kustomization)
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            # A CRD: no core schema, and the validator must say so rather than pass it.
            with pytest.raises(kv.SchemaNotFoundError):
                kv.validate(obj, version, strict=True)
            continue
        kv.validate(obj, version, strict=True)


def test_the_validator_rejects_a_broken_deployment(base: list[dict]) -> None:
    """The control: the same validation fails a misspelt field and a wrongly typed one."""
    broken = copy.deepcopy(only(base, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)
    broken = copy.deepcopy(only(base, "Deployment"))
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "forty"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)


def test_the_base_has_deployment_service_hpa_pdb_and_settings(base: list[dict]) -> None:
    kinds = sorted(o["kind"] for o in base)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "Service"]


def test_probes_point_at_the_service_routes(base: list[dict]) -> None:
    container = only(base, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] in ("/health", "/ready")
    # Start-up may take ~20 s on a busy machine (docs/deployment.md): allow well over that.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names


def test_container_starts_like_make_serve_and_sizes_workers_by_cpu(base: list[dict]) -> None:
    container = only(base, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    # No command/args: the image's CMD, which tests/service/test_container_files.py ties to
    # `make serve`, runs.
    assert "command" not in container and "args" not in container
    env = {e["name"]: e for e in container["env"]}
    ref = env["WEB_CONCURRENCY"]["valueFrom"]["resourceFieldRef"]
    assert ref["containerName"] == container["name"]
    assert ref["resource"] in ("requests.cpu", "limits.cpu")
    assert ref["divisor"] == "1"


def test_resources_fit_the_measured_memory_of_the_workers(base: list[dict]) -> None:
    container = only(base, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert {"cpu", "memory"} <= set(requests) and {"cpu", "memory"} <= set(limits)
    workers = quantity_cpus(requests["cpu"])
    assert workers >= 1
    # Measured (docs/deployment.md): a worker ~175 MiB, the master ~30 MiB.
    assert quantity_bytes(requests["memory"]) >= workers * 175 * MiB + 30 * MiB
    assert quantity_bytes(limits["memory"]) >= quantity_bytes(requests["memory"])
    assert quantity_cpus(limits["cpu"]) >= workers


def test_runs_as_non_root_on_a_read_only_root_with_a_writable_tmp(base: list[dict]) -> None:
    pod = only(base, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TMPDIR"] == "/tmp"


def test_grace_period_covers_the_pre_stop_pause_and_the_graceful_timeout(
        base: list[dict]) -> None:
    pod = only(base, "Deployment")["spec"]["template"]["spec"]
    settings = only(base, "ConfigMap")
    container = pod["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]
    pause = (int(pre_stop["exec"]["command"][-1]) if "exec" in pre_stop
             else pre_stop["sleep"]["seconds"])
    assert pause >= 5
    assert pod["terminationGracePeriodSeconds"] > pause + int(settings["data"]["GRACEFUL_TIMEOUT"])
    # The settings reach the container under the name kustomize generated (with its hash).
    assert container["envFrom"] == [{"configMapRef": {"name": settings["metadata"]["name"]}}]


def test_service_hpa_and_pdb_all_target_the_deployment(base: list[dict]) -> None:
    deployment = only(base, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    service = only(base, "Service")
    assert selects(service["spec"]["selector"], pod_labels)
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}

    hpa = only(base, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    # The HPA owns the replica count.
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    pdb = only(base, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_service_monitor_scrapes_the_service_metrics_port(monitored: list[dict]) -> None:
    service = only(monitored, "Service")
    monitor = only(monitored, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


def test_locust_workers_find_the_master_and_the_locustfile(locust: list[dict]) -> None:
    deployments = {d["metadata"]["name"]: d for d in by_kind(locust, "Deployment")}
    master_service = only(locust, "Service")
    master_pod = deployments["locust-master"]["spec"]["template"]
    assert selects(master_service["spec"]["selector"], master_pod["metadata"]["labels"])
    assert 5557 in {p["port"] for p in master_service["spec"]["ports"]}
    worker = deployments["locust-worker"]["spec"]["template"]["spec"]["containers"][0]
    args = worker["args"]
    assert "--worker" in args
    assert args[args.index("--master-host") + 1] == master_service["metadata"]["name"]
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        locustfile = Path(container["args"][container["args"].index("-f") + 1])
        mount = next(m for m in container["volumeMounts"] if m["name"] == "locustfile")
        items = next(v for v in pod["volumes"] if v["name"] == "locustfile")["configMap"]["items"]
        paths = {Path(mount["mountPath"]) / item["path"] for item in items}
        # The locustfile and the profile it reads from load/ beside itself, as in the repo.
        assert locustfile in paths
        assert locustfile.parent / "load" / "traffic_profile.json" in paths
        for item in items:
            assert (REPO_ROOT / ("load/" if item["key"].endswith(".json") else "")
                    / item["key"]).is_file()
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])


@pytest.mark.server
def test_the_settings_config_map_starts_a_real_server(base: list[dict], tiny_model_dir: Path,
                                                      tmp_path: Path) -> None:
    """The ConfigMap's values are what the pods get: a bad one would stop start-up."""
    settings = only(base, "ConfigMap")["data"]
    with running_server(tiny_model_dir, tmp_path, workers=2,
                        env={**settings, "TMPDIR": str(tmp_path)}) as server:
        for route in ("/health", "/ready"):
            with urllib.request.urlopen(server.url + route, timeout=5) as response:
                assert response.status == 200
