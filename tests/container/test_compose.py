"""docker/django/prod/docker-compose.yml as shipped: nginx in front of gunicorn under procrun.
`up --wait` brings both up healthy with the file's own health-check timing (after the
release phase migrated the SQLite volume), nginx serves a page (from Django) and a static
file (baked into its image) under its content-hashed name, passes on the scheme a client on
the Docker network (a private range, like the load balancer's) tells it, and `down` stops
both gracefully."""
import json
import re
import shutil
import time

import pytest

from conftest import (Compose, NGINX_IMAGE, PREFIX, PROD_IMAGE, ROOT, docker, http_get,
                      prod_env)

COMPOSE_FILE = "docker/django/prod/docker-compose.yml"


def repo_and_tag(image):
    repo, _, tag = image.rpartition(":")
    return repo, tag


@pytest.fixture
def stack(tmp_path):
    """A copy of the files the compose file refers to, with environments/prod/.env made
    from the example (the repository's own .env, if any, is never touched)."""
    tree = tmp_path / "tree"
    for name in ("docker", "environments"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns(".env"))
    env_lines = [line for line in (tree / "environments/prod/.env.example").read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
    values = dict(line.split("=", 1) for line in env_lines)
    values.update(prod_env())
    (tree / "environments/prod/.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    django_repo, django_tag = repo_and_tag(PROD_IMAGE)
    nginx_repo, nginx_tag = repo_and_tag(NGINX_IMAGE)
    assert django_tag == nginx_tag
    project = f"{PREFIX}-compose"
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "IMAGE_REPO": django_repo,
        "NGINX_IMAGE_REPO": nginx_repo,
        "IMAGE_TAG": django_tag,
        "HTTP_PORT": "127.0.0.1:",  # -> 127.0.0.1::80, an ephemeral port on loopback
    }
    compose = Compose(project, [COMPOSE_FILE], tree, env)
    try:
        yield compose
    finally:
        compose.down()


def test_compose_up_serves_through_nginx_and_down_is_graceful(stack):
    stack.up(wait=180)
    out = stack("ps", "--format", "json").stdout.strip()
    # One JSON object per line (Compose >= 2.21) or one array (older releases).
    ps = json.loads(out) if out.startswith("[") else [json.loads(l) for l in out.splitlines()]
    health = {c["Service"]: c.get("Health") for c in ps}
    assert health == {"django": "healthy", "nginx": "healthy"}, ps
    port = stack("port", "nginx", "80").stdout.strip().rpartition(":")[2]
    base = f"http://127.0.0.1:{port}"

    status, headers, body = http_get(f"{base}/", headers={"Host": "localhost"})
    assert status == 200 and b"procrun reference app" in body, (status, body)
    assert headers["Server"] == "nginx"
    css = re.search(rb'href="(/static/css/app\.[0-9a-f]{12}\.css)"', body).group(1).decode()
    status, headers, body = http_get(f"{base}{css}")
    assert status == 200 and body == (ROOT / "app/static/css/app.css").read_bytes()
    assert headers["Cache-Control"] == "public, max-age=31536000", headers
    status, headers, _ = http_get(f"{base}/static/css/app.css")
    assert status == 200 and headers["Cache-Control"] == "public, max-age=3600", headers
    status, _, body = http_get(f"{base}/health", headers={"Host": "10.0.0.1"})
    assert status == 200 and body.startswith(b"ok pid="), body
    # Requests reach nginx from the Docker network's gateway, a private address like the
    # load balancer's: its X-Forwarded-Proto is believed (loopback's is not: tests/deploy).
    _, _, body = http_get(f"{base}/", headers={"Host": "localhost", "X-Forwarded-Proto": "https"})
    assert b'rel="canonical" href="https://localhost/"' in body, body
    _, _, body = http_get(f"{base}/", headers={"Host": "localhost"})
    assert b'rel="canonical" href="http://localhost/"' in body, body

    nginx_logs = stack("logs", "--no-color", "nginx").stdout
    assert "Permission denied" not in nginx_logs and "[crit]" not in nginx_logs, nginx_logs
    django_logs = stack("logs", "--no-color", "django").stdout
    assert "Traceback" not in django_logs, django_logs
    assert "release.1 stopped (rc=0)" in django_logs, django_logs

    since = time.time() - 1
    began = time.monotonic()
    stack("down", timeout=90)
    took = time.monotonic() - began
    events = docker("events", "--since", str(int(since)), "--until", str(int(time.time()) + 1),
                    "--filter", "event=die",
                    "--filter", f"label=com.docker.compose.project={stack.project}",
                    "--format", '{{index .Actor.Attributes "com.docker.compose.service"}} '
                                '{{.Actor.Attributes.exitCode}}', timeout=30).stdout
    exits = dict(line.split() for line in events.splitlines())
    # procrun ends on SIGTERM with 143; nginx's graceful stop (SIGQUIT) exits 0.
    assert exits == {"django": "143", "nginx": "0"}, events
    assert took < 20, took
