"""`build` held to Docker's classic builder, case by case: tests/integration/builds/<case>/
holds a Dockerfile, its context and what docker 20.10 made of it (expected.json, recorded by
scripts/record-builds; the directory's README has the format). For each case minidock builds
the same context and must give the same config, history (created_by, empty_layer), layer
count, files (type, mode, owner, content), runs (the CMD/ENTRYPOINT table cell by cell),
step lines and, for a failing case, the same last line and exit code."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

CASES_DIR = Path(__file__).resolve().parent / "builds"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "case.json").is_file())
CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts", "Labels",
               "Volumes", "StopSignal", "Healthcheck", "OnBuild", "Shell")


def load(case: str) -> tuple[dict, dict]:
    d = CASES_DIR / case
    return json.loads((d / "case.json").read_text()), json.loads((d / "expected.json").read_text())


def context_of(case: str, spec: dict, into: Path) -> Path:
    """The case's context as the recording saw it: modes set, case files left out."""
    ctx = into / case
    shutil.copytree(CASES_DIR / case, ctx, symlinks=True,
                    ignore=shutil.ignore_patterns("case.json", "expected.json"))
    os.chmod(ctx, 0o755)
    for root, dirs, files in os.walk(ctx):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)
    for rel, mode in (spec.get("modes") or {}).items():
        os.chmod(ctx / rel, int(mode, 8))
    return ctx


def build(md, case: str, tmp: Path, made: list[str]):
    spec, _ = load(case)
    if spec.get("after"):
        build(md, spec["after"], tmp, made)
    ctx = context_of(case, spec, tmp)
    argv = ["build", "--no-cache", "--network", "none"]
    args = list(spec.get("args") or [])
    if "-f" in args:  # -f is relative to the context in the case files
        at = args.index("-f") + 1
        args[at] = str(ctx / args[at])
    if spec.get("tag"):
        argv += ["-t", spec["tag"]]
        made.append(spec["tag"])
    r = md.run(*argv, *args, ctx)
    if r.returncode == 0:
        made.append(r.stdout.split("Successfully built ")[1].split()[0])
    return r


def raw_config(md, image: str) -> dict:
    image_id = md.run("image", "inspect", "-f", "{{.Id}}", image, check=True).stdout.strip()
    path = Path(md.root, "image/overlay2/imagedb/content/sha256", image_id[7:])
    return json.loads(path.read_text())


def image_files(md, image: str, tmp: Path) -> dict[str, dict]:
    """The image's tree from `save`: every path -> {type, mode, uid, gid, sha256/target},
    its layers applied in order (whiteouts and opaque directories honoured)."""
    archive = tmp / "saved.tar"
    md.run("save", "-o", archive, image, check=True)
    tree: dict[str, dict] = {}
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name in manifest[0]["Layers"]:
            data = t.extractfile(name).read()  # type: ignore[union-attr]
            with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                for m in layer.getmembers():
                    path = "/" + m.name.strip("/").removeprefix("./")
                    head, _, base = path.rpartition("/")
                    if base == ".wh..wh..opq":
                        for p in [p for p in tree if p.startswith(head + "/")]:
                            del tree[p]
                        continue
                    if base.startswith(".wh."):
                        gone = f"{head}/{base[4:]}"
                        for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                            del tree[p]
                        continue
                    entry = {"mode": f"{stat.S_IMODE(m.mode):04o}", "uid": m.uid,
                             "gid": m.gid}
                    if m.isdir():
                        entry["type"] = "dir"
                    elif m.issym():
                        entry.update(type="symlink", target=m.linkname)
                    elif m.islnk():
                        linked = dict(tree["/" + m.linkname.strip("/")])
                        entry = linked
                    elif m.isfile():
                        content = layer.extractfile(m).read()  # type: ignore[union-attr]
                        entry.update(type="file", sha256=hashlib.sha256(content).hexdigest())
                    else:
                        entry["type"] = "other"
                    if (path in tree and tree[path]["type"] != "dir") or entry["type"] != "dir":
                        for p in [p for p in tree if p.startswith(path + "/")]:
                            del tree[p]
                    tree[path] = entry
    return tree


def described(tree: dict[str, dict], path: str) -> dict:
    path = "/" + path.strip("/") if path != "/" else "/"
    if path == "/":
        names = sorted({p[1:].split("/")[0] for p in tree if p != "/"})
        return {"type": "dir", "entries": names}
    if path not in tree:
        return {"type": "missing"}
    entry = dict(tree[path])
    if entry["type"] == "dir":
        prefix = path + "/"
        entry["entries"] = sorted({p[len(prefix):].split("/")[0] for p in tree
                                   if p.startswith(prefix)})
    return entry


