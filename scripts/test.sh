#!/bin/bash
# The whole test suite, as root, on a fresh Debian 12 / Ubuntu 22.04 / 24.04 machine or a clone
# that has run it before (CI runs it through .ci/run):
#
#   sudo scripts/test.sh
#
# Setup (stops at the first failure):
#   apt packages  what scripts/install.sh needs + the test tools (scripts/lib/apt-packages.sh)
#   dev venv      $MINIDOCK_DEV_VENV (default /opt/minidock-dev) from /usr/bin/python3, with
#                 `pip install -e '.[test]'` (the cffi module is compiled in place); skipped when
#                 this checkout's pyproject.toml, setup.py and native/ are what was installed
#   test images   scripts/make-test-images into $MINIDOCK_TEST_IMAGES (cached)
# Checks (all run; the script fails if any fails):
#   ruff check, mypy, lint-imports, pytest -ra tests/unit tests/integration,
#   and scripts/test-cgroup-v2.sh (cgroup v2 tests in a v2-only VM) when that file exists.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k overlay -x`.
# CI=true (or MINIDOCK_STRICT=1) makes a skipped integration test a failure (tests/conftest.py).
# (the setup_* and run_* functions are called through `step`)
# shellcheck disable=SC2317
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
VENV=${MINIDOCK_DEV_VENV:-/opt/minidock-dev}
export MINIDOCK_TEST_IMAGES=${MINIDOCK_TEST_IMAGES:-/var/cache/minidock/test-images}

# shellcheck source=lib/apt-packages.sh
. "$REPO/scripts/lib/apt-packages.sh"
# shellcheck source=lib/venv.sh
. "$REPO/scripts/lib/venv.sh"

[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (sudo $0)" >&2; exit 1; }

SUMMARY=()
FAILED=()
T_ALL=$SECONDS

# step NAME CMD...: run CMD, time it, record "PASS/FAIL NAME"; returns CMD's status.
step() {
  local name=$1; shift
  local t0=$SECONDS rc
  printf '\n==> %s\n' "$name"
  "$@"
  rc=$?
  local line
  if [ $rc = 0 ]; then
    line=$(printf 'PASS  %-16s %5d s' "$name" $((SECONDS - t0)))
  else
    line=$(printf 'FAIL  %-16s %5d s  (exit %d)' "$name" $((SECONDS - t0)) "$rc")
    FAILED+=("$name")
  fi
  SUMMARY+=("$line")
  echo "$line"
  return $rc
}

summary() {
  printf '\n==> summary (%d s)\n' $((SECONDS - T_ALL))
  printf '%s\n' "${SUMMARY[@]}"
  if [ ${#FAILED[@]} -eq 0 ]; then
    echo "test.sh: all ${#SUMMARY[@]} steps passed"
    exit 0
  fi
  echo "test.sh: ${#FAILED[@]} of ${#SUMMARY[@]} steps FAILED: ${FAILED[*]}"
  exit 1
}

setup_apt() {
  apt_ensure "${MINIDOCK_APT_RUNTIME[@]}" "${MINIDOCK_APT_TEST[@]}"
}

setup_venv() {
  local state stamp want
  state=$(ensure_venv "$VENV") || return 1
  echo "venv: $state $VENV ($("$VENV/bin/python" -V 2>&1))"
  # What an editable install depends on: where the checkout is and what builds it.
  want="$REPO $(tree_hash "$REPO" pyproject.toml setup.py native)"
  stamp=$VENV/.minidock-dev-install
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
     (cd / && "$VENV/bin/python" -I -c '
import sys, minidock, minidock._native
sys.exit(not minidock.__file__.startswith(sys.argv[1] + "/"))' "$REPO") 2>/dev/null; then
    echo "pip: editable install of $REPO is current"
    return 0
  fi
  rm -f "$stamp"
  echo "pip: pip install -e '${REPO}[test]'"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "${REPO}[test]" || return 1
  (cd / && "$VENV/bin/python" -I -c 'import minidock._native') || return 1
  echo "$want" > "$stamp"
}

run_pytest() {
  "$VENV/bin/python" -m pytest -ra tests/unit tests/integration "$@"
  local rc=$?
  if [ "$rc" = 5 ]; then
    echo "test.sh: pytest collected no tests (exit 5): that is a failure here" >&2
  fi
  return "$rc"
}

# -- setup: a failure here makes the checks meaningless ---------------------------------------
if ! { step "apt packages" setup_apt && step "dev venv" setup_venv &&
        step "test images" bash scripts/make-test-images; }; then
  summary
fi

# -- checks ---------------------------------------------------------------------------------------
export PATH="$VENV/bin:$PATH"
step "ruff check" ruff check .
step "mypy" mypy
step "lint-imports" lint-imports
step "pytest" run_pytest "$@"
if [ -f scripts/test-cgroup-v2.sh ]; then
  step "cgroup v2 (VM)" bash scripts/test-cgroup-v2.sh
else
  SUMMARY+=("$(printf 'SKIP  %-16s        (scripts/test-cgroup-v2.sh not present)' 'cgroup v2 (VM)')")
fi
summary
