"""`system df` and `system prune` on a data root of their own (prune -a would take the
session's images): Docker's table and report, recorded from docker 20.10 here."""

from __future__ import annotations

import shutil

import pytest
from conftest import MD

from minidock.cli.format import human_size

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]


@pytest.fixture
def own(md_dirs, test_images):
    base = md_dirs / "disk"
    private = MD(root=str(base / "root"), run_root=str(base / "run"))
    private.run("import", "-c", 'CMD ["sh"]', str(test_images / "busybox.tar"), "busybox",
                check=True)
    yield private
    private.run("rm", "-f", *private.run("ps", "-aq").stdout.split())
    private.run("system", "prune", "-af", "--volumes")
    shutil.rmtree(base, ignore_errors=True)


def busybox_size(own) -> str:
    """The test image's size as df prints it (4 digits: 1.984MB for Debian 12's busybox)."""
    size = own.run("image", "inspect", "-f", "{{.Size}}", "busybox", check=True).stdout
    return human_size(int(size), 4)


def test_df_counts_images_containers_and_volumes(own):
    size = busybox_size(own)
    assert own.run("system", "df", check=True).stdout.splitlines()[1:] == [
        f"Images          1         0         {size:<10}{size} (100%)",
        "Containers      0         0         0B        0B",
        "Local Volumes   0         0         0B        0B",
        "Build Cache     0         0         0B        0B"]
    own.run("run", "--name", "done", "--network", "none", "-v", "v1:/data", "busybox", "sh",
            "-c", "echo 123456789 > /data/f; echo x > /y", check=True)
    own.run("run", "-d", "--name", "up", "--network", "none", "busybox", "sleep", "300",
            check=True)
    out = own.run("system", "df", "--format",
                  "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|{{.Reclaimable}}",
                  check=True).stdout
    assert out.splitlines() == [f"Images|1|1|{size}|0B (0%)", "Containers|2|1|2B|2B (100%)",
                                "Local Volumes|1|1|10B|0B (0%)", "Build Cache|0|0|0B|0B"]


def test_prune_removes_what_nothing_uses(own):
    own.run("run", "--name", "done", "--network", "none", "-v", "v1:/data", "busybox", "sh",
            "-c", "echo 123456789 > /data/f", check=True)
    up = own.run("run", "-d", "--name", "up", "--network", "none", "busybox", "sleep", "300",
                 check=True).stdout.strip()
    own.run("volume", "create", "keep-me-not", check=True)
    r = own.run("system", "prune", "-f", check=True)
    done_gone = r.stdout.splitlines()
    assert done_gone[0] == "Deleted Containers:" and len(done_gone[1]) == 64
    assert "keep-me-not" in own.run("volume", "ls", "-q").stdout  # volumes: only --volumes
    r = own.run("system", "prune", "-f", "--volumes", check=True)
    assert r.stdout == "Deleted Volumes:\nkeep-me-not\nv1\n\nTotal reclaimed space: 10B\n"
    r = own.run("system", "prune", "-af", check=True)  # busybox is the running one's
    assert r.stdout == "Total reclaimed space: 0B\n"
    own.run("rm", "-f", up, check=True)
    size = busybox_size(own)
    r = own.run("system", "prune", "-af", check=True)
    assert r.stdout.startswith("Deleted Images:\nuntagged: busybox:latest\ndeleted: sha256:")
    assert r.stdout.endswith(f"\nTotal reclaimed space: {size}\n")
    assert own.run("images", "-q").stdout == ""
