"""deploy/kubernetes under a real engine, without a cluster: the migration Job's container,
then the Deployment's pod (the django container and the nginx sidecar sharing one network
namespace) run with what the manifests say: images, args, environment (ConfigMap, the
Secret, env), user, read-only root filesystem, dropped capabilities, no privilege
escalation, emptyDirs as tmpfs. Then the kubelet's stop: SIGTERM to both containers at once.
Both drain (readiness fails at once, requests still served), then stop gracefully: an
in-flight request through nginx completes, and both exit well inside the grace period."""
import http.client
import re
import secrets
import threading
import time

import pytest
import yaml

from conftest import NGINX_IMAGE, PROD_IMAGE, ROOT, docker, http_get, wait_until

K8S = ROOT / "deploy/kubernetes"
IMAGES = {"procrun-example/django:prod": PROD_IMAGE, "procrun-example/nginx:prod": NGINX_IMAGE}
HOST = "www.example.com"  # the Ingress host of the manifests


def manifest(name):
    return yaml.safe_load((K8S / name).read_text())


def env_of(container):
    return {e["name"]: e["value"] for e in container.get("env", [])}


def run_args(container, pod, config, secret, empty_dirs, extra_env=None):
    """docker run options for a pod container as the kubelet would set it up; emptyDirs are
    directories of the test (empty, world-writable, like the kubelet's: docker's tmpfs
    mounts would instead copy the image's directory, owner and mode included, into them)."""
    sc = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    args = ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if "ALL" in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", "ALL"]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        assert "emptyDir" in volumes[mount["name"]], mount
        directory = empty_dirs / f"{container['name']}-{mount['name']}"
        directory.mkdir()
        directory.chmod(0o1777)
        args += ["-v", f"{directory}:{mount['mountPath']}"]
    env = {}
    for source in container.get("envFrom", []):
        env.update(config if "configMapRef" in source else secret)
    env.update(env_of(container))
    env.update(extra_env or {})
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    return [*args, IMAGES[container["image"]], *container.get("args", [])]


@pytest.fixture
def pod_setup(tmp_path):
    config = manifest("configmap.yaml")["data"]
    # What `kubectl create secret` holds; the database is SQLite on a directory the Job and
    # the pod share (a test stand-in for PostgreSQL).
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    secret = {"ENV_SECRET_KEY": secrets.token_urlsafe(50), "DATABASE_URL": "sqlite:////data/db.sqlite3"}
    empty_dirs = tmp_path / "empty-dirs"
    empty_dirs.mkdir()
    return config, secret, data, empty_dirs


def probe(name, container, kind):
    return docker("exec", name, *container[kind]["exec"]["command"], timeout=30, check=False).returncode


