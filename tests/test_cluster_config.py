"""The cluster launcher config validates against the schema the installed ray ships, and
the embed actors are placed on GPUs when the cluster declares them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from actors.pool import CPU_PAGE_BATCH, GPU_PAGE_BATCH, PoolPlan, page_batch, plan_pools

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


def reserved_cpus(plan: PoolPlan) -> float:
    return (
        plan.render_actors * plan.render_cpus
        + plan.analyze_actors * plan.analyze_cpus
        + plan.embed_actors * plan.embed_cpus
        + plan.ontology_cpus
    )


@pytest.mark.parametrize("gpus", [0, 1, 4, 8])
@pytest.mark.parametrize("cpus", [2, 4, 8, 16, 64])
def test_pool_plan_uses_the_whole_cluster(cpus: int, gpus: int) -> None:
    plan = plan_pools(cpus, gpus)
    parser_cpus = plan.render_actors * plan.render_cpus + plan.analyze_actors * plan.analyze_cpus
    # every CPU reserved, but a quarter at most
    assert cpus - 0.25 <= reserved_cpus(plan) <= cpus, plan
    # shares a node of whole CPUs packs: whole, half or quarter CPUs, or whole numbers
    for share in (plan.render_cpus, plan.analyze_cpus, plan.embed_cpus, plan.ontology_cpus):
        assert share in (0.0, 0.25, 0.5) or share == int(share), plan
    if gpus:
        assert plan.embed_actors == gpus  # the embed stage gets every GPU
        assert plan.embed_gpus == 1.0
        assert parser_cpus >= cpus / 2 - 1  # the parsers feed the GPUs
    else:
        assert plan.embed_gpus == 0.0
        assert plan.embed_actors * plan.embed_threads * plan.embed_streams >= 0.75 * cpus
        assert parser_cpus >= 0.5  # always a render and an analyze actor
    assert plan.render_actors >= plan.analyze_actors >= 1
    # every encode stream and parser can have its next batch queued
    parsers = plan.render_actors + plan.analyze_actors
    assert plan.max_batches_in_flight > plan.encode_streams + parsers / 2


@pytest.mark.parametrize(("gpus", "full_batch"), [(0, CPU_PAGE_BATCH), (1, GPU_PAGE_BATCH)])
def test_page_batch_is_full_with_many_documents_and_finer_with_few(
    gpus: int, full_batch: int
) -> None:
    plan = plan_pools(2, gpus)
    streams = plan.encode_streams
    assert page_batch(400, 2 * streams, plan) == full_batch
    # one document: at least two batches per encode stream, never above the full batch
    for pages in (1, 10, 40, 400):
        size = page_batch(pages, 1, plan)
        assert 1 <= size <= full_batch
        assert size == 1 or -(-pages // size) >= 2 * streams


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
