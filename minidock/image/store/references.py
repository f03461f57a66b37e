"""repositories.json: the tags and digest references that name images, and resolving a name.

    repositories.json   0600  {"Repositories":{"busybox":{"busybox:latest":"sha256:<id>"}}}

Keys are familiar references (``busybox:latest``, ``busybox@sha256:...``), grouped by
familiar repository name; the whole file is rewritten by rename on every change. A
reference may only point at an image the store holds (images.py).
"""

from __future__ import annotations

import json

from minidock.errors import ImageNotFound, InvalidArgument, StorageError
from minidock.image.reference import (
    Reference,
    is_digest,
    is_id_prefix,
    is_identifier,
    parse_reference,
    parse_tagged,
    validate_digest,
)
from minidock.image.store.images import Images
from minidock.storage.atomic import atomic_write


class References(Images):
    """Tags and digests of the images, and name-to-id resolution."""

    def _load_refs(self) -> dict[str, dict[str, str]]:
        try:
            with open(self.refs_file, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise StorageError(f"parse {self.refs_file}: {e}") from e
        repos = data.get("Repositories") if isinstance(data, dict) else None
        if not isinstance(repos, dict):
            return {}
        return {
            str(repo): {str(k): str(v) for k, v in refs.items()}
            for repo, refs in repos.items()
            if isinstance(refs, dict)
        }

    def _save_refs(self, repos: dict[str, dict[str, str]]) -> None:
        self._ensure_dirs()
        body = json.dumps({"Repositories": repos}, sort_keys=True, separators=(",", ":"))
        atomic_write(self.refs_file, body, 0o600)

    def add_reference(self, ref: Reference, image_id: str) -> None:
        """Point ``ref`` (tagged or digested) at ``image_id``, replacing what it pointed to."""
        validate_digest(image_id)
        with self.locked():
            if not self.image_exists(image_id):
                raise ImageNotFound(f"No such image: {image_id}")
            repos = self._load_refs()
            repos.setdefault(ref.familiar_name, {})[ref.familiar()] = image_id
            self._save_refs(repos)

    def add_tag(self, ref: str | Reference, image_id: str) -> Reference:
        """``docker tag``: store ``ref`` (default tag latest) and stamp lastUpdated."""
        parsed = parse_tagged(ref) if isinstance(ref, str) else ref.with_default_tag()
        if parsed.digest is not None:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {parsed}")
        with self.locked():
            self.add_reference(parsed, image_id)
            self.set_last_updated(image_id)
        return parsed

    def _remove_ref_key(self, familiar_ref: str) -> bool:
        ref = parse_reference(familiar_ref)
        repos = self._load_refs()
        refs = repos.get(ref.familiar_name)
        if not refs or ref.familiar() not in refs:
            return False
        del refs[ref.familiar()]
        if not refs:
            del repos[ref.familiar_name]
        self._save_refs(repos)
        return True

    def remove_tag(self, ref: str | Reference) -> bool:
        """Remove a tag or digest reference (default tag latest); False if it was absent."""
        parsed = parse_reference(ref) if isinstance(ref, str) else ref
        with self.locked():
            return self._remove_ref_key(parsed.with_default_tag().familiar())

    def lookup_reference(self, ref: Reference) -> str | None:
        ref = ref.with_default_tag()
        image_id = self._load_refs().get(ref.familiar_name, {}).get(ref.familiar())
        return image_id if image_id and is_digest(image_id) else None

    def references(self, image_id: str) -> list[str]:
        """Familiar references (tags and digests) pointing at ``image_id``, sorted."""
        return sorted(
            ref
            for refs in self._load_refs().values()
            for ref, target in refs.items()
            if target == image_id
        )

    def tags_of(self, image_id: str) -> list[str]:
        return [r for r in self.references(image_id) if "@" not in r]

    def digests_of(self, image_id: str) -> list[str]:
        return [r for r in self.references(image_id) if "@" in r]

    def resolve(self, value: str) -> str:
        """An image id from a tag, digest reference, full id, ``sha256:`` id or id prefix.

        Order as Docker: a full id; then a reference in repositories.json; then a unique
        id prefix. Anything else is ImageNotFound (an invalid reference: InvalidArgument).
        """
        if is_identifier(value):
            value = "sha256:" + value
        if is_digest(value):
            if self.image_exists(value):
                return value
            raise ImageNotFound(f"No such image: {value}")
        try:
            ref: Reference | None = parse_reference(value)
        except InvalidArgument:
            if not is_id_prefix(value):
                raise
            ref = None
        if ref is not None:
            found = self.lookup_reference(ref)
            if found is not None and self.image_exists(found):
                return found
        if is_id_prefix(value):
            prefix = value.removeprefix("sha256:")
            matches = [i for i in self.list_images() if i[len("sha256:"):].startswith(prefix)]
            if len(matches) == 1:
                return matches[0]
        raise ImageNotFound(f"No such image: {value}")
