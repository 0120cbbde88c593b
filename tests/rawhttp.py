"""HTTP/1.1 requests written byte for byte, for what a polite client won't
send: header values that are not UTF-8, control characters, odd framing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    status: int
    version: bytes  # b"HTTP/1.1"; aiohttp's own parser refusals come as HTTP/1.0
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_json(self) -> bool:
        if not self.headers.get("content-type", "").startswith("application/json"):
            return False
        try:
            self.json()
        except ValueError:
            return False
        return True


def build(method: str, target: bytes, headers: list[tuple[bytes, bytes]],
          body: bytes = b"") -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1"]
    names = {name.lower() for name, _ in headers}
    if b"host" not in names:
        lines.append(b"Host: 127.0.0.1")
    lines += [name + b": " + value for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def send(base_url: str, raw: bytes, timeout: float = 10.0) -> Reply:
    """Write `raw`, read the whole answer (the server closes: Connection: close)."""
    where = urlsplit(base_url)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        try:
            writer.write(raw)
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
    return parse(data)


async def request(base_url: str, method: str, target: bytes,
                  headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Reply:
    return await send(base_url, build(method, target, headers, body))


def parse(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    version, status, *_ = status_line.split(b" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return Reply(int(status), version, headers, body)


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out
