"""A configured place for files (DATA_DIR, IMAGE_ROOT, BACKUP_DIR): a local folder or an object-store prefix."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
# What to install for the object stores people ask for; fsspec's own table names the rest.
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
LOCAL_PROTOCOLS = ("file", "local")


class LocationError(ValueError):
    """A folder setting that no installed filesystem can serve; the message is one line naming the setting."""


@dataclass(frozen=True)
class Location:
    """A folder on this machine (`protocol == "file"`, `root` absolute) or an object-store prefix
    (`root` = "bucket/prefix", no trailing slash). Holds no credentials: they come from settings."""

    protocol: str
    root: str

    @property
    def is_local(self) -> bool:
        return self.protocol in LOCAL_PROTOCOLS

    @property
    def url(self) -> str:
        """How the setting reads (a path for a local folder); safe to log."""
        return self.root if self.is_local else f"{self.protocol}://{self.root}"

    @property
    def path(self) -> Path:
        """The local folder; only for a local location."""
        if not self.is_local:
            raise LocationError(f"{self.url} is not a local folder")
        return Path(self.root)

    def key(self, rel: str = "") -> str:
        """The filesystem path of `rel` (a relative, already-safe POSIX path) under this location."""
        rel = rel.strip("/")
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    def child(self, rel: str) -> Location:
        return Location(self.protocol, self.key(rel))

    def __str__(self) -> str:
        return self.url


def parse_location(value: str | Path, setting: str) -> Location:
    """`value` of the setting named `setting` as a Location; LocationError (one line) when unusable.

    A plain path (relative to the working directory) is local, as before; `file://` too. Any other
    scheme must be one an installed fsspec filesystem handles, so `DATA_DIR=s3://...` without s3fs, or
    a typo like `s4://`, stops the command at start instead of writing into a folder named `s3:`.
    """
    text = str(value).strip()
    if not text:
        raise LocationError(f"{setting} is empty")
    match = _SCHEME.match(text)
    if match is None:
        return Location("file", str(Path(text).expanduser().absolute()))
    protocol, rest = match.group(1).lower(), match.group(2)
    if protocol in LOCAL_PROTOCOLS:
        return Location("file", str(Path(rest or "/").absolute()))
    _check_protocol(protocol, setting)
    bucket_and_prefix = rest.strip("/")
    if "@" in bucket_and_prefix.split("/", 1)[0]:
        raise LocationError(f"{setting}: credentials do not go in the URL; use AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY (or the Airflow connection)")
    if not bucket_and_prefix:
        raise LocationError(f"{setting}: {protocol}:// needs a bucket ({protocol}://bucket/prefix)")
    parts = bucket_and_prefix.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise LocationError(f"{setting}: {protocol}://{bucket_and_prefix[:80]} has an empty, '.' or '..' part")
    return Location(protocol, posixpath.join(*parts))


def _check_protocol(protocol: str, setting: str) -> None:
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        package = _PACKAGES.get(protocol) or "the package fsspec names for it"
        raise LocationError(f"{setting}: {protocol}:// needs {package}, which is not installed "
                            f"(pip install {package})") from None
    except ValueError:
        raise LocationError(f"{setting}: no installed filesystem handles {protocol}:// "
                            "(use a local path or s3://bucket/prefix)") from None
