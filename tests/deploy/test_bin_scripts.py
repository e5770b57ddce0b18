"""bin/stevedore, bin/image, bin/deploy: usage, --dry-run output, stubbed docker / eb / git."""
import json
import shutil
import stat

import pytest

from conftest import ROOT, run

SCRIPTS = ["stevedore", "image", "deploy"]
STUB = """#!/usr/bin/env python3
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps([name] + sys.argv[1:]) + "\\n")
if name == "eb" and sys.argv[1:2] == ["status"]:
    print("Environment details for: " + sys.argv[2])
    print("  Status: " + os.environ.get("STUB_EB_STATUS", "Ready"))
    print("  Health: Green")
"""


@pytest.fixture
def tree(tmp_path):
    """A copy of the scripts in a tree of their own, with stub docker / eb / git."""
    shutil.copytree(ROOT / "bin", tmp_path / "bin")
    for env in ("dev", "prod"):
        (tmp_path / "environments" / env).mkdir(parents=True)
        (tmp_path / "environments" / env / ".env").write_text(f"ENV_NAME={env}\n")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("docker", "eb", "git"):
        path = stubs / name
        path.write_text(STUB)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def invoke(tree, script, *args, **env):
    log = tree / "calls.jsonl"
    environment = {
        "PATH": "/usr/bin:/bin",
        "STUB_LOG": str(log),
        "DOCKER": str(tree / "stubs/docker"),
        "EB": str(tree / "stubs/eb"),
        "GIT": str(tree / "stubs/git"),
    }
    environment.update(env)
    result = run([str(tree / "bin" / script), *args], env=environment, timeout=30)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return result, calls


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("args", [[], ["--bogus"], ["dev", "nonsense"], ["staging", "build"], ["a", "b", "c"]])
def test_bad_usage_exits_2_with_usage(tree, script, args):
    if script == "deploy" and args == ["staging", "build"]:
        args = ["release", "1.2"]  # deploy's positional error: a bad VERSION
    result, calls = invoke(tree, script, *args)
    assert result.returncode == 2, result.stderr
    assert "Usage: bin/" + script in result.stderr
    assert calls == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0(tree, script):
    result, calls = invoke(tree, script, "--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: bin/" + script)
    assert calls == []


DRY_RUNS = [
    (["stevedore", "--dry-run", "dev", "start"],
     "+ docker compose -f docker/django/dev/docker-compose.yml up --detach --wait\n"),
    (["stevedore", "-n", "prod", "stop"],
     "+ docker compose -f docker/django/prod/docker-compose.yml down\n"),
    (["stevedore", "prod", "logs", "--dry-run"],
     "+ docker compose -f docker/django/prod/docker-compose.yml logs --follow\n"),
    (["stevedore", "--dry-run", "prod", "check"],
     "+ docker compose -f docker/django/prod/docker-compose.yml config --quiet\n"
     "+ docker compose -f docker/django/prod/docker-compose.yml run --rm --no-deps django check\n"
     "+ docker compose -f docker/django/prod/docker-compose.yml run --rm --no-deps --entrypoint python django app/manage.py check --deploy\n"),
    (["stevedore", "--dry-run", "dev", "test"],
     "+ docker compose -f docker/django/dev/docker-compose.yml run --rm --no-deps --entrypoint python -e ENV_DEBUG=true django app/manage.py test project\n"),
    (["image", "--dry-run", "prod", "build"],
     "+ docker compose -f docker/django/prod/docker-compose.yml build\n"),
    (["image", "--dry-run", "dev", "update"],
     "+ docker compose -f docker/django/dev/docker-compose.yml build --pull --no-cache\n"),
    (["image", "--dry-run", "prod", "destroy"],
     "+ docker compose -f docker/django/prod/docker-compose.yml down --rmi all --volumes --remove-orphans\n"),
    (["deploy", "--dry-run", "release", "1.4.2"],
     "+ docker tag procrun-example/django:prod procrun-example/django:1.4.2\n"
     "+ docker tag procrun-example/nginx:prod procrun-example/nginx:1.4.2\n"
     "+ git tag --annotate v1.4.2 --message Release\\ v1.4.2\n"),
    (["deploy", "--dry-run", "publish", "1.4.2"],
     "+ docker push procrun-example/django:1.4.2\n+ docker push procrun-example/django:prod\n"
     "+ docker push procrun-example/nginx:1.4.2\n+ docker push procrun-example/nginx:prod\n"
     "+ git push origin v1.4.2\n"),
    (["deploy", "--dry-run", "--env", "shop-prod", "deploy", "1.4.2"],
     "+ eb status shop-prod\n"
     "+ eb deploy shop-prod --label v1.4.2 --message procrun\\ reference\\ app\\ v1.4.2 --timeout 20\n"),
]


