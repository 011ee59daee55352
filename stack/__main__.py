"""`python -m stack` (`make stack`): start the production topology as local processes under supervisord.

The launcher stays in the foreground, says when a service exits and when supervisord has it running
again, and stops everything on Ctrl-C; `--detach` leaves the stack to supervisord and returns.
`python -m stack stop` (`make stack-stop`) stops a stack started from another shell (also when its
launcher or supervisord was killed); `python -m stack status` (`make stack-status`) shows each
service's state; `python -m stack ctl ARGS` is supervisorctl on the stack (`ctl tail -f worker`,
`ctl restart scheduler`).
"""

from __future__ import annotations

import argparse
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:  # everything after it is supervisorctl's
        return _ctl(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__.splitlines()[0],
                                     epilog="python -m stack ctl ARGS: supervisorctl on the stack")
    parser.add_argument("command", nargs="?", choices=("start", "stop", "status"), default="start")
    parser.add_argument("--keep-paused", action="store_true",
                        help="leave the DAGs paused (by default the stack unpauses image_embeddings, image_index "
                             "and image_index_backup)")
    parser.add_argument("--object-store", action="store_true",
                        help="DATA_DIR, BACKUP_DIR and IMAGE_ROOT on a local S3 server, a cache folder per service "
                             "(the several-hosts layout on one machine; also STACK_OBJECT_STORE=1)")
    parser.add_argument("--workers", type=int, help="Celery workers (STACK_WORKERS, default 1)")
    parser.add_argument("--replicas", type=int, help="search servers (STACK_REPLICAS, default 1)")
    parser.add_argument("--private-pg", action="store_true",
                        help="run the stack's own PostgreSQL even when DB_HOST/DB_PORT answer (STACK_PRIVATE_PG=1)")
    parser.add_argument("--detach", action="store_true", help="return once the stack runs (supervisord keeps it)")
    args = parser.parse_args(argv)

    from stack.local import Stack, StackConfig, StackError, StackRunning, status, stop_running

    config = StackConfig.from_env()
    if args.command == "stop":
        stopped = stop_running(config.home)
        print("stack stopped" if stopped else f"no stack running in {config.home}")
        return 0
    if args.command == "status":
        return status(config.home)
    config.unpause = not args.keep_paused
    config.object_store = config.object_store or args.object_store
    config.private_pg = config.private_pg or args.private_pg
    config.workers = max(1, args.workers or config.workers)
    config.replicas = max(1, args.replicas or config.replicas)
    stack = Stack(config, log=lambda msg: print(msg, flush=True))

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    detached = False
    try:
        stack.acquire()  # a stack already running in this home: one line, nothing of it touched
        print(f"starting the stack in {config.home} (logs in {config.home / 'logs'}) ...", flush=True)
        stack.start()
        print(stack.summary(), flush=True)
        if args.detach:
            stack.release()
            detached = True
            print("stack running under supervisord; make stack-status shows it, make stack-stop stops it", flush=True)
            return 0
        print("stack running; Ctrl-C (or `make stack-stop`) stops everything; `make stack-status` shows each "
              "service", flush=True)
        stack.watch()
        return 0
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    except StackRunning as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if not detached and stack._lock_fd is not None:
            stack.stop()
            print("stack stopped", flush=True)


def _ctl(args: list[str]) -> int:
    from stack.local import StackConfig
    from stack.supervisord import Supervisord

    sup = Supervisord(StackConfig.from_env().home)
    if sup.pid() is None:
        print(f"no stack running in {sup.home}", file=sys.stderr)
        return 1
    return sup.ctl(*args)


if __name__ == "__main__":
    sys.exit(main())
