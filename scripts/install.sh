#!/bin/bash
# Install minidock on Debian 12, Ubuntu 22.04 or Ubuntu 24.04, as root:
#
#   sudo scripts/install.sh
#
# 1. apt: the packages needed to build and run it (scripts/lib/apt-packages.sh), only the missing
#    ones; `apt-get update` only when an install needs it.
# 2. a venv at $MINIDOCK_PREFIX (default /opt/minidock) made from /usr/bin/python3;
# 3. `pip install` of this checkout (a regular, non-editable install; skipped when the installed
#    copy came from identical sources: MINIDOCK_FORCE=1 reinstalls);
# 4. a symlink $MINIDOCK_BIN_LINK (default /usr/local/bin/minidock, "" for none) to the venv's
#    `minidock`, which sudo's secure_path finds.
# Idempotent; runs from any directory.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${MINIDOCK_PREFIX:-/opt/minidock}
LINK=${MINIDOCK_BIN_LINK-/usr/local/bin/minidock}

# shellcheck source=lib/apt-packages.sh
. "$REPO/scripts/lib/apt-packages.sh"
# shellcheck source=lib/venv.sh
. "$REPO/scripts/lib/venv.sh"

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo $0)" >&2; exit 1; }
[ -f "$REPO/pyproject.toml" ] || { echo "install.sh: $REPO is not a minidock checkout" >&2; exit 1; }

t0=$SECONDS
done_msgs=()

# -- 1. apt --------------------------------------------------------------------------------------
apt_out=$(apt_ensure "${MINIDOCK_APT_RUNTIME[@]}") || { echo "$apt_out"; exit 1; }
echo "$apt_out"
done_msgs+=("${apt_out##*$'\n'}")

# -- 2. venv -------------------------------------------------------------------------------------
venv_state=$(ensure_venv "$PREFIX")
echo "venv: $venv_state $PREFIX ($("$PREFIX/bin/python" -V 2>&1) from $SYSTEM_PYTHON)"
done_msgs+=("venv: $venv_state $PREFIX")

# -- 3. pip install ------------------------------------------------------------------------------
# Build from a clean copy of the sources: pip builds in-tree, and a root-owned build/ and
# *.egg-info left in the user's checkout (and an in-place _native*.so of a dev install) would get
# in the way later.
src=$(mktemp -d /tmp/minidock-src.XXXXXX)
trap 'rm -rf "$src"' EXIT
tar -C "$REPO" -cf - --exclude=./.git --exclude=./.vagrant --exclude=./build --exclude=./dist \
  --exclude='*.egg-info' --exclude=__pycache__ --exclude='*.so' --exclude='.*_cache' \
  --exclude=./.venv . | tar -C "$src" -xf -
src_hash=$(tree_hash "$src" .)
stamp=$PREFIX/.minidock-source-sha256
if [ "${MINIDOCK_FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$src_hash" ] &&
   "$PREFIX/bin/python" -I -c 'import minidock._native' 2>/dev/null; then
  pip_msg="pip: minidock already installed from identical sources (MINIDOCK_FORCE=1 reinstalls)"
else
  rm -f "$stamp"
  echo "pip: installing minidock from $REPO into $PREFIX"
  "$PREFIX/bin/pip" install -q --disable-pip-version-check --no-cache-dir --use-pep517 "$src"
  "$PREFIX/bin/python" -I -c 'import minidock._native, minidock.cli.main' ||
    { echo "install.sh: minidock does not import after pip install" >&2; exit 1; }
  echo "$src_hash" > "$stamp"
  pip_msg="pip: installed minidock $("$PREFIX/bin/python" -I -c \
    'import importlib.metadata as m; print(m.version("minidock"))') into $PREFIX"
fi
echo "$pip_msg"
done_msgs+=("$pip_msg")

# -- 4. link -------------------------------------------------------------------------------------
if [ -n "$LINK" ]; then
  mkdir -p "$(dirname "$LINK")"
  ln -sfn "$PREFIX/bin/minidock" "$LINK"
  done_msgs+=("link: $LINK -> $PREFIX/bin/minidock")
fi
"$PREFIX/bin/minidock" --version >/dev/null

echo
echo "minidock installed in $(( SECONDS - t0 )) s:"
printf '  %s\n' "${done_msgs[@]}"
echo "  try: sudo minidock --help"