@pytest.mark.parametrize("argv,expected", DRY_RUNS, ids=[" ".join(a) for a, _ in DRY_RUNS])
def test_dry_run_prints_commands(tree, argv, expected):
    result, calls = invoke(tree, argv[0], *argv[1:], DOCKER="docker", EB="eb", GIT="git")
    assert result.returncode == 0, result.stderr
    assert calls == []
    lines = [l for l in result.stdout.splitlines(keepends=True) if l.startswith("+ ")]
    assert "".join(lines) == expected


def test_stevedore_runs_docker_compose(tree):
    result, calls = invoke(tree, "stevedore", "prod", "start")
    assert result.returncode == 0, result.stderr
    compose = ["docker", "compose", "-f", "docker/django/prod/docker-compose.yml"]
    assert calls == [compose + ["up", "--detach", "--wait"]]
    assert "http://localhost" in result.stdout


def test_stevedore_refuses_without_env_file(tree):
    (tree / "environments/dev/.env").unlink()
    result, calls = invoke(tree, "stevedore", "dev", "start")
    assert result.returncode == 1 and "environments/dev/.env.example" in result.stderr
    assert calls == []


def test_image_build_with_stub(tree):
    result, calls = invoke(tree, "image", "dev", "build")
    assert result.returncode == 0, result.stderr
    assert calls == [["docker", "compose", "-f", "docker/django/dev/docker-compose.yml", "build"]]


def test_deploy_lifecycle_with_stubs(tree):
    env = {"IMAGE_REPO": "123.dkr.ecr.invalid/app", "NGINX_IMAGE_REPO": "123.dkr.ecr.invalid/nginx"}
    result, calls = invoke(tree, "deploy", "release", "2.0.1", **env)
    assert result.returncode == 0, result.stderr
    assert calls == [
        ["docker", "tag", "123.dkr.ecr.invalid/app:prod", "123.dkr.ecr.invalid/app:2.0.1"],
        ["docker", "tag", "123.dkr.ecr.invalid/nginx:prod", "123.dkr.ecr.invalid/nginx:2.0.1"],
        ["git", "tag", "--annotate", "v2.0.1", "--message", "Release v2.0.1"],
    ]
    result, calls = invoke(tree, "deploy", "publish", "2.0.1", GIT_REMOTE="upstream", **env)
    assert result.returncode == 0, result.stderr
    assert calls[-1] == ["git", "push", "upstream", "v2.0.1"]
    assert ["docker", "push", "123.dkr.ecr.invalid/app:2.0.1"] in calls
    result, calls = invoke(tree, "deploy", "deploy", "2.0.1", EB_ENVIRONMENT="shop-prod")
    assert result.returncode == 0, result.stderr
    assert calls == [
        ["eb", "status", "shop-prod"],
        ["eb", "deploy", "shop-prod", "--label", "v2.0.1", "--message",
         "procrun reference app v2.0.1", "--timeout", "20"],
    ]


def test_deploy_refuses_when_environment_not_ready(tree):
    result, calls = invoke(tree, "deploy", "deploy", "2.0.1", STUB_EB_STATUS="Updating")
    assert result.returncode == 1
    assert "not Ready" in result.stderr
    assert calls == [["eb", "status", "procrun-prod"]]
