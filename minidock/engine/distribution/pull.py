"""``docker pull``: a manifest, its config and its layers, from a registry into the store.

The steps, and who checks what::

    reference --HEAD--> digest already pulled? --yes--> "Image is up to date"
        |
        GET manifest (by tag or digest; sha256 and Docker-Content-Digest checked)
        |-- an index: pick the entry for the platform, GET that manifest by digest
        GET config (size-limited, digest checked); rootfs.diff_ids -> ChainIDs
        |
        layers whose ChainID is in the store: "Already exists"
        the others: downloaded 3 at a time, each into a temp file, while the main thread
        applies them in order straight from those growing files:

          worker 1: [== blob 1 ==>]          apply 1 (reads behind worker 1) [====>      ]
          worker 2: [== blob 2 ======>]      apply 2 waits for apply 1 (the parent chain)
          worker 3: [== blob 3 =>]

        a layer is committed (renamed into layerdb) only after its blob's digest and size
        were verified AND its DiffID was computed: the reader hands apply_layer the end of
        the stream only once the download checked out, otherwise it raises and the half
        applied layer is removed. The DiffID must then equal the config's.
        |
        create the image (id = sha256(config)), tag it, record repo@digest and Docker's
        distribution metadata (which blob is which DiffID, from which repository: push uses
        it to skip and mount blobs)

Downloads and extraction overlap fully: the network, zlib, sha256 and the extraction all run
in their own threads (zlib and hashlib release the GIL), and no layer is ever held in memory.

A killed pull (Ctrl-C, kill -9) leaves the store consistent: at worst a temp dir under
``<root>/tmp/pull-*``, an uncommitted overlay2 dir and complete layers no image uses yet.
The next pull removes the first two (ImageStore.cleanup_stale) and finds the complete
layers "Already exists". A pull that fails on bad input removes the layers it registered.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any, TextIO

from minidock.engine.distribution.client import registry_client
from minidock.engine.distribution.metadata import DistributionMetadata
from minidock.engine.distribution.progress import PullOutput
from minidock.errors import (
    ImageNotFound,
    InvalidArgument,
    LayerError,
    MinidockError,
    RegistryError,
    quietly,
)
from minidock.image.reference import Reference, parse_reference
from minidock.image.store import ImageStore, chain_ids
from minidock.linux.flock import HeldLock, try_lock
from minidock.paths import Paths
from minidock.records import record

PARALLEL_DOWNLOADS = 3  # Docker's max-concurrent-downloads default
_READ_WAIT = 0.1


# --- a blob being downloaded, read while it grows ------------------------------------------


class _Blob:
    """A layer blob written to a temp file by a download thread.

    Protocol: the downloader appends with :meth:`write` and ends with :meth:`finish`
    (error None once digest and size were verified). A reader waits on ``cond`` for
    ``written`` to pass its position; it sees the end of the stream only after a
    successful finish, so nothing downstream can commit an unverified layer.
    """

    def __init__(self, index: int, desc: Any, path: str) -> None:
        self.index = index
        self.desc = desc
        self.short = desc.digest[7:19]
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.cond = threading.Condition()
        self.written = 0
        self.done = False
        self.error: BaseException | None = None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        with self.cond:
            self.written += len(data)
            self.cond.notify_all()

    def finish(self, error: BaseException | None) -> None:
        with self.cond:
            self.done = True
            self.error = error
            self.cond.notify_all()

    def wait_done(self, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.done, timeout=timeout)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class _BlobReader:
    """The stream register_layer reads: the blob's bytes as they arrive, then its end."""

    def __init__(self, blob: _Blob, cancel: threading.Event,
                 progress: Callable[[int], None]) -> None:
        self._blob = blob
        self._cancel = cancel
        self._progress = progress
        self._pos = 0

    def read(self, size: int = -1, /) -> bytes:
        blob = self._blob
        with blob.cond:
            while True:
                if blob.error is not None:
                    raise blob.error
                # The last byte is held back until the download is verified: the
                # decompressor cannot reach the end of the stream (and report a checksum
                # error of its own) before the digest check has spoken.
                end = blob.written if blob.done else min(blob.written, blob.desc.size - 1)
                if self._pos < end or blob.done:
                    break
                if self._cancel.is_set():
                    raise RegistryError("pull cancelled")
                blob.cond.wait(_READ_WAIT)
            available = end - self._pos
        if available == 0:
            return b""  # done, verified
        n = available if size < 0 else min(size, available)
        data = os.pread(blob.fd, n, self._pos)
        self._pos += len(data)
        self._progress(self._pos)
        return data


