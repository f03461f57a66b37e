"""`build` on the real kernel: the classic builder's cache, output, failures, interruptions,
contexts from stdin, .dockerignore, ADD of archives and URLs, ONBUILD, --target, --label.

What the images hold (config, history, files) is checked against Docker's own results in
test_build_corpus.py; this file is about how a build behaves."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import signal
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]


def write(ctx: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ctx


@pytest.fixture
def tidy(md):
    """Tags and images a test made, removed after it (children before parents)."""
    made: list[str] = []
    yield made
    for ref in reversed(made):
        md.run("rmi", "-f", ref)


def steps(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("Step ", " ---> "))]


def test_a_rebuild_hits_the_cache_and_a_changed_source_misses(md, images, tmp_path, tidy):
    ctx = write(tmp_path, {
        "Dockerfile": "FROM busybox\nENV A=1\nRUN echo ran >> /log\nCOPY a.txt /a.txt\n"
                      "RUN cat /a.txt\nCMD [\"sh\"]\n",
        "a.txt": "one\n"})
    first = md.run("build", "-t", "cache-test", ctx, check=True)
    tidy.append("cache-test")
    assert "Using cache" not in first.stdout
    assert "ran" not in first.stdout.replace("RUN echo ran", "")  # RUN output is its own
    assert re.search(r"^ ---> Running in [0-9a-f]{12}$", first.stdout, re.M)
    assert first.stdout.count("Removing intermediate container") == 2
    image = md.run("image", "inspect", "-f", "{{.Id}}", "cache-test", check=True).stdout.strip()

    again = md.run("build", "-t", "cache-test", ctx, check=True)
    assert again.stdout.count(" ---> Using cache") == 5
    assert "Running in" not in again.stdout
    assert f"Successfully built {image[7:19]}" in again.stdout

    os.utime(ctx / "a.txt", (1, 1))  # a new mtime alone is no change
    assert md.run("build", ctx, check=True).stdout.count("Using cache") == 5

    (ctx / "a.txt").write_text("two\n")  # a change misses, and so does every later step
    changed = md.run("build", "-t", "cache-test", ctx, check=True)
    lines = steps(changed.stdout)
    assert lines[lines.index("Step 4/6 : COPY a.txt /a.txt") - 2] == " ---> Using cache"
    assert changed.stdout.count("Using cache") == 2  # ENV and the first RUN
    assert "two" in changed.stdout

    fresh = md.run("build", "--no-cache", ctx, check=True)
    assert "Using cache" not in fresh.stdout
    tidy.append(fresh.stdout.split("Successfully built ")[1].split()[0])


def test_a_failing_run_shows_its_output_and_docker_s_message(md, images, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo before; exit 3\n"})
    before = set(md.run("ps", "-aq", check=True).stdout.split())
    r = md.run("build", ctx)
    assert r.returncode == 3
    assert "before" in r.stdout
    assert r.stderr == "The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3\n"
    # the failed step's container stays, stopped, to be looked at (docker's --rm keeps it)
    kept = set(md.run("ps", "-aq", check=True).stdout.split()) - before
    assert len(kept) == 1
    cid = kept.pop()
    status = md.run("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid,
                    check=True).stdout.split()
    assert status == ["exited", "3"]
    # made from an image id: ps shows the short id, as docker's ps does
    image = md.run("image", "inspect", "-f", "{{.Id}}", "busybox", check=True).stdout.strip()
    assert md.run("ps", "-a", "--filter", f"id={cid}", "--format", "{{.Image}}",
                  check=True).stdout == image[7:19] + "\n"
    md.run("container", "prune", "-f", check=True)

    forced = md.run("build", "--force-rm", ctx)
    assert forced.returncode == 3
    assert set(md.run("ps", "-aq", check=True).stdout.split()) == before

    quiet = md.run("build", "-q", ctx)
    assert quiet.returncode == 3 and quiet.stdout == ""
    assert "Step 2/2 : RUN echo before; exit 3" in quiet.stderr and "before\n" in quiet.stderr
    md.run("container", "prune", "-f", check=True)


def test_quiet_prints_the_id_alone(md, images, tmp_path, tidy):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo noisy\n"})
    r = md.run("build", "-q", "--iidfile", tmp_path / "iid", ctx, check=True)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.stdout)
    assert (tmp_path / "iid").read_text() == r.stdout.strip()
    tidy.append(r.stdout.strip())


@pytest.mark.parametrize(("dockerfile", "files", "message"), [
    ("FROM busybox\nFOO bar\n", {}, "dockerfile parse error line 2: unknown instruction: FOO"),
    ("FROM busybox\nCOPY missing.txt /\n", {},
     "COPY failed: file not found in build context or excluded by .dockerignore: stat "
     "missing.txt: file does not exist"),
    ("FROM busybox\nCOPY ../outside /\n", {},
     "COPY failed: forbidden path outside the build context: ../outside ()"),
    ("FROM busybox\nCOPY --from=nostage /x /\n", {}, "invalid from flag value nostage"),
    ("FROM busybox\nRUN true\n", {}, None),
    ("FROM busybox AS 1bad\n", {}, "invalid name for build stage"),
    ("RUN true\n", {}, "no build stage in current context"),
    ("FROM busybox\nRUN --mount=type=cache,target=/c true\n", {},
     "the --mount option requires BuildKit"),
    ("FROM busybox\nCOPY a b c\n", {"a": "", "b": ""},
     "When using COPY with more than one source file, the destination must be a directory "
     "and end with a /"),
])
def test_refusals_are_one_line(md, images, tmp_path, dockerfile, files, message):
    ctx = write(tmp_path, {"Dockerfile": dockerfile, **files})
    r = md.run("build", "-q", ctx)
    if message is None:
        assert r.returncode == 0, r.stderr
        md.run("rmi", r.stdout.strip(), check=True)
        return
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert message in last, r.stderr
    assert "Traceback" not in r.stderr


def test_a_symlink_in_the_context_never_reaches_the_host(md, images, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nCOPY evil /stolen\n"})
    (ctx / "evil").symlink_to("/etc/shadow")  # resolved as if the context were /
    r = md.run("build", ctx)
    assert r.returncode == 1
    assert "file not found in build context" in r.stderr
    (ctx / "evil").unlink()
    (ctx / "evil").symlink_to("../../../../../etc/hostname")
    assert md.run("build", ctx).returncode == 1


def test_bad_flags(md, images, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\n"})
    # what docker's CLI refuses as a flag value exits 125, what the build refuses 1
    r = md.run("build", "--build-arg", "=x", ctx)
    assert (r.returncode, r.stderr) == (125, 'Error: invalid argument "=x" for "--build-arg" '
                                             "flag: invalid environment variable: =x\n")
    r = md.run("build", "-t", "Bad:Name", ctx)
    assert r.returncode == 125 and r.stderr.count("\n") == 1
    assert 'invalid argument "Bad:Name" for "-t, --tag" flag' in r.stderr
    r = md.run("build", tmp_path / "nope")
    assert r.returncode == 1 and "unable to prepare context" in r.stderr
    r = md.run("build", "https://example.com/ctx.tar")
    assert r.returncode == 1 and "a context from a URL or git is not supported" in r.stderr
    r = md.run("build", "--target", "nope", ctx)
    assert r.returncode == 1 and "failed to reach build target nope in Dockerfile" in r.stderr


def test_ctrl_c_in_a_run_step_leaves_nothing(md, images, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
    before = set(md.run("ps", "-aq", check=True).stdout.split())
    images_before = md.run("images", "-aq", "--no-trunc", check=True).stdout
    proc = subprocess.Popen(md.argv("build", ctx), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("started"):
                break
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert set(md.run("ps", "-aq", check=True).stdout.split()) == before
    assert md.run("images", "-aq", "--no-trunc", check=True).stdout == images_before
    assert not [p for p in Path(md.root, "image/overlay2/layerdb/mounts").iterdir()
                if len(p.name) == 64 and not (Path(md.root, "containers") / p.name).exists()]
    assert not list(Path(md.run_root, "builds").iterdir())


def test_contexts_from_stdin(md, images, tmp_path, tidy):
    dockerfile = "FROM busybox\nCOPY a.txt /a.txt\nCMD [\"cat\", \"/a.txt\"]\n"
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as t:
        for name, text in (("Dockerfile", dockerfile), ("a.txt", "from a tar\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(text.encode()))
    r = md.run("build", "-t", "stdin-tar", "-", input=data.getvalue(), check=True)
    tidy.append("stdin-tar")
    assert "Successfully tagged stdin-tar:latest" in r.stdout
    assert md.run("run", "--rm", "stdin-tar", check=True).stdout == "from a tar\n"

    # a Dockerfile on stdin: no context at all
    r = md.run("build", "-q", "-", input="FROM busybox\nENV FROM_STDIN=1\n", check=True)
    tidy.append(r.stdout.strip())
    # -f - with a directory context
    write(tmp_path, {"a.txt": "from the dir\n"})
    r = md.run("build", "-t", "stdin-df", "-f", "-", tmp_path, input=dockerfile, check=True)
    tidy.append("stdin-df")
    assert md.run("run", "--rm", "stdin-df", check=True).stdout == "from the dir\n"


def test_dockerignore_and_the_dockerfile_s_own_ignore_file(md, images, tmp_path, tidy):
    write(tmp_path, {
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\nCMD [\"find\", \"/ctx\"]\n",
        ".dockerignore": "secret*\n**/*.log\n!keep.log\n/build\n",
        "secret.key": "x", "a/b.log": "x", "keep.log": "x", "build/out": "x", "src/main.c": "x",
    })
    md.run("build", "-t", "ignore-test", tmp_path, check=True)
    tidy.append("ignore-test")
    listed = set(md.run("run", "--rm", "ignore-test", check=True).stdout.split())
    assert listed == {"/ctx", "/ctx/Dockerfile", "/ctx/.dockerignore", "/ctx/a",
                      "/ctx/keep.log", "/ctx/src", "/ctx/src/main.c"}
    # an excluded file is not there for COPY either
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY secret.key /\n")
    r = md.run("build", tmp_path)
    assert r.returncode == 1 and "excluded by .dockerignore" in r.stderr


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_add_extracts_local_archives_and_fetches_urls(md, images, tmp_path, tidy):
    payload = tmp_path / "payload"
    write(payload, {"top/one.txt": "1\n", "top/two.txt": "2\n"})
    for suffix, mode in ((".tar", "w"), (".tar.gz", "w:gz"), (".tar.bz2", "w:bz2"),
                         (".tar.xz", "w:xz")):
        with tarfile.open(tmp_path / f"arch{suffix}", mode) as t:
            t.add(payload / "top", arcname="top")
    (tmp_path / "plain.gz.txt").write_text("not an archive\n")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(payload)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/top/one.txt"
        write(tmp_path, {"Dockerfile": (
            "FROM busybox\nADD arch.tar /t/\nADD arch.tar.gz /gz\nADD arch.tar.bz2 /bz2\n"
            "ADD arch.tar.xz /xz\nADD plain.gz.txt /plain\n"
            f"ADD {url} /remote/\n"
            "CMD [\"sh\", \"-c\", \"cat /t/top/two.txt /gz/top/one.txt /bz2/top/two.txt "
            "/xz/top/one.txt /plain /remote/one.txt; stat -c %a /remote/one.txt\"]\n")})
        md.run("build", "-t", "add-test", tmp_path, check=True)
        tidy.append("add-test")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    out = md.run("run", "--rm", "add-test", check=True).stdout
    assert out == "2\n1\n2\n1\nnot an archive\n1\n600\n"


def test_build_args_onbuild_target_and_labels(md, images, tmp_path, tidy):
    write(tmp_path, {"Dockerfile": (
        "ARG BASE=busybox\nFROM $BASE AS first\nARG WHO=nobody\nRUN echo \"hi $WHO\" > /who\n"
        "ONBUILD RUN echo triggered > /trigger\n"
        "FROM first AS second\nRUN cat /trigger /who\n"
        "FROM busybox AS third\nRUN false\n")})
    r = md.run("build", "--build-arg", "WHO=class", "--build-arg", "UNUSED=1",
               "--target", "second", "--label", "course=containers", "-t", "args-test",
               tmp_path, check=True)
    tidy.append("args-test")
    out = r.stdout
    assert "Step 1/8 : ARG BASE=busybox" in out  # meta arg, 2 stages, the label: 8 steps
    assert "Step 8/8 : LABEL course=containers" in out
    assert "# Executing 1 build trigger\n" in out
    assert "triggered\nhi class\n" in out
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out
    history = md.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", "args-test",
                     check=True).stdout.splitlines()
    assert '|1 WHO=class /bin/sh -c echo "hi $WHO" > /who' in history
    cfg = json.loads(md.run("image", "inspect", "-f", "{{json .Config}}", "args-test",
                            check=True).stdout)
    assert cfg["Labels"] == {"course": "containers"}
    assert cfg["OnBuild"] is None  # triggers run once, in the child, and are gone


def test_images_lists_a_build_s_intermediate_images_only_with_all(md, images, tmp_path, tidy):
    shown_before = set(md.run("images", "-q", check=True).stdout.split())
    every_before = set(md.run("images", "-aq", check=True).stdout.split())
    write(tmp_path, {"Dockerfile": "FROM busybox\nENV LAYERS_TEST=1\nENV B=2\n"})
    md.run("build", "--no-cache", "-t", "layers-test", tmp_path, check=True)
    tidy.append("layers-test")
    shown = set(md.run("images", "-q", check=True).stdout.split()) - shown_before
    every = set(md.run("images", "-aq", check=True).stdout.split()) - every_before
    assert len(shown) == 1 and len(every) == 2  # the ENV A image: a parent with no tag
    kept = md.run("rmi", "--no-prune", "layers-test", check=True).stdout
    assert kept.count("Deleted:") == 1  # --no-prune: the untagged parent stays
    parent = (every - shown).pop()
    assert parent in md.run("images", "-aq", check=True).stdout
    md.run("build", "-t", "layers-test", tmp_path, check=True)  # (its cache brings it back)
    removed = md.run("rmi", "layers-test", check=True).stdout
    assert removed.count("Deleted:") == 2  # the tagged image and its untagged parent
    tidy.clear()


def test_the_cmd_vs_entrypoint_examples_do_what_their_readme_says(md, images, tidy):
    here = Path(__file__).resolve().parents[2] / "images" / "cmd-vs-entrypoint"
    for tag, name in (("greet-cmd", "Dockerfile.cmd"), ("greet-ep", "Dockerfile.entrypoint")):
        md.run("build", "-q", "-t", tag, "-f", here / name, here, check=True)
        tidy.append(tag)

    def run(*args: str) -> tuple[int, str]:
        r = md.run("run", "--rm", "--network", "none", *args)
        return r.returncode, r.stdout

    assert run("greet-cmd") == (0, "hello from CMD\n")
    assert run("greet-cmd", "echo", "other", "args") == (0, "other args\n")
    assert run("greet-cmd", "other", "args")[0] == 127
    assert run("greet-ep") == (0, "hello from ENTRYPOINT default args\n")
    assert run("greet-ep", "echo", "other", "args") == (0, "hello from ENTRYPOINT echo other "
                                                           "args\n")
    assert run("greet-ep", "other", "args") == (0, "hello from ENTRYPOINT other args\n")


def test_heredocs_run_as_scripts_and_become_files(md, images, tmp_path, tidy):
    write(tmp_path, {"Dockerfile": (
        "FROM busybox\nENV WHO=class\n"
        "RUN <<EOF\necho script line 1 > /script.txt\necho \"for $WHO\" >> /script.txt\nEOF\n"
        "RUN cat <<EOF > /fed.txt\nfed to cat\nEOF\n"
        "COPY <<EOF /etc/greeting\nhello $WHO\nEOF\n"
        "COPY <<'EOF' /etc/literal\nhello $WHO\nEOF\n"
        "CMD [\"cat\", \"/script.txt\", \"/fed.txt\", \"/etc/greeting\", \"/etc/literal\"]\n")})
    md.run("build", "-t", "heredoc-test", tmp_path, check=True)
    tidy.append("heredoc-test")
    out = md.run("run", "--rm", "heredoc-test", check=True).stdout
    assert out == "script line 1\nfor class\nfed to cat\nhello class\nhello $WHO\n"


def test_add_extracts_a_zstd_archive(md, images, tmp_path, tidy):
    import zstandard

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as t:
        info = tarfile.TarInfo("inner/z.txt")
        info.size = 5
        t.addfile(info, io.BytesIO(b"zstd\n"))
    (tmp_path / "a.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(data.getvalue()))
    write(tmp_path, {"Dockerfile": "FROM busybox\nADD a.tar.zst /z/\nCMD [\"cat\", "
                                   "\"/z/inner/z.txt\"]\n"})
    md.run("build", "-t", "zstd-test", tmp_path, check=True)
    tidy.append("zstd-test")
    assert md.run("run", "--rm", "zstd-test", check=True).stdout == "zstd\n"


def test_trace_shows_each_step_and_its_kernel_calls(md, images, tmp_path):
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN touch /x\nCOPY f /f\nENV A=1\n", "f": ""})
    r = md.run("build", "--trace", "--no-cache", "-q", tmp_path, check=True)
    err = r.stderr
    for line in ("# build step, Dockerfile line 2: RUN touch /x",
                 "# build step, Dockerfile line 3: COPY f /f",
                 "# a scratch rw layer on the current image",
                 "# the step changed no file: an image with empty_layer"):
        assert line in err, err
    assert err.count("into a new layer") == 2  # RUN and COPY each made one
    assert "mount('overlay'" in err and "pivot_root" in err
    md.run("rmi", r.stdout.strip(), check=True)


def test_run_steps_on_the_host_network_and_from_platform(md, images, tmp_path, tidy):
    """--network host: a RUN step shares the host's network namespace (and, as docker's,
    its hostname); FROM --platform of the host's platform takes the local image."""
    import platform as host

    from minidock.engine.images.platform import host_platform

    arch, _ = host_platform()
    write(tmp_path, {"Dockerfile": (f"FROM --platform=linux/{arch} busybox\n"
                                    "RUN hostname > /h && ls /sys/class/net > /links\n"
                                    "CMD [\"cat\", \"/h\", \"/links\"]\n")})
    md.run("image", "build", "--network", "host", "-t", "hostnet-test", tmp_path, check=True)
    tidy.append("hostnet-test")
    out = md.run("run", "--rm", "hostnet-test", check=True).stdout.split()
    assert out[0] == host.node()
    def steady(names):  # containers' veths come and go with other runs
        return {n for n in names if not (n.startswith("md") and n != "minidock0")}

    assert steady(os.listdir("/sys/class/net")) <= steady(out[1:])
    # another platform is pulled, not taken from here (a registry nobody listens on: the
    # pull fails in one line naming the Dockerfile's line)
    ref = "127.0.0.1:9/plat:1"
    md.run("tag", "busybox", ref, check=True)
    tidy.append(ref)
    other = "arm64" if arch != "arm64" else "amd64"
    (tmp_path / "Dockerfile").write_text(f"FROM --platform=linux/{other} {ref}\n")
    r = md.run("build", tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "127.0.0.1:9" in r.stderr and r.stderr.endswith("(Dockerfile line 1)\n")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    (tmp_path / "Dockerfile").write_text(f"FROM --platform=linux/{arch} {ref}\n")
    md.run("build", "-q", tmp_path, check=True)  # the local one is that platform
