"""The versioned index store on disk: the layout, the typed `Manifest`, `IndexStore`, CURRENT, the writers' lock.

Layout (docs/design.md): `DATA_DIR/indexes/<model_version>/v000042/` holds
`index.faiss`, `meta.parquet`, `manifest.json`; `CURRENT` beside the version
folders names the served version. A version folder only ever appears by an
atomic rename of a fully written temp folder, and `CURRENT` is replaced by an
atomic rename, so a reader sees a whole version or none.

A version is made of segments so that a merge costs what changed, not the
total: `index.faiss` is the base (exact, HNSW or IVF-PQ, rows sorted by
event_code at rebuild), `delta.faiss` holds vectors added since the base
(exact), `removed.npy` the base ids masked out (deleted or re-embedded).
Segment files are immutable: written once, made read-only, checksummed in the
manifest, and shared between versions by hard links (so a merge does not copy
the base; in an object store, by objects named by their sha256: remote.py).
Because a shared file damaged on disk damages every version that links it,
`backup_store()` is a second store (BACKUP_DIR) holding full copies that share
no file with this one (see indexing/store/backup.py).

The rest of the store: writing and linking files (files.py), checksums and
verified reads (integrity.py), the object-store mirror (remote.py), backups
(backup.py). Using a version (loading, searching) is indexing/search/loaded.py.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.settings import Settings
from indexing.store.files import write_atomic
from indexing.store.integrity import IndexCorrupt, check_file, read_bytes
from storage.location import Location

INDEX_FILE = "index.faiss"
DELTA_FILE = "delta.faiss"
REMOVED_FILE = "removed.npy"
VECTORS_FILE = "vectors.npy"  # raw base vectors, only for IVF-PQ bases (exact per-event search)
META_FILE = "meta.parquet"  # the base's rows (all of them; removed.npy masks), shared like index.faiss
META_DELTA_FILE = "meta-delta.parquet"  # (merge only) the delta's rows, the only meta a merge writes
# Precomputed duplicate relations (indexing/relations/): the base's events (written by a rebuild, hard-linked
# by merges while its rules are current) and a merge's recomputed events, which replace the base's.
RELATIONS_FILE = "relations.parquet"
RELATIONS_DELTA_FILE = "relations-delta.parquet"
SIDECAR_FILES = (RELATIONS_FILE, RELATIONS_DELTA_FILE)  # verified at load like segments, used by the server
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
MANIFEST_FORMAT = 2  # 2: meta as base + delta segments, ledger_watermark
META_COLUMNS = ("image_id", "image_code", "event_code", "filename")
_VERSION_RE = re.compile(r"^v(\d{6,})$")


def version_name(version: int) -> str:
    """Folder name of a version: v000042."""
    return f"v{int(version):06d}"


def parse_version(text: str) -> int:
    """'v000042', 'v42' or '42' -> 42; ValueError with a clear message otherwise."""
    raw = str(text).strip()
    digits = raw[1:] if raw[:1] in ("v", "V") else raw
    if not digits.isdigit() or int(digits) < 1:
        raise ValueError(f"not a version: {text[:40]!r} (expected vN, e.g. v3 or v000003)")
    return int(digits)


def version_of(name: str) -> int | None:
    """The version a folder name is (v000042 -> 42), None for anything else (temp folders, CURRENT)."""
    match = _VERSION_RE.match(name)
    return int(match.group(1)) if match else None


def model_dir_name(model_version: str) -> str:
    """A model version as one safe path component: the embeddings dataset's rule, so both agree."""
    from embeddings.dataset import safe_model_version

    if not model_version or not model_version.strip():
        raise ValueError("model_version is empty")
    return safe_model_version(model_version)


