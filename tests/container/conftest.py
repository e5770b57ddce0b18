"""Shared helpers of the container suite: the docker CLI, containers that clean up after
themselves, and waits that end on an event (a health status, a log line, a port answering)
or a deadline, never on a fixed sleep.

tests/container/run builds the images and sets PROCRUN_CT_* before it starts pytest."""
import io
import os
import re
import shlex
import struct
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite with tests/container/run", returncode=2)
    return value


DOCKER = shlex.split(_env("PROCRUN_CT_DOCKER"))
PREFIX = _env("PROCRUN_CT_PREFIX")  # procrun-ct-<run id>: every name the suite creates
RUN_ID = _env("PROCRUN_CT_RUN")
PROD_IMAGE = _env("PROCRUN_CT_PROD_IMAGE")
NGINX_IMAGE = _env("PROCRUN_CT_NGINX_IMAGE")
DEV_IMAGE = _env("PROCRUN_CT_DEV_IMAGE")
COMPOSE = _env("PROCRUN_CT_COMPOSE")
ARM64_STAGE = _env("PROCRUN_CT_ARM64_STAGE")  # the procrun-build stage built for linux/arm64
REVISION = _env("PROCRUN_CT_REVISION")  # what the images were labelled with

HEALTH_URL = "http://127.0.0.1:8080/health"


def docker(*args, timeout=60, check=True, **kwargs):
    """Runs the docker CLI; raises with its output on failure (check) or timeout."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    cmd = [*DOCKER, *args]
    result = subprocess.run(cmd, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(cmd)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def wait_until(predicate, timeout, what, interval=0.1):
    """Polls an observable event until it happens; fails after the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(url, timeout=10, headers=None):
    """GET on loopback (published ports only); (status, headers, body) for any status."""
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def answers(url, status=200):
    try:
        return http_get(url, timeout=2)[0] == status
    except OSError:
        return False


