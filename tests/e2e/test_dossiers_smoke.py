from gateway.samples import sample_dossiers
from tests.e2e.conftest import Gateway


async def test_accept_and_first_step(gateway: Gateway) -> None:
    doc = next(sample_dossiers(1, seed=0, death_share=0))
    async with await gateway.post("/v1/dossiers", doc) as r:
        body = await r.json()
        assert r.status == 202, body
        assert r.headers["Location"] == f"/v1/dossiers/{doc['code']}"
    view = await gateway.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
    print(view)


async def test_api_answers_are_not_stored_by_caches(gateway: Gateway) -> None:
    """Found by probing: a dossier's status (the child's issued personal id in it) came without
    Cache-Control, so a browser or a proxy in between could keep it on disk."""
    doc = next(sample_dossiers(1, seed=0, death_share=0))
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202
        assert r.headers["Cache-Control"] == "no-store"
    async with await gateway.get(f"/v1/dossiers/{doc['code']}") as r:
        assert (r.status, r.headers["Cache-Control"]) == (200, "no-store")
    async with await gateway.get("/v1/dossiers/000.00.00.H41-261122-9999") as r:
        assert (r.status, r.headers["Cache-Control"]) == (404, "no-store")
    # The console's files keep theirs (revalidated, not secret).
    async with gateway.http.get(gateway.url + "/console/console.js") as r:
        assert (r.status, r.headers["Cache-Control"]) == (200, "no-cache")


async def test_the_console_is_served_without_blocking_the_loop(gateway: Gateway) -> None:
    """Found while testing: each of the console's files was read from disk on the event loop,
    at every request (500 here, where a blocking call on the loop raises)."""
    for name in ("", "console.js", "console.css"):
        async with gateway.http.get(f"{gateway.url}/console/{name}") as r:
            assert r.status == 200, await r.text()
