"""The aiohttp-backed transport over real sockets: pooling, pool waits, and httpx's error tree."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest

from shared.provider.client import ProviderClient
from shared.provider.errors import PoolExhausted, ProviderUnavailable, classify
from shared.provider.transport import AiohttpTransport
from shared.roster import Model
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

MODEL = Model(id="sim/alpha", name="alpha")
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def http_client(max_connections: int, **timeouts: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=AiohttpTransport(max_connections), timeout=httpx.Timeout(10.0, **timeouts)
    )


def test_sequential_calls_share_one_connection(sim):
    async def five_calls():
        async with http_client(8) as http:
            provider = ProviderClient(http, sim.base_url, None, 10.0)
            return [await provider.complete(MODEL, MESSAGES) for _ in range(5)]

    completions = asyncio.run(five_calls())
    assert all("simulated" in completion.content for completion in completions)
    assert completions[0].usage["total_tokens"] > 0
    stats = sim.stats()
    assert (stats["calls"][MODEL.id], stats["connections"]) == (5, 1)


def test_a_call_waits_for_a_free_connection_then_gives_up_as_pool_exhausted(sim):
    sim.set_faults(model=MODEL.id, latency_ms=3000)

    async def two_calls():
        async with http_client(1, pool=0.2) as http:
            url = f"{sim.base_url}/chat/completions"
            body = {"model": MODEL.id, "messages": MESSAGES}
            slow = asyncio.ensure_future(http.post(url, json=body))
            await asyncio.sleep(0.1)
            try:
                await http.post(url, json=body)
            finally:
                slow.cancel()

    with pytest.raises(httpx.PoolTimeout) as raised:
        asyncio.run(two_calls())
    assert isinstance(classify(raised.value), PoolExhausted)
    assert sim.stats()["calls"][MODEL.id] == 1, "the second call never reached the provider"


def test_a_slow_answer_is_a_read_timeout(sim):
    sim.set_faults(model=MODEL.id, latency_ms=3000)

    async def call():
        async with http_client(4, read=0.2) as http:
            await http.post(f"{sim.base_url}/chat/completions",
                            json={"model": MODEL.id, "messages": MESSAGES})

    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(call())


def test_a_closed_port_is_a_connect_error():
    async def call():
        async with http_client(4) as http:
            await http.get(f"http://127.0.0.1:{free_port()}/v1/models")

    with pytest.raises(httpx.ConnectError) as raised:
        asyncio.run(call())
    assert isinstance(classify(raised.value), ProviderUnavailable)


async def serve_once(reply: bytes) -> tuple[asyncio.Server, str]:
    """Serve ``reply`` (raw bytes, possibly nothing) to every request, then close."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/"


def test_a_connection_closed_before_the_answer_is_a_protocol_error():
    async def call():
        server, url = await serve_once(b"")
        async with server, http_client(4) as http:
            await http.get(url)

    with pytest.raises(httpx.RemoteProtocolError) as raised:
        asyncio.run(call())
    assert isinstance(classify(raised.value), ProviderUnavailable)


def test_a_compressed_answer_is_decoded_once():
    payload = gzip.compress(json.dumps({"ok": True}).encode())
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
    )

    async def call():
        server, url = await serve_once(reply)
        async with server, http_client(4) as http:
            return (await http.get(url)).json()

    assert asyncio.run(call()) == {"ok": True}