@dataclass(frozen=True)
class Manifest:
    """`manifest.json`: what a build wrote and every reader trusts. One typed object, one parser."""

    version: int
    model_version: str
    dim: int
    index_type: str
    count: int
    sha256: dict[str, str]
    sizes: dict[str, int] = field(default_factory=dict)  # JSON key "bytes"
    format: int = MANIFEST_FORMAT
    metric: str = "inner_product"
    params: dict[str, Any] = field(default_factory=dict)
    base_count: int = 0
    delta_count: int = 0
    removed_count: int = 0
    base_version: int | None = None
    parent_version: int | None = None
    mode: str | None = None
    requested_mode: str | None = None
    rebuild_reason: str | None = None
    ledger_snapshot: str | None = None
    ledger_watermark: str | None = None  # the next merge reads ledger rows embedded at or after this
    created_at: str | None = None
    build_seconds: float | None = None
    dag_run_id: str | None = None
    changes: dict[str, int] | None = None
    relations: dict[str, Any] | None = None  # what the build did about duplicate relations (indexing/relations/)
    requested_index_type: str | None = None  # the type asked for (None: automatic); merges keep asking for it

    _REQUIRED = ("version", "model_version", "dim", "index_type", "count", "sha256")

    def to_json(self) -> bytes:
        data = asdict(self)
        data["bytes"] = data.pop("sizes")
        return json.dumps(data, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: Path) -> Manifest:
        """Parse and type-check; IndexCorrupt naming `where` and the problem otherwise."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise IndexCorrupt(f"{where}: not valid JSON ({str(exc).splitlines()[0][:80]})") from None
        if not isinstance(data, dict):
            raise IndexCorrupt(f"{where}: not a JSON object")
        missing = [k for k in cls._REQUIRED if k not in data]
        if missing:
            raise IndexCorrupt(f"{where}: lacks {', '.join(missing)}")
        data["sizes"] = data.pop("bytes", {}) or {}
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            manifest = cls(**values)
            ints = (manifest.version, manifest.dim, manifest.count, manifest.base_count, manifest.delta_count,
                    manifest.removed_count)
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ints):
                raise TypeError("counts, dim and version must be non-negative integers")
            if not isinstance(manifest.sha256, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in manifest.sha256.items()):
                raise TypeError("sha256 must map file names to hex digests")
            if not isinstance(manifest.sizes, dict) or not all(
                    isinstance(v, int) for v in manifest.sizes.values()):
                raise TypeError("bytes must map file names to sizes")
            if not isinstance(manifest.params, dict):
                raise TypeError("params must be an object")
        except TypeError as exc:
            raise IndexCorrupt(f"{where}: {exc}") from None
        return manifest

    @property
    def files(self) -> list[str]:
        return sorted(self.sha256)

    def has(self, fname: str) -> bool:
        return fname in self.sha256


@dataclass(frozen=True)
class CurrentPointer:
    """What CURRENT says: a version, or why it names none (missing: `problem` is None)."""

    version: int | None
    problem: str | None = None

    @property
    def damaged(self) -> bool:
        return self.problem is not None


class IndexStore:
    """The versions of one model's index under `root`: listing, CURRENT, manifests. Never loads vectors."""

    def __init__(self, settings: Settings, model_version: str, root: Path | None = None,
                 remote: Location | None = None) -> None:
        self.settings = settings
        self.model_version = model_version
        self.root = root if root is not None else settings.indexes_dir / model_dir_name(model_version)
        # With an object-store DATA_DIR, `root` is this process's mirror of `remote` (indexing/store/remote.py).
        if remote is None and root is None and settings.remote_data:
            remote = settings.data_location.child(f"indexes/{model_dir_name(model_version)}")
        self.remote = remote

    def version_dir(self, version: int) -> Path:
        return self.root / version_name(version)

    def versions(self) -> list[int]:
        """Complete versions on disk, ascending (temp folders of builds in progress are not listed)."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            version = version_of(entry.name)
            if version is not None and entry.is_dir():
                found.append(version)
        return sorted(found)

    # -- CURRENT --------------------------------------------------------------
    def current(self) -> CurrentPointer:
        """Read CURRENT without ever raising: a damaged file is reported, not thrown."""
        path = self.root / CURRENT_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return CurrentPointer(None)
        except OSError as exc:
            return CurrentPointer(None, f"{path}: unreadable ({exc.strerror or exc})")
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            return CurrentPointer(None, f"{path}: does not name a version (binary data, {len(raw)} bytes)")
        try:
            version = parse_version(text)
        except ValueError:
            return CurrentPointer(None, f"{path}: does not name a version (contains {text[:40]!r})")
        return CurrentPointer(version)  # whether that version is intact is for its loader to find out

    def current_version(self) -> int | None:
        """The version CURRENT names, None when nothing was published; IndexCorrupt when CURRENT is damaged."""
        pointer = self.current()
        if pointer.problem:
            raise IndexCorrupt(pointer.problem)
        return pointer.version

    def set_current(self, version: int) -> None:
        """Point CURRENT at a version by an atomic rename (also how a damaged CURRENT is repaired)."""
        if not self.version_dir(version).is_dir():
            raise IndexCorrupt(f"cannot make {version_name(version)} current: {self.version_dir(version)} missing")
        write_atomic(self.root / CURRENT_FILE, (version_name(version) + "\n").encode())

    # -- manifests and files --------------------------------------------------
    def read_manifest(self, version: int) -> Manifest:
        """The typed manifest of a version, or IndexCorrupt naming the file and the problem."""
        folder = self.version_dir(version)
        path = folder / MANIFEST_FILE
        if not folder.is_dir():
            raise IndexCorrupt(f"{version_name(version)} of {self.model_version} does not exist ({folder})")
        manifest = Manifest.from_json(read_bytes(path), path)
        self.check_identity(version, manifest, path)
        return manifest

    def check_identity(self, version: int, manifest: Manifest, path: Path) -> None:
        """The manifest at `path` is this store's `version`: its number, its model, its two required files."""
        if manifest.version != version:
            raise IndexCorrupt(f"{path}: says version {manifest.version}, the folder is {version_name(version)}")
        if manifest.model_version != self.model_version:
            raise IndexCorrupt(f"{path}: is for model {manifest.model_version!r}, not {self.model_version!r}")
        for required in (INDEX_FILE, META_FILE):
            if required not in manifest.sha256:
                raise IndexCorrupt(f"{path}: has no checksum for {required}")

    def live_ids(self, version: int, manifest: Manifest) -> Any:
        """The image ids a version serves (base meta minus removed, plus the delta meta), int64."""
        import numpy as np
        import pyarrow.parquet as pq

        folder = self.version_dir(version)
        base = pq.read_table(folder / META_FILE, columns=["image_id", "segment"])
        ids = base.column("image_id").to_numpy().astype(np.int64)
        if manifest.has(REMOVED_FILE):
            removed = np.load(folder / REMOVED_FILE)
            seg0 = base.column("segment").to_numpy() == 0
            ids = ids[~(seg0 & np.isin(ids, removed))]
        if manifest.has(META_DELTA_FILE):
            delta = pq.read_table(folder / META_DELTA_FILE, columns=["image_id"]).column("image_id")
            ids = np.concatenate([ids, delta.to_numpy().astype(np.int64)])
        return ids

    def check_files(self, version: int, manifest: Manifest, *, checksums: bool = True) -> None:
        """Every listed file there with its size (and sha256); IndexCorrupt naming the first bad file."""
        folder = self.version_dir(version)
        for fname, expected in sorted(manifest.sha256.items()):
            check_file(folder / fname, expected, manifest.sizes.get(fname), checksums=checksums)


def backup_store(settings: Settings, model_version: str) -> IndexStore:
    """The backup copy of a model's store under BACKUP_DIR (same layout, no file shared with the store)."""
    location = settings.backup_location
    remote = None if location.is_local else location.child(model_dir_name(model_version))
    return IndexStore(settings, model_version, settings.resolved_backup_dir / model_dir_name(model_version), remote)


@contextmanager
def store_lock(store: IndexStore) -> Iterator[None]:
    """One writer per model's store (builds, publishes, prunes, rollbacks); readers never lock."""
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
