"""The Docker image, without a Docker engine (issue 13 items 10-11): the Dockerfile is parsed and checked.

Every path it copies exists and survives ``.dockerignore``; the entry command is the console script; the rules file
is the one ``CACHEPROXY_RULES`` names, in a directory meant to be mounted; the HEALTHCHECK script follows
``CACHEPROXY_PORT`` and the admin prefix (run here against a real proxy); hot reload works through a directory mount.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from proxy.config import store_names
from proxy.rules.loader import check_file
from proxy.rules.reload import RulesHolder
from tests.support.servers import free_port, run_process

ROOT = Path(__file__).resolve().parent.parent
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def arguments(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def env() -> dict[str, str]:
    found: dict[str, str] = {}
    for rest in arguments("ENV"):
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            found[key] = value
    return found


def ignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    anywhere = [p.removeprefix("**/") for p in patterns if p.startswith("**/")]
    rooted = [p for p in patterns if not p.startswith("**/")]
    return any(fnmatch.fnmatch(prefix, p) for p in rooted for prefix in prefixes) or any(
        fnmatch.fnmatch(part, p) for p in anywhere for part in parts
    )


def copies() -> list[tuple[list[str], str]]:
    out = []
    for rest in arguments("COPY"):
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        out.append((words[:-1], words[-1]))
    return out


def test_issue13_11_every_copied_path_exists_and_is_not_dockerignored() -> None:
    assert copies()
    for sources, _ in copies():
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"


def test_issue13_11_dockerignore_keeps_local_state_out() -> None:
    for path in (".git", ".venv", "tests", ".mypy_cache", "proxy/__pycache__"):
        assert ignored(path), path


def test_issue13_11_entry_command_is_the_console_script() -> None:
    (entry,) = arguments("ENTRYPOINT")
    command = json.loads(entry)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command == ["cacheproxy", "serve"]
    assert scripts["cacheproxy"] == "proxy.cli:main"


def test_issue13_10_rules_come_from_a_directory_the_variable_names() -> None:
    variables = env()
    rules = variables["CACHEPROXY_RULES"]
    assert rules == "/etc/cacheproxy/rules.yaml"
    (source,) = next(sources for sources, target in copies() if target == rules)
    assert check_file(ROOT / source, stores=store_names(variables.get("CACHEPROXY_STORE", "memory"))) == []
    readme = (ROOT / "README.md").read_text()
    assert "-v ./config:/etc/cacheproxy" in readme
    assert "CACHEPROXY_ADMIN_TOKEN" in readme


def test_issue13_11_healthcheck_runs_the_script_the_image_copies() -> None:
    (check,) = arguments("HEALTHCHECK")
    command = json.loads(check.partition("CMD")[2].strip())
    assert command[0] == "python"
    assert (["deploy/healthcheck.py"], command[1]) in copies()
    assert "8080" not in check  # the port comes from CACHEPROXY_PORT


def healthcheck(port: int, prefix: str) -> int:
    environ = {**os.environ, "CACHEPROXY_HOST": "0.0.0.0", "CACHEPROXY_PORT": str(port)}
    environ["CACHEPROXY_ADMIN_PREFIX"] = prefix
    return subprocess.run([sys.executable, str(HEALTHCHECK)], env=environ, capture_output=True, check=False).returncode


def test_issue13_11_healthcheck_follows_port_and_admin_prefix() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "proxy", "serve", "--upstream", "http://127.0.0.1:9", "--no-access-log"]
    environ = {"CACHEPROXY_PORT": str(port), "CACHEPROXY_ADMIN_PREFIX": "/ops", "PYTHONPATH": str(ROOT)}
    with run_process(args, ready_url=url + "/ops/healthz", env=environ, timeout=60):
        assert healthcheck(port, "/ops") == 0
        assert healthcheck(port, "/_cacheproxy") == 1  # the default prefix is not where this proxy answers
    assert healthcheck(port, "/ops") == 1  # nothing listens any more


async def eventually(holder: RulesHolder, name: str) -> bool:
    for _ in range(250):
        if holder.current.routes and holder.current.routes[0].name == name:
            return True
        await asyncio.sleep(0.02)
    return False


def rules_named(name: str) -> str:
    return f"routes:\n  - name: {name}\n    match: {{path: /{name}/**}}\n"


@pytest.mark.parametrize("layout", ["directory", "configmap"], ids=["issue13-10-dir-mount", "issue13-10-configmap"])
async def test_issue13_10_reload_on_rename_through_a_directory_mount(tmp_path: Path, layout: str) -> None:
    """The container sees the host's ``config/`` directory at ``/etc/cacheproxy`` (here: a symlink to it).

    A save by rename on the host replaces the directory entry; the watcher stats the path through the directory,
    so it sees the new file. ``configmap``: Kubernetes swaps a ``..data`` symlink instead; the same watcher follows.
    """
    host_dir = tmp_path / "config"
    host_dir.mkdir()
    mount = tmp_path / "etc-cacheproxy"
    mount.symlink_to(host_dir, target_is_directory=True)
    if layout == "directory":
        (host_dir / "rules.yaml").write_text(rules_named("first"))
    else:
        (host_dir / "v1").mkdir()
        (host_dir / "v1" / "rules.yaml").write_text(rules_named("first"))
        (host_dir / "..data").symlink_to("v1")
        (host_dir / "rules.yaml").symlink_to("..data/rules.yaml")
    holder = RulesHolder(mount / "rules.yaml")
    watcher = asyncio.create_task(holder.watch(interval=0.05))
    try:
        assert holder.current.routes[0].name == "first"
        if layout == "directory":
            saved = host_dir / ".rules.yaml.swp"
            saved.write_text(rules_named("renamed"))
            os.replace(saved, host_dir / "rules.yaml")  # an editor's save
        else:
            (host_dir / "v2").mkdir()
            (host_dir / "v2" / "rules.yaml").write_text(rules_named("renamed"))
            (host_dir / "..data_tmp").symlink_to("v2")
            os.replace(host_dir / "..data_tmp", host_dir / "..data")  # the kubelet's atomic swap
        assert await eventually(holder, "renamed")
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
