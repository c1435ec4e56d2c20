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
