"""Servers started on an IPv6 address give a URL that reaches them (the host in brackets)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from connectors.sandboxes import serve_app
from signing.testing import serve_pki
from signing.timestamps import serve_tsa


async def test_serve_app_on_ipv6_loopback() -> None:
    async def here(_: web.Request) -> web.Response:
        return web.Response(text="here")

    app = web.Application()
    app.router.add_get("/", here)
    async with serve_app(app, host="::1") as url, aiohttp.ClientSession() as http:
        assert url.startswith("http://[::1]:")
        async with http.get(url + "/") as r:
            assert r.status == 200 and await r.text() == "here"


async def test_serve_tsa_on_ipv6_loopback(pki: Any) -> None:
    async with serve_tsa(pki.directory, host="::1") as url, aiohttp.ClientSession() as http:
        assert url.startswith("http://[::1]:")
        async with http.post(url, data=b"not a request") as r:
            assert r.status == 400  # reached: the TSA refused the body itself


async def test_serve_pki_on_ipv6_loopback_with_a_free_port(pki: Any) -> None:
    async with serve_pki(pki, host="::1", port=0) as url, aiohttp.ClientSession() as http:
        assert url.startswith("http://[::1]:") and not url.endswith(":0")
        async with http.get(url + "/crl/nothing-by-this-name") as r:
            assert r.status == 404  # reached: the PKI server answered
