#!/bin/bash
# Run the cgroup and container integration tests on a real cgroup-v2-only kernel, for hosts
# whose own layout is v1 or hybrid: boots the v2vm guest (tools/v2vm: Debian bookworm,
# cgroup_no_v1=all) and runs pytest there as root.  Exits with pytest's status (125: the guest
# did not boot).
#
#   scripts/test-cgroup-v2.sh [PYTEST ARGS...]    default: the cgroup, run and tty tests and
#                                                the freezer/stats ones of test_detached
#
# Env: V2VM_DIR   the v2vm tool folder (default: shared/tools/v2vm beside the checkout)
#      V2VM_WORK  the guest image cache (default /var/tmp/v2vm-work); built on first use
#                 (root, network, ~1-2 min), under a lock so parallel CI jobs build it once
#      PYTHON     host interpreter whose _cffi_backend is lent to the guest (default python3)
#      plus every V2VM_* knob of run-in-v2vm.sh (V2VM_ENGINE, V2VM_MEM, V2VM_TIMEOUT, ...)
#
# The guest sees a snapshot of this checkout (copied to a temp dir shared over 9p), so it
# never leaves root-owned files in the tree. Its Python is 3.11 without cffi and no compiler:
# the host's _cffi_backend (same CPython ABI) rides along on PYTHONPATH so minidock._native
# (abi3) loads and the tests run through the real, traced minidock.linux calls.  Were the ABI
# different, minidock.cgroups falls back to untraced os calls and the tests still run.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# CI lays shared/ beside the clone, as it is beside the work tree here.
V2VM_DIR=${V2VM_DIR:-$REPO/../shared/tools/v2vm}
export V2VM_WORK=${V2VM_WORK:-/var/tmp/v2vm-work}
PYTHON=${PYTHON:-python3}
[ $# -gt 0 ] || set -- -q tests/integration/test_cgroups.py tests/integration/test_run.py \
  "tests/integration/test_detached.py::test_pause_and_unpause" \
  "tests/integration/test_detached.py::test_stop_kill_and_rm_of_a_paused_container" \
  "tests/integration/test_detached.py::test_top_lists_the_containers_processes_with_host_pids" \
  "tests/integration/test_detached.py::test_stats_no_stream_reads_the_cgroup" \
  tests/integration/test_tty.py

for f in build-image.sh run-in-v2vm.sh; do
  [ -x "$V2VM_DIR/$f" ] || { echo "$0: $V2VM_DIR/$f not found (set V2VM_DIR)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "$0: must run as root (the guest image is built as root)" >&2; exit 2; }

image_ready() { [ -e "$V2VM_WORK/rootfs.img" ] && [ -e "$V2VM_WORK/initrd.img" ] && [ -e "$V2VM_WORK/vmlinuz" ] && [ -e "$V2VM_WORK/image.info" ]; }
if ! image_ready; then
  mkdir -p "$V2VM_WORK"
  (
    flock 9
    if ! image_ready; then
      echo "+ building the cgroup v2 guest image in $V2VM_WORK" >&2
      t0=$(date +%s)
      "$V2VM_DIR/build-image.sh" "$V2VM_WORK" >&2
      echo "+ image built in $(( $(date +%s) - t0 )) s" >&2
    fi
  ) 9>"$V2VM_WORK/.build.lock"
fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/minidock-v2.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
tar -C "$REPO" --exclude=.git --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude=.pytest_cache --exclude=.venv --exclude=build --exclude=dist -cf - . | tar -C "$STAGE" -xf -
mkdir -p "$STAGE/.v2vm-site"
backend=$("$PYTHON" -c 'import _cffi_backend; print(_cffi_backend.__file__)' 2>/dev/null || true)
[ -n "$backend" ] && cp "$backend" "$STAGE/.v2vm-site/"
# The guest's Python is the same CPython 3.11 as the host's /usr/bin/python3, from which the
# dev venv is made, so the venv's pure and compiled modules load there as they are: lend the
# ones a container run needs (the guest has no network to pip install them).
"$PYTHON" - "$STAGE/.v2vm-site" <<'PY'
import importlib, os, shutil, sys
dest = sys.argv[1]
for name in ("click", "prctl", "_prctl", "pexpect", "ptyprocess", "zstandard"):
    try:
        mod = importlib.import_module(name)
    except ImportError:
        continue
    path = mod.__file__ or ""
    if os.path.basename(path) == "__init__.py":
        shutil.copytree(os.path.dirname(path), os.path.join(dest, name), dirs_exist_ok=True)
    else:
        shutil.copy(path, dest)
PY
# and the test image tarballs, so the guest needs no network to build them
IMAGES=${MINIDOCK_TEST_IMAGES:-/var/cache/minidock/test-images}
if [ -d "$IMAGES" ]; then
  mkdir -p "$STAGE/.v2vm-images"
  cp "$IMAGES"/*.tar "$STAGE/.v2vm-images/"
fi

start=$(date +%s%N)
set +e
V2VM_ENV="PYTHONPATH=/mnt/host/.v2vm-site PYTHONDONTWRITEBYTECODE=1 MINIDOCK_TEST_IMAGES=/mnt/host/.v2vm-images ${CI:+CI=$CI} ${V2VM_ENV:-}" \
  "$V2VM_DIR/run-in-v2vm.sh" "$STAGE" python3 -m pytest -p no:cacheprovider -rs "$@"
rc=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo >&2; echo "+ cgroup v2 guest run (boot + tests + poweroff): exit $rc in $((ms / 1000)).$((ms % 1000 / 100)) s" >&2
exit $rc
