"""`python -m serving`: run the search server with uvicorn on API_HOST:API_PORT."""

from __future__ import annotations

import argparse
import logging
import sys

from core.settings import SettingsError, get_settings


def _check_model(name: str) -> None:
    """An EMBEDDING_MODEL the registry does not know stops the server at start (it used to start, log
    nothing, and answer 503 to everything)."""
    from embeddings.models import ModelUnavailable, parse_name

    try:
        parse_name(name)
    except ModelUnavailable as exc:
        text = str(exc)
        raise SettingsError(text if "EMBEDDING_MODEL" in text else f"EMBEDDING_MODEL: {text}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="bind address (default API_HOST)")
    parser.add_argument("--port", type=int, help="port (default API_PORT)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (each loads the model; the memory-mapped index pages are shared)")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        _check_model(settings.embedding_model)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from serving.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("serving").info("model %s (%s)", settings.embedding_model, settings.model_reason)
    host, port = args.host or settings.api_host, args.port or settings.api_port
    if args.workers > 1:  # workers import the app themselves and read the same environment
        uvicorn.run("serving.app:create_app", factory=True, workers=args.workers, host=host, port=port,
                    log_level=args.log_level, access_log=args.access_log)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=args.log_level,
                    access_log=args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
