"""The cluster launcher config validates against the schema the installed ray ships, and
the embed actors are placed on GPUs when the cluster declares them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from actors.pool import plan_pools

ROOT = Path(__file__).resolve().parent.parent


def test_ray_cluster_yaml_validates_against_rays_schema() -> None:
    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    config = yaml.safe_load((ROOT / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    from ray.autoscaler._private.util import validate_config

    validate_config(config)
    types = config["available_node_types"]
    assert types["gpu_worker"]["resources"]["GPU"] >= 1
    assert config["head_node_type"] == "head"
    assert any("indexer head" in command for command in config["head_start_ray_commands"])


def test_invalid_config_is_rejected() -> None:
    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    config = yaml.safe_load((ROOT / "ray-cluster.yaml").read_text())
    config["max_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, json.loads(schema_path.read_text()))


def test_pool_plan_fits_the_cluster() -> None:
    for cpus, gpus in [(1, 0), (2, 0), (4, 0), (16, 0), (64, 0), (16, 4), (2, 1)]:
        plan = plan_pools(cpus, gpus)
        reserved = (
            plan.render_actors * plan.render_cpus
            + plan.analyze_actors * plan.analyze_cpus
            + plan.embed_actors * plan.embed_cpus
            + plan.ontology_cpus
        )
        assert reserved <= max(cpus, 1), (cpus, gpus, plan)
        assert plan.embed_actors * plan.embed_gpus <= gpus
        assert (plan.embed_gpus == 1) == (gpus >= 1)
        # every encode stream and parser can have its next batch queued
        parsers = plan.render_actors + plan.analyze_actors
        assert plan.max_batches_in_flight > plan.encode_streams + parsers


@pytest.fixture
def ray_with_a_gpu():
    """A local Ray that declares one GPU on this CPU-only machine."""
    from cluster.ray_runtime import connect_ray

    connect_ray(None, num_cpus=2, num_gpus=1)
    yield
    ray.shutdown()


def test_embed_actor_takes_the_gpu_and_falls_back_to_cpu(ray_with_a_gpu, settings) -> None:
    from actors.embed_pool import embed_pool

    plan = plan_pools(2, 1)
    [actor] = embed_pool(settings, plan)
    described = ray.get(actor.describe.remote(), timeout=120)
    assert described["gpuIds"] == [0]  # Ray placed it on the declared GPU
    assert described["device"] == "cpu"  # no CUDA here: the same code runs on the CPU
    assert described["dimensions"] == 384
    assert ray.available_resources().get("GPU", 0) == 0
    ray.kill(actor)
