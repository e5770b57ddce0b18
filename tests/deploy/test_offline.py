"""Offline validation of the deployment files: compose, Dockerfiles, nginx, EB, ignore files."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pathspec
import pytest
import yaml

from conftest import ROOT, make_workdir, read_dotenv_example, run, tool

COMPOSE_FILES = [
    "docker/django/dev/docker-compose.yml",
    "docker/django/prod/docker-compose.yml",
    "docker-compose.yml",
]
DOCKERFILES = ["docker/django/dev/Dockerfile", "docker/django/prod/Dockerfile"]
SHELL_SCRIPTS = [
    "bin/stevedore",
    "bin/image",
    "bin/deploy",
    "tests/deploy/run",
    ".platform/hooks/postdeploy/01_prune_images.sh",
    "docker/nginx/15-healthd-logdir.sh",
]


def seconds(value):
    """Compose durations ('40s', '1m30s') and plain numbers, in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


@pytest.fixture(scope="module")
def compose_tree(tmp_path_factory):
    """A copy of the compose files' world with .env files made from the examples."""
    tree = tmp_path_factory.mktemp("compose")
    for name in ("docker", "environments", "app"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns(".env", "dist"))
    for name in ("docker-compose.yml", "Cargo.toml"):
        shutil.copy(ROOT / name, tree / name)
    for env in ("dev", "prod"):
        shutil.copy(tree / f"environments/{env}/.env.example", tree / f"environments/{env}/.env")
    # What EB writes next to the bundle's docker-compose.yml.
    (tree / ".env").write_text("IMAGE_REPO=registry.invalid/app\nIMAGE_TAG=1.2.3\n")
    return tree


# --- Compose ------------------------------------------------------------------------------

@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_compose_config_is_valid_without_warnings(compose_tree, compose_file):
    result = run([tool("docker-compose"), "-f", compose_file, "config", "--format", "json"],
                 cwd=compose_tree, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"compose warned: {result.stderr}"
    config = json.loads(result.stdout)
    assert "django" in config["services"]


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_compose_files_use_current_spec(compose_file):
    doc = yaml.safe_load((ROOT / compose_file).read_text())
    assert "version" not in doc, "the version key is obsolete in the Compose Specification"
    assert "services" in doc
    for name, service in doc["services"].items():
        for key in ("links", "volumes_from", "container_name"):
            assert key not in service, f"{compose_file}: {name} uses {key}"
        assert "healthcheck" in service, f"{compose_file}: {name} has no healthcheck"
        for dep, cond in (service.get("depends_on") or {}).items():
            if isinstance(cond, dict) and cond.get("condition") == "service_healthy":
                assert "healthcheck" in doc["services"][dep], f"{dep} needs a healthcheck"
        if "build" in service:
            assert (ROOT / service["build"].get("dockerfile", "Dockerfile")).exists() or \
                (ROOT / compose_file).parent.joinpath(service["build"]["context"],
                                                      service["build"]["dockerfile"]).exists()


def test_compose_missing_env_file_is_an_error(compose_tree):
    """The compose files need the developer's .env (created from .env.example)."""
    tree = compose_tree
    env = tree / "environments/prod/.env"
    saved = env.read_text()
    env.unlink()
    try:
        result = run([tool("docker-compose"), "-f", COMPOSE_FILES[1], "config", "-q"], cwd=tree)
        assert result.returncode != 0
        assert ".env" in result.stderr
    finally:
        env.write_text(saved)


def test_django_healthcheck_uses_procrun_probe():
    for compose_file in COMPOSE_FILES:
        doc = yaml.safe_load((ROOT / compose_file).read_text())
        test = doc["services"]["django"]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "procrun", "probe"], compose_file
        assert test[3].startswith("http://127.0.0.1:8080/health")


def test_eb_compose_publishes_port_80_and_pulls_images():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "80:80" in doc["services"]["nginx"]["ports"]
    for service in doc["services"].values():
        assert "build" not in service and "image" in service
    assert doc["services"]["django"]["env_file"] == ".env"


