"""An httpx transport that sends requests over aiohttp's connection pool.

httpcore 1.0's pool rescans every connection, and polls the socket of each idle one, whenever a
request starts or ends, and its per-request path is deep: measured on this project's simulator,
an ``httpx.AsyncClient`` on its own transport spent 1 to 9 ms of CPU per call (depending on the
pool size), the same client on this transport about 0.5 ms. aiohttp's connector keeps the idle
connections of a host in a deque and hands one out in constant time.

The transport keeps httpx's client API and its error tree, so ``shared.provider.errors`` sees
exactly what it would see from httpx: it waits for a free connection itself and raises
``httpx.PoolTimeout`` after the request's pool timeout, and it maps aiohttp's errors onto
httpx's (connect and read timeouts, connect errors, lost connections, protocol errors). It makes
one request per call and retries nothing. Responses are read whole (completions are small) and
handed to httpx undecoded, so httpx decodes ``Content-Encoding`` as it always does.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx

KEEPALIVE_S = 15.0  # close a connection idle this long, before a provider's own idle timeout
# aiohttp computes these itself from the body and the URL.
SKIPPED_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through one pooled ``aiohttp.ClientSession`` of ``max_connections``.

    Build it anywhere; it opens its session on first use, on the loop that uses it.
    """

    def __init__(self, max_connections: int, keepalive_s: float = KEEPALIVE_S) -> None:
        self.max_connections = max(1, max_connections)
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request on a pooled connection; raise httpx's errors on failure."""
        timeouts = request.extensions.get("timeout", {})
        session, slots = self._open()
        if slots.locked():  # else a free connection is taken at once, with no timer to arm
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await slots.acquire()
            except TimeoutError as error:
                raise httpx.PoolTimeout("no free connection in the pool", request=request) \
                    from error
        else:
            await slots.acquire()
        try:
            return await self._send(session, request, timeouts)
        finally:
            slots.release()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._slots is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=0, keepalive_timeout=self._keepalive_s
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),  # cookies are the httpx client's call
            )
            self._slots = asyncio.Semaphore(self.max_connections)
        return self._session, self._slots

    async def _send(
        self, session: aiohttp.ClientSession, request: httpx.Request, timeouts: dict
    ) -> httpx.Response:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in SKIPPED_HEADERS
        ]
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        try:
            async with session.request(
                request.method, str(request.url), data=await request.aread(), headers=headers,
                timeout=timeout, allow_redirects=False,
            ) as response:
                content = await response.read()
                status, raw_headers = response.status, response.raw_headers
        except aiohttp.ClientError as error:
            raise _as_httpx_error(error, request) from error
        except TimeoutError as error:
            raise httpx.ReadTimeout("the provider did not answer in time", request=request) \
                from error
        return httpx.Response(
            status, headers=list(raw_headers), stream=httpx.ByteStream(content), request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )


def _as_httpx_error(error: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """Return the httpx error that stands for an aiohttp error."""
    message = str(error) or type(error).__name__
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(error, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError
                  | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(error, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message, request=request)
    return httpx.ReadError(message, request=request)
