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
    ".platform/scripts/migrate.sh",
    "tests/container/run",
    "tests/container/images/debian",
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


def test_compose_works_before_any_env_file_exists(tmp_path):
    """A fresh clone (no .env yet, as in CI) can `config` and `build` both stacks: the
    env_file is optional; the dev stack then runs on the image's documented defaults."""
    for name in ("docker", "environments", "app"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns(".env", "dist"))
    for compose_file in COMPOSE_FILES[:2]:
        result = run([tool("docker-compose"), "-f", compose_file, "config", "--format", "json"],
                     cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", result.stderr
        assert "django" in json.loads(result.stdout)["services"]
        raw = yaml.safe_load((ROOT / compose_file).read_text())["services"]["django"]["env_file"]
        assert [e.get("required") for e in raw] == [False], raw
    dev = dockerfile_instructions("docker/django/dev/Dockerfile")
    dev_env = " ".join(a for s, i, a in dev if s == "dev" and i == "ENV")
    assert "ENV_DEBUG=true" in dev_env and "ENV_CDN=//localhost:8010/" in dev_env


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
        assert service["platform"] == "${DOCKER_PLATFORM:-linux/amd64}"
    assert doc["services"]["django"]["env_file"] == ".env"
    # Migrations run once per deployment (leader_only), not in every container.
    assert doc["services"]["django"]["command"] == ["start", "web"]
    # Only EB has a healthd agent to read its log.
    assert doc["services"]["nginx"]["environment"]["HEALTHD_LOG"] == "on"
    for compose_file in COMPOSE_FILES[:2]:
        text = (ROOT / compose_file).read_text()
        assert "HEALTHD_LOG" not in text and "/var/log/nginx" not in text, compose_file


def test_prod_images_pin_their_platform():
    doc = yaml.safe_load((ROOT / COMPOSE_FILES[1]).read_text())
    for name in ("django", "nginx"):
        assert doc["services"][name]["platform"] == "${DOCKER_PLATFORM:-linux/amd64}"


def gunicorn_settings():
    """gunicorn.conf.py's values with nothing overridden from the environment."""
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
    return conf


def test_shutdown_budget_is_nested():
    """gunicorn graceful_timeout < procrun's timeout < the container stop timeouts."""
    graceful = gunicorn_settings()["graceful_timeout"]
    dockerfile = (ROOT / "docker/django/prod/Dockerfile").read_text()
    procrun_timeout = int(re.search(r"PROCRUN_TIMEOUT=(\d+)", dockerfile).group(1))
    assert dict(read_dotenv_example(ROOT / "environments/prod/.env.example"))["PROCRUN_TIMEOUT"] == str(procrun_timeout)
    assert eb_option_settings()["aws:elasticbeanstalk:application:environment"]["PROCRUN_TIMEOUT"] == str(procrun_timeout)
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
    # defaulting to official images pinned by tag and digest.
    defaults = dict(a.split("=", 1) for s, i, a in instrs if s is None and i == "ARG")
    stages = {s for s, _, _ in instrs}
    for stage, instr, args in instrs:
        if instr == "FROM":
            image = [a for a in args.split() if not a.startswith("--")][0]
            if image in stages:
                continue
            match = re.fullmatch(r"\$\{(\w+)\}", image)
            assert match and match.group(1) in defaults, f"{image}: use an ARG declared before FROM"
            default = defaults[match.group(1)]
            assert re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}", default), \
                f"{default}: pin the base image as name:tag@sha256:<index digest>"
            assert not default.split("@")[0].endswith(":latest"), default
    assert {"PYTHON_IMAGE", "RUST_IMAGE"} <= set(defaults), defaults
    # The image says which commit it was built from (bin/image passes REVISION).
    assert final_instrs[-1] == ("LABEL", "org.opencontainers.image.revision=$REVISION")
    assert ("ARG", "REVISION=unknown") in final_instrs


def procrun_build_stage(dockerfile):
    return [(i, a) for s, i, a in dockerfile_instructions(dockerfile) if s == "procrun-build"]


