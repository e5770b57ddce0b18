"""bin/stevedore, bin/image, bin/deploy: usage, --dry-run output, stubbed docker / eb / git."""
import hashlib
import json
import shutil
import stat
import zipfile
from pathlib import Path

import jsonschema
import os
import pytest
import yaml

from conftest import ROOT, run

SCRIPTS = ["stevedore", "image", "deploy"]
HEAD = "0123456789abcdef0123456789abcdef01234567"
# Stand-ins for docker, eb and git: each call is logged (argv to STUB_LOG; argv, cwd, the
# environment that matters and, for `eb deploy`, the artifact it would upload to
# STUB_LOG.details). docker answers image inspect with the revision label (STUB_LABEL,
# default STUB_GIT_HEAD) or a registry digest derived from the reference; git answers
# rev-parse and status from STUB_GIT_HEAD / STUB_GIT_STATUS.
STUB = """#!/usr/bin/env python3
import hashlib, json, os, re, sys, zipfile
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
log = os.environ["STUB_LOG"]
with open(log, "a") as f:
    f.write(json.dumps([name] + args) + "\\n")
details = {"argv": [name] + args, "cwd": os.getcwd(),
           "env": {k: os.environ[k] for k in ("DEV_UID", "DEV_GID") if k in os.environ}}
head = os.environ.get("STUB_GIT_HEAD", "%s")
if name == "eb" and args[:1] == ["status"]:
    print("Environment details for: " + args[1])
    print("  Status: " + os.environ.get("STUB_EB_STATUS", "Ready"))
    print("  Health: Green")
if name == "eb" and args[:1] == ["deploy"]:
    config = open(".elasticbeanstalk/config.yml").read()
    details["config"] = config
    artifact = re.search(r"^  artifact: (.+)$", config, re.M).group(1)
    with zipfile.ZipFile(artifact) as z:
        details["bundle"] = {i.filename: [z.read(i).decode(), (i.external_attr >> 16) & 0o777]
                             for i in z.infolist() if not i.is_dir()}
if name == "git" and args[:1] == ["rev-parse"]:
    print(head)
if name == "git" and args[:1] == ["status"]:
    sys.stdout.write(os.environ.get("STUB_GIT_STATUS", ""))
if name == "docker" and args[:2] == ["image", "inspect"]:
    ref = args[-1]
    if "RepoDigests" in args[3]:
        if os.environ.get("STUB_NO_DIGEST"):
            sys.exit(1)
        repo = ref.rsplit(":", 1)[0]
        print(repo + "@sha256:" + hashlib.sha256(ref.encode()).hexdigest())
    else:
        print(os.environ.get("STUB_LABEL", head))
with open(log + ".details", "a") as f:
    f.write(json.dumps(details) + "\\n")
""" % HEAD
CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/0f6b1c8e-1d2a-4c55-9d4e-7a1b2c3d4e5f"


def digest(ref):
    return ref.rsplit(":", 1)[0] + "@sha256:" + hashlib.sha256(ref.encode()).hexdigest()


