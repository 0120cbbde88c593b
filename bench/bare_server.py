"""The HTTP baseline: aiohttp doing nothing but answer, on the same event
loop (uvloop) and the same kind of process as the daemon, so the ratio says
what smsgw costs on top of the framework on this machine, right now.

Usage: python bench/bare_server.py PORT
"""

from __future__ import annotations

import sys

from aiohttp import web

_BODY = {"id": 1, "state": 1, "state_name": "TO_PROCESS"}


async def accept(request: web.Request) -> web.Response:
    # Read the body like the real endpoints do; answer a constant.
    await request.read()
    return web.json_response(_BODY, status=202)


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = web.Application()
    app.add_routes([web.post("/api/v1/messages", accept),
                    web.post("/Integra/resources/SMS/SendSMS", accept),
                    web.get("/readyz", ready)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
                print=None, backlog=1024)


if __name__ == "__main__":
    main()
