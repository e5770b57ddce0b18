"""procrun ships into slim images as one static binary: no ELF interpreter, no shared libraries."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, run, tool

MUSL = "x86_64-unknown-linux-musl"


def musl_target_installed():
    result = run(["rustc", "--print", "target-libdir", "--target", MUSL], timeout=30)
    return result.returncode == 0 and os.path.isdir(result.stdout.strip())


def assert_static(binary):
    headers = run([tool("readelf"), "-lW", binary], timeout=30, check=True).stdout
    assert "Requesting program interpreter" not in headers and not re.search(r"^\s*INTERP\s", headers, re.M)
    dynamic = run([tool("readelf"), "-dW", binary], timeout=30, check=True).stdout
    assert "(NEEDED)" not in dynamic, dynamic
    described = run([tool("file"), "-b", binary], timeout=30, check=True).stdout
    assert re.search(r"statically linked|static-pie linked", described), described
    # It runs: prints its version without any library from the system.
    version = run([binary, "version"], timeout=30, env={"PATH": "/nonexistent"})
    assert version.returncode == 0, version.stderr


TARGET_DIR = ROOT / "target" / "deploy-static"


@pytest.fixture(scope="module")
def rust_context(tmp_path_factory):
    """Only what the Dockerfiles' procrun-build stage copies (COPY lines before the build),
    so a source file outside it (build.rs, a declared bench...) fails here as in the image."""
    from test_offline import dockerfile_instructions
    stage = tmp_path_factory.mktemp("procrun-src")
    for dockerfile in ("docker/django/prod/Dockerfile", "docker/django/dev/Dockerfile"):
        for name, instr, args in dockerfile_instructions(dockerfile):
            if name != "procrun-build" or instr != "COPY":
                continue
            *sources, _dest = args.split()
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, stage / source, dirs_exist_ok=True)
                else:
                    shutil.copy(src, stage / source)
    return stage


def cargo_build(cwd, *args, env=None):
    env = dict(env or os.environ, CARGO_TARGET_DIR=str(TARGET_DIR))
    result = subprocess.run(["cargo", "build", "--release", "--locked", *args],
                            cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.timeout(900)
def test_musl_release_binary_is_static(rust_context):
    """What the Dockerfiles build. Needs the musl target of the Rust toolchain; where it is
    not installed (rustup cannot download it without network), this test is skipped and the
    next one checks the same property with the glibc target."""
    if not musl_target_installed():
        pytest.skip(f"Rust target {MUSL} is not installed (rustup target add {MUSL})")
    # Linked as the stage links it (rust-lld, from the stage's ENV).
    from test_offline import dockerfile_instructions
    env = dict(os.environ)
    for name, instr, args in dockerfile_instructions("docker/django/prod/Dockerfile"):
        if name == "procrun-build" and instr == "ENV":
            env.update(item.split("=", 1) for item in args.split())
    assert env["CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER"] == "rust-lld"
    cargo_build(rust_context, "--target", MUSL, env=env)
    assert_static(str(TARGET_DIR / MUSL / "release" / "procrun"))


@pytest.mark.timeout(900)
def test_crt_static_gnu_binary_is_static(rust_context):
    """Fallback available on any x86_64 Linux toolchain: glibc with crt-static. Proves procrun
    has no dependency that prevents static linking (C libraries, dlopen-only crates).
    Runs only where the musl target is missing."""
    if musl_target_installed():
        pytest.skip("the musl build is tested; this glibc fallback is for toolchains without it")
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static")
    cargo_build(rust_context, "--target", "x86_64-unknown-linux-gnu", env=env)
    assert_static(str(TARGET_DIR / "x86_64-unknown-linux-gnu" / "release" / "procrun"))
