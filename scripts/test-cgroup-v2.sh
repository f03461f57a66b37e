#!/bin/bash
# Run the cgroup and container integration tests on a real cgroup-v2-only kernel, for hosts
# whose own layout is v1 or hybrid (and --userns remap on Debian 12's 6.1 kernel): boots the project's v2 guest (scripts/v2guest: Debian
# bookworm, cgroup_no_v1=all) and runs pytest there as root.  Exits with pytest's status (125: the
# guest did not boot).
#
#   scripts/test-cgroup-v2.sh [PYTEST ARGS...]    default: the cgroup, run and tty tests, the
#                                                freezer/stats ones of test_detached and the
#                                                bridge's basics (every run goes on it)
#
# Env: MINIDOCK_V2GUEST_CACHE  the guest image (default /var/cache/minidock/v2guest); built on
#                              first use and whenever its recipe changed (root, network, ~30 s),
#                              under a lock so parallel CI jobs build it once
#      MINIDOCK_V2GUEST_ENV    extra NAME=VALUE words for the guest's environment
#      PYTHON                  host interpreter whose _cffi_backend and pure dependencies are lent
#                              to the guest (default: the dev venv's, else python3)
#      plus the guest's own knobs (MINIDOCK_V2GUEST_MEM, _CPUS, _TIMEOUT, _ACCEL, _VERBOSE: see
#      scripts/v2guest/README.md)
#
# The guest sees a snapshot of this checkout (a temp copy it reaches over 9p), so it
# never leaves root-owned files in the tree. Its Python is 3.11 with no compiler: the host's
# _cffi_backend (same CPython ABI) rides along on PYTHONPATH so minidock._native (abi3) loads and
# the tests run through the real, traced minidock.linux calls. A host whose CPython is another
# version lends nothing, and the guest's own Debian packages of those modules are used instead.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
V2GUEST=$REPO/scripts/v2guest
export MINIDOCK_V2GUEST_CACHE=${MINIDOCK_V2GUEST_CACHE:-/var/cache/minidock/v2guest}
DEV_PYTHON=${MINIDOCK_DEV_VENV:-/opt/minidock-dev}/bin/python3
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$DEV_PYTHON" ]; then PYTHON=$DEV_PYTHON; else PYTHON=python3; fi
fi
[ $# -gt 0 ] || set -- -q tests/integration/test_cgroups.py tests/integration/test_run.py \
  "tests/integration/test_detached.py::test_pause_and_unpause" \
  "tests/integration/test_detached.py::test_stop_kill_and_rm_of_a_paused_container" \
  "tests/integration/test_detached.py::test_top_lists_the_containers_processes_with_host_pids" \
  "tests/integration/test_detached.py::test_stats_no_stream_reads_the_cgroup" \
  "tests/integration/test_commit.py::test_commit_freezes_a_running_container_while_it_reads_its_layer" \
  "tests/integration/test_build.py::test_a_rebuild_hits_the_cache_and_a_changed_source_misses" \
  "tests/integration/test_net.py::test_the_default_network_is_the_bridge_as_dockers" \
  "tests/integration/test_net.py::test_containers_reach_each_other_and_the_host" \
  tests/integration/test_tty.py \
  tests/integration/test_limits.py --deselect \
  "tests/integration/test_limits.py::test_parallel_runs_share_the_minidock_parent_cgroup" \
  "tests/integration/test_privileges.py::test_the_default_is_dockers_confinement" \
  "tests/integration/test_privileges.py::test_privileged_gets_everything_the_host_may_grant" \
  "tests/integration/test_privileges.py::test_the_device_cgroup_refuses_what_is_not_allowed" \
  tests/integration/test_userns.py

[ "$(id -u)" = 0 ] || { echo "$0: must run as root (the guest image is built as root)" >&2; exit 2; }

# Up to date in a second when it is; else built once, whoever else is asking (a flock inside).
t0=$SECONDS
"$V2GUEST/build-image" "$MINIDOCK_V2GUEST_CACHE" >&2
[ $((SECONDS - t0)) -lt 5 ] || echo "+ guest image ready after $((SECONDS - t0)) s" >&2
GUEST_PYTHON=$(sed -n 's/^python=//p' "$MINIDOCK_V2GUEST_CACHE/image.info")

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/minidock-v2.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
tar -C "$REPO" --exclude=.git --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude=.pytest_cache --exclude=.venv --exclude=./build --exclude=./dist -cf - . | tar -C "$STAGE" -xf -
mkdir -p "$STAGE/.v2guest-site"
# The guest has no network to pip install from: lend the host's copies of what a container run
# and the tests import. Compiled ones only load under the same CPython, and a lent pure package
# would shadow the guest's own, so a host of another version lends nothing.
"$PYTHON" - "$STAGE" "$GUEST_PYTHON" <<'PY'
import compileall
import importlib
import os
import shutil
import sys

stage, guest = sys.argv[1:]
dest = os.path.join(stage, ".v2guest-site")
host = "%d.%d" % sys.version_info[:2]
if host != guest:
    print(f"+ host Python {host} is not the guest's {guest}: lending no modules", file=sys.stderr)
    sys.exit(0)
for name in ("_cffi_backend", "click", "prctl", "_prctl", "pexpect", "ptyprocess", "zstandard",
             "pyroute2"):
    try:
        mod = importlib.import_module(name)
    except ImportError:
        print(f"+ {sys.executable} has no {name} to lend the guest", file=sys.stderr)
        continue
    path = mod.__file__ or ""
    if os.path.basename(path) == "__init__.py":
        shutil.copytree(os.path.dirname(path), os.path.join(dest, name), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy(path, dest)
# Bytecode made here at native speed: under TCG every minidock command the tests run would
# otherwise compile its modules anew until the guest has cached them.
for sub in ("minidock", "tests", ".v2guest-site"):
    compileall.compile_dir(os.path.join(stage, sub), quiet=1, workers=0)
PY
# and the test image tarballs, so the guest needs no network to build them
IMAGES=${MINIDOCK_TEST_IMAGES:-/var/cache/minidock/test-images}
if [ -d "$IMAGES" ]; then
  mkdir -p "$STAGE/.v2guest-images"
  cp "$IMAGES"/*.tar "$STAGE/.v2guest-images/"
fi

# (the guest may write bytecode: the stage is a throwaway copy)
ENV_ARGS=(-e PYTHONPATH=/mnt/host/.v2guest-site -e MINIDOCK_TEST_IMAGES=/mnt/host/.v2guest-images)
[ -n "${CI:-}" ] && ENV_ARGS+=(-e "CI=$CI")
for kv in ${MINIDOCK_V2GUEST_ENV:-}; do ENV_ARGS+=(-e "$kv"); done

start=$(date +%s%N)
set +e
"$V2GUEST/run" "${ENV_ARGS[@]}" "$STAGE" python3 -m pytest -p no:cacheprovider -rs "$@"
rc=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo >&2; echo "+ cgroup v2 guest run (boot + tests + poweroff): exit $rc in $((ms / 1000)).$((ms % 1000 / 100)) s" >&2
exit $rc