@pytest.mark.timeout(240)
def test_job_then_pod_then_graceful_termination(containers, network, pod_setup):
    config, secret, data, empty_dirs = pod_setup
    job = manifest("migrate-job.yaml")["spec"]["template"]["spec"]
    deployment = manifest("deployment.yaml")["spec"]["template"]["spec"]
    pod = {c["name"]: c for c in deployment["containers"]}

    # 1. The migration Job: procrun runs manage.py migrate itself (no shell) and exits 0.
    [job_container] = job["containers"]
    migrate = containers("k8s-migrate")
    result = docker("run", "--name", migrate.name, "--network", network, "-v", f"{data}:/data",
                    *run_args(job_container, job, config, secret, empty_dirs), timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Applying auth.0001_initial... OK" in result.stdout, result.stdout

    # 2. The pod: django first (it owns the network namespace, as a pause container would),
    # nginx joins it. /slow is switched on to hold a request during the stop.
    django, nginx = containers("k8s-django"), containers("k8s-nginx")
    docker("run", "-d", "--name", django.name, "--network", network, "-p", "127.0.0.1::8080",
           "-v", f"{data}:/data",
           *run_args(pod["django"], deployment, config, secret, empty_dirs, {"ENV_TEST_VIEWS": "true"}),
           timeout=60)
    docker("run", "-d", "--name", nginx.name, "--network", f"container:{django.name}",
           *run_args(pod["nginx"], deployment, config, secret, empty_dirs), timeout=60)
    for container, name in ((django, "django"), (nginx, "nginx")):
        try:
            wait_until(lambda: probe(container.name, pod[name], "readinessProbe") == 0, 90, f"{name} ready")
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- {name}:\n{container.logs()[-4000:]}") from None
    assert probe(django.name, pod["django"], "livenessProbe") == 0
    assert probe(nginx.name, pod["nginx"], "livenessProbe") == 0
    # Non-root, and nginx's master is procrun (its Procfile), not the official entrypoint.
    for container, uid in ((django, 10001), (nginx, 101)):
        status = container.exec("cat", "/proc/1/status").stdout
        assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), status
    assert nginx.exec("cat", "/proc/1/cmdline").stdout.split("\0")[:2] == ["procrun", "start"]
    assert "release.1" not in django.logs(), "the pod runs start web: migrations are the Job's"

    base = django.url(8080, "")
    # What the Ingress sends: its host, and the scheme it terminated (the pod network is a
    # private range, which nginx trusts). ENV_SSL_REDIRECT is on, as the ConfigMap says.
    ingress = {"Host": HOST, "X-Forwarded-Proto": "https"}
    status, _, body = http_get(f"{base}/", headers=ingress)
    assert status == 200 and f'href="https://{HOST}/"'.encode() in body, body
    css = re.search(rb'href="(/static/css/app\.[0-9a-f]{12}\.css)"', body).group(1).decode()
    assert http_get(f"{base}{css}")[0] == 200
    plain = http.client.HTTPConnection("127.0.0.1", django.port(8080), timeout=10)
    plain.request("GET", "/", headers={"Host": HOST})
    answer = plain.getresponse()
    assert (answer.status, answer.getheader("Location")) == (301, f"https://{HOST}/"), "plain HTTP is redirected"
    plain.close()

    # 3. The kubelet stops the pod: SIGTERM to every container at once.
    drain = {name: int(env_of(c)["PROCRUN_DRAIN"]) for name, c in pod.items()}
    grace = deployment["terminationGracePeriodSeconds"]
    began = time.monotonic()
    docker("kill", "-s", "TERM", django.name, nginx.name, timeout=30)
    assert probe(django.name, pod["django"], "readinessProbe") == 1
    assert probe(nginx.name, pod["nginx"], "readinessProbe") == 1
    # Both keep serving while the endpoints are updated...
    while time.monotonic() - began < drain["nginx"] - 2:
        assert http_get(f"{base}/health")[0] == 200
        assert probe(django.name, pod["django"], "livenessProbe") == 0
        time.sleep(0.5)
    # ...and a request that arrives just before nginx stops completes: nginx stops
    # gracefully (SIGQUIT) and gunicorn, which drains longer, is still there for it.
    outcome = {}

    def slow():
        outcome["result"] = http_get(f"{base}/slow?seconds=4", headers=ingress, timeout=60)[:3:2]

    request = threading.Thread(target=slow, daemon=True)
    request.start()
    django.wait_for_log(r"slow request: sleeping 4\.0 s", 10)
    codes = {c.name: c.wait_exit(grace + 10) for c in (django, nginx)}
    took = time.monotonic() - began
    request.join(timeout=30)
    assert outcome.get("result") == (200, b"slept 4.0\n"), outcome
    assert codes == {django.name: 143, nginx.name: 143}, (codes, django.logs()[-2000:], nginx.logs()[-2000:])
    assert max(drain.values()) <= took < grace, took
    assert "sending SIGQUIT to nginx.1" in nginx.logs(), nginx.logs()[-2000:]
    assert "draining" in django.logs() and "draining" in nginx.logs()
