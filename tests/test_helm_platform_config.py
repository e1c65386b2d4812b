"""The platform ConfigMap is a valid simplear.platform.config.PlatformConfig that says what the values say."""

from __future__ import annotations

import json

import pytest
from helpers import CUSTOM_POOLS, NAMESPACE, VALUE_SETS, objects, one
from pydantic import ValidationError

from simplear.config import PRESETS
from simplear.platform.config import NodePool, PlatformConfig


def platform_config(value_set: str) -> PlatformConfig:
    """The PlatformConfig pipeline components would read for the value set."""
    config_map = one(objects(value_set), "ConfigMap", "simplear-platform")
    return PlatformConfig.model_validate(json.loads(config_map["data"]["platform.json"]))


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_config_map_validates_against_platform_config(value_set: str) -> None:
    """Every value set yields a config the typed model accepts, all five pools and known presets included."""
    config = platform_config(value_set)
    assert set(config.pools) == {"tokenize", "train", "rollout", "serve", "cpu"}
    assert set(config.presets) <= set(PRESETS)


def test_defaults_point_at_the_bundled_minio_and_the_generated_secret() -> None:
    """Default install: MinIO's Service over HTTP, the chart's Secret, the default buckets and images."""
    config = platform_config("default")
    assert config.store_endpoint == f"simplear-minio.{NAMESPACE}.svc:9000"
    assert config.store_secure is False
    assert config.store_secret == "simplear-store"
    assert (config.data_bucket, config.checkpoint_bucket) == ("simplear-data", "simplear-checkpoints")
    assert config.images.train == "ghcr.io/simplear/simplear-train:0.1.0"
    assert config.presets == ("tiny", "0.5B", "1.5B")


def test_external_store_settings_reach_the_config() -> None:
    """External S3: its endpoint over HTTPS, the existing Secret and the chosen bucket names."""
    config = platform_config("external-s3")
    assert config.store_endpoint == "s3.eu-west-1.amazonaws.com"
    assert config.store_secure is True
    assert config.store_secret == "aws-s3-credentials"
    assert (config.data_bucket, config.checkpoint_bucket) == ("acme-simplear-data", "acme-simplear-checkpoints")


def test_existing_secret_with_minio_is_the_configured_secret() -> None:
    """MinIO with an existing Secret: components read that Secret."""
    assert platform_config("minio-existing-secret").store_secret == "team-minio-root"


def test_image_pull_secrets_reach_the_config_and_the_pipeline_service_account() -> None:
    """Stage pods read the registry Secrets from the config; component pods get them from their ServiceAccount."""
    assert platform_config("custom-pools").images.pull_secrets == ("registry-credentials",)
    assert platform_config("default").images.pull_secrets == ()
    account = one(objects("custom-pools"), "ServiceAccount", "simplear-pipeline")
    assert account["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert "imagePullSecrets" not in one(objects("default"), "ServiceAccount", "simplear-pipeline")


def test_custom_pools_arrive_unchanged() -> None:
    """Each custom pool is the NodePool the values describe (numbers given as integers become strings)."""
    config = platform_config("custom-pools")
    for name, pool in CUSTOM_POOLS.items():
        expected = NodePool.model_validate({**pool, "cpu": str(pool["cpu"]), "affinity": pool["affinity"] or None})
        assert config.pools[name] == expected, name


def test_the_model_would_refuse_a_config_missing_a_pool() -> None:
    """The check above is not vacuous: PlatformConfig refuses a config without the rollout pool."""
    config_map = one(objects("default"), "ConfigMap", "simplear-platform")
    data = json.loads(config_map["data"]["platform.json"])
    del data["pools"]["rollout"]
    with pytest.raises(ValidationError, match="rollout"):
        PlatformConfig.model_validate(data)
