"""The demo's photos: where they come from, how they become `images` rows, and the copies it queries with.

Photos are stored under IMAGE_ROOT the way the Event Management app stores
uploads (`/uploads/demo/<event>/<name>`, hard-linked when possible, else
copied) and registered as rows of one demo event. The demo then plants what
its answers are checked against (`Planted`): copies of the first photos
(resized, recompressed), two shots of one scene (another exposure: never a
duplicate), one shot of a second scene whose other shot is only uploaded, and
a transformed copy of one photo (rotated, cropped, recompressed) kept aside
to search with. Scene shots are real (the sample data's scenes/) or generated.
Everything is idempotent: a second run finds the files and rows already there
and reuses them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from PIL import Image, ImageOps, UnidentifiedImageError

from core.sample_data import sample_photos, sample_scene_pairs

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
# uuid5 namespace of the demo's events: the same folder always maps to the same event.
DEMO_NAMESPACE = uuid.UUID("6f0c8a57-4d1e-5b0a-9c3e-2d6a1b7e9f10")
NEAR_DUPLICATES = 3


class PhotoError(ValueError):
    """The photo folder is unusable (missing, empty, no readable image); the message says which."""


@dataclass(frozen=True)
class Source:
    """Where the demo's photos come from and the event they are registered in."""

    files: list[Path]
    label: str
    event_code: str
    event_name: str


@dataclass(frozen=True)
class Registered:
    image_id: int
    code: str
    filename: str
    file_path: str
    source: Path
    new: bool


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def find_sources(folder: Path | None, limit: int | None, work_dir: Path) -> tuple[Source, list[Path]]:
    """The photos to register: the folder given, else the shared sample photos, else generated ones.

    Returns the source and the files skipped as unreadable.
    """
    if folder is not None:
        folder = folder.expanduser().resolve()
        if not folder.is_dir():
            raise PhotoError(f"photo folder {folder} does not exist or is not a folder")
        candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not candidates:
            raise PhotoError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
        label, key = f"folder {folder}", f"folder:{folder}"
    else:
        candidates = sample_photos(limit, out_dir=work_dir / "generated")
        generated = candidates and candidates[0].parent == work_dir / "generated"
        label = ("generated photos (no sample photo folder found)" if generated
                 else f"sample photos in {candidates[0].parent}")
        key = "generated" if generated else "sample-photos"
    if limit:
        candidates = candidates[:limit]
    files, skipped = [], []
    for path in candidates:
        (files if _readable(path) else skipped).append(path)
    if not files:
        raise PhotoError(f"none of the {len(candidates)} files from {label} is a readable image")
    name = folder.name if folder is not None else ("generated" if key == "generated" else "sample photos")
    code = str(uuid.uuid5(DEMO_NAMESPACE, key))
    return Source(files, label, code, f"Demo: {name}"[:255]), skipped


def near_duplicate(src: Path, out: Path) -> Path:
    """A resized, recompressed copy: what a second upload of the same photo looks like."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            w, h = img.size
            img.resize((max(1, int(w * 0.8)), max(1, int(h * 0.8))), Image.Resampling.LANCZOS).save(
                out.with_suffix(".tmp.jpg"), "JPEG", quality=70)
        os.replace(out.with_suffix(".tmp.jpg"), out)
    return out


def query_copy(src: Path, out: Path) -> Path:
    """The photo rotated by 5 degrees, cropped to its central 85% and recompressed at JPEG quality 60."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as img:
            img = ImageOps.exif_transpose(img).convert("RGB").rotate(5, resample=Image.Resampling.BICUBIC)
            w, h = img.size
            dx, dy = int(w * 0.075), int(h * 0.075)
            img.crop((dx, dy, w - dx, h - dy)).save(out.with_suffix(".tmp.jpg"), "JPEG", quality=60)
        os.replace(out.with_suffix(".tmp.jpg"), out)
    return out


def _store(src: Path, dest: Path) -> None:
    """Put src at dest like an upload: a hard link when on the same filesystem, else a copy (never a symlink,
    which the pipeline would refuse as leaving the image root)."""
    src = src.resolve()  # link the file itself, not a symlink to it
    if dest.exists() and not dest.is_symlink() and dest.stat().st_size == src.stat().st_size:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp, follow_symlinks=True)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dest)