def line_of(case: str, step: str) -> int:
    """The Dockerfile line of the instruction a "Step i/N : ..." line shows."""
    from minidock.dockerfile.parser import parse

    text = step.split(" : ", 1)[1]
    for cmd in parse((CASES_DIR / case / "Dockerfile").read_text()):
        if cmd.original.split("\n", 1)[0].strip() == text:
            return cmd.start_line
    raise AssertionError(f"{case}: no instruction {text!r}")


def base_of(md, output: str, steps: list[str]) -> str:
    """The image the final stage started from: what its FROM step printed, or (when ONBUILD
    triggers ran first) as many parents up from the step's result as there were triggers."""
    lines = output.splitlines()
    at = lines.index([s for s in steps if " : FROM " in s][-1]) + 1
    triggers = 0
    if lines[at].startswith("# Executing "):
        triggers = int(lines[at].split()[2])
        while not lines[at].startswith(" ---> ") or lines[at].startswith(
                (" ---> Running in", " ---> Using cache")):
            at += 1
            if lines[at].startswith("Step "):
                raise AssertionError(output)
        while at + 1 < len(lines) and not lines[at + 1].startswith("Step ") and \
                not lines[at + 1].startswith("Successfully"):
            at += 1
    image = lines[at].removeprefix(" ---> ").strip()
    for _ in range(triggers):
        image = md.run("image", "inspect", "-f", "{{.Parent}}", image, check=True).stdout.strip()
    return image


@pytest.mark.parametrize("case", CASES)
def test_build_matches_docker_s_classic_builder(md, images, tmp_path, case):
    _, expected = load(case)
    made: list[str] = []
    try:
        r = build(md, case, tmp_path, made)
        steps = [line for line in r.stdout.splitlines() if line.startswith("Step ")]
        assert steps == expected["steps"], r.stdout + r.stderr
        if "error" in expected:
            assert r.returncode == expected["error"]["exit_code"], r.stderr
            want = expected["error"]["last_line"].removeprefix("Error response from daemon: ")
            got = r.stderr.strip().splitlines()[-1].removeprefix("Error: ")
            # minidock adds the line of a failed step's instruction to Docker's words (not to
            # a RUN's exit code line, nor to a parse error, which has its line already)
            if not want.startswith(("The command", "dockerfile parse error")):
                suffix = f" (Dockerfile line {line_of(case, expected['steps'][-1])})"
                assert got.endswith(suffix), got
                got = got.removesuffix(suffix)
            assert got == want
            return
        assert r.returncode == 0, r.stdout + r.stderr
        image = made[-1]
        warnings = [line for line in r.stdout.splitlines() if line.startswith("[Warning]")]
        assert warnings == expected.get("warnings", [])
        inspected = json.loads(md.run("image", "inspect", "-f", "{{json .Config}}", image,
                                      check=True).stdout)
        config = {k: inspected[k] for k in CONFIG_KEYS if inspected.get(k)}
        assert config == expected["config"]
        raw = raw_config(md, image)
        assert raw.get("author", "") == expected.get("author", "")
        base = {"history": [], "rootfs": {}}
        base_id = base_of(md, r.stdout, steps)
        if base_id:
            base = raw_config(md, base_id)
        history = [{"created_by": h.get("created_by", ""),
                    "empty_layer": bool(h.get("empty_layer"))}
                   for h in raw["history"][len(base["history"]):]]
        assert history == expected["history"]
        assert len(raw["rootfs"]["diff_ids"]) - len(base["rootfs"].get("diff_ids") or []) \
            == expected["layers"]
        if expected.get("files"):
            tree = image_files(md, image, tmp_path)
            for path, want in expected["files"].items():
                got = described(tree, path)
                want = {k: v for k, v in want.items() if k != "text"}
                if set(want) == {"type", "entries"}:  # a dir no layer has an entry for
                    got = {k: got[k] for k in ("type", "entries") if k in got}
                assert (path, got) == (path, want)
        for run in expected.get("runs", []):
            out = md.run("run", "--rm", "--network", "none", image, *run["args"])
            assert (run["args"], out.stdout, out.returncode) == \
                (run["args"], run["stdout"], run["exit_code"]), out.stderr
    finally:
        for ref in reversed(made):
            md.run("rmi", "-f", ref)
        md.run("container", "prune", "-f")
