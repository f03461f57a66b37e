# shellcheck shell=bash disable=SC2034
# The apt packages minidock needs, and one function to install the missing ones.
# Sourced by scripts/install.sh (runtime set) and scripts/test.sh (runtime + test sets).
#
# Every name here exists under the same name on Debian 12 (bookworm), Ubuntu 22.04 (jammy) and
# Ubuntu 24.04 (noble). The runtime set is all in Ubuntu's `main`; on Ubuntu the test set needs
# `universe` too (mmdebstrap, crun, skopeo, docker-registry, debian-archive-keyring), which Ubuntu's
# cloud and Vagrant images enable by default.

# To build (pip compiles our cffi module and python-prctl) and to run minidock.
MINIDOCK_APT_RUNTIME=(
  python3 python3-venv python3-dev  # the system interpreter the venv is made from, its headers
  build-essential pkg-config        # gcc, make, libc headers for the cffi extension
  libcap-dev                        # sys/capability.h and -lcap for python-prctl
  libffi-dev                        # cffi, if pip has to build it from source
  ca-certificates                   # pip talks TLS to PyPI
  iproute2 iptables nftables        # ip link/addr/netns; the bridge's NAT (nft)
  util-linux kmod                   # unshare, nsenter (for learners, and bench-start); modprobe
  tar xz-utils                      # image tarballs
  procps                            # ps, which `minidock top` runs (as dockerd does)
)

# scripts/make-test-images (installs them itself when missing): the debian-bookworm rootfs.
MINIDOCK_APT_IMAGES=(mmdebstrap debian-archive-keyring)

# Only for the test suite (scripts/test.sh).
MINIDOCK_APT_TEST=(
  "${MINIDOCK_APT_IMAGES[@]}"
  busybox-static                    # host-side helper in tests (the busybox image uses its own copy)
  runc crun                         # reference OCI runtimes for differential tests
  skopeo docker-registry            # a local registry and a client to fill it
  tmux                              # drive `minidock run -it` through a real terminal
  mount                             # umount -l in the tests' leak check (not in every minimal Debian)
  # the cgroup v2 guest (scripts/v2guest: build-image and run; mmdebstrap from above)
  qemu-system-x86 e2fsprogs cpio
)

# Print the names among "$@" that dpkg does not have installed.
apt_missing() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [ "${status:0:2}" = ii ] || printf '%s\n' "$p"
  done
}

# Install whichever of "$@" are missing. Runs `apt-get update` only when something is missing and
# the install fails without it (no package lists yet, or stale ones that 404), so a re-run on a
# provisioned machine costs one dpkg-query per package and no network.
apt_ensure() {
  local missing
  mapfile -t missing < <(apt_missing "$@")
  if [ ${#missing[@]} -eq 0 ]; then
    echo "apt: all ${#} packages already installed"
    return 0
  fi
  echo "apt: installing ${missing[*]}"
  # wait for a boot-time unattended-upgrades instead of failing on the dpkg lock
  local -a install=(apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600
    "${missing[@]}")
  local log
  log=$(mktemp /tmp/minidock-apt.XXXXXX)
  export DEBIAN_FRONTEND=noninteractive
  if ! "${install[@]}" >"$log" 2>&1; then
    echo "apt: install failed without fresh package lists; running apt-get update"
    if ! apt-get update -q -o DPkg::Lock::Timeout=600 >"$log" 2>&1; then
      tail -n 30 "$log" >&2; rm -f "$log"; return 1
    fi
    if ! "${install[@]}" >"$log" 2>&1; then
      tail -n 30 "$log" >&2; rm -f "$log"
      if grep -qs '^ID=ubuntu' /etc/os-release; then
        echo "apt: hint: some of these live in Ubuntu's universe: add-apt-repository universe" >&2
      fi
      return 1
    fi
  fi
  rm -f "$log"
  echo "apt: installed ${missing[*]}"
}
