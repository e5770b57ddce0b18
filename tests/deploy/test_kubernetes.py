"""deploy/kubernetes: the manifests against the Kubernetes API schemas (kubernetes-validate,
offline), the "restricted" Pod Security Standard, the shutdown budget, the wiring between
them, bin/deploy --platform kubernetes with a stubbed kubectl, and the django container's
drain for real on loopback."""
import copy
import json
import os
import re
import secrets
import shutil
import signal
import stat
import time

import kubernetes_validate
import pytest
import yaml

from conftest import (ROOT, Supervised, child_env, copy_app_tree, free_port, http_get, kill_all,
                      make_workdir, need_procrun, new_token, port_accepts, run, wait_until)
from test_bin_scripts import digest, invoke, tree  # noqa: F401 - tree: the fixture
from test_offline import gunicorn_settings

K8S = ROOT / "deploy/kubernetes"
MANIFESTS = sorted(p.name for p in K8S.glob("*.yaml"))
# The oldest Kubernetes minor still in standard support at the big providers, and the newest
# the validator knows.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def load(name):
    return list(yaml.safe_load_all((K8S / name).read_text()))


def resources():
    return {(doc["kind"], doc["metadata"]["name"]): doc for name in MANIFESTS for doc in load(name)}


def deployment():
    return resources()[("Deployment", "procrun-app")]


def job():
    return resources()[("Job", "procrun-app-migrate")]


def containers(pod_spec):
    return {c["name"]: c for c in pod_spec["containers"]}


def env_of(container):
    return {e["name"]: e["value"] for e in container.get("env", [])}


# --- schemas --------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_matches_the_api_schema(name, version):
    for doc in load(name):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_misspelt_field():
    doc = copy.deepcopy(deployment())
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_every_resource_is_in_the_apps_namespace():
    for (kind, name), doc in resources().items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == "procrun-app", (kind, name)


# --- Pod Security Standard "restricted" -----------------------------------------------------

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}


