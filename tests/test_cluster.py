"""Where trials run, tested without GPUs or a second machine: fractional GPUs that Ray is told exist,
and a two-node Ray cluster on loopback logging through a real MLflow server, as a cluster would."""

import pytest
import os
import subprocess
import sys
from pathlib import Path

import ray
import yaml
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster
from typer.testing import CliRunner

from ablation.cli.main import app

# Real studies under Ray. They run beside other tests: a cluster here writes its address where a bare
# `ray.init()` would find and join it, and neither the driver (`address="local"`) nor these tests call one.
pytestmark = pytest.mark.slow


def spec_file(tmp_path: Path, placements: list[str], **resources) -> Path:
    spec = {
        "name": "where",
        "model": {"arch": "resnet18", "attention": "identity_cbam"},
        "data": {"image_size": 32, "train_per_class": 8, "val_per_class": 4, "test_per_class": 4},
        "train": {"epochs": 1, "batch_size": 16},
        "search": {"space": {"model.placement": placements}, "seeds": [0]},
        "resources": {"cpu": 1, **resources},
    }
    path = tmp_path / "where.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def trial_tags(uri: str) -> list[dict[str, str]]:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("where").experiment_id])
    return [r.data.tags for r in runs if r.data.tags.get("ablate.kind") == "trial" and r.info.status == "FINISHED"]


def test_two_half_gpu_trials_share_one_device_and_train_on_the_cpu_without_cuda(tmp_path, own_ray):
    # A GPU in name only.
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        result = CliRunner().invoke(app, ["run", str(spec_file(tmp_path, ["none", "layer4"], gpu=0.5)),
                                          "--tracking-uri", uri, "--storage", str(tmp_path / "runs")])
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    tags = trial_tags(uri)
    assert [t["ablate.gpu_ids"] for t in tags] == ["0", "0"]  # both trials were given the one device
    assert [t["ablate.device"] for t in tags] == ["cpu", "cpu"]  # and, without CUDA, fell back to the CPU


def test_a_trial_asking_for_more_gpus_than_the_cluster_has_is_refused_before_anything_runs(tmp_path, own_ray):
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        result = CliRunner().invoke(app, ["run", str(spec_file(tmp_path, ["none"], gpu=2)), "--tracking-uri",
                                          f"sqlite:///{tmp_path / 'mlflow.db'}"])
    finally:
        ray.shutdown()
    assert result.exit_code == 2 and "resources.gpu" in result.output


def test_a_study_on_a_two_node_cluster_lands_on_both_nodes_and_logs_through_the_server(tmp_path, mlflow_server,
                                                                                      own_ray):
    url, served = mlflow_server
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    nodes = {node.node_id for node in cluster.list_all_nodes()}
    # The driver is a process of its own, as on a real cluster. Ray turns a loopback address into the
    # machine's outward one unless told the cluster is loopback-only, which this variable does.
    env = os.environ | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    try:
        driver = subprocess.run(
            [sys.executable, "-m", "ablation.cli", "run", str(spec_file(tmp_path, ["none", "layer2", "layer3", "layer4"])),
             "--address", cluster.address, "--tracking-uri", url, "--storage", str(tmp_path / "shared-runs")],
            capture_output=True, text=True, timeout=300, env=env)
    finally:
        cluster.shutdown()
    assert driver.returncode == 0, driver.stdout + driver.stderr
    tags = trial_tags(url)
    assert len(tags) == 4
    assert {t["ablate.node_id"] for t in tags} == nodes and len(nodes) == 2  # trials ran on both nodes
    assert list(served.rglob("spec.yaml"))  # the study's artifacts went through the server


def test_a_job_on_a_cluster_imports_ablate_from_the_package_it_ships(own_ray):
    """A cluster's workers need ablate's dependencies, not ablate: the driver ships the `ablation` package
    with its job, and the workers import it from there before any installed copy."""
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    script = ("import sys, ray\nfrom ablation.driver import cluster\ncluster.connect(sys.argv[1])\n"
              "print(ray.get(ray.remote(lambda: __import__('ablation').__file__).remote()))")
    try:
        driver = subprocess.run([sys.executable, "-c", script, cluster.address], capture_output=True, text=True,
                                timeout=120, env=os.environ | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    finally:
        cluster.shutdown()
    assert driver.returncode == 0, driver.stdout + driver.stderr
    imported = Path(driver.stdout.split()[-1])
    assert imported.parts[-2:] == ("ablation", "__init__.py") and "runtime_resources" in imported.parts


def test_a_cluster_study_refuses_a_local_sqlite_store_before_starting(tmp_path):
    result = CliRunner().invoke(app, ["run", str(spec_file(tmp_path, ["none"])), "--address", "127.0.0.1:1",
                                      "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert result.exit_code == 2 and "cannot write to it" in " ".join(result.output.split())
    assert not (tmp_path / "mlflow.db").exists()


def test_a_trial_needing_more_memory_than_any_node_offers_is_refused_before_anything_runs(tmp_path, mlflow_server,
                                                                                       own_ray):
    """On a cluster each trial asks Ray for the memory it needs, so Ray schedules by memory, not by CPUs alone;
    one that no node can hold would wait for ever, so it is refused."""
    url, _ = mlflow_server
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False, "memory": 512 * 2**20})
    env = os.environ | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    try:
        driver = subprocess.run(
            [sys.executable, "-m", "ablation.cli", "run", str(spec_file(tmp_path, ["layer4"])), "--address",
             cluster.address, "--tracking-uri", url, "--storage", str(tmp_path / "shared-runs")],
            capture_output=True, text=True, timeout=300, env=env)
    finally:
        cluster.shutdown()
    said = " ".join((driver.stdout + driver.stderr).split())
    assert driver.returncode == 2, said
    assert "a trial needs about 1.0 GB of memory, and the largest node of the Ray cluster offers 0.5 GB" in said
    assert not trial_tags(url)


def test_without_address_a_study_starts_its_own_ray_even_beside_one_that_ray_start_left_running(tmp_path, own_ray):
    """`ray.init()` joins a Ray it finds on this machine and then refuses the CPUs it was given: before, a
    researcher with `ray start --head` running got that ValueError's traceback from `ablate run`."""
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    try:
        driver = subprocess.run(
            [sys.executable, "-m", "ablation.cli", "run", str(spec_file(tmp_path, ["layer4"])), "--tracking-uri",
             f"sqlite:///{tmp_path / 'mlflow.db'}", "--storage", str(tmp_path / "runs")],
            capture_output=True, text=True, timeout=300)
    finally:
        cluster.shutdown()
    assert driver.returncode == 0, driver.stdout + driver.stderr
    assert len(trial_tags(f"sqlite:///{tmp_path / 'mlflow.db'}")) == 1
