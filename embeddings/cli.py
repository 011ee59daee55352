"""`python -m embeddings`: the data team's tool to embed pending rows, an event, a range, everything, or files.

Errors the user can fix (database unreachable, weights missing, bad arguments)
print one line and exit 2; image files that fail are recorded, not fatal.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

EPILOG = """examples:
  python -m embeddings pending                       # every image with no vector for the model yet
  python -m embeddings --model efficientnet-lite0 event 5b3c...   # re-embed one event
  python -m embeddings range --from 2024-01-01 --to 2024-02-01
  python -m embeddings failed                        # retry the images that failed before
  python -m embeddings files a.jpg b.png --out vectors.parquet
  python -m embeddings compact                       # merge small parts (latest row per image)
  python -m embeddings weights                       # download the Places365 checkpoint (make weights)
  python -m embeddings export                        # the model's ONNX file (also made automatically when missing),
                                                     # published to DATA_DIR/models for server-only hosts
  python -m embeddings --model efficientnet-lite0+int8 export   # and its int8 quantisation (docs/embeddings.md)
"""


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date/time: {text!r} (e.g. 2024-05-01 or 2024-05-01T12:00)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m embeddings",
        description="Embed images into the Parquet dataset of a model version and record them in the ledger.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="model spec name[@preprocess][+variant] (default: EMBEDDING_MODEL)")
    parser.add_argument("--batch-size", type=int, help="images per model forward pass (default: EMBED_BATCH_SIZE)")
    parser.add_argument("--workers", type=int, help="decode threads (default: EMBED_DECODE_WORKERS)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def scoped(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--limit", type=int, help="at most this many images")
        p.add_argument("--images-per-part", type=int, help="images per Parquet part, the unit a retry redoes "
                       "(default 256, as the DAG)")
        p.add_argument("--run-id", help="names the parts (default manual-<timestamp>)")
        return p

    scoped("pending", "embed images that have no ledger row for the model version")
    scoped("event", "re-embed every image of one event").add_argument("event_code", help="the event's UUID")
    rng = scoped("range", "embed images whose created_at is in [--from, --to)")
    rng.add_argument("--from", dest="start", type=_date, help="inclusive start (ISO date/time)")
    rng.add_argument("--to", dest="end", type=_date, help="exclusive end (ISO date/time)")
    scoped("all", "re-embed every image")
    scoped("failed", "retry images whose last attempt failed")
    files = sub.add_parser("files", help="embed local files into one Parquet file (no database)",
                           description="Embed local image files into one Parquet file (no database).")
    files.add_argument("paths", nargs="+", type=Path)
    files.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    compact = sub.add_parser("compact", help="merge the model version's Parquet parts into one (latest row per image)",
                             description="Merge the Parquet parts of the model version into one and repoint the "
                                         "ledger; parts written meanwhile are left alone.")
    compact.add_argument("--no-ledger", action="store_true", help="do not touch the database")
    weights = sub.add_parser("weights", help="download the Places365 checkpoint to MODEL_WEIGHTS (sha256-verified)",
                             description="Download the Places365 checkpoint to MODEL_WEIGHTS and verify its sha256.")
    weights.add_argument("--url", help="a mirror of resnet50_places365.pth.tar (the hash is still checked)")
    weights.add_argument("--dest", type=Path, help="where to write it (default: MODEL_WEIGHTS)")
    export = sub.add_parser("export", help="export the model to its ONNX file in MODEL_CACHE_DIR (if missing or stale) "
                            "and publish it to DATA_DIR/models",
                            description="Export the model (default EMBEDDING_MODEL) from its torch weights to the "
                                        "ONNX file EMBEDDING_RUNTIME=onnx runs (done automatically when missing), "
                                        "and publish it to DATA_DIR/models, where a server-only install (no torch) "
                                        "takes it from.")
    export.add_argument("--force", action="store_true", help="export even if a current file exists")
    export.add_argument("--no-publish", action="store_true", help="only the local file (MODEL_CACHE_DIR)")
    return parser


def _export(args: argparse.Namespace, settings: Any) -> int:
    from embeddings.models import ModelUnavailable, parse_name
    from embeddings.onnx_export import (
        ExportError,
        artifact,
        export,
        is_current,
        missing_export_modules,
        publish,
        published_location,
    )
    from storage.objects import StorageUnavailable

    parsed = parse_name(args.model or settings.embedding_model)
    model = parsed.model
    missing = missing_export_modules(model)
    if missing:
        raise ModelUnavailable(f"exporting {model} needs {', '.join(missing)}, which this install lacks "
                               "(a server-only install): run it on a pipeline host (requirements-pipeline.txt)")
    art = artifact(model, settings)
    state = "already current"
    if args.force or not is_current(art):
        export(art, settings)
        state = "exported"
    print(f"{art.model}: {state} {art.path} (weights sha256 {art.tag['weights_sha256'][:12]}...)")
    if parsed.quant:  # `+int8`: the quantised file, made from that export (embeddings/quantize.py)
        from embeddings import quantize

        fp32, art = art, quantize.artifact(model, settings)
        state = "already current"
        if args.force or not is_current(art):
            quantize.quantize(art, fp32)
            state = "quantised"
        print(f"{art.model}: {state} {art.path} (from {fp32.path.name})")
    if not args.no_publish:
        try:
            sent = publish(art, settings)
        except StorageUnavailable as exc:
            raise ExportError(f"exported, but not published: {exc}") from None
        print(f"{art.model}: {'published to' if sent else 'already published in'} {published_location(settings).url}/")
    return 0


def _settings(args: argparse.Namespace) -> Any:
    """The settings, with the command line's --batch-size/--workers taking precedence over the environment."""
    from core.settings import get_settings, load_settings

    overrides: dict[str, int] = {}
    if args.batch_size:
        overrides["embed_batch_size"] = args.batch_size
    if args.workers:
        overrides["embed_decode_workers"] = args.workers
    return load_settings(**overrides) if overrides else get_settings()


