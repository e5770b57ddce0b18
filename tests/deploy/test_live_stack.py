"""The reference stack for real, without Docker: procrun supervising the prod Procfile
(gunicorn) behind Debian's nginx, and the dev Procfile (runserver_plus with its reloader,
http.server as the CDN), all on loopback ports chosen at random."""
import http.server
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
        "DATABASE_URL": f"sqlite:///{root}/data/db.sqlite3",
    })
    (root / "data").mkdir()
    env = child_env(token, PROCRUN_TIMEOUT="20")
    collectstatic(root, dict(env, ENV_DEBUG="true"))
    assert (root / "app/dist/css/app.css").is_file() and (root / "app/dist/staticfiles.json").is_file()

    conf_dir = render_nginx(root, f"127.0.0.1:{web_port}", f"127.0.0.1:{http_port}", root / "app/dist",
                            healthd="on")
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

        # The page links the content-hashed name, which nginx lets browsers keep for a year.
        status, _, body = http_get(f"{base}/")
        assert status == 200, body
        css = re.search(rb'href="(/static/css/app\.[0-9a-f]{12}\.css)"', body).group(1).decode()
        status, headers, body = http_get(f"{base}{css}")
        assert status == 200
        assert body == (root / "app/static/css/app.css").read_bytes()
        assert headers["Cache-Control"] == "public, max-age=31536000"
        # A client's own X-Forwarded-Proto is not believed (loopback is not the load balancer).
        _, _, body = http_get(f"{base}/", headers={"X-Forwarded-Proto": "https", "Host": "localhost"})
        assert b'rel="canonical" href="http://localhost/"' in body, body
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
        # The release phase migrated the database before gunicorn started.
        assert "Applying auth.0001_initial... OK" in lines_of(stack, "release.1"), stack.output()
        out = stack.output()
        assert out.index("release.1 stopped (rc=0)") < out.index("web.1 started"), out
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
        assert "Applying auth.0001_initial... OK" in lines_of(stack, "release.1"), stack.output()
        assert (root / "app/db.sqlite3").is_file()
        assert "Serving HTTP on" in lines_of(stack, "cdn.1"), stack.output()
        left = processes_of(token, root)
        assert left == [], f"processes left behind (reloader child?): {left}"
        assert not port_accepts(web_port) and not port_accepts(cdn_port)
    finally:
        print("---- procrun output\n" + stack.output())
        stack.stop()


@pytest.mark.timeout(60)
def test_failed_release_phase_starts_nothing(workdir):
    """A migration that fails (here: the database does not answer) ends the container with
    its code before gunicorn starts: no half-migrated app serves requests."""
    procrun = need_procrun()
    root, token = workdir
    copy_app_tree(root)
    web_port = free_port()
    write_dotenv(root / "environments/prod/.env.example", root / "environments/prod/.env", {
        "ENV_SECRET_KEY": secrets.token_urlsafe(50),
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(web_port),
        "DATABASE_URL": f"postgres://app:secret@127.0.0.1:{free_port()}/app?connect_timeout=5",
    })
    stack = Supervised([procrun, "start"], cwd=root, env=child_env(token, ENV_NAME="prod"), name="procrun")
    try:
        rc = stack.wait(timeout=45)
        assert rc == 1, f"procrun exited {rc}\n{stack.output()}"
        assert "OperationalError" in lines_of(stack, "release.1"), stack.output()
        assert "web.1 started" not in stack.output() and not port_accepts(web_port)
    finally:
        print("---- procrun output\n" + stack.output())
        stack.stop()


def test_procrun_check_accepts_both_procfiles():
    procrun = need_procrun()
    for env_name, names in (("dev", "release, web, cdn"), ("prod", "release, web")):
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


# --- nginx alone, in front of an upstream that echoes what it receives ----------------------

