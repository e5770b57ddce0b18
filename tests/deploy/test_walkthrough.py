"""The README's deployment walk-through, every command of it, in order, on a fresh clone of
the repository, with docker, eb and kubectl replaced by fakes that keep state (what was
built from which commit, tagged, pushed, deployed): the commands work as written, a release
deploys exactly the images built from the clone's commit, and the clone stays clean."""
import hashlib
import json
import re
import shutil
import subprocess
import zipfile

import pytest
import yaml

from conftest import ROOT, run

README = ROOT / "README.md"

# A docker that remembers images (label, pushed digest) in STATE; eb and kubectl that record
# what they were asked and check what they were given.
FAKE = r'''#!/usr/bin/env python3
import hashlib, json, os, re, sys, zipfile
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
state_file = os.environ["FAKE_STATE"]
state = json.load(open(state_file)) if os.path.exists(state_file) else {
    "labels": {}, "digests": {}, "calls": [], "secrets": [], "deployed": []}
state["calls"].append([name] + args)
rc = 0
def image_name(repo_var, default):
    return os.environ.get(repo_var) or default
if name == "docker":
    if args[:1] == ["compose"]:
        compose_file = args[args.index("-f") + 1]
        if "build" in args:
            revision = args[args.index("--build-arg") + 1].split("=", 1)[1]
            tag = os.environ.get("IMAGE_TAG", "prod")
            if "/prod/" in compose_file:
                refs = [image_name("IMAGE_REPO", "procrun-example/django") + ":" + tag,
                        image_name("NGINX_IMAGE_REPO", "procrun-example/nginx") + ":" + tag]
            else:
                refs = ["procrun-example/django:dev"]
            for ref in refs:
                state["labels"][ref] = revision
    elif args[:1] == ["tag"]:
        state["labels"][args[2]] = state["labels"][args[1]]
    elif args[:1] == ["push"]:
        if args[1] not in state["labels"]:
            print("no such image: " + args[1], file=sys.stderr); rc = 1
        else:
            state["digests"][args[1]] = hashlib.sha256(args[1].encode()).hexdigest()
    elif args[:2] == ["image", "inspect"]:
        ref = args[-1]
        if ref not in state["labels"]:
            rc = 1
        elif "RepoDigests" in args[3]:
            if ref in state["digests"]:
                print(ref.rsplit(":", 1)[0] + "@sha256:" + state["digests"][ref])
        else:
            print(state["labels"][ref])
    elif args[:1] == ["pull"]:
        rc = 1  # no registry here
elif name == "eb":
    if args[:1] == ["init"]:
        os.makedirs(".elasticbeanstalk", exist_ok=True)
        with open(".elasticbeanstalk/config.yml", "w") as f:
            f.write("global:\n  application_name: %s\n  default_region: eu-west-1\n" % args[1])
    elif args[:1] == ["status"]:
        print("  Status: Ready")
    elif args[:1] == ["deploy"]:
        config = open(".elasticbeanstalk/config.yml").read()
        artifact = re.search(r"^  artifact: (.+)$", config, re.M)
        record = {"env": args[1], "args": args[2:]}
        if artifact:
            with zipfile.ZipFile(artifact.group(1)) as z:
                record["compose"] = z.read("docker-compose.yml").decode()
        state["deployed"].append(record)
elif name == "kubectl":
    if "create" in args and "secret" in args:
        state["secrets"].append(args[args.index("generic") + 1])
    elif "get" in args and "secret" in args:
        rc = 0 if args[args.index("secret") + 1] in state["secrets"] else 1
    elif "get" in args and "job" in args:
        print("1/", end="")
json.dump(state, open(state_file, "w"))
sys.exit(rc)
'''


def walkthrough_commands():
    """The sh code blocks of the deployment section, in order (the clone is given)."""
    text = README.read_text()
    section = text[text.index("## Deploying with"):text.index("### The container suite")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 6, "the walk-through's code blocks"
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("git clone "):
                assert line.endswith("&& cd myapp"), line
                continue
            lines.append(line)
    return lines


@pytest.fixture
def clone(tmp_path):
    """A fresh clone: the repository's files (as in the working tree) committed to a new
    repository, no .env, no build output."""
    tree = tmp_path / "myapp"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], check=True)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"],
                ["remote", "add", "origin", str(origin)], ["push", "-q", "origin", "HEAD"]):
        run(git + cmd, cwd=tree, check=True)
    bin_dir = tmp_path / "fakes"
    bin_dir.mkdir()
    for name in ("docker", "eb", "kubectl"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    return tree, bin_dir


def test_the_readme_walkthrough_works_as_written(clone, tmp_path):
    tree, fakes = clone
    state_file = tmp_path / "state.json"
    script = "set -euo pipefail\n" + "\n".join(walkthrough_commands()) + "\n"
    result = subprocess.run(
        ["bash", "-c", script], cwd=tree, capture_output=True, text=True, timeout=300,
        env={"PATH": f"{fakes}:/usr/bin:/bin", "HOME": str(tmp_path), "FAKE_STATE": str(state_file),
             "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
             "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    state = json.loads(state_file.read_text())
    head = run(["git", "rev-parse", "HEAD"], cwd=tree, check=True).stdout.strip()
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    # The release: built from the clone's commit, tagged, pushed, and deployed by digest.
    assert state["labels"][f"{ecr}/myapp:1.4.0"] == head
    assert state["labels"][f"{ecr}/myapp-nginx:1.4.0"] == head
    assert run(["git", "tag", "--list", "v1.4.0"], cwd=tmp_path / "origin.git").stdout.strip() == "v1.4.0"
    eb_deploys = [d for d in state["deployed"] if "--label" in d["args"]]
    assert [d["env"] for d in eb_deploys] == ["myapp-prod"]
    images = {n: s["image"] for n, s in yaml.safe_load(eb_deploys[0]["compose"])["services"].items()}
    digest = lambda ref: ref.rsplit(":", 1)[0] + "@sha256:" + hashlib.sha256(ref.encode()).hexdigest()  # noqa: E731
    assert images == {"django": digest(f"{ecr}/myapp:1.4.0"), "nginx": digest(f"{ecr}/myapp-nginx:1.4.0")}
    # The rollback redeploys an earlier application version as it is.
    assert {"env": "myapp-prod", "args": ["--version", "v1.3.2"]} in state["deployed"]
    # Kubernetes: the Secret before the deploy, the Job before the rollout.
    kubectl = [" ".join(c[1:]) for c in state["calls"] if c[0] == "kubectl"]
    job = next(i for i, c in enumerate(kubectl) if c.startswith("apply -f dist/k8s/v1.4.0/migrate-job.yaml"))
    rollout = next(i for i, c in enumerate(kubectl) if c.startswith("-n procrun-app rollout status"))
    assert job < rollout
    k8s = (tree / "dist/k8s/v1.4.0/deployment.yaml").read_text()
    assert digest(f"{ecr}/myapp:1.4.0") in k8s and "procrun-example/" not in k8s
    # Nothing the walk-through made shows up as a change in the clone (.env, dist/, eb's config).
    assert run(["git", "status", "--porcelain"], cwd=tree).stdout == ""
    with zipfile.ZipFile(tree / "dist/eb/v1.4.0-docker.zip") as z:
        assert not any(n.endswith(".env") for n in z.namelist())