def _weights(args: argparse.Namespace, settings: Any) -> int:
    from embeddings import places365
    from embeddings.weights import download

    dest = args.dest or settings.resolved_model_weights
    url = args.url or places365.URL
    last = [-1]

    def progress(done: int, total: int | None) -> None:
        mb = done >> 20
        if not args.quiet and mb // 10 != last[0]:
            last[0] = mb // 10
            print(f"\r{mb} MiB" + (f" of {total >> 20} MiB" if total else ""), end="", file=sys.stderr, flush=True)

    download(Path(dest), url=url, sha256=places365.SHA256, progress=progress)
    if not args.quiet:
        print(file=sys.stderr)
    print(f"Places365 weights verified at {dest} (sha256 {places365.SHA256[:12]}...)")
    return 0


def _files(args: argparse.Namespace, settings: Any) -> int:
    from embeddings.runner import embed_files

    res = embed_files(args.paths, args.out, settings=settings, model_name=args.model)
    for path, reason in res["failures"]:
        print(f"failed {path}: {reason}", file=sys.stderr)
    print(f"{res['embedded']} embedded, {res['failed']} failed ({res['model_version']}) -> {res['out']}")
    return 0 if res["embedded"] or not res["failed"] else 1


def _compact(args: argparse.Namespace, settings: Any) -> int:
    from embeddings.dataset import compact
    from embeddings.models import parse_name

    mv = parse_name(args.model or settings.embedding_model).model_version
    res = compact(settings, mv, conninfo=None if args.no_ledger else settings.conninfo())
    if not res["merged"]:
        print(f"{mv}: nothing to compact ({'one part' if res['part'] else 'no parts'})")
    else:
        print(f"{mv}: merged {res['merged']} parts into {res['part']} ({res['rows']} rows)")
    return 0


def _scope(args: argparse.Namespace, settings: Any) -> int:
    from embeddings.planning import DEFAULT_IMAGES_PER_PART, Selection
    from embeddings.runner import run_scope

    selection = Selection(
        args.command,
        event_code=args.event_code if args.command == "event" else None,
        start=getattr(args, "start", None),
        end=getattr(args, "end", None),
        limit=args.limit,
    )
    res = run_scope(selection, settings=settings, model_name=args.model, run_id=args.run_id,
                    images_per_part=args.images_per_part or DEFAULT_IMAGES_PER_PART)
    if not args.quiet:
        for image_id, reason in res["failures"][:50]:
            print(f"failed image {image_id}: {reason}", file=sys.stderr)
        if len(res["failures"]) > 50:
            print(f"... and {len(res['failures']) - 50} more failures (see image_embeddings.error)", file=sys.stderr)
    rate = (res["embedded"] + res["failed"]) / res["seconds"] if res["seconds"] else 0.0
    print(f"{res['model_version']}: {res['embedded']} embedded, {res['failed']} failed of {res['planned']} planned "
          f"in {len(res['parts'])} part(s), {res['seconds']:.1f} s ({rate:.1f} images/s), run {res['run_id']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from core.db import DatabaseUnavailable
    from core.settings import SettingsError
    from embeddings.models import ModelUnavailable
    from embeddings.onnx_export import ExportError
    from embeddings.quantize import QuantizeError
    from embeddings.weights import WeightsError

    try:
        settings = _settings(args)
        if args.command == "weights":
            return _weights(args, settings)
        if args.command == "export":
            return _export(args, settings)
        if args.command == "files":
            return _files(args, settings)
        if args.command == "compact":
            return _compact(args, settings)
        return _scope(args, settings)
    except (DatabaseUnavailable, SettingsError, ModelUnavailable, WeightsError, ExportError, QuantizeError,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. DATA_DIR not writable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished batches are recorded; run the same command again to continue", file=sys.stderr)
        return 130
