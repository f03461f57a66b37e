"""Test tiers and requirement markers, for every test under tests/.

The directory decides the tier: everything under tests/integration is marked ``integration``
(real kernel, real tools, root). Tests declare what they need with markers, and are skipped
where it is missing:

    root      euid 0
    overlay   overlayfs in the kernel (one ``modprobe overlay`` is tried)
    cgroup    a writable cgroup hierarchy (v2, or the v1 controllers of a v1/hybrid host)
    images    the test image tarballs (tests/integration/conftest.py builds them on demand)
    registry  a local registry (the docker-registry binary, or MINIDOCK_TEST_REGISTRY)

Strict mode (CI=true or MINIDOCK_STRICT=1): a skipped integration test is reported as a
failure, and so is an integration module skipped as a whole, so nothing silently stops being
tested. xfail is left alone; unit tests may still skip.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
INTEGRATION_DIR = TESTS_DIR / "integration"

REQUIREMENT_MARKERS = {
    "root": "needs uid 0",
    "overlay": "needs overlayfs",
    "cgroup": "needs a writable cgroup hierarchy (v1, v2 or hybrid)",
    "images": "needs the test images built by scripts/make-test-images",
    "registry": "needs a registry on 127.0.0.1",
    "network": "needs veth, bridges and nftables (the nft command) for minidock's bridge",
    "idmap": "needs overlayfs over idmapped layers (Linux 5.19+; --userns remap)",
}

# pytest.StashKey holding the node ids of integration modules skipped at collection
_COLLECT_SKIPS = pytest.StashKey[list[str]]()


def strict_mode() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("MINIDOCK_STRICT") == "1"


def is_integration(path: Path | str) -> bool:
    try:
        Path(path).resolve().relative_to(INTEGRATION_DIR)
    except ValueError:
        return False
    return True


# -- requirement probes (each answered once per session) ---------------------------------------


@functools.cache
def have_root() -> bool:
    return os.geteuid() == 0


def _overlay_listed() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


@functools.cache
def have_overlay() -> bool:
    if _overlay_listed():
        return True
    modprobe = shutil.which("modprobe") or "/sbin/modprobe"
    if have_root() and os.path.exists(modprobe):
        subprocess.run([modprobe, "overlay"], capture_output=True, check=False)
    return _overlay_listed()


@functools.cache
def have_writable_cgroup() -> bool:
    base = "/sys/fs/cgroup"
    if os.path.exists(os.path.join(base, "cgroup.controllers")):  # unified (v2) hierarchy
        return os.access(base, os.W_OK)
    # v1 or hybrid: the tmpfs at /sys/fs/cgroup is often read-only, its controller mounts are not
    # (access() reports EROFS for a read-only mount, so this checks the mount as well)
    for controller in ("pids", "memory", "cpu", "unified"):
        path = os.path.join(base, controller)
        if os.path.ismount(path) and os.access(path, os.W_OK):
            return True
    return False


@functools.cache
def have_registry() -> bool:
    if os.environ.get("MINIDOCK_TEST_REGISTRY"):
        return True
    return shutil.which("docker-registry") is not None


@functools.cache
def have_network() -> bool:
    return have_root() and shutil.which("nft") is not None and os.path.exists(
        "/proc/sys/net/ipv4/ip_forward")


# -- hooks ---------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: under tests/integration (set automatically)")
    declared = {line.split(":")[0].strip() for line in config.getini("markers")}
    for name, doc in REQUIREMENT_MARKERS.items():
        if name not in declared:
            config.addinivalue_line("markers", f"{name}: {doc}")
    config.stash[_COLLECT_SKIPS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if is_integration(item.path):
            item.add_marker(pytest.mark.integration)


def have_idmapped_overlay() -> bool:
    """overlayfs takes idmapped layers since 5.19 (--userns remap's rootfs)."""
    release = os.uname().release.split("-")[0].split(".")
    try:
        return (int(release[0]), int(release[1])) >= (5, 19)
    except (IndexError, ValueError):
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and not have_root():
        pytest.skip("needs root (euid 0)")
    if item.get_closest_marker("overlay") and not have_overlay():
        pytest.skip("needs overlayfs: 'overlay' is not in /proc/filesystems (modprobe overlay)")
    if item.get_closest_marker("cgroup") and not have_writable_cgroup():
        pytest.skip("needs a writable cgroup hierarchy under /sys/fs/cgroup")
    if item.get_closest_marker("registry") and not have_registry():
        pytest.skip("needs a registry: install docker-registry or set MINIDOCK_TEST_REGISTRY")
    if item.get_closest_marker("network") and not have_network():
        pytest.skip("needs nftables' nft command and root (apt-get install nftables)")
    if item.get_closest_marker("idmap") and not have_idmapped_overlay():
        pytest.skip("needs Linux 5.19+ (overlayfs over idmapped layers) for --userns remap")
    # `images` is resolved by the autouse fixture in tests/integration/conftest.py, which builds
    # the tarballs when they are missing.


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, lineno, "Skipped: why")
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and strict_mode()
        and is_integration(item.path)
    ):
        reason = _skip_reason(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"integration test skipped in strict mode (CI=true or MINIDOCK_STRICT=1): {reason}\n"
            "Install what it needs (scripts/test.sh does) instead of skipping it."
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and strict_mode() and is_integration(collector.path):
        collector.config.stash[_COLLECT_SKIPS].append(
            f"{report.nodeid}: {_skip_reason(report.longrepr)}"
        )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    skips = config.stash.get(_COLLECT_SKIPS, [])
    if skips:
        terminalreporter.section("integration modules skipped in strict mode", red=True)
        for line in skips:
            terminalreporter.line(line, red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.stash.get(_COLLECT_SKIPS, []) and session.exitstatus in (0, 5):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