@pytest.fixture
def tree(tmp_path):
    """A copy of the scripts and the EB files in a tree of their own, with stub docker / eb /
    git, an `eb init`ed project and the developer's .env files."""
    shutil.copytree(ROOT / "bin", tmp_path / "bin")
    for name in (".ebextensions", ".platform"):
        shutil.copytree(ROOT / name, tmp_path / name)
    for name in ("docker-compose.yml", "Dockerrun.aws.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".elasticbeanstalk").mkdir()
    (tmp_path / ".elasticbeanstalk/config.yml").write_text(
        "branch-defaults:\n  default:\n    environment: shop-prod\nglobal:\n"
        "  application_name: shop\n  default_region: eu-west-1\n")
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
    result = run([str(tree / "bin" / script), *args], env=environment, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    details = Path(f"{log}.details")
    invoke.details = [json.loads(l) for l in details.read_text().splitlines()] if details.exists() else []
    log.unlink(missing_ok=True)
    details.unlink(missing_ok=True)
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
     f"+ docker compose -f docker/django/prod/docker-compose.yml build --build-arg REVISION={HEAD}\n"),
    (["image", "--dry-run", "dev", "update"],
     f"+ docker compose -f docker/django/dev/docker-compose.yml build --pull --no-cache --build-arg REVISION={HEAD}\n"),
    (["image", "--dry-run", "prod", "destroy"],
     "+ docker compose -f docker/django/prod/docker-compose.yml down --rmi all --volumes --remove-orphans\n"),
    (["deploy", "--dry-run", "release", "1.4.2"],
     "+ docker image inspect --format \\{\\{index\\ .Config.Labels\\ \\\"org.opencontainers.image.revision\\\"\\}\\} procrun-example/django:prod\n"
     "+ docker image inspect --format \\{\\{index\\ .Config.Labels\\ \\\"org.opencontainers.image.revision\\\"\\}\\} procrun-example/nginx:prod\n"
     "+ docker tag procrun-example/django:prod procrun-example/django:1.4.2\n"
     "+ docker tag procrun-example/nginx:prod procrun-example/nginx:1.4.2\n"
     "+ git tag --annotate v1.4.2 --message Release\\ v1.4.2\n"),
    (["deploy", "--dry-run", "publish", "1.4.2"],
     "+ docker push procrun-example/django:1.4.2\n+ docker push procrun-example/django:prod\n"
     "+ docker push procrun-example/nginx:1.4.2\n+ docker push procrun-example/nginx:prod\n"
     "+ git push origin v1.4.2\n"),
    (["deploy", "--dry-run", "--env", "shop-prod", "--no-https", "deploy", "1.4.2"],
     "+ eb status shop-prod\n"
     "+ docker image inspect --format \\{\\{range\\ .RepoDigests\\}\\}\\{\\{println\\ .\\}\\}\\{\\{end\\}\\} procrun-example/django:1.4.2\n"
     "+ docker image inspect --format \\{\\{range\\ .RepoDigests\\}\\}\\{\\{println\\ .\\}\\}\\{\\{end\\}\\} procrun-example/nginx:1.4.2\n"
     "+ eb deploy shop-prod --label v1.4.2 --message procrun\\ reference\\ app\\ v1.4.2 --timeout 20\n"),
]


