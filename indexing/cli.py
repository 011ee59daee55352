"""`python -m indexing build|verify|publish|versions|rollback|prune|backup`: the operator's tool.

Errors are one line on stderr naming the file and what is wrong, exit code 1 (2 for usage
errors), never a traceback. Every command works with a damaged CURRENT; `rollback` repairs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.settings import Settings


class CliError(RuntimeError):
    """A usage problem the user can fix (message printed as is)."""


def _version_arg(text: str) -> int:
    from indexing.store.layout import parse_version

    try:
        return parse_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m indexing",
        description="Build, verify, publish, list, roll back and prune versioned FAISS indexes "
                    "(DATA_DIR/indexes/<model_version>/vNNNNNN, CURRENT names the served one).",
    )
    p.add_argument("--model-version", "-m", help="model version whose index to manage, e.g. "
                   "efficientnet-lite0@seed-pad224 (default: the one EMBEDDING_MODEL produces)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build the next version (merge into CURRENT or rebuild)")
    b.add_argument("--mode", choices=("merge", "rebuild"), default="merge",
                   help="merge: add/remove what changed since CURRENT (falls back to rebuild when it must); "
                        "rebuild: from scratch (default: merge)")
    b.add_argument("--index-type", choices=("flat", "hnsw", "ivfpq"),
                   help="force an index type (default: chosen by size and INDEX_MEMORY_BUDGET_MB)")
    b.add_argument("--publish", action="store_true", help="then verify, publish and prune old versions")
    b.add_argument("--dag-run-id", help="recorded in index_versions.dag_run_id")

    v = sub.add_parser("verify", help="re-check a version: checksums, dim, model, count vs ledger, self-search")
    v.add_argument("version", type=_version_arg, help="vN, e.g. v3")

    pu = sub.add_parser("publish", help="verify (if not yet) and make a version CURRENT; sends NOTIFY")
    pu.add_argument("version", type=_version_arg, help="vN, e.g. v3")

    sub.add_parser("versions", help="list versions with status, type, count and dates")

    r = sub.add_parser("rollback", help="flip CURRENT back to the previous published version (or --to vN); "
                                        "repairs a damaged CURRENT and restores damaged versions from BACKUP_DIR")
    r.add_argument("--to", type=_version_arg, help="the version to serve, e.g. v3")

    bk = sub.add_parser("backup", help="copy published versions into BACKUP_DIR (verified, no shared files) "
                                       "and re-verify the copies there")
    bk.add_argument("--keep", type=int, help="backup copies to keep (default INDEX_KEEP_VERSIONS)")

    pr = sub.add_parser("prune", help="delete all but the newest N published versions (CURRENT is always kept)")
    pr.add_argument("--keep", type=int, help="versions to keep (default INDEX_KEEP_VERSIONS)")
    return p


def _model_version(settings: Settings, given: str | None) -> str:
    """--model-version, else the version EMBEDDING_MODEL produces (parsed, no model loaded)."""
    if given:
        return given
    from embeddings.models import ModelUnavailable, parse_name

    try:
        return parse_name(settings.embedding_model).model_version
    except ModelUnavailable as exc:
        raise CliError(f"{exc}; or pass --model-version") from None


def _print(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else text)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from core.settings import get_settings
    from indexing import pipeline
    from indexing.store.layout import IndexStore, version_name

    settings = get_settings()
    mv = _model_version(settings, args.model_version)
    conninfo = settings.conninfo()
    if args.command == "build":
        result = pipeline.build(conninfo, settings, mv, mode=args.mode, index_type=args.index_type,
                                dag_run_id=args.dag_run_id)
        if result["version"] is None:
            _print(result, args.json, f"{result['reason']} of {mv}; nothing built (--mode rebuild forces one)")
            return 0
        how = result["mode"] + (f" ({result['rebuild_reason']})" if result.get("rebuild_reason") else "")
        text = (f"built {version_name(result['version'])} of {mv}: {result['count']} vectors, "
                f"{result['index_type']}, {how}, {result['build_seconds']} s")
        rel = result.get("relations") or {}
        if rel.get("error"):
            text += f"; duplicate relations NOT precomputed ({rel['error']}): the server computes them"
        elif rel:
            text += (f"; duplicate relations: {rel['computed']} event(s) verified in {rel['seconds']} s, "
                     f"{rel['kept']} kept" + (f", {rel['skipped']} left to the server" if rel["skipped"] else ""))
        if args.publish:
            pipeline.publish(conninfo, settings, mv, result["version"])
            result["pruned"] = pipeline.prune(settings, mv, conninfo=conninfo)
            text += "; published" + (f", pruned {', '.join(map(version_name, result['pruned']))}"
                                      if result["pruned"] else "")
        _print(result, args.json, text)
    elif args.command == "verify":
        report = pipeline.verify_report(conninfo, settings, mv, args.version)
        _print(report, args.json, f"{version_name(args.version)} of {mv} is sound: {report['count']} vectors "
               f"({report['expected']} expected from the ledger), dim {report['dim']}, {report['index_type']}, "
               f"self-search {report['self_rank1']}")
    elif args.command == "publish":
        pipeline.publish(conninfo, settings, mv, args.version)
        _print({"published": args.version}, args.json, f"published {version_name(args.version)} of {mv}")
    elif args.command == "versions":
        rows = pipeline.list_versions(settings, mv, conninfo)
        pointer = IndexStore(settings, mv).current()
        if pointer.damaged:  # on stderr with --json, so the JSON stays the plain list it always was
            print(f"CURRENT is damaged: {pointer.problem} (repair: python -m indexing rollback)",
                  file=sys.stderr if args.json else sys.stdout)
        if args.json:
            _print(rows, True, "")
            return 0
        if not rows:
            print(f"no index versions for {mv}")
        else:
            print(f"{'':2}{'version':9}{'status':11}{'type':7}{'count':>10}  {'created':26}{'published':26}backup")
            for r in rows:
                print(f"{'*' if r.get('current') else ' ':2}{version_name(r['version']):9}"
                      f"{(r.get('status') or '-'):11}{(r.get('index_type') or '-'):7}{r.get('count') or 0:>10}  "
                      f"{str(r.get('created_at') or '-')[:25]:26}{str(r.get('published_at') or '-')[:25]:26}"
                      f"{'yes' if r.get('backup') else '-'}")
    elif args.command == "rollback":
        v = pipeline.rollback(conninfo, settings, mv, to=args.to)
        _print({"current": v}, args.json, f"CURRENT of {mv} is now {version_name(v)}")
    elif args.command == "backup":
        report = pipeline.backup(conninfo, settings, mv, keep=args.keep)
        parts = [f"backup of {mv} in {report.root}:",
                 f"copied {', '.join(map(version_name, report.copied)) or 'nothing'}",
                 f"verified {', '.join(map(version_name, report.verified)) or 'nothing'}"]
        if report.pruned:
            parts.append(f"pruned {', '.join(map(version_name, report.pruned))}")
        _print(asdict(report), args.json, "; ".join(parts))
        problems = [*report.damaged.values(), *report.skipped.values()]
        if problems:
            print(f"error: {len(problems)} problem(s); first: {problems[0]}", file=sys.stderr)
            return 1
    elif args.command == "prune":
        pruned = pipeline.prune(settings, mv, keep=args.keep, conninfo=conninfo)
        _print({"pruned": pruned}, args.json,
               f"pruned {', '.join(map(version_name, pruned))}" if pruned else "nothing to prune")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from core.db import DatabaseUnavailable
    from core.settings import SettingsError
    from indexing.build.sources import BuildError
    from indexing.pipeline import RollbackError
    from indexing.store.integrity import IndexCorrupt
    from indexing.verify import VerificationFailed

    # RuntimeError: what faiss raises (its C++ exceptions, e.g. a write that failed): one line too.
    expected = (CliError, DatabaseUnavailable, SettingsError, RollbackError, BuildError, IndexCorrupt,
                VerificationFailed, ValueError, OSError, RuntimeError)
    import psycopg

    try:
        return _run(args)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: database error: {first} (is the schema migrated? `python -m core.migrate`)", file=sys.stderr)
        return 1
    except expected as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