# --- temp dirs and their cleanup ---------------------------------------------------------------


@contextlib.contextmanager
def _work_dir(paths: Paths) -> Iterator[str]:
    """``<root>/tmp/pull-XXXX`` holding an flock for as long as this pull lives.

    Any pull first removes the pull-* dirs whose lock it can take: their owner is gone.
    """
    os.makedirs(paths.tmp, 0o700, exist_ok=True)
    for name in os.listdir(paths.tmp):
        if name.startswith("pull-"):
            _remove_if_abandoned(os.path.join(paths.tmp, name))
    d = tempfile.mkdtemp(prefix="pull-", dir=paths.tmp)
    lock = HeldLock(os.path.join(d, ".lock"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        lock.release()


def _remove_if_abandoned(d: str) -> None:
    try:
        lock = try_lock(os.path.join(d, ".lock"))
    except FileNotFoundError:
        # Killed between mkdtemp and creating the lock (or a stray dir): old enough is gone.
        with contextlib.suppress(OSError):
            if time.time() - os.stat(d).st_mtime > 60:
                shutil.rmtree(d, ignore_errors=True)
        return
    except OSError:
        return
    if lock is None:
        return  # a live pull holds it
    try:
        shutil.rmtree(d, ignore_errors=True)
    finally:
        lock.release()


@contextlib.contextmanager
def _cancel_on_sigint(cancel: threading.Event) -> Iterator[None]:
    """Ctrl-C sets ``cancel`` (worker threads and readers check it) and then interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        cancel.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# --- pull ----------------------------------------------------------------------------------


@record(frozen=True)
class PullResult:
    image_id: str
    reference: Reference  # what was asked for, normalized (tag or digest)
    digest: str  # of the manifest or index the tag pointed to
    updated: bool  # False: "Image is up to date"


def _want_platform(platform: str | None) -> Any:
    from minidock.engine.images import host_platform
    from minidock.image.distribution import Platform, parse_platform

    if platform:
        return parse_platform(platform)
    arch, variant = host_platform()
    return Platform("linux", arch, variant).normalized()


def pull(
    paths: Paths,
    reference: str,
    platform: str | None = None,
    out: TextIO | None = None,
    quiet: bool = False,
    tty: bool | None = None,
) -> PullResult:
    """Pull ``reference`` (default tag latest) into the store; return what was pulled."""
    from minidock.image import distribution as reg

    ref = parse_reference(reference).with_default_tag()
    want = _want_platform(platform)
    output = PullOutput(out, quiet=quiet, tty=tty)
    store = ImageStore(paths)
    store.cleanup_stale()
    client = registry_client(ref)
    subject = str(ref)
    try:
        tag_ref = ref if ref.tag and not ref.digest else None

        # Up to date? A HEAD gives the digest without a download (nor a rate-limit hit).
        head = ref.digest or client.head_manifest(ref.path, ref.tag or "")
        # As Docker: said once the registry has answered (the HEAD, else the GET below), so
        # an unreachable registry gives just the error.
        pulling = f"{ref.digest or ref.tag}: Pulling from {ref.path}"
        if head is not None:
            output.line(pulling)
            known = store.lookup_reference(Reference(ref.domain, ref.path, digest=head))
            # An index digest maps to the image of whichever platform was pulled through
            # it, so the platform must match too.
            if known is not None and store.image_exists(known) and reg.platform_matches(
                want, reg.config_platform(store.get_image_config(known))
            ):
                return _finish(store, output, ref, tag_ref, head, known, paths)

        top = client.get_manifest(ref.path, ref.digest or ref.tag or "", subject)
        if head is None:
            output.line(pulling)
        parsed = reg.parse_manifest(top.data, top.media_type)
        if isinstance(parsed, reg.ImageIndex):
            entry = reg.select_manifest(parsed, want)
            child = client.get_manifest(ref.path, entry.digest, f"{ref.name}@{entry.digest}",
                                        expected=entry)
            manifest = reg.parse_manifest(child.data, child.media_type)
            if not isinstance(manifest, reg.ImageManifest):
                raise RegistryError(f"index entry {entry.digest} of {subject} is not an "
                                    "image manifest")
        else:
            manifest = parsed

        config_bytes = client.fetch_blob(ref.path, manifest.config, reg.MAX_CONFIG_SIZE,
                                         "image config")
        config = reg.load_json(config_bytes, "image config")
        try:
            diff_ids = ImageStore.diff_ids_of(config)
        except InvalidArgument as e:
            raise RegistryError(f"invalid image config of {subject}: {e}") from e
        if len(diff_ids) != len(manifest.layers):
            raise RegistryError(f"invalid image {subject}: the config lists {len(diff_ids)} "
                                f"layers, the manifest {len(manifest.layers)}")
        have = reg.config_platform(config)
        if not reg.platform_matches(want, have):
            if platform is not None:
                raise RegistryError(f"image with reference {subject} was found but does not "
                                    f"match the specified platform: wanted {want}, actual: "
                                    f"{have}")
            output.line(f"WARNING: The requested image's platform ({have}) does not match "
                        f"the detected host platform ({want}) and no specific platform was "
                        "requested")

        with store.building():  # its layers are not "unused" while the image is made
            image_id = _fetch_layers(store, client, ref, manifest, diff_ids, config_bytes,
                                     output, paths)
        return _finish(store, output, ref, tag_ref, top.digest, image_id, paths,
                       layers=list(zip(diff_ids, manifest.layers, strict=True)))
    finally:
        client.close()


def _finish(
    store: ImageStore,
    output: PullOutput,
    ref: Reference,
    tag_ref: Reference | None,
    digest: str,
    image_id: str,
    paths: Paths,
    layers: list[tuple[str, Any]] | None = None,
) -> PullResult:
    """Tag, record the digest reference and the distribution metadata, print the status."""
    with store.locked():
        if not store.image_exists(image_id):
            raise ImageNotFound(f"No such image: {image_id} (removed during the pull)")
        before = store.lookup_reference(tag_ref) if tag_ref is not None else None
        if tag_ref is not None:
            store.add_tag(tag_ref, image_id)
        store.add_reference(Reference(ref.domain, ref.path, digest=digest), image_id)
        if layers:
            meta = DistributionMetadata(paths)
            for diff_id, desc in layers:
                meta.add(diff_id, desc.digest, ref.name)
    updated = before != image_id if tag_ref is not None else layers is not None
    output.line(f"Digest: {digest}")
    what = "Downloaded newer image" if updated else "Image is up to date"
    output.line(f"Status: {what} for {ref.familiar()}")
    return PullResult(image_id, ref, digest, updated)


def _fetch_layers(
    store: ImageStore,
    client: Any,
    ref: Reference,
    manifest: Any,
    diff_ids: list[str],
    config_bytes: bytes,
    output: PullOutput,
    paths: Paths,
) -> str:
    """Download and apply the missing layers, then create the image; returns its id."""
    chains = chain_ids(diff_ids)
    ids = [d.digest[7:19] for d in manifest.layers]
    # Layers below the first missing one are shared with images already here.
    present = 0
    while present < len(chains) and store.layer_exists(chains[present]):
        present += 1
    initial = {}
    for i, short in enumerate(ids):
        initial[short] = "Already exists" if i < present else (
            "Pulling fs layer" if i < present + PARALLEL_DOWNLOADS else "Waiting")
    output.layers(ids, initial)

    cancel = threading.Event()
    with _work_dir(paths) as work, _cancel_on_sigint(cancel):
        blobs = [
            _Blob(i, manifest.layers[i], os.path.join(work, f"{i:03d}-{ids[i]}"))
            for i in range(present, len(chains))
        ]
        jobs: queue.Queue[_Blob] = queue.Queue()
        for blob in blobs:
            jobs.put(blob)

        def download() -> None:
            while not cancel.is_set():
                try:
                    blob = jobs.get_nowait()
                except queue.Empty:
                    return
                size = blob.desc.size

                def progress(n: int, blob: _Blob = blob, size: int = size) -> None:
                    output.layer(blob.short, "Downloading", n, size)

                try:
                    client.download_blob(ref.path, blob.desc, blob.write,
                                         cancelled=cancel.is_set, progress=progress)
                except BaseException as e:  # handed to the reader, which raises it
                    blob.finish(e)
                    continue
                output.layer(blob.short, "Download complete", final=False)
                blob.finish(None)

        workers = [threading.Thread(target=download, name=f"minidock-pull-{n}", daemon=True)
                   for n in range(min(PARALLEL_DOWNLOADS, len(blobs)))]
        for w in workers:
            w.start()
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(_end_downloads, cancel, workers, blobs)  # however it ends, last
            undo = cleanup.enter_context(contextlib.ExitStack())  # the layers registered
            # Pushed after `undo`, so unwound before it: a failure stops the downloads first.
            cleanup.push(functools.partial(_stop_downloads, cancel, client))
            parent = chains[present - 1] if present else None
            for blob in blobs:
                i = blob.index

                def extracting(n: int, blob: _Blob = blob) -> None:
                    output.layer(blob.short, "Extracting", n, blob.desc.size)

                reader = _BlobReader(blob, cancel, extracting)
                try:
                    layer = store.register_layer(reader, parent)  # type: ignore[arg-type]
                except LayerError as e:
                    # Corrupt bytes often break the tar or gzip stream before the download
                    # ends; the digest mismatch is the truer explanation, so wait for it.
                    blob.wait_done(30)
                    if isinstance(blob.error, RegistryError):
                        raise blob.error from e
                    raise
                undo.push(functools.partial(_release_unless_interrupted, store, layer.chain_id))
                if layer.chain_id != chains[i]:
                    raise RegistryError(f"layer {blob.desc.digest} of {ref}: its DiffID is "
                                        f"{layer.diff_id}, the image config says {diff_ids[i]}")
                blob.discard()
                output.layer(blob.short, "Pull complete", final=True)
                parent = layer.chain_id
            image_id = store.create_image(config_bytes)
            undo.pop_all()
    return image_id


def _end_downloads(cancel: threading.Event, workers: list[threading.Thread],
                   blobs: list[_Blob]) -> None:
    cancel.set()
    for w in workers:
        w.join(5)
    for blob in blobs:
        blob.discard()


def _stop_downloads(cancel: threading.Event, client: Any, exc_type: type[BaseException] | None,
                    exc: BaseException | None, tb: TracebackType | None) -> None:
    """On a failure: stop the download threads; closing the client wakes those blocked on
    a socket."""
    if exc_type is not None:
        cancel.set()
        client.close()


def _release_unless_interrupted(store: ImageStore, chain: str,
                                exc_type: type[BaseException] | None,
                                exc: BaseException | None, tb: TracebackType | None) -> None:
    """Bad input leaves nothing behind. After Ctrl-C the complete layers stay: they are
    consistent, and the next pull finds them "Already exists"."""
    if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
        quietly(store.release_layer, chain, ignore=(MinidockError, OSError))


def pull_missing(paths: Paths, reference: str, err: TextIO | None = None) -> str:
    """``run``/``create`` of an image that is not here: pull it as Docker does; its id.

    Docker prints to stderr: ``Unable to find image 'busybox:latest' locally`` then the pull
    output (without the final reference line).
    """
    err = err if err is not None else sys.stderr
    ref = parse_reference(reference).with_default_tag()
    err.write(f"Unable to find image '{ref.familiar()}' locally\n")
    err.flush()
    return pull(paths, reference, out=err).image_id
