"""A TCP proxy that adds a fixed delay to each request, as a store across a network answers after tens of ms.

`python -m bench.latency_proxy --listen PORT --to PORT --ms 30`: every connection to 127.0.0.1:PORT is
forwarded to 127.0.0.1:TO; a client's bytes that start a request (the first after 5 ms of quiet on the
connection) wait `ms` before they are forwarded, the rest of a request (an upload's body) and every
answer pass at once. So each GET costs one round trip of `ms` more, as from an S3 endpoint in another
data centre, without slowing a large upload chunk by chunk. Used by bench/object_storage.py
(--store-latency), started on the S3 server's core.
"""

from __future__ import annotations

import argparse
import asyncio

QUIET = 0.005  # s of silence from the client after which its next bytes start a new request


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    last = 0.0
    try:
        while data := await reader.read(1 << 16):
            now = loop.time()
            if delay and now - last > QUIET:
                await asyncio.sleep(delay)
            last = loop.time()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _serve(listen: int, to: int, delay: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", to)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pump(client_r, server_w, delay), _pump(server_r, client_w, 0.0))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.latency_proxy", description=__doc__)
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--to", type=int, required=True)
    ap.add_argument("--ms", type=float, required=True, help="delay added to each request")
    args = ap.parse_args()
    asyncio.run(_serve(args.listen, args.to, args.ms / 1000))


if __name__ == "__main__":
    main()
