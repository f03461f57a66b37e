"""Reference engines in a private network namespace, for scripts that compare against them.

dockerd with its defaults (docker0, iptables) and podman's bridge (netavark) change the
host's firewall and links. Started here, they do that inside a throwaway netns instead:

    with RefNetns("mdref-bench", work) as ns:
        ns.start_dockerd()                 # -> None, or why it could not start
        ns.start_dockerd(kit)              # the same from dockerd.tar (make-test-images), not
                                           # the host's installed docker.io
        ns.docker(...)                     # argv of a docker client talking to that daemon
        ns.podman(...)                     # argv of podman, run inside the netns, private storage
        ns.inside(argv)                    # any argv, inside the netns (nsenter --net)

Everything goes at the end: the daemon, the namespace (with every link and rule made in it)
and the private directories under ``work``. nsenter, not ``ip netns exec``: that one remounts
/sys, and dockerd then finds no cgroups.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time


class RefNetns:
    def __init__(self, name: str, work: str, forwarding: bool = False) -> None:
        self.name, self.work, self.forwarding = name, work, forwarding
        self.daemon: subprocess.Popen[bytes] | None = None
        self.sock = os.path.join(work, "dockerd.sock")
        self.client = "docker"

    def __enter__(self) -> RefNetns:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.inside_run(["ip", "link", "set", "lo", "up"])
        # as on a freshly booted host (dockerd sets the FORWARD policy to DROP when it is the
        # one that turns forwarding on)
        self.inside_run(["sysctl", "-qw",
                         f"net.ipv4.ip_forward={1 if self.forwarding else 0}"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if shutil.which("podman"):
            subprocess.run(self.podman("rm", "-af"), capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["umount", "-R", "-l", os.path.join(self.work, "podman")],
                       capture_output=True)
        for sub in ("docker", "docker-exec", "podman", "dockerd-kit"):
            shutil.rmtree(os.path.join(self.work, sub), ignore_errors=True)

    def inside(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.name}", *argv]

    def inside_run(self, argv: list[str]) -> None:
        subprocess.run(self.inside(argv), check=True, capture_output=True)

    def start_dockerd(self, kit: str | None = None, timeout: float = 60) -> str | None:
        """Start dockerd in the netns, the host's or the one unpacked from ``kit`` (a tarball
        of docker.io's and containerd's packages); None once it answers, else why not."""
        env = dict(os.environ)
        if kit is not None:
            root = os.path.join(self.work, "dockerd-kit")
            os.makedirs(root, exist_ok=True)
            r = subprocess.run(["tar", "-C", root, "-xf", kit], capture_output=True, text=True)
            if r.returncode != 0:
                return f"unpack {kit}: {r.stderr.strip()}"
            libs = sorted({os.path.dirname(os.path.join(d, f))
                           for d, _, files in os.walk(root) for f in files if ".so" in f})
            env["PATH"] = f"{root}/usr/sbin:{root}/usr/bin:{env.get('PATH', '')}"
            env["LD_LIBRARY_PATH"] = ":".join(libs)
            self.client = os.path.join(root, "usr", "bin", "docker")
        elif shutil.which("dockerd") is None:
            return "not installed"
        with open(os.path.join(self.work, "dockerd.log"), "wb") as log:  # the daemon's copy
            self.daemon = subprocess.Popen(self.inside([
                "dockerd", "--host", f"unix://{self.sock}",
                "--data-root", os.path.join(self.work, "docker"),
                "--exec-root", os.path.join(self.work, "docker-exec"),
                "--pidfile", os.path.join(self.work, "dockerd.pid")]), stdout=log, stderr=log,
                env=env)
        deadline = time.monotonic() + timeout
        while subprocess.run(self.docker("version"), capture_output=True).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                return f"dockerd did not start (see {self.work}/dockerd.log)"
            time.sleep(0.5)
        return None

    def docker(self, *args: str) -> list[str]:
        return [self.client, "--host", f"unix://{self.sock}", *args]

    def podman(self, *args: str) -> list[str]:
        store = os.path.join(self.work, "podman")
        return self.inside(["podman", "--root", os.path.join(store, "root"),
                            "--runroot", os.path.join(store, "run"), *args])
