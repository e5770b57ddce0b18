"""The dev image (docker/django/dev/Dockerfile): procrun runs environments/dev/Procfile,
runserver_plus (web) and the CDN emulation (cdn), chosen by ENV_NAME=dev."""
import os
import re
import shutil
import time

from conftest import Compose, DEV_IMAGE, PREFIX, ROOT, answers, docker, http_get, wait_until


def test_dev_image_runs_the_dev_procfile(containers, network):
    container = containers("dev")
    # What a developer does: environments/dev/.env made from the example (compose env_file).
    container.run(DEV_IMAGE, network=network, ports=[8080, 8010],
                  env_file=ROOT / "environments/dev/.env.example")
    container.wait_healthy(120)
    assert container.inspect("{{.Config.User}}") == "10001:10001"
    environ = container.exec("cat", "/proc/1/environ").stdout.split("\0")
    assert "ENV_NAME=dev" in environ
    assert container.exec("cat", "/proc/1/cmdline").stdout.split("\0")[:2] == ["procrun", "start"]

    # The cdn process collects the static files, then serves them.
    css = (ROOT / "app/static/css/app.css").read_bytes()
    wait_until(lambda: answers(container.url(8010, "/css/app.css")), 60, "the cdn process")
    status, _, body = http_get(container.url(8010, "/css/app.css"))
    assert status == 200 and body == css
    # runserver_plus serves the page, whose static URL points at the CDN.
    status, _, body = http_get(container.url(8080, "/"))
    assert status == 200 and b"//localhost:8010/css/app.css" in body, body

    logs = container.logs()
    for name in ("web.1", "cdn.1"):
        assert re.search(rf"^\d\d:\d\d:\d\d {re.escape(name)} +\| ", logs, re.M), logs
    assert "Running on" in logs  # Werkzeug's banner: runserver_plus, not runserver
    names = {p[4] for p in container.processes()}
    assert "python" in names or any(n.startswith("python") for n in names), names

    began = time.monotonic()
    docker("stop", "-t", "15", container.name, timeout=60)
    took = time.monotonic() - began
    assert container.exit_code() == 143, container.logs()[-3000:]
    assert took < 8, took


def test_dev_compose_runs_as_the_developers_uid(tmp_path):
    """docker/django/dev/docker-compose.yml as bin/stevedore runs it on Linux: no .env, the
    container as the developer's uid (DEV_UID/DEV_GID), app/ bind-mounted. What the app
    writes there (the cdn's collected files, the SQLite database of the release phase)
    belongs to the developer, and the developer's files are writable for the app."""
    uid = 4242
    tree = tmp_path / "tree"
    for name in ("docker", "environments", "app"):
        shutil.copytree(ROOT / name, tree / name,
                        ignore=shutil.ignore_patterns(".env", "dist", "db.sqlite3", "__pycache__"))
    for path in [tree / "app", *(tree / "app").rglob("*")]:
        os.chown(path, uid, uid)
    project = f"{PREFIX}-dev-compose"
    env = {"PATH": os.environ["PATH"], "DEV_IMAGE": DEV_IMAGE, "DEV_UID": str(uid), "DEV_GID": str(uid),
           "DEV_WEB_PORT": "127.0.0.1:", "DEV_CDN_PORT": "127.0.0.1:"}
    compose = Compose(project, ["docker/django/dev/docker-compose.yml"], tree, env)
    try:
        compose.up()
        web = compose("port", "django", "8080").stdout.strip().rpartition(":")[2]
        cdn = compose("port", "django", "8010").stdout.strip().rpartition(":")[2]
        status, _, body = http_get(f"http://127.0.0.1:{web}/")
        assert status == 200 and b"//localhost:8010/css/app.css" in body, body
        wait_until(lambda: answers(f"http://127.0.0.1:{cdn}/css/app.css"), 60, "the cdn process")
        for made in (tree / "app/dist/css/app.css", tree / "app/db.sqlite3"):
            assert made.is_file(), made
            assert (made.stat().st_uid, made.stat().st_gid) == (uid, uid), made
        status = compose("exec", "-T", "django", "cat", "/proc/1/status").stdout
        assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), status
    finally:
        compose.down()
