"""Fixtures for integration tests: a throwaway minidock root, the CLI, the test images.

    test_images  (session) the directory with busybox.tar and debian-bookworm.tar
                 ($MINIDOCK_TEST_IMAGES, default /var/cache/minidock/test-images), built with
                 scripts/make-test-images when missing
    md_dirs      (session) /var/tmp/minidock-test-XXXX with root/ and run/; removed at the end
    md           (session) an MD: md.run("ps", "-a") runs `python -m minidock --root ... --run-root
                 ... ps -a` and returns the CompletedProcess (text, stdout and stderr captured)
    images       (session) imports busybox:latest (CMD ["sh"]) and debian:bookworm (CMD ["bash"])
                 into md's root; {"busybox:latest": "sha256:...", "debian:bookworm": "sha256:..."}
    leak_check   (autouse) after each test: no mount left under md_dirs, no minidock process left
                 behind by the test, else the test errors (and the leftovers are cleaned up)

Tests must clean up after themselves: if md_dirs finds mounts or processes at the end of the
session, it cleans them up, reports them and the session fails.
MINIDOCK_TEST_KEEP=1 keeps the temp dir for a post-mortem.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import helpers
import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE_TEST_IMAGES = REPO / "scripts" / "make-test-images"
DEFAULT_TEST_IMAGES = "/var/cache/minidock/test-images"
IMAGE_TARBALLS = {"busybox": "busybox.tar", "debian-bookworm": "debian-bookworm.tar"}

# Problems found when the session's temp dir was torn down; they fail the session.
_SESSION_PROBLEMS: list[str] = []


# -- the minidock CLI -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MD:
    """The minidock CLI bound to one data root and run root."""

    root: str
    run_root: str

    def argv(self, *args: object) -> list[str]:
        return [
            sys.executable, "-m", "minidock",
            "--root", self.root, "--run-root", self.run_root,
            *(str(a) for a in args),
        ]  # fmt: skip

    def run(
        self,
        *args: object,
        input: str | bytes | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run minidock with ``args``; ``env`` is added to (not replacing) os.environ.

        stdout and stderr come back as text (undecodable bytes replaced); ``input`` may be text
        or bytes. With ``check=True`` a non-zero exit raises an AssertionError that shows the
        command, its status and both outputs.
        """
        argv = self.argv(*args)
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            argv,
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **env} if env else None,
            check=False,
        )
        result = subprocess.CompletedProcess(
            argv,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise AssertionError(describe(result))
        return result


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"command failed with exit status {result.returncode}: {' '.join(result.args)}\n"
        f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
    )


# -- leftovers: mounts and processes under a directory --------------------------------------------


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(base: Path) -> list[str]:
    """Mount points at or below ``base`` in our mount namespace, deepest first."""
    prefix = str(base).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == str(base) or point.startswith(prefix):
                points.append(point)
    # deepest first; among equal paths (stacked mounts) the latest (last listed) first
    indexed = list(enumerate(points))
    indexed.sort(key=lambda ip: (ip[1].count("/"), ip[0]), reverse=True)
    return [p for _, p in indexed]


