"""Shared helpers of the deployment tests: paths, tools, a supervised-process harness."""
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PROCRUN = Path(os.environ.get("PROCRUN", ROOT / "target" / "debug" / "procrun"))
if not PROCRUN.is_absolute():
    PROCRUN = ROOT / PROCRUN


def tool(name):
    """A tool from the test virtualenv or PATH; fail (not skip) when it is missing."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        pytest.fail(f"{name} not found: install tests/deploy/apt-packages.txt / requirements.txt")
    return found


def need_procrun():
    if not (PROCRUN.is_file() and os.access(PROCRUN, os.X_OK)):
        pytest.fail(f"procrun binary missing at {PROCRUN} (cargo build failed?)")
    return str(PROCRUN)


def run(cmd, timeout=60, check=False, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(cmd, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll an event (a port accepting, a file appearing) until it happens or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(url, timeout=10, headers=None):
    """GET on loopback; returns (status, headers, body bytes) for any HTTP status."""
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def read_dotenv_example(path):
    """KEY=value lines of an .env.example, in order (the simple subset every parser agrees on)."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=value: {line!r}"
        pairs.append((key.strip(), value.strip()))
    return pairs


def write_dotenv(example, target, overrides):
    """What a developer does: copy .env.example to .env and fill in values."""
    values = dict(read_dotenv_example(example))
    values.update(overrides)
    Path(target).write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def make_workdir(prefix):
    """A world-readable temp dir (nginx workers run as nobody when the master is root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def copy_app_tree(dest):
    """The app root as the images lay it out: app/, environments/, docker/ (no dist, no .env)."""
    ignore = shutil.ignore_patterns("dist", "__pycache__", "*.pyc", ".env")
    for name in ("app", "environments", "docker"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


# --- processes that belong to a test --------------------------------------------------------

MARKER = "PROCRUN_DEPLOY_TEST"


def processes_of(token, workdir=None):
    """Live (non-zombie) processes carrying the test's marker in their environment, or whose
    cwd or command line lies in the test's work directory."""
    found = []
    needle = f"{MARKER}={token}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        base = f"/proc/{entry}"
        try:
            with open(f"{base}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state == b"Z":
                continue
            with open(f"{base}/environ", "rb") as f:
                environ = f.read()
            with open(f"{base}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            try:
                cwd = os.readlink(f"{base}/cwd")
            except OSError:
                cwd = ""
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        belongs = needle in environ.split(b"\0")
        if workdir is not None:
            belongs = belongs or cwd.startswith(str(workdir)) or str(workdir) in cmdline
        if belongs:
            found.append((int(entry), cmdline.strip()))
    return found


def kill_all(token, workdir=None):
    for pid, _ in processes_of(token, workdir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Supervised:
    """A process started by a test, its merged output collected line by line in a thread."""

    def __init__(self, cmd, cwd, env, name):
        self.name = name
        self.lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self):
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern, timeout):
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._thread.is_alive()):
                    raise AssertionError(
                        f"{self.name}: no line matching {pattern!r} within {timeout}s "
                        f"(rc={self.proc.poll()}); output:\n" + "\n".join(self.lines[-60:])
                    )
                self._cond.wait(min(remaining, 0.5))

    def wait(self, timeout):
        rc = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=5)
        return rc

    def stop(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._thread.join(timeout=5)


def child_env(token, **extra):
    """The environment of a supervised stack: the venv first on PATH, the test's marker, and
    no inherited PYTHONUNBUFFERED (this machine exports it; the stack must set it itself)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "ENV_NAME")}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env[MARKER] = token
    env.update(extra)
    return env


def new_token():
    return secrets.token_hex(8)
