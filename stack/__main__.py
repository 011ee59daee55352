"""`python -m stack` (`make stack`): start the production topology as local processes; Ctrl-C stops it.

`python -m stack stop` (`make stack-stop`) stops a stack started from another shell.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("start", "stop"), default="start")
    parser.add_argument("--keep-paused", action="store_true",
                        help="leave the DAGs paused (by default the stack unpauses image_embeddings and image_index)")
    parser.add_argument("--object-store", action="store_true",
                        help="DATA_DIR, BACKUP_DIR and IMAGE_ROOT on a local S3 server, a cache folder per service "
                             "(the several-hosts layout on one machine; also STACK_OBJECT_STORE=1)")
    parser.add_argument("--workers", type=int, help="Celery workers (STACK_WORKERS, default 1)")
    parser.add_argument("--replicas", type=int, help="search servers (STACK_REPLICAS, default 1)")
    args = parser.parse_args(argv)

    from stack.local import Stack, StackConfig, StackError, stop_running

    config = StackConfig.from_env()
    if args.command == "stop":
        stopped = stop_running(config.home)
        print("stack stopped" if stopped else f"no stack running from {config.home}")
        return 0
    config.unpause = not args.keep_paused
    config.object_store = config.object_store or args.object_store
    config.workers = max(1, args.workers or config.workers)
    config.replicas = max(1, args.replicas or config.replicas)
    stack = Stack(config, log=lambda msg: print(msg, flush=True))

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"starting the stack in {config.home} (logs in {config.home / 'logs'}) ...", flush=True)
        stack.start()
        print(stack.summary(), flush=True)
        print("stack running; Ctrl-C (or `make stack-stop`) stops everything", flush=True)
        while True:
            stack.check_alive()
            time.sleep(2)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
        print("stack stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