class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def nginx_in_front_of_echo(workdir):
    """nginx from the shipped config (rendered as the image's entrypoint does) proxying to an
    upstream that answers with the headers it got; yields a start(healthd) function."""
    root, token = workdir
    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    started = []

    def start(healthd):
        static_root = root / f"dist-{healthd}"
        (static_root / "css").mkdir(parents=True)
        (static_root / "css/app.css").write_text("body{}\n")
        (static_root / "css/app.0123456789ab.css").write_text("body{}\n")
        static_root.chmod(0o755)
        port = free_port()
        conf_dir = render_nginx(root / f"n-{healthd}", f"127.0.0.1:{echo.server_port}",
                                f"127.0.0.1:{port}", static_root, healthd)
        nginx = Supervised(nginx_command(conf_dir, " daemon off;"), cwd=root,
                           env=child_env(token), name="nginx")
        started.append(nginx)
        wait_until(lambda: port_accepts(port), 20, f"nginx on {port}")
        return f"http://127.0.0.1:{port}", conf_dir, nginx

    (root / "n-on").mkdir()
    (root / "n-off").mkdir()
    for d in (root / "n-on", root / "n-off"):
        d.chmod(0o755)
    yield start
    for nginx in started:
        nginx.stop(signal.SIGQUIT)
    echo.shutdown()


def test_nginx_ignores_forwarded_headers_from_clients(nginx_in_front_of_echo):
    """A client on the Internet (here: loopback, not the VPC) cannot claim HTTPS or another
    address: Django gets the real scheme and peer, and no other scheme header at all."""
    base, _, nginx = nginx_in_front_of_echo("off")
    status, _, body = http_get(f"{base}/", headers={
        "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Ssl": "on", "X-Forwarded-Protocol": "ssl", "X-Forwarded-Host": "evil.example"})
    assert status == 200, body
    seen = json.loads(body)
    assert seen["x-forwarded-proto"] == "http", seen
    assert seen["x-forwarded-for"] == "127.0.0.1", seen
    for header in ("x-forwarded-ssl", "x-forwarded-protocol", "x-forwarded-host"):
        assert header not in seen, seen
    site = (ROOT / "docker/nginx/templates/default.conf.template").read_text()
    # The trusted side of the map (the VPC's ranges) is proven under Docker, where requests
    # arrive from the bridge gateway (tests/container/test_compose.py).
    assert re.search(r"geo \$from_load_balancer \{[^}]*10\.0\.0\.0/8 1;", site)


@pytest.mark.parametrize("healthd", ["on", "off"])
def test_nginx_healthd_log_only_on_eb(nginx_in_front_of_echo, healthd):
    """With HEALTHD_LOG=on (EB) the workers write the hourly healthd file into the directory
    the entrypoint script gave them (as root they run as another user: no chmod 0777 here);
    off, nothing is written and nothing is missing."""
    base, conf_dir, nginx = nginx_in_front_of_echo(healthd)
    assert http_get(f"{base}/")[0] == 200
    healthd_dir = conf_dir / "logs" / "healthd"
    if healthd == "on":
        files = wait_until(lambda: list(healthd_dir.glob("application.log.*")), 10, "the healthd log")
        wait_until(lambda: re.search(r'^\d+\.\d+"/"200"', files[0].read_text(), re.M), 10,
                   "a healthd line for /")
    else:
        assert not healthd_dir.exists()
    # nginx logs a request (and any failure to) after answering it: once a second request is
    # logged, the first one's log phase is over.
    assert http_get(f"{base}/?second")[0] == 200
    nginx.wait_for_line(r'"GET /\?second HTTP/1\.1" 200 ', 10)
    assert "Permission denied" not in nginx.output() and "[crit]" not in nginx.output(), nginx.output()


def test_nginx_caches_only_hashed_static_names_for_a_year(nginx_in_front_of_echo):
    base, _, _ = nginx_in_front_of_echo("off")
    _, headers, _ = http_get(f"{base}/static/css/app.0123456789ab.css")
    assert headers["Cache-Control"] == "public, max-age=31536000", headers
    _, headers, _ = http_get(f"{base}/static/css/app.css")
    assert headers["Cache-Control"] == "public, max-age=3600", headers