def register(conninfo: str, image_root: Path, source: Source, extra: list[Path] | None = None) -> list[Registered]:
    """Store the files under IMAGE_ROOT and make sure each has one `images` row in the demo event."""
    rel_dir = f"uploads/demo/{source.event_code[:8]}"
    out: list[Registered] = []
    with psycopg.connect(conninfo) as conn:
        conn.execute("INSERT INTO events (code, name) VALUES (%s, %s) ON CONFLICT (code) DO NOTHING",
                      (source.event_code, source.event_name))
        for src in [*source.files, *(extra or [])]:
            dest = image_root / rel_dir / src.name
            _store(src, dest)
            file_path = f"/{rel_dir}/{src.name}"
            row = conn.execute(
                "SELECT id, code FROM images WHERE event_code = %s AND file_path = %s ORDER BY id LIMIT 1",
                (source.event_code, file_path)).fetchone()
            new = row is None
            if row is None:
                with Image.open(dest) as img:
                    width, height = img.size
                    mime = Image.MIME.get(img.format or "", "application/octet-stream")
                row = conn.execute(
                    """INSERT INTO images (event_code, filename, file_path, file_size, mime_type, width, height)
                       VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id, code""",
                    (source.event_code, src.name, file_path, dest.stat().st_size, mime, width, height),
                ).fetchone()
            assert row is not None
            out.append(Registered(int(row[0]), str(row[1]), src.name, file_path, src, new))
        conn.commit()
    return out


@dataclass(frozen=True)
class Planted:
    """What the demo adds to the event, so that every answer can be compared with the truth."""

    copies: list[tuple[Path, Path]]  # (original, its copy); the copy is registered too
    scene_pair: tuple[Path, Path]  # two shots of one scene, both registered: same scene, not duplicates
    scene_probe: Path  # one shot of another scene, registered ...
    scene_upload: Path  # ... and its other shot, only uploaded to the duplicate check
    query: Path  # a transformed copy of `query_original`, only uploaded
    query_original: Path
    # Files of the folder byte-identical to another file of it (name -> the names of all its twins, itself
    # included): copies already in the folder, so right answers group them with what the demo planted.
    twins: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def registered(self) -> list[Path]:
        """The planted files that become rows of the event (after the source photos)."""
        return [c for _, c in self.copies] + [*self.scene_pair, self.scene_probe]

    def same_file(self, path: Path) -> frozenset[str]:
        """The names of `path` and of every file of the folder byte-identical to it."""
        return self.twins.get(path.name, frozenset({path.name}))

    @property
    def copy_groups(self) -> list[frozenset[str]]:
        """The copy groups the event must hold: each planted copy with its original and the original's twins,
        then the folder's own byte-identical files (copies whatever else they are)."""
        groups: list[frozenset[str]] = []
        for group in [self.same_file(original) | {copy.name} for original, copy in self.copies]:
            for other in [g for g in groups if g & group]:  # twins among the originals: one group
                groups.remove(other)
                group |= other
            groups.append(group)
        planted = frozenset().union(*groups)
        return groups + sorted({t for t in self.twins.values() if not t & planted}, key=sorted)


def byte_identical(files: list[Path]) -> dict[str, frozenset[str]]:
    """Files with the same bytes, by name (only names that have a twin)."""
    from embeddings.weights import sha256_file

    by_digest: dict[str, set[str]] = defaultdict(set)
    for path in files:
        by_digest[sha256_file(path)].add(path.name)
    return {name: frozenset(names) for names in by_digest.values() if len(names) > 1 for name in names}


def prepare_extras(source: Source, work_dir: Path) -> Planted:
    """Copies of the first photos, the scene shots, and the query copy of a middle photo."""
    derived = work_dir / "derived" / source.event_code[:8]
    copies = [(p, near_duplicate(p, derived / f"{p.stem}_copy.jpg")) for p in source.files[:NEAR_DUPLICATES]]
    (shot_a, shot_b), (probe, other) = sample_scene_pairs(2, out_dir=work_dir / "scenes")
    original = source.files[len(source.files) // 2]
    query = query_copy(original, work_dir / "queries" / f"{original.stem}_rotated_cropped.jpg")
    return Planted(copies, (shot_a, shot_b), probe, other, query, original, byte_identical(source.files))