def test_procrun_build_stage_cross_compiles_for_the_target_platform():
    """The stage runs on the build machine and compiles for TARGETARCH with rust-lld, so an
    amd64 machine builds arm64 images (and Apple Silicon / Graviton amd64 ones) without
    emulation; the same stage in both Dockerfiles. tests/container builds it for arm64."""
    prod, dev = (procrun_build_stage(d) for d in DOCKERFILES[::-1])
    assert prod == dev, "keep the procrun-build stage identical in both Dockerfiles"
    froms = [a for s, i, a in dockerfile_instructions(DOCKERFILES[1]) if i == "FROM"]
    assert froms[0] == "--platform=$BUILDPLATFORM ${RUST_IMAGE} AS procrun-build"
    assert all("--platform" not in f for f in froms[1:]), "the other stages run on the target platform"
    env = " ".join(a for i, a in prod if i == "ENV")
    for arch in ("X86_64", "AARCH64"):
        assert f"CARGO_TARGET_{arch}_UNKNOWN_LINUX_MUSL_LINKER=rust-lld" in env


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

def render_nginx(workdir, upstream, listen, static_root, healthd="off"):
    """Lay out nginx's config under a private prefix as the image's entrypoint would: run
    docker/nginx/15-healthd-logdir.sh (the log directory for the worker user), then render
    the site template (envsubst of the set variables only)."""
    conf_dir = workdir / "nginx"
    (conf_dir / "conf.d").mkdir(parents=True)
    (conf_dir / "tmp").mkdir()
    (conf_dir / "logs").mkdir()
    shutil.copy(ROOT / "docker/nginx/nginx.conf", conf_dir / "nginx.conf")
    shutil.copy("/etc/nginx/mime.types", conf_dir / "mime.types")
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_UPSTREAM": upstream,
        "NGINX_PORT": listen,
        "STATIC_ROOT": str(static_root),
        "NGINX_LOG_DIR": str(conf_dir / "logs"),
        "HEALTHD_LOG": healthd,
        "NGINX_CONF": str(conf_dir / "nginx.conf"),
        "NGINX_BIN": tool("nginx"),
    }
    setup = subprocess.run(["sh", str(ROOT / "docker/nginx/15-healthd-logdir.sh")],
                           capture_output=True, text=True, env=env, timeout=30)
    assert setup.returncode == 0 and setup.stderr == "", setup.stderr
    assert (conf_dir / "logs" / "healthd").is_dir() == (healthd == "on")
    template = (ROOT / "docker/nginx/templates/default.conf.template").read_text()
    rendered = subprocess.run(
        [tool("envsubst"), "${DJANGO_UPSTREAM} ${NGINX_PORT} ${STATIC_ROOT} ${NGINX_LOG_DIR} ${HEALTHD_LOG}"],
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


@pytest.mark.parametrize("healthd", ["on", "off"])
def test_nginx_config_is_valid(tmp_path, healthd):
    tmp_path.chmod(0o755)
    static_root = tmp_path / "dist"
    static_root.mkdir()
    conf_dir = render_nginx(tmp_path, "127.0.0.1:9", "127.0.0.1:9", static_root, healthd)
    result = run([*nginx_command(conf_dir), "-t"], timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_site_template():
    site = (ROOT / "docker/nginx/templates/default.conf.template").read_text()
    directives = "\n".join(l for l in site.splitlines() if not l.lstrip().startswith("#"))
    assert "django:8080" not in directives, "the upstream is templated, not hard-coded"
    # The client's own X-Forwarded-Proto is never passed on as such.
    assert "$http_x_forwarded_proto;" not in directives
    assert "proxy_set_header X-Forwarded-Proto $forwarded_proto;" in directives
    assert "location /static/" in directives and "expires 1y" not in directives
    main = (ROOT / "docker/nginx/nginx.conf").read_text()
    assert re.search(r"^\s*include conf\.d/\*\.conf;", main, re.M)
    assert not re.search(r"^\s*(user|pid)\s", main, re.M)


def test_nginx_keepalive_outlives_the_load_balancer_idle_timeout():
    """nginx must not close an idle connection the load balancer may still send a request on
    (a 502): its keepalive timeout exceeds the ALB's idle timeout."""
    main = (ROOT / "docker/nginx/nginx.conf").read_text()
    keepalive = seconds(re.search(r"^\s*keepalive_timeout\s+(\S+);", main, re.M).group(1))
    options = eb_option_settings()
    idle = int(options["aws:elbv2:loadbalancer"]["IdleTimeout"])
    assert idle == 60 and keepalive > idle, (keepalive, idle)


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


# The options this project sets, per namespace, as the EB documentation lists them
# ("General options for all environments", "ALB", "Docker"): a typo in a name is not an
# error for EB, it is silently an unknown setting.
EB_OPTIONS = {
    "aws:elasticbeanstalk:application:environment": None,  # any environment property
    "aws:elasticbeanstalk:environment:process:default": {
        "DeregistrationDelay", "HealthCheckInterval", "HealthCheckPath", "HealthCheckTimeout",
        "HealthyThresholdCount", "MatcherHTTPCode", "Port", "Protocol", "StickinessEnabled",
        "StickinessLBCookieDuration", "StickinessType", "UnhealthyThresholdCount"},
    "aws:elasticbeanstalk:command": {
        "BatchSize", "BatchSizeType", "DeploymentPolicy", "HealthCheckSuccessThreshold",
        "IgnoreHealthCheck", "Timeout"},
    "aws:autoscaling:updatepolicy:rollingupdate": {
        "MaxBatchSize", "MinInstancesInService", "PauseTime", "RollingUpdateEnabled",
        "RollingUpdateType", "Timeout"},
    "aws:elasticbeanstalk:environment": {
        "EnvironmentType", "LoadBalancerIsShared", "LoadBalancerType", "ServiceRole"},
    "aws:elbv2:loadbalancer": {
        "AccessLogsS3Bucket", "AccessLogsS3Enabled", "AccessLogsS3Prefix", "IdleTimeout",
        "ManagedSecurityGroup", "SecurityGroups"},
    "aws:elbv2:listener:443": {
        "DefaultProcess", "ListenerEnabled", "Protocol", "Rules", "SSLCertificateArns", "SSLPolicy"},
    "aws:elasticbeanstalk:healthreporting:system": {
        "ConfigDocument", "EnhancedHealthAuthEnabled", "HealthCheckSuccessThreshold", "SystemType"},
    "aws:elasticbeanstalk:cloudwatch:logs": {"DeleteOnTerminate", "RetentionInDays", "StreamLogs"},
    "aws:elasticbeanstalk:cloudwatch:logs:health": {
        "DeleteOnTerminate", "HealthStreamingEnabled", "RetentionInDays"},
}
EB_CONFIGS = sorted(p.name for p in (ROOT / ".ebextensions").glob("*.config")) + ["https.config.template"]


def eb_config(name):
    return yaml.safe_load((ROOT / ".ebextensions" / name).read_text())


def eb_option_settings():
    """The option settings of every .ebextensions file (the HTTPS one as bundled), merged."""
    merged = {}
    for name in EB_CONFIGS:
        for namespace, options in (eb_config(name).get("option_settings") or {}).items():
            merged.setdefault(namespace, {}).update(options)
    return merged


@pytest.mark.parametrize("name", EB_CONFIGS)
def test_ebextensions_option_settings(name):
    doc = eb_config(name)
    assert set(doc) <= {"option_settings", "container_commands", "Resources"}, set(doc)
    for namespace, options in (doc.get("option_settings") or {}).items():
        assert namespace in EB_OPTIONS, f"{name}: unknown namespace {namespace}"
        allowed = EB_OPTIONS[namespace]
        for key, value in options.items():
            assert isinstance(value, str), f"{name}: {namespace} {key}: quote the value"
            assert allowed is None or key in allowed, f"{name}: unknown option {namespace} {key}"
    env = (doc.get("option_settings") or {}).get("aws:elasticbeanstalk:application:environment", {})
    for key, value in env.items():
        assert re.fullmatch(r"[A-Za-z0-9_.:/+\\@-]{1,128}", key), key
        assert len(value) <= 256
        assert not re.search(r"SECRET|PASSWORD|TOKEN|KEY$|DATABASE_URL", key), f"{key} looks like a secret"


def test_eb_environment_properties():
    env = eb_option_settings()["aws:elasticbeanstalk:application:environment"]
    assert sum(len(k) + 1 + len(v) for k, v in env.items()) <= 4096
    assert env["ENV_NAME"] == "prod" and env["ENV_DEBUG"] == "false"
    assert "PYTHONPATH" not in env and "ENV_ALLOWED_HOSTS" not in env  # per environment: eb setenv
    # With the HTTPS listener (the rendered template), Django redirects and sends HSTS.
    assert env["ENV_SSL_REDIRECT"] == "true" and int(env["ENV_HSTS_SECONDS"]) >= 31536000
    base = eb_config("01_envvars.config")["option_settings"]["aws:elasticbeanstalk:application:environment"]
    assert "ENV_SSL_REDIRECT" not in base, "only with HTTPS: a --no-https bundle must not redirect"


def test_eb_deployment_health_and_logs():
    options = eb_option_settings()
    command = options["aws:elasticbeanstalk:command"]
    assert command["DeploymentPolicy"] in ("Rolling", "RollingWithAdditionalBatch", "Immutable")
    assert options["aws:autoscaling:updatepolicy:rollingupdate"]["RollingUpdateType"] in ("Health", "Immutable")
    process = options["aws:elasticbeanstalk:environment:process:default"]
    assert process["HealthCheckPath"] == "/health" and process["MatcherHTTPCode"] == "200"
    # A deregistered instance may finish what gunicorn would still let a request take.
    conf = gunicorn_settings()
    assert int(process["DeregistrationDelay"]) >= conf["timeout"]
    assert options["aws:elasticbeanstalk:healthreporting:system"]["SystemType"] == "enhanced"
    assert options["aws:elasticbeanstalk:cloudwatch:logs"]["StreamLogs"] == "true"
    assert options["aws:elasticbeanstalk:environment"]["LoadBalancerType"] == "application"


def test_eb_https_listener_and_redirect():
    doc = eb_config("https.config.template")
    listener = doc["option_settings"]["aws:elbv2:listener:443"]
    assert listener["Protocol"] == "HTTPS" and listener["SSLCertificateArns"] == "@EB_CERTIFICATE_ARN@"
    assert listener["SSLPolicy"].startswith("ELBSecurityPolicy-TLS13")
    port80 = doc["Resources"]["AWSEBV2LoadBalancerListener"]
    assert port80["Type"] == "AWS::ElasticLoadBalancingV2::Listener"
    assert port80["Properties"]["Port"] == 80
    assert port80["Properties"]["LoadBalancerArn"] == {"Ref": "AWSEBV2LoadBalancer"}
    [action] = port80["Properties"]["DefaultActions"]
    assert action == {"Type": "redirect", "RedirectConfig": {
        "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}


def test_eb_migrates_once_per_deployment():
    commands = eb_config("10_migrate.config")["container_commands"]
    assert list(commands) == ["01_migrate"]
    assert commands["01_migrate"]["leader_only"] is True
    assert commands["01_migrate"]["command"] == "bash .platform/scripts/migrate.sh docker-compose.yml"
    script = (ROOT / ".platform/scripts/migrate.sh").read_text()
    assert "run -- python app/manage.py migrate --noinput" in script


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
    "app/db.sqlite3", "dist/eb/v1.4.0-docker.zip",
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
        ".ebextensions/02_deployment.config",
        ".ebextensions/10_migrate.config",
        ".platform/hooks/postdeploy/01_prune_images.sh",
        ".platform/scripts/migrate.sh",
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
        assert not f.startswith((".git/", "target/", "app/dist/", ".elasticbeanstalk/", "tests/", "logs/", "dist/"))
        assert not f.endswith(".sqlite3"), f
        assert "__pycache__" not in f


def test_gitignore_keeps_secrets_and_output_out():
    spec = pathspec.PathSpec.from_lines("gitignore", (ROOT / ".gitignore").read_text().splitlines())
    for path in (".env", "environments/dev/.env", "environments/prod/.env",
                 "app/dist/css/app.css", "logs/nginx/access.log", ".elasticbeanstalk/config.yml",
                 "app/db.sqlite3", "dist/eb/v1.4.0-docker.zip"):
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
    # release first (procrun's release phase: a type named release runs to completion first).
    assert list(prod) == ["release", "web"]
    assert prod["release"] == "exec python app/manage.py migrate --noinput"
    assert prod["web"].startswith("exec gunicorn ")
    assert "/etc/gunicorn/gunicorn.conf.py" in prod["web"]
    assert "--chdir app" in prod["web"] and prod["web"].endswith("project.wsgi:application")
    dev = procfile_entries("environments/dev/Procfile")
    assert list(dev) == ["release", "web", "cdn"]
    assert dev["release"] == prod["release"]
    assert "runserver_plus" in dev["web"] and "exec python" in dev["web"]
    assert "http.server" in dev["cdn"] and "--directory app/dist" in dev["cdn"]
    assert "${CDN_PORT:-8010}" in dev["cdn"] and "${WEB_PORT:-8080}" in dev["web"]
    nginx = procfile_entries("docker/nginx/Procfile")
    assert nginx == {"nginx": "exec /docker-entrypoint.sh nginx -g 'daemon off; pid /tmp/nginx.pid;'"}


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
    optional = {"ENV_SILENCED_SYSTEM_CHECKS", "ENV_HSTS_INCLUDE_SUBDOMAINS", "ENV_HSTS_PRELOAD",
                "ENV_CSRF_TRUSTED_ORIGINS", "ENV_DB_CONN_MAX_AGE"}
    optional |= {k for k in used if k.startswith("RDS_")}  # set by EB for an attached RDS database
    assert used - optional - set(keys) == set()
    assert "DATABASE_URL" in keys
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
