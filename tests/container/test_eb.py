"""The Elastic Beanstalk bundle under a real engine, as the Docker (Amazon Linux 2023)
platform runs it: the leader_only migration command (.platform/scripts/migrate.sh) with the
bundle's django image, then `docker compose up` of the bundle's docker-compose.yml with the
.env EB writes; nginx writes the healthd log for EB's enhanced health as its worker user."""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import Compose, DOCKER, NGINX_IMAGE, PREFIX, PROD_IMAGE, ROOT, http_get, prod_env, wait_until

# What the EB platform has that this machine has not: the bundle's ports and host paths moved
# to the test's own, and health checks every 2 s instead of 30 s (Engine 20.10 has no start
# interval); nothing else of the bundle's file changes.
OVERRIDE = """
services:
  django:
    healthcheck:
      interval: 2s
  nginx:
    ports: !override
      - "127.0.0.1::80"
    volumes: !override
      - ${EB_LOG_BASE_DIR}/nginx:/var/log/nginx
      - ${HEALTHD_DIR}:/var/log/nginx/healthd
    healthcheck:
      interval: 2s
"""


@pytest.fixture
def bundle(tmp_path):
    """The bundle as EB unpacks it: docker-compose.yml with the images pinned (bin/deploy
    pins registry digests; these local images have none, so their tags stand in), the
    .ebextensions and .platform, a get-config that answers the environment properties."""
    root = tmp_path / "staging"
    root.mkdir()
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    doc["services"]["django"]["image"] = PROD_IMAGE
    doc["services"]["nginx"]["image"] = NGINX_IMAGE
    (root / "docker-compose.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copytree(ROOT / ".ebextensions", root / ".ebextensions")
    shutil.copytree(ROOT / ".platform", root / ".platform")
    (root / "override.yml").write_text(OVERRIDE)
    properties = dict(prod_env(), ENV_DEBUG="false", ENV_LOG_LEVEL="INFO")
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
    get_config = tmp_path / "get-config"
    get_config.write_text(f"#!/bin/sh\n[ \"$1\" = environment ] && cat '{tmp_path}/properties.json'\n")
    get_config.chmod(0o755)
    (tmp_path / "properties.json").write_text(json.dumps(properties))
    return root, properties


def migrate(root, tmp_path, properties):
    (tmp_path / "properties.json").write_text(json.dumps(properties))
    env = {"PATH": os.environ["PATH"], "DOCKER": " ".join(DOCKER),
           "EB_GET_CONFIG": str(tmp_path / "get-config")}
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    return subprocess.run(["bash", ".platform/scripts/migrate.sh", "docker-compose.yml"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)


def test_leader_only_migration_runs_in_the_bundles_image(bundle, tmp_path):
    root, properties = bundle
    # The command .ebextensions/10_migrate.config gives EB.
    config = yaml.safe_load((root / ".ebextensions/10_migrate.config").read_text())
    assert config["container_commands"]["01_migrate"]["command"].startswith("bash .platform/scripts/migrate.sh")
    result = migrate(root, tmp_path, properties)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Applying auth.0001_initial... OK" in result.stdout, result.stdout
    assert f"running the migrations of {PROD_IMAGE}" in result.stderr
    # A database that does not answer (nothing listens in the container) fails the command,
    # and with it the deployment.
    result = migrate(root, tmp_path, dict(
        properties, DATABASE_URL="postgres://app:x@127.0.0.1:5432/app?connect_timeout=3"))
    assert result.returncode != 0 and "the migrations failed" in result.stderr, result.stderr


def test_bundle_compose_serves_and_writes_the_healthd_log(bundle, tmp_path):
    root, _ = bundle
    healthd = tmp_path / "healthd"  # created by docker, root-owned, as on the instance
    project = f"{PREFIX}-eb"
    env = {"PATH": os.environ["PATH"], "EB_LOG_BASE_DIR": str(tmp_path / "eb-logs"),
           "HEALTHD_DIR": str(healthd)}
    compose = Compose(project, ["docker-compose.yml", "override.yml"], root, env)
    try:
        compose.up()
        port = compose("port", "nginx", "80").stdout.strip().rpartition(":")[2]
        status, _, body = http_get(f"http://127.0.0.1:{port}/", headers={"Host": "localhost"})
        assert status == 200 and b"procrun reference app" in body, body
        # nginx logs a request after it has answered it: wait for the line.
        def logged():
            files = sorted(healthd.glob("application.log.*"))
            return files and re.search(r'^\d+\.\d+"/"200"', files[-1].read_text(), re.M)
        wait_until(logged, 20, f"the request in the healthd log in {healthd}")
        nginx_logs = compose("logs", "--no-color", "nginx").stdout
        assert "Permission denied" not in nginx_logs and "[crit]" not in nginx_logs, nginx_logs
        # The containers run the web process only: the migration was the leader's job.
        django_logs = compose("logs", "--no-color", "django").stdout
        assert "release.1" not in django_logs and "web.1 started" in django_logs, django_logs
    finally:
        compose.down()
