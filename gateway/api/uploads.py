"""CSV uploads over HTTP: messages (`campaign;destination;message;priority`, as
in the spool folder) and the do-not-contact list (`phone;campaign`).

The body is either the CSV itself (`Content-Type: text/csv`) or a
multipart form with a `file` part (what the dashboard sends). It is
streamed to a temporary file, up to `server.max_upload_bytes`, and then
imported with the same code as `smsgw import` and `smsgw blacklist import`.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import aiohttp
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.api.admin import OPERATOR_TENANT
from gateway.api.http import SERVICES, tenant
from gateway.dncr import DncrImport
from gateway.importer import FileImporter
from gateway.intake import IntakeError

routes = web.RouteTableDef()
_CHUNK = 64 * 1024


async def _receive(request: web.Request, sink: IO[bytes]) -> None:
    """Copy the uploaded CSV into `sink`, never holding more than a chunk."""
    limit = request.app[SERVICES].settings.server.max_upload_bytes
    read: Callable[[int], Awaitable[bytes]] = request.content.read
    if request.content_type.startswith("multipart/"):
        read = (await _file_part(request)).read_chunk
    total = 0
    while chunk := await _chunk(read):
        total += len(chunk)
        if total > limit:
            raise IntakeError(f"upload larger than {limit} bytes (server.max_upload_bytes)",
                              field="file", status=413)
        sink.write(chunk)
    if total == 0:
        raise IntakeError("the uploaded file is empty", field="file")
    sink.flush()
    sink.seek(0)


async def _chunk(read: Callable[[int], Awaitable[bytes]]) -> bytes:
    try:
        return await read(_CHUNK)
    except (ValueError, aiohttp.ClientPayloadError, HttpProcessingError) as err:
        raise IntakeError(f"malformed upload: {err}", field="file") from None


async def _file_part(request: web.Request) -> BodyPartReader:
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == "file":
                return part
            if isinstance(part, BodyPartReader):
                await part.release()
    except (ValueError, UnicodeError, AssertionError, aiohttp.ClientPayloadError,
            HttpProcessingError) as err:
        # aiohttp's multipart reader says "malformed" with these.
        raise IntakeError(f"malformed multipart body: {err}", field="file") from None
    raise IntakeError("multipart upload without a 'file' part", field="file")


@routes.post("/api/v1/blacklist/import")
async def import_blacklist(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    with tempfile.TemporaryFile() as fh:
        await _receive(request, fh)
        summary = await DncrImport(
            services.store, owner.id, services.settings.phone.default_region,
            allow_global=owner.id == OPERATOR_TENANT, note="upload").run(fh)
    return web.json_response(summary.as_dict())


@routes.post("/api/v1/messages/import")
async def import_messages(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    with tempfile.TemporaryDirectory(prefix="smsgw-upload-") as tmp:
        path = Path(tmp) / "upload.csv"
        with open(path, "wb") as fh:
            await _receive(request, fh)
        summary = await FileImporter(services, owner.id).run(
            path, f"upload:{uuid.uuid4()}", errors_to=None)
    body = summary.as_dict()
    body["errors"] = [{"line": e.line, "reason": e.reason} for e in summary.errors]
    return web.json_response(body)