def test_shutdown_budget_is_nested():
    """gunicorn graceful_timeout < procrun's timeout < the container stop timeouts."""
    conf = {}
    env_backup = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("GUNICORN_", "WEB_")):
            del os.environ[key]
    try:
        exec((ROOT / "docker/django/prod/gunicorn.conf.py").read_text(), conf)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    graceful = conf["graceful_timeout"]
    dockerfile = (ROOT / "docker/django/prod/Dockerfile").read_text()
    procrun_timeout = int(re.search(r"PROCRUN_TIMEOUT=(\d+)", dockerfile).group(1))
    assert dict(read_dotenv_example(ROOT / "environments/prod/.env.example"))["PROCRUN_TIMEOUT"] == str(procrun_timeout)
    ebext = yaml.safe_load((ROOT / ".ebextensions/01_envvars.config").read_text())
    assert ebext["option_settings"]["aws:elasticbeanstalk:application:environment"]["PROCRUN_TIMEOUT"] == str(procrun_timeout)
    assert graceful + 2 <= procrun_timeout
    for compose_file in COMPOSE_FILES[1:]:
        doc = yaml.safe_load((ROOT / compose_file).read_text())
        assert seconds(doc["services"]["django"]["stop_grace_period"]) >= procrun_timeout + 5
    dockerrun = json.loads((ROOT / "Dockerrun.aws.json").read_text())
    django = next(c for c in dockerrun["containerDefinitions"] if c["name"] == "django")
    assert django["stopTimeout"] >= procrun_timeout + 5
    dev = (ROOT / "docker/django/dev/Dockerfile").read_text()
    dev_timeout = int(re.search(r"PROCRUN_TIMEOUT=(\d+)", dev).group(1))
    dev_doc = yaml.safe_load((ROOT / COMPOSE_FILES[0]).read_text())
    assert seconds(dev_doc["services"]["django"]["stop_grace_period"]) > dev_timeout


# --- Dockerfiles ----------------------------------------------------------------------------