def restricted_violations(pod):
    """The rules of the "restricted" Pod Security Standard (which includes "baseline"), as
    Kubernetes documents them, applied to a pod spec; returns what breaks them."""
    bad = []
    psc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if key == "hostUsers":
            continue  # only restricted by the user-namespace rules, which allow both values
        if pod.get(key):
            bad.append(f"{key}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            bad.append(f"volume {volume['name']}: {kinds - ALLOWED_VOLUMES}")
    for sysctl in psc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            bad.append(f"sysctl {sysctl['name']}")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    pod_seccomp = psc.get("seccompProfile", {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad.append(f"pod seccomp {pod_seccomp}")
    selinux = psc.get("seLinuxOptions", {})
    if selinux.get("user") or selinux.get("role") or selinux.get("type") not in (
            None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"):
        bad.append("pod seLinuxOptions")
    for container in pod.get("initContainers", []) + pod["containers"]:
        name, sc = container["name"], container.get("securityContext", {})
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities added {caps['add']}")
        if sc.get("runAsNonRoot") is False or not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            bad.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{name}: procMount")
        if sc.get("appArmorProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: appArmorProfile")
        if sc.get("seLinuxOptions", {}).get("user") or sc.get("seLinuxOptions", {}).get("role"):
            bad.append(f"{name}: seLinuxOptions")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                bad.append(f"{name}: hostPort {port['hostPort']}")
    return bad


@pytest.mark.parametrize("workload", ["Deployment", "Job"])
def test_pods_pass_the_restricted_pod_security_standard(workload):
    doc = deployment() if workload == "Deployment" else job()
    pod = doc["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    # Stricter than required: nothing writes the image's files.
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        # A numeric uid: the kubelet can only enforce runAsNonRoot on one it knows (the
        # nginx image has no USER of its own).
        assert sc.get("runAsUser", pod["securityContext"].get("runAsUser", 0)) > 0, container["name"]
    assert pod["automountServiceAccountToken"] is False
    namespace = resources()[("Namespace", "procrun-app")]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_pod_security_check_is_not_vacuous():
    pod = copy.deepcopy(deployment()["spec"]["template"]["spec"])
    pod["hostNetwork"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    django = pod["containers"][0]
    django["securityContext"].update(runAsUser=0, allowPrivilegeEscalation=True,
                                     capabilities={"add": ["SYS_ADMIN"]})
    django["ports"] = [{"containerPort": 80, "hostPort": 80}]
    del pod["securityContext"]["seccompProfile"]
    found = "\n".join(restricted_violations(pod))
    for rule in ("hostNetwork", "hostPath", "runAsUser 0", "allowPrivilegeEscalation",
                 "drop ALL", "SYS_ADMIN", "seccompProfile", "hostPort"):
        assert rule in found, (rule, found)


# --- the shutdown budget and the probes -------------------------------------------------------

def test_termination_grace_covers_drain_and_timeout():
    """Kubernetes SIGKILLs the pod terminationGracePeriodSeconds after its SIGTERM: every
    procrun in it must have drained and stopped its processes by then, and procrun's own
    deadline must leave gunicorn its graceful timeout."""
    pod = deployment()["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    django, nginx = containers(pod)["django"], containers(pod)["nginx"]
    for container in (django, nginx):
        env = env_of(container)
        drain, timeout = int(env["PROCRUN_DRAIN"]), int(env["PROCRUN_TIMEOUT"])
        assert drain >= 5, "long enough for endpoints to reach kube-proxy and the Ingress"
        assert grace > drain + timeout, (container["name"], grace, drain, timeout)
    env = env_of(django)
    graceful = int(env.get("GUNICORN_GRACEFUL_TIMEOUT", gunicorn_settings()["graceful_timeout"]))
    assert int(env["PROCRUN_TIMEOUT"]) > graceful
    # gunicorn goes on serving until nginx has stopped accepting.
    assert int(env["PROCRUN_DRAIN"]) > int(env_of(nginx)["PROCRUN_DRAIN"])
    assert "lifecycle" not in django and "lifecycle" not in nginx, "draining needs no preStop hook"


def probe_urls(probe):
    command = probe["exec"]["command"]
    assert command[:2] == ["procrun", "probe"], command
    return command[2:]


def test_probes_follow_the_drain():
    """Readiness includes each procrun's status endpoint, which answers 503 as soon as the
    drain starts; liveness does not, so a draining pod is taken out of the endpoints but not
    restarted."""
    pod = deployment()["spec"]["template"]["spec"]
    for container in pod["containers"]:
        status = f"http://{env_of(container)['PROCRUN_STATUS_ADDR']}/health"
        assert status.startswith("http://127.0.0.1:")
        assert status in probe_urls(container["readinessProbe"]), container["name"]
        assert status not in probe_urls(container["livenessProbe"]), container["name"]
        assert container["readinessProbe"]["periodSeconds"] * container["readinessProbe"]["failureThreshold"] \
            < int(env_of(container)["PROCRUN_DRAIN"])
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["timeoutSeconds"] > 2, "procrun probe's own timeout is 2 s"
    addresses = [env_of(c)["PROCRUN_STATUS_ADDR"] for c in pod["containers"]]
    assert len(set(addresses)) == len(addresses), "one network namespace: distinct ports"


def test_the_pod_is_wired_together():
    resources_ = resources()
    pod = deployment()["spec"]["template"]["spec"]
    django, nginx = containers(pod)["django"], containers(pod)["nginx"]
    # django: only the web process (migrations are the Job's), gunicorn on loopback.
    assert django["image"] == "procrun-example/django:prod" and django["args"] == ["start", "web"]
    denv, nenv = env_of(django), env_of(nginx)
    assert denv["WEB_HOST"] == "127.0.0.1" and nenv["DJANGO_UPSTREAM"] == f"127.0.0.1:{denv['WEB_PORT']}"
    assert f"http://127.0.0.1:{denv['WEB_PORT']}/health" in probe_urls(django["livenessProbe"])
    # nginx: procrun runs it (drain, then SIGQUIT), unprivileged port.
    assert nginx["image"] == "procrun-example/nginx:prod" and nginx["args"] == ["procrun", "start"]
    [port] = nginx["ports"]
    assert port["containerPort"] == int(nenv["NGINX_PORT"]) >= 1024 and nenv["HEALTHD_LOG"] == "off"
    # Writable places for what the read-only images write.
    mounts = {c["name"]: {m["mountPath"] for m in c["volumeMounts"]} for c in pod["containers"]}
    assert {"/tmp", "/home/app"} <= mounts["django"]
    assert {"/tmp", "/etc/nginx/conf.d", "/var/cache/nginx"} <= mounts["nginx"]
    # Service -> nginx's named port; Ingress -> the Service's named port.
    service = resources_[("Service", "procrun-app")]
    assert service["spec"]["selector"] == deployment()["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    ingress = resources_[("Ingress", "procrun-app")]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "procrun-app", "port": {"name": service["spec"]["ports"][0]["name"]}}
    # Settings: from the ConfigMap, secrets from a Secret that is not in the repository.
    config = resources_[("ConfigMap", "procrun-app")]["data"]
    assert ingress["spec"]["rules"][0]["host"] in config["ENV_ALLOWED_HOSTS"].split(",")
    assert config["ENV_DEBUG"] == "false"
    for workload in (deployment(), job()):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "nginx":
                continue
            refs = container["envFrom"]
            assert {"configMapRef": {"name": "procrun-app"}} in refs
            assert {"secretRef": {"name": "procrun-app"}} in refs
    assert not any(kind == "Secret" for kind, _ in resources_)
    pdb = resources_[("PodDisruptionBudget", "procrun-app")]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment()["spec"]["selector"]["matchLabels"]
    assert deployment()["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_migration_job_runs_once_without_a_shell():
    spec = job()["spec"]
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == "procrun-example/django:prod"
    # procrun run execs its argv: no /bin/sh between PID 1 and manage.py.
    assert container["args"] == ["run", "--", "python", "app/manage.py", "migrate", "--noinput"]
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] <= 660  # bin/deploy waits 660 s


# --- bin/deploy --platform kubernetes -----------------------------------------------------------

KUBECTL_STUB = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps(["kubectl"] + args) + "\\n")
if "secret" in args and os.environ.get("STUB_NO_SECRET"):
    sys.exit(1)
if args[2:4] == ["get", "job"]:
    print(os.environ.get("STUB_JOB_STATE", "1/"), end="")
if args[2:3] == ["logs"]:
    print("django.db.utils.OperationalError: connection refused")
"""


@pytest.fixture
def k8s_tree(tree):
    shutil.copytree(K8S, tree / "deploy/kubernetes")
    stub = tree / "stubs/kubectl"
    stub.write_text(KUBECTL_STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return tree


def k8s_deploy(tree, **env):
    env.setdefault("IMAGE_REPO", "registry.example.com/shop/app")
    env.setdefault("NGINX_IMAGE_REPO", "registry.example.com/shop/nginx")
    return invoke(tree, "deploy", "--platform", "kubernetes", "deploy", "2.3.4",
                  KUBECTL=str(tree / "stubs/kubectl"), K8S_POLL_SECONDS="0", **env), env


def test_bin_deploy_kubernetes_migrates_then_rolls_out(k8s_tree):
    (result, calls), env = k8s_deploy(k8s_tree)
    assert result.returncode == 0, result.stderr
    out = k8s_tree / "dist/k8s/v2.3.4"
    kubectl = [c[1:] for c in calls if c[0] == "kubectl"]
    assert kubectl == [
        ["apply", "-f", "dist/k8s/v2.3.4/namespace.yaml", "-f", "dist/k8s/v2.3.4/configmap.yaml"],
        ["-n", "procrun-app", "get", "secret", "procrun-app", "-o", "name"],
        ["-n", "procrun-app", "delete", "job", "procrun-app-migrate", "--ignore-not-found", "--wait=true"],
        ["apply", "-f", "dist/k8s/v2.3.4/migrate-job.yaml"],
        ["-n", "procrun-app", "get", "job", "procrun-app-migrate", "-o", "jsonpath={.status.succeeded}/{.status.failed}"],
        ["apply", "-f", "dist/k8s/v2.3.4/deployment.yaml", "-f", "dist/k8s/v2.3.4/service.yaml",
         "-f", "dist/k8s/v2.3.4/ingress.yaml", "-f", "dist/k8s/v2.3.4/pdb.yaml"],
        ["-n", "procrun-app", "rollout", "status", "deployment/procrun-app", "--timeout=600s"],
    ]
    # What was applied names the images by digest, and is still valid.
    django, nginx = digest(f"{env['IMAGE_REPO']}:2.3.4"), digest(f"{env['NGINX_IMAGE_REPO']}:2.3.4")
    rendered = {p.name: list(yaml.safe_load_all(p.read_text())) for p in out.glob("*.yaml")}
    assert set(rendered) == set(MANIFESTS)
    images = [c["image"] for docs in rendered.values() for d in docs if d["kind"] in ("Deployment", "Job")
              for c in d["spec"]["template"]["spec"]["containers"]]
    assert sorted(images) == sorted([django, nginx, django])
    for docs in rendered.values():
        for doc in docs:
            kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_bin_deploy_kubernetes_stops_when_the_migration_fails(k8s_tree):
    (result, calls), _ = k8s_deploy(k8s_tree, STUB_JOB_STATE="/1")
    assert result.returncode == 1 and "migration Job failed" in result.stderr
    assert "OperationalError" in result.stderr, "the Job's log is shown"
    assert not any("deployment.yaml" in " ".join(c) for c in calls), "the Deployment is not rolled"


def test_bin_deploy_kubernetes_needs_the_secret(k8s_tree):
    (result, calls), _ = k8s_deploy(k8s_tree, STUB_NO_SECRET="1")
    assert result.returncode == 1 and "Secret procrun-app" in result.stderr
    assert not any("migrate-job.yaml" in " ".join(c) for c in calls)


# --- the django container's drain, for real on loopback ----------------------------------------

@pytest.mark.timeout(120)
def test_django_container_drains_before_it_stops():
    """procrun with the Deployment's django settings (ports moved to free ones): on SIGTERM
    its /health turns 503 at once, so the readiness probe fails, while the liveness probe and
    requests still pass for PROCRUN_DRAIN seconds; then gunicorn stops gracefully."""
    procrun = need_procrun()
    root, token = make_workdir("procrun-k8s-"), new_token()
    try:
        copy_app_tree(root)
        django = containers(deployment()["spec"]["template"]["spec"])["django"]
        env = dict(resources()[("ConfigMap", "procrun-app")]["data"])
        env.update(env_of(django))
        web_port, status_port = free_port(), free_port()
        env.update(WEB_PORT=str(web_port), PROCRUN_STATUS_ADDR=f"127.0.0.1:{status_port}",
                   ENV_ALLOWED_HOSTS="127.0.0.1", ENV_SSL_REDIRECT="false",
                   ENV_SECRET_KEY=secrets.token_urlsafe(50), DATABASE_URL="sqlite://:memory:",
                   GUNICORN_CONF=str(root / "docker/django/prod/gunicorn.conf.py"), WEB_CONCURRENCY="2")
        drain = int(env["PROCRUN_DRAIN"])

        def probe(p):
            urls = [u.replace(":8000/", f":{web_port}/").replace(":9000/", f":{status_port}/")
                    for u in probe_urls(django[p])]
            return run([procrun, "probe", *urls], env={"PATH": "/usr/bin:/bin"}, timeout=30).returncode

        stack = Supervised([procrun, *django["args"]], cwd=root, env=child_env(token, **env), name="procrun")
        try:
            wait_until(lambda: probe("readinessProbe") == 0, 60, "the readiness probe to pass")
            assert "release.1" not in stack.output(), "start web skips the release phase"
            began = time.monotonic()
            os.kill(stack.proc.pid, signal.SIGTERM)
            wait_until(lambda: probe("readinessProbe") == 1, 3, "readiness to fail at once")
            assert time.monotonic() - began < 3
            status, _, body = http_get(f"http://127.0.0.1:{status_port}/health")
            assert status == 503, body
            # Still serving, for the whole drain (checked until 1 s before its end).
            while time.monotonic() - began < drain - 1:
                assert probe("livenessProbe") == 0, stack.output()
                assert http_get(f"http://127.0.0.1:{web_port}/health")[0] == 200
                time.sleep(0.5)
            rc = stack.wait(timeout=drain + int(env["PROCRUN_TIMEOUT"]))
            took = time.monotonic() - began
            assert rc == 143, stack.output()
            assert drain - 0.5 <= took < drain + 10, took
            assert re.search(r"Handling signal: term|Shutting down: Master", stack.output()), stack.output()
            assert not port_accepts(web_port)
        finally:
            print("---- procrun output\n" + stack.output())
            stack.stop()
    finally:
        kill_all(token, root)
        shutil.rmtree(root, ignore_errors=True)
