"""Next to a real dockerd: Debian's docker.io (unpacked from its packages by
scripts/make-test-images, never installed) runs with its defaults in a private network
namespace, where it sets iptables' FORWARD policy to DROP; minidock's containers there still
reach the outside, the outside reaches a published port, and docker's own containers keep
working. The check itself is scripts/check-docker-coexistence (also for a host's installed
Docker, by hand); this test runs it against the unpacked dockerd and wants every line PASS."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images,
              pytest.mark.network]


def test_minidock_and_a_real_dockerd_share_a_host(dockerd_kit):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "check-docker-coexistence"),
                        "--minidock", f"{sys.executable} -m minidock",
                        "--dockerd-kit", str(dockerd_kit)],
                       capture_output=True, text=True, timeout=600)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 5, r.stdout + r.stderr
    assert all(line.startswith("PASS") for line in lines), r.stdout
