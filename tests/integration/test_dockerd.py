"""minidock and a real dockerd: Debian's docker.io (unpacked from its packages by
scripts/make-test-images, never installed) started with its defaults in a private network
namespace by the two checks that also serve a host's installed Docker by hand:

- scripts/check-docker-coexistence: next to dockerd (FORWARD policy DROP, docker0) minidock's
  containers still reach the outside, the outside reaches a published port, and docker's own
  containers keep working;
- scripts/check-docker-interop: docker loads and runs what minidock commits and builds
  (deletions, opaque dirs, hard links, symlinks, file capabilities, history) and gives it the
  same image id.

Each test wants every line of its check PASS."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images,
              pytest.mark.network]


def check(script: str, kit: object) -> list[str]:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / script),
                        "--minidock", f"{sys.executable} -m minidock", "--dockerd-kit", str(kit)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return [line for line in r.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]


def test_minidock_and_a_real_dockerd_share_a_host(dockerd_kit):
    lines = check("check-docker-coexistence", dockerd_kit)
    assert len(lines) == 5 and all(line.startswith("PASS") for line in lines), lines


def test_docker_loads_and_runs_what_minidock_commits_and_builds(dockerd_kit):
    lines = check("check-docker-interop", dockerd_kit)
    assert len(lines) == 10 and all(line.startswith("PASS") for line in lines), lines