@pytest.mark.parametrize("argv,expected", DRY_RUNS, ids=[" ".join(a) for a, _ in DRY_RUNS])
def test_dry_run_prints_commands(tree, argv, expected):
    result, calls = invoke(tree, argv[0], *argv[1:], DOCKER="docker", EB="eb", GIT="git",
                           PATH=f"{tree}/stubs:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert [c for c in calls if c[0] != "git" or c[1] not in ("status", "rev-parse")] == [], \
        "a dry run changes nothing (git is only read)"
    lines = [l for l in result.stdout.splitlines(keepends=True) if l.startswith("+ ")]
    assert "".join(lines) == expected


def test_stevedore_runs_docker_compose(tree):
    result, calls = invoke(tree, "stevedore", "prod", "start")
    assert result.returncode == 0, result.stderr
    compose = ["docker", "compose", "-f", "docker/django/prod/docker-compose.yml"]
    assert calls == [compose + ["up", "--detach", "--wait"]]
    assert "http://localhost" in result.stdout


def test_stevedore_prod_refuses_without_env_file(tree):
    (tree / "environments/prod/.env").unlink()
    result, calls = invoke(tree, "stevedore", "prod", "start")
    assert result.returncode == 1 and "environments/prod/.env.example" in result.stderr
    assert calls == []


def test_stevedore_dev_runs_as_the_users_uid_without_env_file(tree):
    """The dev stack needs no .env, and its container runs as the developer's uid and gid
    (the compose file's user: ${DEV_UID}:${DEV_GID}), so the bind-mounted app/ is writable."""
    (tree / "environments/dev/.env").unlink()
    result, calls = invoke(tree, "stevedore", "dev", "start")
    assert result.returncode == 0, result.stderr
    assert calls == [["docker", "compose", "-f", "docker/django/dev/docker-compose.yml", "up", "--detach", "--wait"]]
    assert invoke.details[0]["env"] == {"DEV_UID": str(os.getuid()), "DEV_GID": str(os.getgid())}
    result, _ = invoke(tree, "stevedore", "dev", "shell", DEV_UID="1234", DEV_GID="1235")
    assert invoke.details[0]["env"] == {"DEV_UID": "1234", "DEV_GID": "1235"}


def test_image_build_without_env_file_labels_the_revision(tree):
    """CI builds from a fresh clone: no .env, and the images carry the commit they come from
    (with -dirty when the working tree has changes)."""
    for env in ("dev", "prod"):
        (tree / f"environments/{env}/.env").unlink()
    result, calls = invoke(tree, "image", "prod", "build")
    assert result.returncode == 0, result.stderr
    compose = ["docker", "compose", "-f", "docker/django/prod/docker-compose.yml"]
    assert calls[-1] == compose + ["build", "--build-arg", f"REVISION={HEAD}"]
    result, calls = invoke(tree, "image", "dev", "build", STUB_GIT_STATUS=" M app/project/views.py\n")
    assert result.returncode == 0, result.stderr
    assert calls[-1][-1] == f"REVISION={HEAD}-dirty"


def test_release_refuses_a_dirty_tree(tree):
    result, calls = invoke(tree, "deploy", "release", "2.0.1", STUB_GIT_STATUS="?? notes.txt\n")
    assert result.returncode == 1 and "uncommitted changes" in result.stderr and "notes.txt" in result.stderr
    assert not any(c[:2] in (["docker", "tag"], ["git", "tag"]) for c in calls), calls


def test_release_refuses_images_not_built_from_head(tree):
    result, calls = invoke(tree, "deploy", "release", "2.0.1", STUB_LABEL=f"{HEAD}-dirty")
    assert result.returncode == 1
    assert "built from" in result.stderr and "bin/image prod build" in result.stderr
    assert not any(c[:2] in (["docker", "tag"], ["git", "tag"]) for c in calls), calls


def bundle_of(tree, version, platform="docker", **env):
    env.setdefault("EB_CERTIFICATE_ARN", CERT)
    env.setdefault("IMAGE_REPO", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app")
    env.setdefault("NGINX_IMAGE_REPO", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/nginx")
    result, calls = invoke(tree, "deploy", "--platform", platform, "bundle", version, **env)
    assert result.returncode == 0, result.stderr
    path = tree / result.stdout.splitlines()[0]
    assert path == tree / f"dist/eb/v{version}-{platform}.zip"
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i).decode() for i in z.infolist() if not i.is_dir()}, env


def test_bundles_pin_each_version_to_its_image_digests(tree):
    """Every application version names exactly the images published for it: two versions
    give two different bundles, and neither names a moving tag."""
    one, env = bundle_of(tree, "1.4.0")
    two, _ = bundle_of(tree, "1.4.1")
    for version, files in (("1.4.0", one), ("1.4.1", two)):
        doc = yaml.safe_load(files["docker-compose.yml"])
        images = {name: svc["image"] for name, svc in doc["services"].items()}
        assert images == {"django": digest(f"{env['IMAGE_REPO']}:{version}"),
                          "nginx": digest(f"{env['NGINX_IMAGE_REPO']}:{version}")}
        assert "${IMAGE_TAG" not in files["docker-compose.yml"] and ":prod" not in files["docker-compose.yml"]
    assert one["docker-compose.yml"] != two["docker-compose.yml"]
    # Everything else is the repository's, byte for byte (the template stays untouched).
    rendered = yaml.safe_load(one["docker-compose.yml"])
    template = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("django", "nginx"):
        rendered["services"][name].pop("image"), template["services"][name].pop("image")
    assert rendered == template
    assert (tree / "docker-compose.yml").read_text() == (ROOT / "docker-compose.yml").read_text()


def test_bundle_contents_per_platform(tree):
    docker_files, _ = bundle_of(tree, "1.4.0")
    ecs_files, env = bundle_of(tree, "1.4.0", "ecs")
    common = {f".ebextensions/{p.name}" for p in (ROOT / ".ebextensions").glob("*.config")}
    common |= {".ebextensions/20_https.config"}
    common |= {str(p.relative_to(ROOT)) for p in (ROOT / ".platform").rglob("*") if p.is_file()}
    assert set(docker_files) == common | {"docker-compose.yml"}
    assert set(ecs_files) == (common - {".ebextensions/10_migrate.config"}) | {"Dockerrun.aws.json"}
    dockerrun = json.loads(ecs_files["Dockerrun.aws.json"])
    schema = json.loads((ROOT / "tests/deploy/dockerrun-v2.schema.json").read_text())
    jsonschema.validate(dockerrun, schema, cls=jsonschema.Draft202012Validator)
    images = {c["name"]: c["image"] for c in dockerrun["containerDefinitions"]}
    assert images == {"django": digest(f"{env['IMAGE_REPO']}:1.4.0"),
                      "nginx": digest(f"{env['NGINX_IMAGE_REPO']}:1.4.0")}
    https = yaml.safe_load(docker_files[".ebextensions/20_https.config"])
    assert https["option_settings"]["aws:elbv2:listener:443"]["SSLCertificateArns"] == CERT
    assert not any(Path(f).name == ".env" for f in docker_files)


def test_bundle_needs_a_certificate_or_no_https(tree):
    result, _ = invoke(tree, "deploy", "bundle", "1.4.0")
    assert result.returncode == 1 and "EB_CERTIFICATE_ARN" in result.stderr
    result, _ = invoke(tree, "deploy", "bundle", "1.4.0", EB_CERTIFICATE_ARN="arn:aws:iam::1:role/x")
    assert result.returncode == 1 and "not an ACM certificate" in result.stderr
    result, _ = invoke(tree, "deploy", "--no-https", "bundle", "1.4.0")
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tree / "dist/eb/v1.4.0-docker.zip") as z:
        assert ".ebextensions/20_https.config" not in z.namelist()


