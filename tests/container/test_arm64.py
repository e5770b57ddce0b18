"""The procrun stage of the Dockerfiles for arm64 (Graviton, Apple Silicon), built on this
amd64 machine: tests/container/run builds `--target procrun-build --platform linux/arm64`,
so BuildKit runs the stage on the build platform and it cross-compiles with rust-lld."""
import os
import shutil
import subprocess

import pytest

from conftest import ARM64_STAGE, ROOT, docker, elf_facts, file_from_image


@pytest.fixture(scope="module")
def arm64_procrun(tmp_path_factory):
    data = file_from_image(ARM64_STAGE, "/usr/local/bin/procrun")
    path = tmp_path_factory.mktemp("arm64") / "procrun"
    path.write_bytes(data)
    path.chmod(0o755)
    return path


def test_the_stage_targets_arm64(arm64_procrun):
    assert docker("image", "inspect", "-f", "{{.Architecture}}", ARM64_STAGE).stdout.strip() == "arm64"
    machine, interp, needed = elf_facts(arm64_procrun.read_bytes())
    assert machine == "aarch64"
    assert not interp and not needed, "static: no ELF interpreter, no shared libraries"
    target = file_from_image(ARM64_STAGE, "/rust-target").decode().strip()
    assert target == "aarch64-unknown-linux-musl"


def test_the_arm64_binary_runs(arm64_procrun, tmp_path):
    """Under qemu's user-mode emulation (tests/container/run installs qemu-user)."""
    qemu = shutil.which("qemu-aarch64")
    if not qemu:
        why = "qemu-aarch64 is not installed (Debian's qemu-user); the ELF header was checked"
        if os.environ.get("PROCRUN_REQUIRE_CONTAINERS") == "1":
            pytest.fail(why + ", but PROCRUN_REQUIRE_CONTAINERS=1")
        pytest.skip(why)
    version = subprocess.run([qemu, str(arm64_procrun), "version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("procrun "), version
    check = subprocess.run([qemu, str(arm64_procrun), "check", "-f", str(ROOT / "environments/prod/Procfile")],
                           capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert check.returncode == 0 and "Valid procfile detected (release, web)" in check.stderr, check