def _proc_table() -> dict[int, tuple[int, list[str]]]:
    """pid -> (ppid, argv) for every process we can read."""
    table: dict[int, tuple[int, list[str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as fb:
                argv = [a.decode(errors="replace") for a in fb.read().split(b"\0") if a]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":  # zombies hold nothing and cannot be killed
            continue
        table[int(entry)] = (int(fields[1]), argv)
    return table


def _is_minidock(argv: list[str]) -> bool:
    return any(os.path.basename(a).startswith("minidock") for a in argv[:4])


def leaked_processes(base: Path) -> dict[int, str]:
    """Processes left behind: minidock processes descending from this pytest, and any process
    whose cwd or root is under ``base`` (a container's). pid -> description."""
    me = os.getpid()
    table = _proc_table()
    found: dict[int, str] = {}
    prefix = str(base).rstrip("/") + "/"
    for pid, (_ppid, argv) in table.items():
        if pid == me:
            continue
        ancestor, seen = pid, 0
        while ancestor > 1 and seen < 64:
            ancestor = table.get(ancestor, (0, []))[0]
            seen += 1
            if ancestor == me:
                break
        if ancestor == me and _is_minidock(argv):
            found[pid] = " ".join(argv)
            continue
        for link in ("cwd", "root"):
            try:
                target = os.readlink(f"/proc/{pid}/{link}")
            except OSError:
                continue
            if target == str(base) or target.startswith(prefix):
                found[pid] = f"{' '.join(argv)} ({link} {target})"
                break
    return found


def clean_up(base: Path) -> list[str]:
    """Kill leaked processes and detach mounts under ``base``; describe what had to be done."""
    done: list[str] = []
    procs = leaked_processes(base)
    for pid, what in procs.items():
        try:
            os.kill(pid, signal.SIGKILL)
            done.append(f"killed process {pid}: {what}")
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5  # SIGKILL is asynchronous: let them go before unmounting
    while procs and time.monotonic() < deadline and procs.keys() & _proc_table().keys():
        time.sleep(0.05)
    for _ in range(10):  # stacked mounts come off one per round
        points = mounts_under(base)
        if not points:
            break
        for point in points:
            r = subprocess.run(["umount", "-l", point], capture_output=True, text=True)
            done.append(
                f"unmounted {point}" if r.returncode == 0 else f"umount -l {point}: {r.stderr}"
            )
    return done


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_images() -> Path:
    """The directory holding the test image tarballs, building missing ones."""
    cache = Path(os.environ.get("MINIDOCK_TEST_IMAGES") or DEFAULT_TEST_IMAGES)
    missing = [name for name, tar in IMAGE_TARBALLS.items() if not (cache / tar).is_file()]
    if missing:
        if os.geteuid() != 0:
            pytest.skip(f"test images {missing} missing in {cache}; building them needs root")
        r = subprocess.run(
            ["bash", str(MAKE_TEST_IMAGES), *missing],
            env={**os.environ, "MINIDOCK_TEST_IMAGES": str(cache)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if r.returncode != 0:
            pytest.fail(f"scripts/make-test-images failed:\n{r.stdout}{r.stderr}")
    return cache


@pytest.fixture(scope="session")
def md_dirs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh /var/tmp/minidock-test-XXXX with root/ and run/; must be clean at the end."""
    base = Path(tempfile.mkdtemp(prefix="minidock-test-", dir="/var/tmp"))
    os.chmod(base, 0o711)
    (base / "root").mkdir()
    (base / "run").mkdir()
    yield base

    problems = [f"{base}: {what}" for what in clean_up(base)]
    if os.environ.get("MINIDOCK_TEST_KEEP") == "1":
        print(f"\nMINIDOCK_TEST_KEEP=1: kept {base}", file=sys.stderr)
    else:
        try:
            shutil.rmtree(base)
        except OSError as e:
            problems.append(f"cannot remove {base}: {e}")
    if problems:
        _SESSION_PROBLEMS.extend(problems)
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        for line in problems:
            if reporter is not None:
                reporter.write_line(f"LEAK: {line}", red=True)
            else:
                print(f"LEAK: {line}", file=sys.stderr)


@pytest.fixture(scope="session")
def md(md_dirs: Path) -> MD:
    return MD(root=str(md_dirs / "root"), run_root=str(md_dirs / "run"))


_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(scope="session")
def images(md: MD, test_images: Path) -> dict[str, str]:
    """Import the test images; reference -> image id ("sha256:<hex>")."""
    wanted = [
        ("busybox:latest", "busybox.tar", 'CMD ["sh"]'),
        ("debian:bookworm", "debian-bookworm.tar", 'CMD ["bash"]'),
    ]
    ids: dict[str, str] = {}
    for ref, tar, change in wanted:
        r = md.run("import", "-c", change, test_images / tar, ref, timeout=600)
        if r.returncode != 0:
            pytest.fail(f"importing {tar} as {ref} failed:\n{describe(r)}")
        found = _IMAGE_ID.findall(r.stdout)
        if not found:
            pytest.fail(f"`minidock import` printed no image id (sha256:...):\n{describe(r)}")
        ids[ref] = found[-1]
    return ids


@pytest.fixture(autouse=True)
def _require_images(request: pytest.FixtureRequest) -> None:
    """Tests marked `images` get the test image tarballs (built if missing)."""
    if request.node.get_closest_marker("images"):
        request.getfixturevalue("test_images")


def container_links() -> set[str]:
    """The host's container-side links: minidock's veths are md<10 hex> (the bridge,
    minidock0, is shared and stays for the session)."""
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return set()
    return {n for n in names if n.startswith("md") and n != "minidock0"}


def netns_entries() -> set[str]:
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith("md")}
    except OSError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def bridge_removed_at_the_end() -> Iterator[None]:
    """Containers go on minidock's bridge by default: the bridge, minidock's nft table and
    ip_forward are host-wide, shared by every test, and put back as they were at the end."""
    def present() -> tuple[bool, bool]:
        table = subprocess.run(["nft", "list", "table", "ip", "minidock"],
                               capture_output=True).returncode == 0 \
            if shutil.which("nft") else False
        return os.path.exists("/sys/class/net/minidock0"), table

    had_bridge, had_table = present()
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            forward = f.read().strip()
    except OSError:
        forward = ""
    yield
    if not had_table and shutil.which("nft"):
        subprocess.run(["nft", "delete", "table", "ip", "minidock"], capture_output=True)
    if not had_bridge:
        subprocess.run(["ip", "link", "del", "minidock0"], capture_output=True)
    if forward:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(forward)


@pytest.fixture(autouse=True)
def leak_check(md_dirs: Path) -> Iterator[None]:
    """After each test: no mount under md_dirs, no minidock process left by the test, and no
    container cgroup, veth or /run/netns entry that was not there before the test (a veth
    goes with its netns, which the kernel tears down a moment after the container's end)."""
    cgroups_before = container_cgroups()
    links_before = container_links()
    netns_before = netns_entries()
    yield
    mounts = mounts_under(md_dirs)
    procs = leaked_processes(md_dirs)
    cgroups = sorted(container_cgroups() - cgroups_before)
    helpers.wait_for(lambda: not (container_links() - links_before), 10)
    links = sorted(container_links() - links_before)
    netns = sorted(netns_entries() - netns_before)
    if mounts or procs or cgroups or links or netns:
        cleaned = clean_up(md_dirs)
        for d in cgroups:
            with contextlib.suppress(OSError):
                os.rmdir(d)
                cleaned.append(f"removed cgroup {d}")
        for name in links:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
            cleaned.append(f"deleted link {name}")
        for name in netns:
            subprocess.run(["umount", "-l", f"/run/netns/{name}"], capture_output=True)
            with contextlib.suppress(OSError):
                os.unlink(f"/run/netns/{name}")
            cleaned.append(f"removed /run/netns/{name}")
        pytest.fail(
            "the test left behind:\n"
            + "".join(f"  mount {m}\n" for m in mounts)
            + "".join(f"  process {pid}: {what}\n" for pid, what in procs.items())
            + "".join(f"  cgroup {d}\n" for d in cgroups)
            + "".join(f"  link {name}\n" for name in links)
            + "".join(f"  netns /run/netns/{name}\n" for name in netns)
            + "cleaned up: "
            + "; ".join(cleaned),
            pytrace=False,
        )


@pytest.fixture
def detached(md: MD, images: dict[str, str]) -> Iterator[Callable[..., str]]:
    """run -d helper; every container it started is removed (rm -f) at the end."""
    started: list[str] = []

    def run(*args: str) -> str:
        r = md.run("run", "-d", *args, check=True)
        cid = r.stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", cid), r.stdout
        started.append(cid)
        return cid

    yield run
    for cid in started:
        md.run("rm", "-f", cid)
    for cid in started:
        assert helpers.wait_for(lambda c=cid: not helpers.processes_of(c), 10), \
            helpers.processes_of(cid)


def container_cgroups(root: str = "/sys/fs/cgroup") -> set[str]:
    """Every container cgroup directory under a ``minidock`` parent, in every hierarchy."""
    found: set[str] = set()
    parents = [os.path.join(root, "minidock")]
    with contextlib.suppress(OSError):
        parents += [os.path.join(root, h, "minidock") for h in os.listdir(root)]
    for parent in parents:
        with contextlib.suppress(OSError):
            found.update(os.path.join(parent, name) for name in os.listdir(parent)
                         if os.path.isdir(os.path.join(parent, name)))
    return found


# -- session verdict ------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SESSION_PROBLEMS:
        terminalreporter.section("leftovers under the test root (tests must clean up)", red=True)
        for line in _SESSION_PROBLEMS:
            terminalreporter.line(line, red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if _SESSION_PROBLEMS and session.exitstatus in (0, 5):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# == registries (issue 3) ==========================================================================
# Real registries on 127.0.0.1: Debian's docker-registry started with our own config, filled and
# inspected with skopeo (tests/integration/registry.py has the machinery and the seed helpers).
#
#   registry        (session) open, plain HTTP: .host "127.0.0.1:PORT", .url, .ref("repo:tag")
#   registry_tls    (session) HTTPS with a test CA + htpasswd Basic: also .ca_path, .username,
#                   .password
#   registry_token  (session) Bearer tokens from a JWT issuer in this process (plain HTTP):
#                   .username/.password (push+pull), .readonly_username/.readonly_password
#                   (pull only), .issuer (.requests log, .clear(), .settings(expires_in=..)),
#                   anonymous pull on repositories under "public/"
#   make_registry   (function) a factory, make_registry("token", expires_in=2, tls=True): private
#                   servers for tests that kill, restart or reconfigure them; all stopped after
#   static_registry (function) a StaticRegistry: canned answers for what distribution will not
#                   serve (oversized manifest, unknown media type, blob cut off mid-body)
#   client_config   (function) a minidock config dir (config.json, certs.d/<host>/ca.crt for
#                   registry_tls), exported as MINIDOCK_CONFIG_DIR for the test
#   busybox_arm64   (session) path of busybox-arm64.tar (built when missing)
#   seeded          (session) standard images in `registry` (see _SEEDS): name -> Seeded
# Tests using these are marked @pytest.mark.registry.

# this section's own imports, kept with it (E402: below the module's code)
import functools  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402


class _Lazy:
    """tests/integration/registry.py, imported on first use: it needs cryptography and
    bcrypt, which the cgroup v2 guest (that runs only the container tests) does not have."""

    def __getattr__(self, name: str) -> Any:
        import registry

        return getattr(registry, name)


reglib: Any = _Lazy()


def _need_registry_tools() -> None:
    if reglib.registry_binary() is None:
        pytest.skip("needs docker-registry (apt-get install docker-registry)")
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo (apt-get install skopeo)")


@contextlib.contextmanager
def _serving(mode: reglib.Mode, **kwargs: object) -> Iterator[reglib.RegistryServer]:
    """A started server, stopped (process reaped, temp dir removed) however the block ends."""
    _need_registry_tools()
    server = reglib.RegistryServer(mode, **kwargs)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def registry() -> Iterator[reglib.RegistryServer]:
    with _serving("open") as server:
        yield server


@pytest.fixture(scope="session")
def registry_tls() -> Iterator[reglib.RegistryServer]:
    with _serving("tls") as server:
        yield server


@pytest.fixture(scope="session")
def registry_token() -> Iterator[reglib.RegistryServer]:
    with _serving("token") as server:
        yield server


@pytest.fixture
def make_registry() -> Iterator[Callable[..., reglib.RegistryServer]]:
    servers: list[reglib.RegistryServer] = []

    def make(mode: reglib.Mode = "open", **kwargs: object) -> reglib.RegistryServer:
        _need_registry_tools()
        server = reglib.RegistryServer(mode, **kwargs)  # type: ignore[arg-type]
        servers.append(server)  # before start(): a failed start is still cleaned up
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def static_registry() -> Iterator[reglib.StaticRegistry]:
    with reglib.StaticRegistry() as server:
        yield server


@pytest.fixture
def client_config(
    tmp_path: Path, registry_tls: reglib.RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """/etc/minidock's stand-in: config.json ({}) and certs.d/<host:port>/ca.crt of registry_tls.
    MINIDOCK_CONFIG_DIR points at it for this test (md.run inherits the environment)."""
    config_dir = tmp_path / "minidock-config"
    certs = config_dir / "certs.d" / registry_tls.host
    certs.mkdir(parents=True)
    assert registry_tls.ca_path is not None
    shutil.copy(registry_tls.ca_path, certs / "ca.crt")
    (config_dir / "config.json").write_text("{}\n")
    monkeypatch.setenv("MINIDOCK_CONFIG_DIR", str(config_dir))
    return config_dir


def _extra_tarball(test_images: Path, name: str) -> Path:
    """``<name>.tar`` from scripts/make-test-images (not in IMAGE_TARBALLS: only some tests
    need it), built when missing."""
    tar = test_images / f"{name}.tar"
    if not tar.is_file():
        if os.geteuid() != 0:
            pytest.skip(f"{tar} missing; building it needs root")
        r = subprocess.run(
            ["bash", str(MAKE_TEST_IMAGES), name],
            env={**os.environ, "MINIDOCK_TEST_IMAGES": str(test_images)},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        if r.returncode != 0:
            pytest.fail(f"scripts/make-test-images {name} failed:\n{r.stdout}{r.stderr}")
    return tar


@pytest.fixture(scope="session")
def busybox_arm64(test_images: Path) -> Path:
    return _extra_tarball(test_images, "busybox-arm64")


@pytest.fixture(scope="session")
def dockerd_kit(test_images: Path) -> Path:
    """docker.io's and containerd's packages unpacked into a tarball (never installed): the
    reference dockerd scripts/check-docker-coexistence starts in a private netns."""
    return _extra_tarball(test_images, "dockerd")


# name in `registry` -> how it is built: (layers, format, compression)
_SEEDS = {
    "busybox:latest": "busybox, one gzip layer, Docker schema2",
    "busybox:oci": "busybox, one gzip layer, OCI manifest",
    "busybox:zstd": "busybox, one zstd layer, OCI manifest",
    "busybox:plain": "busybox, one uncompressed layer, OCI manifest (pushed without skopeo)",
    "busybox:two-layers": "busybox + a layer adding /etc/seeded, Docker schema2",
    "busybox:multi": "Docker manifest list: linux/amd64 + linux/arm64/v8",
    "busybox:multi-oci": "OCI index: linux/amd64 + linux/arm64/v8",
}


@pytest.fixture(scope="session")
def seeded(
    registry: reglib.RegistryServer, test_images: Path, busybox_arm64: Path
) -> dict[str, reglib.Seeded]:
    bb = functools.partial(reglib.busybox_spec, test_images)
    extra = reglib.make_layer({"etc/": None, "etc/seeded": reglib.SEEDED_FILE})
    multi = [bb(), bb(arch="arm64")]
    images = {
        "busybox:latest": reglib.seed(registry, "busybox:latest", bb()),
        "busybox:oci": reglib.seed(registry, "busybox:oci", bb(), format="oci"),
        "busybox:zstd": reglib.seed(registry, "busybox:zstd", bb(compression="zstd"), format="oci"),
        "busybox:plain": reglib.seed(
            registry, "busybox:plain", bb(compression="none"), format="oci"
        ),
        "busybox:two-layers": reglib.seed(registry, "busybox:two-layers", bb(extra_layer=extra)),
        "busybox:multi": reglib.seed(registry, "busybox:multi", multi),
        "busybox:multi-oci": reglib.seed(registry, "busybox:multi-oci", multi, format="oci"),
    }
    assert images.keys() == _SEEDS.keys()
    return images


# == end of registries ============================================================================