def test_bundle_refuses_images_without_a_registry_digest(tree):
    result, calls = invoke(tree, "deploy", "--no-https", "bundle", "1.4.0", STUB_NO_DIGEST="1")
    assert result.returncode == 1 and "publish 1.4.0" in result.stderr
    assert ["docker", "pull", "--quiet", "procrun-example/django:1.4.0"] in calls


def test_deploy_lifecycle_with_stubs(tree):
    env = {"IMAGE_REPO": "123.dkr.ecr.invalid/app", "NGINX_IMAGE_REPO": "123.dkr.ecr.invalid/nginx"}
    result, calls = invoke(tree, "deploy", "release", "2.0.1", **env)
    assert result.returncode == 0, result.stderr
    assert [c for c in calls if c[1] in ("tag",)] == [
        ["docker", "tag", "123.dkr.ecr.invalid/app:prod", "123.dkr.ecr.invalid/app:2.0.1"],
        ["docker", "tag", "123.dkr.ecr.invalid/nginx:prod", "123.dkr.ecr.invalid/nginx:2.0.1"],
        ["git", "tag", "--annotate", "v2.0.1", "--message", "Release v2.0.1"],
    ]
    result, calls = invoke(tree, "deploy", "publish", "2.0.1", GIT_REMOTE="upstream", **env)
    assert result.returncode == 0, result.stderr
    assert calls[-1] == ["git", "push", "upstream", "v2.0.1"]
    assert ["docker", "push", "123.dkr.ecr.invalid/app:2.0.1"] in calls
    result, calls = invoke(tree, "deploy", "deploy", "2.0.1", EB_ENVIRONMENT="shop-prod",
                           EB_CERTIFICATE_ARN=CERT, **env)
    assert result.returncode == 0, result.stderr
    assert calls[0] == ["eb", "status", "shop-prod"]
    assert calls[-1] == ["eb", "deploy", "shop-prod", "--label", "v2.0.1", "--message",
                         "procrun reference app v2.0.1", "--timeout", "20"]
    # eb deploy ran in a project of its own whose config names the bundle as the artifact:
    # what EB stores as application version v2.0.1 is exactly that bundle.
    deployed = invoke.details[-1]
    assert deployed["cwd"] != str(tree)
    assert deployed["config"].startswith((tree / ".elasticbeanstalk/config.yml").read_text())
    assert deployed["config"].endswith(f"deploy:\n  artifact: {tree}/dist/eb/v2.0.1-docker.zip\n")
    compose = yaml.safe_load(deployed["bundle"]["docker-compose.yml"][0])
    assert compose["services"]["django"]["image"] == digest("123.dkr.ecr.invalid/app:2.0.1")
    modes = {f: m for f, (_, m) in deployed["bundle"].items() if f.startswith(".platform/hooks/")}
    assert modes and all(m & 0o111 for m in modes.values()), modes


def test_deploy_refuses_when_environment_not_ready(tree):
    result, calls = invoke(tree, "deploy", "deploy", "2.0.1", STUB_EB_STATUS="Updating")
    assert result.returncode == 1
    assert "not Ready" in result.stderr
    assert calls == [["eb", "status", "procrun-prod"]]


def test_deploy_needs_eb_init(tree):
    shutil.rmtree(tree / ".elasticbeanstalk")
    result, calls = invoke(tree, "deploy", "--no-https", "deploy", "2.0.1")
    assert result.returncode == 1 and "eb init" in result.stderr
    assert calls == []


# --- the leader_only migration command on the instance ----------------------------------------

