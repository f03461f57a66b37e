# shellcheck shell=bash
# Virtual environments made from the SYSTEM interpreter (/usr/bin/python3), never a pyenv/conda
# python that happens to be first on PATH: minidock runs as root through sudo, whose PATH and
# HOME differ from the user's, so the venv must not depend on a per-user interpreter.

SYSTEM_PYTHON=/usr/bin/python3

# ensure_venv DIR: reuse DIR if it is a working venv of $SYSTEM_PYTHON, else (re)create it.
# Prints "created" or "reused" on stdout; diagnostics go to stderr.
ensure_venv() {
  local dir=$1 want have
  [ -x "$SYSTEM_PYTHON" ] || { echo "venv: $SYSTEM_PYTHON not found (apt-get install python3)" >&2; return 1; }
  want=$(readlink -f "$SYSTEM_PYTHON")
  if [ -x "$dir/bin/python" ] && [ -x "$dir/bin/pip" ]; then
    have=$(readlink -f "$dir/bin/python")
    if [ "$have" = "$want" ] && "$dir/bin/python" -c 'import sys, pip' 2>/dev/null; then
      echo reused
      return 0
    fi
    echo "venv: $dir was made from $have, not $want: recreating it" >&2
  fi
  if [ -e "$dir" ] && [ ! -e "$dir/pyvenv.cfg" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "venv: $dir exists, is not empty and is not a venv: refusing to replace it" >&2
    return 1
  fi
  rm -rf "$dir"
  "$SYSTEM_PYTHON" -m venv "$dir" >&2 || return 1
  echo created
}

# tree_hash DIR PATH...: one sha256 over the contents and names of the files under PATH...
# (relative to DIR), for "has this changed since last time" stamps.
tree_hash() {
  local dir=$1; shift
  (cd "$dir" && find "$@" -type f -not -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z |
    xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}
