"""The prod image (docker/django/prod/Dockerfile, target runtime) under a real engine:
procrun is PID 1, the HEALTHCHECK turns healthy, and docker stop / kill end it as promised."""
import json
import re
import threading
import time

import pytest

from conftest import (HEALTH_URL, PROD_IMAGE, REVISION, answers, docker, elf_facts,
                      file_from_image, http_get, prod_env, wait_until)

APP_UID = 10001
# The stop budget of the image: gunicorn's graceful timeout 25 s < PROCRUN_TIMEOUT 30 s.
GRACE = 40


def start_prod(containers, network, name, **env):
    container = containers(name)
    container.run(PROD_IMAGE, network=network, ports=[8080], env=prod_env(**env))
    return container


@pytest.fixture(scope="module")
def prod(network):
    """One healthy prod container shared by the read-only checks of this module."""
    from conftest import Container
    container = Container("prod")
    container.run(PROD_IMAGE, network=network, ports=[8080], env=prod_env())
    try:
        container.wait_healthy(90)
        yield container
    finally:
        docker("rm", "-f", "-v", container.name, timeout=60, check=False)


def test_healthcheck_is_procrun_probe_and_turns_healthy(prod, network):
    test = prod.inspect("{{json .Config.Healthcheck.Test}}")
    assert test == f'["CMD","procrun","probe","{HEALTH_URL}"]'
    probes = json.loads(prod.inspect("{{json .State.Health.Log}}"))
    assert probes and probes[-1]["ExitCode"] == 0, probes
    # Through the published port, from the host.
    status, _, body = http_get(prod.url(8080, "/health"))
    assert status == 200 and body.startswith(b"ok pid="), body
    # Through the container's address, from another container on the network (by name).
    probe = docker("run", "--rm", "--name", f"{prod.name}-probe", "--network", network,
                   PROD_IMAGE, "probe", f"http://{prod.name}:8080/health", timeout=60, check=False)
    assert probe.returncode == 0, probe.stdout + probe.stderr


def test_runs_as_non_root_with_static_procrun_as_pid1(prod):
    assert prod.inspect("{{.Config.User}}") == f"{APP_UID}:{APP_UID}"
    assert prod.exec("readlink", "/proc/1/exe").stdout.strip() == "/usr/local/bin/procrun"
    cmdline = prod.exec("cat", "/proc/1/cmdline").stdout
    assert cmdline.split("\0")[:2] == ["procrun", "start"], cmdline
    procs = prod.processes()
    assert procs and all(uid == APP_UID for _, _, _, uid, _ in procs), procs
    names = [name for _, _, _, _, name in procs]
    assert names.count("gunicorn") >= 3, procs  # master and WEB_CONCURRENCY=2 workers
    # The binary has no ELF interpreter and no shared libraries, and is for this machine.
    machine, interp, needed = elf_facts(file_from_image(PROD_IMAGE, "/usr/local/bin/procrun"))
    assert not interp and not needed, (interp, needed)
    assert machine == prod.exec("uname", "-m").stdout.strip()


def test_release_phase_migrates_before_gunicorn_starts(prod):
    """The image's default command runs the Procfile's release type first (procrun's release
    phase): the migrations ran to completion before gunicorn was started."""
    logs = prod.logs()
    assert re.search(r"^\d\d:\d\d:\d\d release\.1 +\| +Applying auth\.0001_initial\.\.\. OK", logs, re.M), logs
    assert logs.index("release.1 stopped (rc=0)") < logs.index("web.1 started"), logs


def test_images_carry_the_git_revision(prod):
    assert prod.inspect('{{index .Config.Labels "org.opencontainers.image.revision"}}') == REVISION
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", REVISION), REVISION


def test_logs_are_prefixed_and_gunicorn_boots_cleanly(prod):
    logs = prod.logs()
    assert re.search(r"^\d\d:\d\d:\d\d web\.1 +\| .*Booting worker", logs, re.M), logs
    # gunicorn >= 25.1 opens a control socket under $HOME/.gunicorn by default: the image's
    # user has no writable home, which used to log an error at every boot.
    assert "Control server error" not in logs, logs
    # ...now it is in the app user's own home, where gunicornc finds it by default.
    control = prod.exec("gunicornc", "-j", "-c", "show workers", check=False)
    assert control.returncode == 0, control.stdout + control.stderr
    assert len(json.loads(control.stdout)["workers"]) == 2, control.stdout
    assert "Traceback" not in logs and "Permission denied" not in logs, logs


