"""The reference stack for real, without Docker: procrun supervising the prod Procfile
(gunicorn) behind Debian's nginx, and the dev Procfile (runserver_plus with its reloader,
http.server as the CDN), all on loopback ports chosen at random."""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from conftest import (
    ROOT, Supervised, child_env, copy_app_tree, free_port, http_get, kill_all, make_workdir,
    need_procrun, new_token, port_accepts, processes_of, read_dotenv_example, run, tool, wait_until,
    write_dotenv,
)
from test_offline import nginx_command, render_nginx

PREFIX = re.compile(r"^\d\d:\d\d:\d\d (\S+)\s*\| ")


def lines_of(stack, name):
    """Text of the lines procrun prefixed with `name` (e.g. web.1)."""
    out = []
    for line in stack.lines:
        match = PREFIX.match(line)
        if match and match.group(1) == name:
            out.append(line[match.end():])
    return "\n".join(out)


class InFlight(threading.Thread):
    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.result, self.error = url, None, None

    def run(self):
        try:
            self.result = http_get(self.url, timeout=60)
        except Exception as error:  # noqa: BLE001 - reported by the test
            self.error = error


@pytest.fixture
def workdir():
    path = make_workdir("procrun-deploy-")
    token = new_token()
    yield path, token
    kill_all(token, path)
    shutil.rmtree(path, ignore_errors=True)


