"""Expose the local Docker engine's unix socket as ``tcp://127.0.0.1:PORT``, for the tests of
remote engines (tests/test_remote_engine.py): the same engine, reached the way a VM's or a
remote host's engine is reached, and a connection the test can cut by killing this process.

    python tests/tcp_forwarder.py [--port PORT] [--socket /var/run/docker.sock]

Binds 127.0.0.1 only (nothing off this machine can reach it). Prints ``listening PORT`` on
stdout once it accepts connections; runs until killed. Bytes pass unchanged both ways (Docker's
hijacked exec and attach streams included); a half-close on one side is passed on.
"""

from __future__ import annotations

import argparse
import asyncio

CHUNK = 1 << 16


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (or close, where the transport cannot half-close)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
    except (ConnectionError, OSError):
        writer.close()


async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, socket_path: str) -> None:
    try:
        engine_reader, engine_writer = await asyncio.open_unix_connection(socket_path)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, engine_writer), pipe(engine_reader, client_writer))
    for writer in (client_writer, engine_writer):
        writer.close()


async def serve(port: int, socket_path: str) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, socket_path), "127.0.0.1", port,
                                        reuse_address=True)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--socket", default="/var/run/docker.sock", help="the engine's unix socket")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.socket))


if __name__ == "__main__":
    main()