class Compose:
    """A Compose project of one test: `compose(*args)` runs `docker compose -p PROJECT -f FILE
    ... ARGS` in `cwd` with `env` (plus the caller's DOCKER_HOST and HOME) and raises on
    failure unless `check=False`; `up()` starts it and waits for every health check;
    `down()` removes it."""

    def __init__(self, project, files, cwd, env):
        self.project = project
        self.files = [arg for f in files for arg in ("-f", f)]
        self.cwd = cwd
        self.env = dict(env)
        for key in ("DOCKER_HOST", "HOME"):
            if key in os.environ:
                self.env[key] = os.environ[key]

    def __call__(self, *args, timeout=120, check=True):
        cmd = [COMPOSE, "-p", self.project, *self.files, *args]
        result = subprocess.run(cmd, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{cmd} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def up(self, wait=120):
        """`up --wait` on the images already built; the logs in the error when it fails."""
        up = self("up", "--detach", "--no-build", "--pull", "never", "--wait",
                  "--wait-timeout", str(wait), timeout=wait + 60, check=False)
        if up.returncode != 0:
            logs = self("logs", "--no-color", check=False)
            raise AssertionError(f"compose up failed:\n{up.stderr}\n{logs.stdout}\n{logs.stderr}")

    def down(self):
        self("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)


class Container:
    """A container of one test, named PREFIX-<name>; removed by the `containers` fixture."""

    def __init__(self, name):
        self.name = f"{PREFIX}-{name}"

    def run(self, image, *args, network=None, ports=(), env=None, env_file=None,
            health_interval="1s", detach=True, extra=()):
        """docker run -d: published ports go to ephemeral ports on 127.0.0.1. The image's
        HEALTHCHECK command is kept; only its interval is shortened (Engine 20.10 has no
        start interval), so health is seen within a second instead of 30."""
        cmd = ["run", "--name", self.name]
        if detach:
            cmd.append("-d")
        cmd += ["--network", network or "none"]
        for port in ports:
            cmd += ["-p", f"127.0.0.1::{port}"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        if env_file:
            cmd += ["--env-file", str(env_file)]
        if health_interval:
            cmd += ["--health-interval", health_interval]
        cmd += [*extra, image, *args]
        return docker(*cmd, timeout=60)

    def create(self, image, *args, network=None, env=None, extra=()):
        cmd = ["create", "--name", self.name, "--network", network or "none"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        return docker(*cmd, *extra, image, *args, timeout=60)

    def inspect(self, template):
        return docker("inspect", "-f", template, self.name, timeout=30).stdout.strip()

    def state(self):
        return self.inspect("{{.State.Status}}")

    def health(self):
        return self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")

    def exit_code(self):
        return int(self.inspect("{{.State.ExitCode}}"))

    def logs(self):
        result = docker("logs", self.name, timeout=30, check=False)
        return result.stdout + result.stderr

    def port(self, container_port):
        """The 127.0.0.1:N that container_port is published on."""
        out = docker("port", self.name, f"{container_port}/tcp", timeout=30).stdout
        host, _, port = out.splitlines()[0].rpartition(":")
        assert host == "127.0.0.1", out
        return int(port)

    def url(self, container_port, path):
        return f"http://127.0.0.1:{self.port(container_port)}{path}"

    def exec(self, *cmd, timeout=30, check=True, user=None):
        extra = ["-u", user] if user else []
        return docker("exec", *extra, self.name, *cmd, timeout=timeout, check=check)

    def wait_for_log(self, pattern, timeout):
        regex = re.compile(pattern, re.M)

        def seen():
            logs = self.logs()
            match = regex.search(logs)
            if match:
                return match
            if self.state() in ("exited", "dead"):
                raise AssertionError(f"{self.name} exited before {pattern!r}:\n{logs[-4000:]}")
            return None

        try:
            return wait_until(seen, timeout, f"{pattern!r} in the logs of {self.name}", 0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- logs:\n{self.logs()[-4000:]}") from None

    def wait_healthy(self, timeout):
        def healthy():
            status = self.health()
            if status == "unhealthy" or self.state() in ("exited", "dead"):
                raise AssertionError(f"{self.name} is {status or self.state()}:\n"
                                     + self.logs()[-4000:])
            return status == "healthy"

        try:
            wait_until(healthy, timeout, f"{self.name} to turn healthy", 0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- logs:\n{self.logs()[-4000:]}") from None

    def wait_exit(self, timeout):
        """docker wait: the exit code, once the container has stopped."""
        out = docker("wait", self.name, timeout=timeout).stdout.strip()
        return int(out)

    def processes(self):
        """(pid, ppid, state, uid, name) of every process in the container, read from /proc
        inside it (slim images have no ps)."""
        script = (
            'for d in /proc/[0-9]*; do s=$(cat "$d/status" 2>/dev/null) || continue; '
            'printf "%s\\n--\\n" "$s"; done'
        )
        out = self.exec("sh", "-c", script).stdout
        rows = []
        for block in out.split("\n--\n"):
            fields = dict(line.split(":\t", 1) for line in block.splitlines() if ":\t" in line)
            if "Pid" in fields:
                rows.append((int(fields["Pid"]), int(fields["PPid"]), fields["State"][0],
                             int(fields["Uid"].split()[0]), fields["Name"]))
        return rows


@pytest.fixture
def containers():
    """Makes containers for a test and removes them (with their logs shown on failure)."""
    made = []

    def make(name):
        container = Container(name)
        made.append(container)
        return container

    yield make
    for container in made:
        docker("rm", "-f", "-v", container.name, timeout=60, check=False)


@pytest.fixture(scope="session")
def network():
    """A user-defined bridge network (the engine has no default bridge here): containers
    resolve each other by name, as in compose."""
    name = f"{PREFIX}-net"
    docker("network", "create", name, timeout=60)
    yield name
    docker("network", "rm", name, timeout=60, check=False)


def prod_env(**extra):
    """What a production deployment sets: a secret key, the hosts, the worker count."""
    env = {
        "ENV_SECRET_KEY": f"container-suite-{RUN_ID}-not-a-secret-0123456789abcdefghijklmnop",
        "ENV_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "WEB_CONCURRENCY": "2",
        "DATABASE_URL": "sqlite:////tmp/db.sqlite3",
    }
    env.update(extra)
    return env


# --- ELF: is a binary static? ---------------------------------------------------------------

PT_INTERP, PT_DYNAMIC, DT_NEEDED = 3, 2, 1
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


def elf_facts(data):
    """(machine, has an interpreter, needed libraries) of a 64-bit little-endian ELF file."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a 64-bit LE ELF"
    machine = struct.unpack_from("<H", data, 18)[0]
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    interp, needed = False, []
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if p_type == PT_INTERP:
            interp = True
        elif p_type == PT_DYNAMIC:
            for off in range(p_offset, p_offset + p_filesz, 16):
                tag, _value = struct.unpack_from("<qQ", data, off)
                if tag == 0:
                    break
                if tag == DT_NEEDED:
                    needed.append(_value)
    return ELF_MACHINES.get(machine, str(machine)), interp, needed


def file_from_image(image, path):
    """The bytes of one file of an image (docker create + docker cp, no container run)."""
    name = f"{PREFIX}-cp-{os.getpid()}-{time.monotonic_ns()}"
    docker("create", "--name", name, "--network", "none", image, timeout=60)
    try:
        tar_bytes = subprocess.run([*DOCKER, "cp", f"{name}:{path}", "-"], capture_output=True,
                                   timeout=60, check=True).stdout
    finally:
        docker("rm", "-f", name, timeout=60, check=False)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        member = tar.getmembers()[0]
        return tar.extractfile(member).read()