def collectstatic(app_root, env):
    run([sys.executable, "app/manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=app_root, env=env, timeout=60, check=True)


@pytest.mark.timeout(150)
def test_prod_stack_gunicorn_behind_nginx(workdir):
    procrun = need_procrun()
    root, token = workdir
    copy_app_tree(root)
    web_port, http_port = free_port(), free_port()
    write_dotenv(root / "environments/prod/.env.example", root / "environments/prod/.env", {
        "ENV_SECRET_KEY": secrets.token_urlsafe(50),
        "ENV_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ENV_SECURE_COOKIES": "false",
        "ENV_TEST_VIEWS": "true",
        "WEB_CONCURRENCY": "2",
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(web_port),
        # The image has it at /etc/gunicorn/; outside a container the Procfile takes an override.
        "GUNICORN_CONF": str(root / "docker/django/prod/gunicorn.conf.py"),
    })
    env = child_env(token, PROCRUN_TIMEOUT="20")
    collectstatic(root, dict(env, ENV_SECRET_KEY="collectstatic-only"))
    assert (root / "app/dist/css/app.css").is_file()

    conf_dir = render_nginx(root, f"127.0.0.1:{web_port}", f"127.0.0.1:{http_port}", root / "app/dist")
    nginx = Supervised([*nginx_command(conf_dir, " daemon off;")], cwd=root, env=env, name="nginx")
    # The honcho form of start.sh, as the original image ran it.
    stack = Supervised(
        [procrun, "--procfile", "environments/prod/Procfile", "--env", "environments/prod/.env", "start"],
        cwd=root, env=env, name="procrun",
    )
    try:
        stack.wait_for_line(rf"Listening at: http://127\.0\.0\.1:{web_port}", timeout=40)
        wait_until(lambda: port_accepts(http_port), 20, f"nginx on {http_port}")
        base = f"http://127.0.0.1:{http_port}"

        status, headers, body = http_get(f"{base}/health")
        assert status == 200 and body.startswith(b"ok"), (status, body)
        assert headers["Server"] == "nginx"
        # A load balancer's Host header (an instance IP) must not trip ALLOWED_HOSTS.
        status, _, _ = http_get(f"{base}/health", headers={"Host": "10.1.2.3"})
        assert status == 200

        status, headers, body = http_get(f"{base}/static/css/app.css")
        assert status == 200
        assert body == (root / "app/static/css/app.css").read_bytes()
        assert "max-age=31536000" in headers["Cache-Control"]

        status, _, body = http_get(f"{base}/")
        assert status == 200 and b"/static/css/app.css" in body
        # Elastic Beanstalk's enhanced health format, written after the response.
        healthd = wait_until(lambda: list((conf_dir / "logs/healthd").glob("application.log.*")),
                             10, "the healthd log")
        wait_until(lambda: re.search(r'^\d+\.\d+"/"200"', healthd[0].read_text(), re.M),
                   10, "a healthd line for /")

        # The images' HEALTHCHECK: procrun probe, healthy then unhealthy (asserted at the end).
        probe_up = run([procrun, "probe", f"http://127.0.0.1:{web_port}/health"], cwd=root, env=env, timeout=30)
        probe_down = run([procrun, "probe", f"http://127.0.0.1:{free_port()}/health"], cwd=root, env=env, timeout=30)

        # A request in flight when the container is stopped must complete.
        slow = InFlight(f"{base}/slow?seconds=3")
        slow.start()
        stack.wait_for_line(r"slow request: sleeping 3\.0 s", timeout=20)
        os.kill(stack.proc.pid, signal.SIGTERM)
        rc = stack.wait(timeout=40)
        slow.join(timeout=30)
        assert slow.error is None, slow.error
        assert slow.result[0] == 200 and slow.result[2] == b"slept 3.0\n", slow.result
        assert rc == 143, f"procrun exited {rc}\n{stack.output()}"

        web = lines_of(stack, "web.1")
        assert "Starting gunicorn" in web and "Booting worker" in web, stack.output()
        assert re.search(r"^\d\d:\d\d:\d\d system\s*\| web\.1 started \(pid=\d+\)", stack.output(), re.M)
        left = [p for p in processes_of(token) if p[0] != nginx.proc.pid]
        left = [p for p in left if "nginx" not in p[1]]
        assert left == [], f"processes left behind: {left}"
        assert probe_up.returncode == 0, f"probe of a healthy /health: {probe_up}"
        assert probe_down.returncode == 1, f"probe of a closed port: {probe_down}"
    finally:
        print("---- procrun output\n" + stack.output() + "\n---- nginx output\n" + nginx.output())
        stack.stop()
        nginx.stop(signal.SIGQUIT)


@pytest.mark.timeout(150)
def test_dev_stack_runserver_plus_and_cdn(workdir):
    procrun = need_procrun()
    root, token = workdir
    copy_app_tree(root)
    web_port, cdn_port = free_port(), free_port()
    write_dotenv(root / "environments/dev/.env.example", root / "environments/dev/.env", {
        "ENV_CDN": f"//127.0.0.1:{cdn_port}/",
        "ENV_TEST_VIEWS": "true",
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(web_port),
        "CDN_HOST": "127.0.0.1",
        "CDN_PORT": str(cdn_port),
    })
    # procrun's own convention: ENV_NAME picks environments/dev/Procfile and .env.
    env = child_env(token, ENV_NAME="dev", PROCRUN_TIMEOUT="10")
    stack = Supervised([procrun, "start"], cwd=root, env=env, name="procrun")
    try:
        wait_until(lambda: port_accepts(web_port), 60, f"runserver_plus on {web_port}")
        wait_until(lambda: port_accepts(cdn_port), 60, f"http.server on {cdn_port}")

        status, _, body = http_get(f"http://127.0.0.1:{web_port}/health")
        assert status == 200 and body.startswith(b"ok")
        status, _, body = http_get(f"http://127.0.0.1:{web_port}/")
        assert status == 200 and f"//127.0.0.1:{cdn_port}/css/app.css".encode() in body
        status, _, body = http_get(f"http://127.0.0.1:{cdn_port}/css/app.css")
        assert status == 200 and body == (root / "app/static/css/app.css").read_bytes()

        # The reloader: a parent that re-executes itself and a serving child.
        servers = [p for p in processes_of(token) if "runserver_plus" in p[1]]
        assert len(servers) >= 2, f"expected reloader parent and child: {servers}"

        stack.wait_for_line(r"Serving HTTP on 127\.0\.0\.1 port", timeout=20)
        stack.wait_for_line(r"Django version 5\.2", timeout=20)
        os.kill(stack.proc.pid, signal.SIGTERM)
        rc = stack.wait(timeout=30)
        assert rc == 143, f"procrun exited {rc}\n{stack.output()}"
        assert "Performing system checks" in lines_of(stack, "web.1"), stack.output()
        assert "Serving HTTP on" in lines_of(stack, "cdn.1"), stack.output()
        left = processes_of(token, root)
        assert left == [], f"processes left behind (reloader child?): {left}"
        assert not port_accepts(web_port) and not port_accepts(cdn_port)
    finally:
        print("---- procrun output\n" + stack.output())
        stack.stop()


def test_procrun_check_accepts_both_procfiles():
    procrun = need_procrun()
    for env_name, names in (("dev", "web, cdn"), ("prod", "web")):
        result = run([procrun, "check", "--procfile", f"environments/{env_name}/Procfile"],
                     cwd=ROOT, timeout=20)
        assert result.returncode == 0, result.stderr
        assert f"Valid procfile detected ({names})" in result.stderr


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_env_example_reads_the_same_in_procrun_and_compose(tmp_path, env_name):
    """procrun (env file of `procrun start`) and Compose (env_file) must agree on every value.
    One known difference: `KEY=` is unset for procrun (as for honcho) and empty for Compose;
    the settings treat both alike, so an empty value in the examples means "unset"."""
    procrun = need_procrun()
    example = ROOT / f"environments/{env_name}/.env.example"
    expected = dict(read_dotenv_example(example))
    result = run([procrun, "-e", str(example), "run", "env", "-0"], cwd=tmp_path, timeout=20,
                 env={"PATH": "/usr/bin:/bin"}, text=False)
    assert result.returncode == 0, result.stderr
    seen = dict(item.split(b"=", 1) for item in result.stdout.split(b"\0") if b"=" in item)
    procrun_values = {k: seen.get(k.encode(), b"").decode() for k in expected}
    assert procrun_values == expected
    assert all(k.encode() in seen for k, v in expected.items() if v), "non-empty values are set"

    compose_file = tmp_path / "compose.yml"
    compose_file.write_text(f"services:\n  app:\n    image: scratch\n    env_file: {example}\n")
    result = run([tool("docker-compose"), "-f", str(compose_file), "config", "--format", "json"],
                 cwd=tmp_path, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    compose_env = json.loads(result.stdout)["services"]["app"]["environment"]
    assert {k: compose_env.get(k) for k in expected} == expected