def dockerfile_instructions(path):
    """(stage, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / path).read_text())
    stage, out = None, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            match = re.search(r"\bAS\s+(\S+)", rest, re.I)
            stage = match.group(1) if match else rest
        out.append((stage, instr, rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_clean(dockerfile):
    result = run([tool("hadolint"), "--no-color", str(ROOT / dockerfile)], timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_runs_static_procrun_as_pid1(dockerfile):
    instrs = dockerfile_instructions(dockerfile)
    text = (ROOT / dockerfile).read_text()
    # No `# syntax=` line: it makes BuildKit pull its frontend from a registry, and the
    # builtin frontend already supports RUN --mount (the container suite builds offline).
    assert not re.match(r"#\s*syntax\s*=", text), "drop the syntax directive"
    final = instrs[-1][0] if dockerfile.endswith("dev/Dockerfile") else "runtime"
    final_instrs = [(i, a) for s, i, a in instrs if s == final]
    get = lambda name: [a for i, a in final_instrs if i == name]  # noqa: E731
    assert get("ENTRYPOINT") == ['["procrun"]']
    assert get("CMD") == ['["start"]']
    assert any("COPY" == i and "--from=procrun-build" in a for i, a in final_instrs)
    user = get("USER")
    assert user and re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", user[-1]), user
    assert any('"procrun", "probe", "http://127.0.0.1:8080/health"' in a for a in get("HEALTHCHECK"))
    assert get("STOPSIGNAL") == ["SIGTERM"]
    env_text = " ".join(get("ENV"))
    assert "PYTHONUNBUFFERED=1" in env_text and re.search(r"ENV_NAME=(dev|prod)\b", env_text)
    # The musl target follows the platform built for (amd64 and arm64), not x86_64 only.
    build = " ".join(a for s, i, a in instrs if s == "procrun-build" and i == "RUN")
    assert "TARGETARCH" in build and "uname -m" in build and "rustup target add" in build
    assert "aarch64" in build and "x86_64" in build and "-unknown-linux-musl" in build
    assert "--target x86_64" not in build
    # Base images are ARGs declared before the first FROM (tests pass local stand-ins),
    # defaulting to pinned official tags.
    defaults = dict(a.split("=", 1) for s, i, a in instrs if s is None and i == "ARG")
    stages = {s for s, _, _ in instrs}
    for stage, instr, args in instrs:
        if instr == "FROM":
            image = args.split()[0]
            if image in stages:
                continue
            match = re.fullmatch(r"\$\{(\w+)\}", image)
            assert match and match.group(1) in defaults, f"{image}: use an ARG declared before FROM"
            default = defaults[match.group(1)]
            assert ":" in default and not default.endswith(":latest"), f"unpinned base {default}"
    assert {"PYTHON_IMAGE", "RUST_IMAGE"} <= set(defaults), defaults


def test_prod_image_build_runs_checks_and_tests():
    instrs = dockerfile_instructions("docker/django/prod/Dockerfile")
    froms = {s: a for s, i, a in instrs if i == "FROM"}
    assert froms["assets"].split()[0] == "test", "assets must build on the test stage"
    test_runs = " ".join(a for s, i, a in instrs if s == "test" and i == "RUN")
    assert "check --deploy --fail-level WARNING" in test_runs
    assert "manage.py test" in test_runs
    assert any(i == "COPY" and "--from=assets" in a for s, i, a in instrs if s == "runtime")
    assert any(i == "COPY" and "--from=assets" in a for s, i, a in instrs if s == "nginx")
    nginx_stop = [a for s, i, a in instrs if s == "nginx" and i == "STOPSIGNAL"]
    assert nginx_stop == ["SIGQUIT"]


def test_dockerfile_copy_sources_are_in_build_context():
    context = build_context_files()
    for dockerfile in DOCKERFILES:
        for stage, instr, args in dockerfile_instructions(dockerfile):
            if instr not in ("COPY", "ADD") or "--from=" in args:
                continue
            assert instr == "COPY", "use COPY for local files"
            parts = [p for p in args.split() if not p.startswith("--")]
            for src in parts[:-1]:
                src = src.rstrip("/")
                assert any(f == src or f.startswith(src + "/") for f in context), \
                    f"{dockerfile}: COPY {src} is not in the build context"


# --- shell scripts --------------------------------------------------------------------------

def test_shellcheck_clean():
    result = run([tool("shellcheck"), "--severity=style", *SHELL_SCRIPTS], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_scripts_are_executable_and_strict(script):
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    assert run(["bash", "-n", str(path)]).returncode == 0
    staged = run(["git", "ls-files", "-s", "--", script], cwd=ROOT).stdout.split()
    if staged:  # committed files must keep the executable bit (EB hooks need it)
        assert staged[0] == "100755", f"{script} has git mode {staged[0]}"
    text = path.read_text()
    if path.suffix != ".sh" or "bash" in text.splitlines()[0]:
        first = text.splitlines()[0]
        assert first.startswith("#!")
        assert ("set -euo pipefail" in text) or ("set -eu" in text)


# --- nginx ----------------------------------------------------------------------------------

def render_nginx(workdir, upstream, listen, static_root):
    """Lay out nginx's config under a private prefix, rendering the site template as the
    official image's entrypoint would (envsubst of the set variables only)."""
    conf_dir = workdir / "nginx"
    (conf_dir / "conf.d").mkdir(parents=True)
    (conf_dir / "tmp").mkdir()
    (conf_dir / "logs" / "healthd").mkdir(parents=True)
    (conf_dir / "logs" / "healthd").chmod(0o777)
    shutil.copy(ROOT / "docker/nginx/nginx.conf", conf_dir / "nginx.conf")
    shutil.copy("/etc/nginx/mime.types", conf_dir / "mime.types")
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_UPSTREAM": upstream,
        "NGINX_PORT": listen,
        "STATIC_ROOT": str(static_root),
        "NGINX_LOG_DIR": str(conf_dir / "logs"),
    }
    template = (ROOT / "docker/nginx/templates/default.conf.template").read_text()
    rendered = subprocess.run(
        [tool("envsubst"), "${DJANGO_UPSTREAM} ${NGINX_PORT} ${STATIC_ROOT} ${NGINX_LOG_DIR}"],
        input=template, capture_output=True, text=True, env=env, check=True, timeout=10,
    ).stdout
    assert "${" not in rendered
    (conf_dir / "conf.d" / "default.conf").write_text(rendered)
    # Deployment-local override: temp files under the private prefix, not /var/lib/nginx.
    (conf_dir / "conf.d" / "zz-temp-paths.conf").write_text("".join(
        f"{kind}_temp_path {conf_dir}/tmp/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ))
    return conf_dir


def nginx_command(conf_dir, *extra):
    return [tool("nginx"), "-p", f"{conf_dir}/", "-c", str(conf_dir / "nginx.conf"),
            "-e", "stderr", "-g", f"pid {conf_dir}/nginx.pid;" + "".join(extra)]


def test_nginx_config_is_valid(tmp_path):
    tmp_path.chmod(0o755)
    static_root = tmp_path / "dist"
    static_root.mkdir()
    conf_dir = render_nginx(tmp_path, "127.0.0.1:9", "127.0.0.1:9", static_root)
    result = run([*nginx_command(conf_dir), "-t"], timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_forwards_proto_and_serves_static():
    site = (ROOT / "docker/nginx/templates/default.conf.template").read_text()
    assert "X-Forwarded-Proto $http_x_forwarded_proto" in site
    assert "location /static/" in site and "expires 1y" in site
    directives = "\n".join(l for l in site.splitlines() if not l.lstrip().startswith("#"))
    assert "django:8080" not in directives, "the upstream is templated, not hard-coded"
    main = (ROOT / "docker/nginx/nginx.conf").read_text()
    assert re.search(r"^\s*include conf\.d/\*\.conf;", main, re.M)
    assert not re.search(r"^\s*(user|pid)\s", main, re.M)


# --- Elastic Beanstalk ----------------------------------------------------------------------

def test_dockerrun_v2_matches_schema_and_references():
    doc = json.loads((ROOT / "Dockerrun.aws.json").read_text())
    schema = json.loads((ROOT / "tests/deploy/dockerrun-v2.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    names = {c["name"] for c in doc["containerDefinitions"]}
    volumes = {v["name"] for v in doc.get("volumes", [])}
    for container in doc["containerDefinitions"]:
        for link in container.get("links", []):
            assert link.split(":")[0] in names
        for dep in container.get("dependsOn", []):
            assert dep["containerName"] in names
            if dep["condition"] == "HEALTHY":
                target = next(c for c in doc["containerDefinitions"] if c["name"] == dep["containerName"])
                assert "healthCheck" in target
        for mount in container.get("mountPoints", []):
            assert mount["sourceVolume"] in volumes or mount["sourceVolume"].startswith("awseb-logs-")
    ports = [p for c in doc["containerDefinitions"] for p in c.get("portMappings", [])]
    assert [p["hostPort"] for p in ports] == [80]


def test_dockerrun_schema_rejects_the_old_comment_key():
    doc = json.loads((ROOT / "Dockerrun.aws.json").read_text())
    doc["_uncomment_authentication"] = {"bucket": "b", "key": "k"}
    schema = json.loads((ROOT / "tests/deploy/dockerrun-v2.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def test_ebextensions_option_settings():
    doc = yaml.safe_load((ROOT / ".ebextensions/01_envvars.config").read_text())
    assert set(doc) == {"option_settings"}
    settings = doc["option_settings"]
    env = settings["aws:elasticbeanstalk:application:environment"]
    total = 0
    for key, value in env.items():
        assert isinstance(value, str), f"{key}: quote the value"
        assert re.fullmatch(r"[A-Za-z0-9_.:/+\\@-]{1,128}", key), key
        assert len(value) <= 256
        assert not re.search(r"SECRET|PASSWORD|TOKEN|KEY$", key), f"{key} looks like a secret"
        total += len(key) + 1 + len(value)
    assert total <= 4096
    assert env["ENV_NAME"] == "prod" and env["ENV_DEBUG"] == "false"
    process = settings["aws:elasticbeanstalk:environment:process:default"]
    assert process["HealthCheckPath"] == "/health"
    assert "PYTHONPATH" not in env


def repo_files():
    files = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = Path(dirpath).relative_to(ROOT)
        dirnames[:] = [d for d in dirnames if not (rel == Path(".") and d in (".git", "target"))]
        for name in filenames:
            files.add(str(rel / name) if str(rel) != "." else name)
    return files


# Files a developer's tree has that git does not: secrets and build output.
LOCAL_FILES = {
    ".env", "environments/dev/.env", "environments/prod/.env", "app/dist/css/app.css",
    ".elasticbeanstalk/config.yml", ".elasticbeanstalk/prod.cfg.yml", "logs/nginx/access.log",
    ".git/HEAD", ".git/config", "target/debug/procrun", "target/release/procrun",
    "app/project/__pycache__/settings.cpython-313.pyc",
}


def ignore_filter(ignore_file, files):
    spec = pathspec.PathSpec.from_lines("gitignore", (ROOT / ignore_file).read_text().splitlines())
    return {f for f in files if not spec.match_file(f)}


def build_context_files():
    return ignore_filter(".dockerignore", repo_files() | LOCAL_FILES)


def test_ebignore_bundle_contents():
    bundle = ignore_filter(".ebignore", repo_files() | LOCAL_FILES)
    expected = {
        "docker-compose.yml",
        ".ebextensions/01_envvars.config",
        ".platform/hooks/postdeploy/01_prune_images.sh",
        ".elasticbeanstalk/prod.cfg.yml",
    }
    assert bundle == expected
    assert not any(Path(f).name == ".env" for f in bundle)


def test_dockerignore_context():
    context = build_context_files()
    for required in ("Cargo.toml", "Cargo.lock", "src/main.rs", "app/manage.py",
                     "app/project/settings.py", "app/static/css/app.css",
                     "environments/prod/Procfile", "environments/prod/requirements.txt",
                     "docker/django/prod/gunicorn.conf.py", "docker/nginx/nginx.conf"):
        assert required in context, required
    for f in context:
        assert Path(f).name != ".env", f
        assert not f.startswith((".git/", "target/", "app/dist/", ".elasticbeanstalk/", "tests/", "logs/"))
        assert "__pycache__" not in f


def test_gitignore_keeps_secrets_and_output_out():
    spec = pathspec.PathSpec.from_lines("gitignore", (ROOT / ".gitignore").read_text().splitlines())
    for path in (".env", "environments/dev/.env", "environments/prod/.env",
                 "app/dist/css/app.css", "logs/nginx/access.log", ".elasticbeanstalk/config.yml"):
        assert spec.match_file(path), f"{path} is not ignored by .gitignore"
    for path in ("environments/dev/.env.example", "app/static/css/app.css", ".elasticbeanstalk/prod.cfg.yml"):
        assert not spec.match_file(path), f"{path} must stay tracked"


# --- Procfiles and env examples -------------------------------------------------------------

PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def procfile_entries(path):
    """Entries with procrun's continuation rule (a trailing backslash joins the next line)."""
    entries, pending = {}, ""
    for line in (ROOT / path).read_text().splitlines():
        if pending:
            line = pending + " " + line.strip()
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        match = PROCFILE_LINE.match(line)
        if match:
            entries[match.group(1)] = match.group(2)
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"{path}: stray line {line!r}"
    assert not pending
    return entries


def test_procfiles():
    prod = procfile_entries("environments/prod/Procfile")
    assert list(prod) == ["web"]
    assert prod["web"].startswith("exec gunicorn ")
    assert "/etc/gunicorn/gunicorn.conf.py" in prod["web"]
    assert "--chdir app" in prod["web"] and prod["web"].endswith("project.wsgi:application")
    dev = procfile_entries("environments/dev/Procfile")
    assert set(dev) == {"web", "cdn"}
    assert "runserver_plus" in dev["web"] and "exec python" in dev["web"]
    assert "http.server" in dev["cdn"] and "--directory app/dist" in dev["cdn"]
    assert "${CDN_PORT:-8010}" in dev["cdn"] and "${WEB_PORT:-8080}" in dev["web"]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_env_examples_cover_settings(env_name):
    pairs = read_dotenv_example(ROOT / f"environments/{env_name}/.env.example")
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), "duplicate keys"
    values = dict(pairs)
    assert values["ENV_NAME"] == env_name
    assert values["PYTHONUNBUFFERED"] == "1"  # "false" would mean unbuffered too
    settings_py = (ROOT / "app/project/settings.py").read_text()
    used = set(re.findall(r'env_(?:str|bool|list|int)\("([A-Z_]+)"', settings_py))
    used |= set(re.findall(r'os\.environ\.get\("(ENV_[A-Z_]+)"', settings_py))
    optional = {"ENV_SILENCED_SYSTEM_CHECKS", "ENV_HSTS_INCLUDE_SUBDOMAINS", "ENV_HSTS_PRELOAD", "ENV_CSRF_TRUSTED_ORIGINS"}
    assert used - optional - set(keys) == set()
    for key, value in pairs:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key)
        assert not re.search(r"[\"'$`\\ ]", value), f"{key}: keep values in the common .env subset"


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_requirements_are_pinned_and_installed(env_name):
    from importlib.metadata import version
    for line in (ROOT / f"environments/{env_name}/requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, sep, pin = line.partition("==")
        assert sep and re.fullmatch(r"\d+(\.\d+)+", pin), f"unpinned: {line}"
        assert version(name) == pin, f"{name}: venv has {version(name)}, pinned {pin}"