def test_orphans_are_reaped(prod):
    """Processes whose parent exited are re-parented to procrun (PID 1) and reaped: no
    zombie stays in the container's /proc."""
    prod.exec("sh", "-c", "for i in 1 2 3 4 5; do sleep 5 >/dev/null 2>&1 & done; exit 0")

    def orphans():
        return [p for p in prod.processes() if p[4] == "sleep"]

    adopted = wait_until(orphans, 10, "the orphaned sleeps")
    assert all(ppid == 1 for _, ppid, _, _, _ in adopted), adopted
    wait_until(lambda: not orphans(), 20, "the orphans to exit and be reaped", 0.2)
    zombies = [p for p in prod.processes() if p[2] == "Z"]
    assert not zombies, zombies


def test_run_exits_with_the_command_status(containers):
    """The single-command form as a container init (ENTRYPOINT is procrun), written either
    way: `docker run IMAGE run -- CMD` or `docker run IMAGE procrun run -- CMD`."""
    for i, words in enumerate((["run", "--"], ["procrun", "run", "--"])):
        name = containers(f"exit-7-{i}").name  # removed by the fixture should the run hang
        result = docker("run", "--rm", "--name", name, "--network", "none", PROD_IMAGE,
                        *words, "sh", "-c", "exit 7", timeout=60, check=False)
        assert result.returncode == 7, (words, result.stdout + result.stderr)


def test_stop_during_slow_request_completes_it(containers, network):
    container = start_prod(containers, network, "stop-slow", ENV_TEST_VIEWS="true")
    wait_until(lambda: answers(container.url(8080, "/health")), 60, "gunicorn to answer")
    seconds = 4.0
    url = container.url(8080, f"/slow?seconds={seconds}")
    outcome = {}

    def request():
        try:
            status, _, body = http_get(url, timeout=seconds + 30)
            outcome["result"] = (status, body)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            outcome["result"] = error
        outcome["done"] = time.monotonic()

    thread = threading.Thread(target=request, daemon=True)
    began = time.monotonic()  # the request's sleep starts after this
    thread.start()
    container.wait_for_log(r"slow request: sleeping", 15)
    stop_start = time.monotonic()
    docker("stop", "-t", str(GRACE), container.name, timeout=GRACE + 30)
    stop_took = time.monotonic() - stop_start
    thread.join(timeout=seconds + 30)
    assert outcome.get("result") == (200, f"slept {seconds}\n".encode()), outcome
    assert container.exit_code() == 143, container.logs()[-3000:]
    remaining = seconds - (stop_start - began)
    # It waited for the request (about its remaining time), and no longer than needed.
    assert stop_took >= remaining - 1.0, (stop_took, remaining)
    assert stop_took <= remaining + 5.0, (stop_took, remaining, container.logs()[-3000:])
    assert stop_took < GRACE / 4
    assert outcome["done"] <= stop_start + stop_took + 0.5


def test_stop_right_after_start_is_prompt(containers, network):
    """SIGTERM while the container is still starting: no signal is lost, exit 143 at once."""
    container = containers("stop-early")
    container.create(PROD_IMAGE, network=network, env=prod_env())
    docker("start", container.name, timeout=60)
    began = time.monotonic()
    docker("stop", "-t", str(GRACE), container.name, timeout=GRACE + 30)
    took = time.monotonic() - began
    assert container.exit_code() == 143, container.logs()
    assert took < 10, (took, container.logs())


def test_kill_int_exits_130(containers, network):
    container = start_prod(containers, network, "kill-int")
    container.wait_for_log(r"web\.1 +\| .*Booting worker", 60)
    docker("kill", "-s", "INT", container.name, timeout=30)
    assert container.wait_exit(60) == 130, container.logs()[-3000:]