MIGRATE_STUB = """#!/usr/bin/env python3
import json, os, sys
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    record = [name] + args
    if name == "docker" and args[:1] == ["run"]:
        record.append(open(args[args.index("--env-file") + 1]).read())
    f.write(json.dumps(record) + "\\n")
if name == "get-config":
    print(json.dumps({"ENV_SECRET_KEY": "s3cret", "DATABASE_URL": os.environ.get("STUB_DB", "postgres://u:p@db/app")}))
if name == "docker" and args[:2] == ["image", "inspect"]:
    sys.exit(0 if os.environ.get("STUB_PULLED") else 1)
if name == "docker" and args[:1] == ["pull"]:
    sys.exit(1 if os.environ.get("STUB_PULL_DENIED") and not os.path.exists(os.environ["STUB_LOG"] + ".login") else 0)
if name == "docker" and args[:1] == ["login"]:
    assert sys.stdin.read() == "token\\n"  # --password-stdin, as docker reads it
    open(os.environ["STUB_LOG"] + ".login", "w").close()
if name == "aws":
    print("token")
if name == "docker" and args[:1] == ["run"]:
    sys.exit(int(os.environ.get("STUB_MIGRATE_RC", "0")))
"""


def run_migrate(tmp_path, bundle_compose, **env):
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name in ("docker", "get-config", "aws"):
        (stubs / name).write_text(MIGRATE_STUB)
        (stubs / name).chmod(0o755)
    (tmp_path / "docker-compose.yml").write_text(bundle_compose)
    log = tmp_path / "calls.jsonl"
    environment = {"PATH": "/usr/bin:/bin", "STUB_LOG": str(log), "DOCKER": str(stubs / "docker"),
                   "EB_GET_CONFIG": str(stubs / "get-config"), "AWS": str(stubs / "aws")}
    environment.update(env)
    result = run(["bash", str(ROOT / ".platform/scripts/migrate.sh"), "docker-compose.yml"],
                 cwd=tmp_path, env=environment, timeout=30)
    calls = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return result, calls


@pytest.fixture
def deployed_compose(tree):
    """The docker-compose.yml of a real bundle (bin/deploy bundle), as EB unpacks it."""
    files, env = bundle_of(tree, "3.1.0")
    return files["docker-compose.yml"], digest(f"{env['IMAGE_REPO']}:3.1.0")


def test_eb_migration_runs_the_bundles_image_with_the_environment(tmp_path, deployed_compose):
    compose, image = deployed_compose
    result, calls = run_migrate(tmp_path, compose, STUB_PULLED="1")
    assert result.returncode == 0, result.stderr
    [migrate] = [c for c in calls if c[:2] == ["docker", "run"]]
    assert migrate[:-1] == ["docker", "run", "--rm", "--env-file", migrate[4], "--env", "ENV_NAME=prod",
                            image, "run", "--", "python", "app/manage.py", "migrate", "--noinput"]
    assert migrate[-1] == "ENV_SECRET_KEY=s3cret\nDATABASE_URL=postgres://u:p@db/app\n"
    assert not os.path.exists(migrate[4]), "the env file with the secrets is removed"


def test_eb_migration_failure_fails_the_deployment(tmp_path, deployed_compose):
    compose, _ = deployed_compose
    result, _ = run_migrate(tmp_path, compose, STUB_PULLED="1", STUB_MIGRATE_RC="3")
    assert result.returncode == 3 and "the migrations failed" in result.stderr


def test_eb_migration_logs_in_to_ecr_when_the_pull_is_denied(tmp_path, deployed_compose):
    compose, image = deployed_compose
    result, calls = run_migrate(tmp_path, compose, STUB_PULL_DENIED="1")
    assert result.returncode == 0, result.stderr
    assert ["aws", "ecr", "get-login-password", "--region", "eu-west-1"] in calls
    assert ["docker", "login", "--username", "AWS", "--password-stdin",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"] in calls
    assert calls.count(["docker", "pull", "--quiet", image]) == 2


def test_eb_migration_refuses_multiline_properties(tmp_path, deployed_compose):
    compose, _ = deployed_compose
    result, calls = run_migrate(tmp_path, compose, STUB_PULLED="1", STUB_DB="line1\nline2")
    assert result.returncode != 0 and "DATABASE_URL contains a line break" in result.stderr
    assert not any(c[:2] == ["docker", "run"] for c in calls)


def test_eb_migration_refuses_the_unpinned_template(tmp_path):
    result, calls = run_migrate(tmp_path, (ROOT / "docker-compose.yml").read_text(), STUB_PULLED="1")
    assert result.returncode == 1 and "deploy the bundle bin/deploy makes" in result.stderr
    assert calls == []
