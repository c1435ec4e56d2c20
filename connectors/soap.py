"""The SOAP transport shared by the SOAP connectors (population, civil status).

zeep reads the registry's WSDL (a local file from ``schemas/wsdl``, loaded once in :meth:`open`, off
the event loop); :mod:`connectors.soapcodec` compiles each operation from zeep's model into a plan
that builds requests and reads replies with zeep's results at a fraction of its cost, and zeep
itself handles what a plan does not cover (faults, MTOM, types outside the plan). The HTTP
exchange itself is ours, over :class:`connectors.http1.HttpClient` with an explicit timeout (zeep's
``AsyncTransport`` uses httpx, whose connection-pool bookkeeping cost more per call than the rest
of the exchange, and has no timeout by default; aiohttp's client cost about twice this one's CPU
per call). Building the envelope ourselves leaves a hook
between building and sending, where the civil-status connector adds an XML signature off the loop.

Every failure is translated in one place, :meth:`SoapClient._translate`::

    timeout, connect error, reset, dropped mid-reply      → TransientError
    a reply that is not HTTP, or over the size limit       → TransientError
    a reply of over 100,000 elements (MAX_REPLY_NODES)    → TransientError ("malformed reply")
    HTTP 5xx without a SOAP Fault (502/503/504 …)          → TransientError
    HTTP 408, 425, 429 (timeout, too early, rate limited)  → TransientError
    any other HTTP 4xx (401 bad credentials, 404, 413 …)   → PermanentError
    (an HTTP failure's ``code`` is ``"http-<status>"``, as the REST transport's)
    SOAP Fault soap:Server / soap:Receiver (and Server.*)  → TransientError
    SOAP Fault soap:Client / soap:Sender (and Client.*)    → PermanentError
    a reply that is not the contract's (HTML, bad XML)     → TransientError
    a request zeep cannot build from our parameters        → PermanentError
    anything else                                          → PermanentError ("unexpected")

so nothing foreign escapes a call; the original exception is chained as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zeep
import zeep.exceptions
import zeep.helpers
from lxml import etree
from yarl import URL

from connectors.api import (
    ConnectorError,
    Endpoint,
    PermanentError,
    TransientError,
    excerpt,
    retry_after,
    transient_status,
)
from connectors.http1 import BadReply, HttpClient
from connectors.soapcodec import NotCompiled, OperationCodec, compile_operation
from signing.xml import NodeCounter

__all__ = [
    "SOAP_ENV",
    "Fault",
    "SandboxLedger",
    "Signer",
    "SoapClient",
    "SoapFault",
    "child_text",
    "envelope_bytes",
    "fault_bytes",
    "fault_class",
    "fingerprint",
    "parse_request",
]

# Signs a serialised envelope and returns the signed bytes (runs on the loop; must itself move
# CPU-bound work to a thread, as signing.xml.sign_xml does).
Signer = Callable[[bytes], Awaitable[bytes]]
# Extra HTTP headers for one request, computed per call (timestamps, signatures over the URL).
HeaderFactory = Callable[[str], Mapping[str, str]]


@dataclass(frozen=True)
class Fault:
    """A SOAP Fault as the registry sent it: ``code`` (local part: Client/Server), ``detail_code``
    (the registry's own error code from the fault detail, when present) and ``message``."""

    code: str
    message: str
    detail_code: str | None = None


def fault_class(fault: Fault) -> type[ConnectorError]:
    """SOAP 1.1 ``Server`` / SOAP 1.2 ``Receiver``: the registry failed, retrying may help.

    Classified on the code's first segment: SOAP 1.1 refines a code with dotted parts
    (``Server.userException`` from Axis, ``Server.Busy``, ``Client.Authentication``), and the
    refinement keeps the class of what it refines."""
    if fault.code.split(".", 1)[0] in ("Server", "Receiver"):
        return TransientError
    return PermanentError


_INLINE_PARSE_BYTES = 16 * 1024

# A reply's tree, lxml's and zeep's objects, grows with its elements more than its bytes: 20 MiB
# of <a/> (the size cap) made a 712 MB tree. The contracts' largest answer, a household's
# CongdanCollection, has some 60 elements a citizen: 100,000 is over 1,500 citizens.
MAX_REPLY_NODES = 100_000


def _check_nodes(content: bytes, limit: int) -> None:
    """Raise :class:`signing.xml.TooManyNodes` (a malformed reply) for a reply of more than
    ``limit`` nodes, counted before the codec or zeep builds its tree. XML that does not parse is left
    to them (an MTOM package, an HTML error page), which refuse or read it as before."""
    if len(content) < 4 * limit:
        # An element takes at least 4 bytes (<a/>), a comment or a processing instruction
        # more: a shorter reply cannot hold too many (the lookups' few KiB are not counted).
        return
    parser = etree.XMLParser(
        target=NodeCounter(limit), resolve_entities=False, no_network=True, huge_tree=False
    )
    with contextlib.suppress(etree.XMLSyntaxError):
        etree.fromstring(content, parser)


@dataclass(frozen=True)
class _Reply:
    """The attributes zeep's ``process_reply`` reads from a ``requests.Response``."""

    status_code: int
    content: bytes
    headers: Mapping[str, str]
    encoding: str | None

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", errors="replace")


class SoapClient:
    """One SOAP endpoint described by a local WSDL. Use as ``async with`` or open/close.

    ``classify`` turns a :class:`Fault` into the error class to raise (default
    :func:`fault_class`); ``headers`` adds per-request HTTP headers (authentication).
    """

    def __init__(
        self,
        registry: str,
        endpoint: Endpoint,
        wsdl: Path,
        *,
        headers: HeaderFactory | None = None,
        classify: Callable[[Fault], type[ConnectorError]] = fault_class,
        max_reply_bytes: int = 20 * 1024 * 1024,
        max_reply_nodes: int = MAX_REPLY_NODES,
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.wsdl = wsdl
        self._headers = headers
        self._classify = classify
        self._max_reply = max_reply_bytes
        self._max_nodes = max_reply_nodes
        self._zeep: zeep.Client | None = None
        self._codecs: dict[str, OperationCodec | None] = {}
        self._http: HttpClient | None = None
        self._url = URL(endpoint.url)

    # --- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        """Load the WSDL (in a thread: zeep loads synchronously) and open the HTTP client.

        Raises :class:`PermanentError` when the WSDL cannot be loaded (a deployment error).
        """
        if self._zeep is not None:
            return
        try:
            self._zeep, self._codecs = await asyncio.to_thread(self._load_wsdl)
        except Exception as exc:
            raise PermanentError(self.registry, f"cannot load WSDL {self.wsdl}: {exc}") from exc
        # The national platform's certificates are the OS store's business here (the client's
        # default TLS context); document signatures are checked against configured anchors
        # elsewhere.
        self._http = HttpClient(timeout=self.endpoint.timeout, max_reply=self._max_reply)

    def _load_wsdl(self) -> tuple[zeep.Client, dict[str, OperationCodec | None]]:
        settings = zeep.Settings(
            strict=True, forbid_dtd=True, forbid_entities=True, xml_huge_tree=False
        )
        transport = zeep.Transport()  # type: ignore[no-untyped-call]
        try:
            client = zeep.Client(str(self.wsdl), transport=transport, settings=settings)  # type: ignore[no-untyped-call]
        finally:
            # The WSDL is local; zeep never needs its requests session again (we post ourselves).
            transport.session.close()
        operations = client.service._binding._operations
        return client, {name: compile_operation(client, name) for name in operations}

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._zeep = None
        self._codecs = {}

    async def __aenter__(self) -> SoapClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- calls ------------------------------------------------------------------------------
    @property
    def client(self) -> zeep.Client:
        if self._zeep is None:
            raise RuntimeError("SoapClient used before open()")
        return self._zeep

    def build(self, operation: str, params: Mapping[str, Any]) -> bytes:
        """The serialised request envelope. Raises :class:`PermanentError` when ``params`` do not
        fit the WSDL (a mapping bug or bad input: sending it again would not help)."""
        with self._translate("request"):
            codec = self._codecs.get(operation)
            if codec is not None:
                return codec.build(params)
            envelope = self.client.create_message(self.client.service, operation, **params)  # type: ignore[no-untyped-call]
            data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
            return data

    async def call(
        self,
        operation: str,
        params: Mapping[str, Any],
        *,
        sign: Signer | None = None,
        repeatable: bool = False,
    ) -> dict[str, Any]:
        """Call ``operation`` with ``params`` (zeep-style keyword values) and return the reply
        body as plain dicts and lists. ``repeatable``: the call is safe to send twice (a read,
        or a write the registry performs once under the request id its envelope carries), so
        the HTTP client may send it again when a kept-alive connection was closed under it
        before any reply (see :mod:`connectors.http1`).

        Raises :class:`TransientError` or :class:`PermanentError` (see the module docstring).
        """
        body = self.build(operation, params)
        if sign is not None:
            body = await sign(body)
        http = self._http
        if http is None:
            raise RuntimeError("SoapClient used before open()")
        binding = self.client.service._binding
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{binding.get(operation).soapaction or ""}"',
        }
        auth = {} if self._headers is None else self._headers(self.endpoint.url)
        headers.update(auth)
        with self._translate("send"):
            # Registries answer on one fixed URL: a redirect is an answer like any other.
            reply = await http.request("POST", self._url, headers, body, repeatable=repeatable)
        response = _Reply(reply.status, reply.body, reply.headers, reply.charset)
        self._check_status(response, sent=auth.values())
        with self._translate("reply", sent=auth.values()):
            if len(response.content) <= _INLINE_PARSE_BYTES:
                # A lookup's few kilobytes parse faster than a thread hand-off would take.
                result = self._process(operation, response)
            else:
                # Large replies (a certificate PDF inside) are real lxml work: off the loop.
                result = await asyncio.to_thread(self._process, operation, response)
        return result

    def _process(self, operation: str, reply: _Reply) -> dict[str, Any]:
        _check_nodes(reply.content, self._max_nodes)
        codec = self._codecs.get(operation)
        if codec is not None and reply.status_code == 200:
            # zeep also reads multipart (MTOM) replies; the codec does not.
            if not reply.headers.get("Content-Type", "").lower().startswith("multipart/"):
                try:
                    return codec.read(reply.content)
                except NotCompiled:
                    pass  # a fault, another element, attributes …: zeep's reading, below
        binding = self.client.service._binding
        value = binding.process_reply(self.client, binding.get(operation), reply)
        plain = zeep.helpers.serialize_object(value, target_cls=dict)  # type: ignore[no-untyped-call]
        if not isinstance(plain, dict):
            raise TypeError(f"unexpected reply body {type(plain).__name__}")
        return plain

    def _check_status(self, response: _Reply, sent: Collection[str] = ()) -> None:
        status = response.status_code
        # A SOAP Fault comes with 500 and an XML body (after a soap:Header of any size): zeep reads
        # it, and its code says whether to retry. A 500 that is not XML is an HTTP failure.
        # No Content-Type at all is read as XML, the SOAP default (zeep's too).
        soap_fault = status == 500 and _is_xml(response.headers.get("Content-Type", "text/xml"))
        if 200 <= status < 300 or soap_fault:
            return
        # The reply's first words, never the credentials this request carried (an echo).
        text = excerpt(response.content, hide=[*sent, *self.endpoint.secrets()])
        message = f"HTTP {status}" + (f": {text}" if text else "")
        # Spelt as the REST transport spells it: a bare "504" reads as a registry's result code
        # (MaKetQua), and one HTTP failure should carry one code whichever registry answered.
        code = f"http-{status}"
        if transient_status(status):
            wait_s = retry_after(response.headers.get("Retry-After"))
            raise TransientError(self.registry, message, code=code, wait_s=wait_s)
        raise PermanentError(self.registry, message, code=code)

    # --- the one place foreign errors are translated -----------------------------------------
    @contextlib.contextmanager
    def _translate(self, phase: str, sent: Collection[str] = ()) -> Iterator[None]:
        """``sent``: the credentials the request carried, which a fault's text may echo."""
        registry = self.registry
        try:
            yield
        except ConnectorError:
            raise
        except TimeoutError as exc:
            raise TransientError(
                registry, f"timed out ({type(exc).__name__})", timed_out=True
            ) from exc
        except OSError as exc:
            # refused, reset, dropped mid-reply, TLS refused …
            raise TransientError(registry, f"connection failed: {type(exc).__name__}") from exc
        except BadReply as exc:  # not HTTP, or larger than the limit
            raise TransientError(registry, str(exc)) from exc
        except zeep.exceptions.Fault as exc:
            if exc.detail is not None and not isinstance(exc.detail, etree._Element):
                # An error reply in XML that holds no SOAP Fault (a proxy's own error page):
                # zeep hands over the whole document as bytes.
                raise TransientError(
                    registry, "malformed reply: an error without a SOAP Fault"
                ) from exc
            fault = _fault(exc)
            cls = self._classify(fault)
            # A fault is the SOAP registry's error page: its text is quoted as an HTTP error
            # page's is, cut and without the credentials sent (a Java backend's faultstring may
            # quote the request's headers), and so is its MaLoi.
            hide = [*sent, *self.endpoint.secrets()]
            message = excerpt(f"SOAP fault {fault.code}: {fault.message}".encode(), hide=hide)
            code = excerpt((fault.detail_code or fault.code).encode(), hide=hide)
            raise cls(registry, message, code=code) from exc
        except zeep.exceptions.TransportError as exc:
            # zeep raises this for a reply that is not XML at all (the HTML "502" page).
            raise TransientError(registry, f"malformed reply (HTTP {exc.status_code})") from exc
        except (zeep.exceptions.Error, etree.LxmlError, ValueError, TypeError, LookupError) as exc:
            if phase == "request":
                raise PermanentError(registry, f"request does not fit the contract: {exc}") from exc
            raise TransientError(registry, f"malformed reply: {exc}") from exc
        except Exception as exc:
            raise PermanentError(
                registry, f"unexpected error: {type(exc).__name__}: {exc}"
            ) from exc


def _is_xml(content_type: str) -> bool:
    """``text/xml`` (SOAP 1.1), ``application/soap+xml`` (1.2), ``application/xml``, or an MTOM
    ``multipart/related`` package whose root part is the envelope."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("text/xml", "application/xml", "multipart/related") or media.endswith("+xml")


def _fault(exc: zeep.exceptions.Fault) -> Fault:
    code = exc.code or ""
    if isinstance(code, etree.QName):
        code = code.localname
    code = str(code).rsplit(":", 1)[-1].rsplit("}", 1)[-1] or "Server"
    detail_code: str | None = None
    detail = exc.detail
    if detail is not None:
        for node in detail.iter():
            if isinstance(node.tag, str) and etree.QName(node).localname in ("MaLoi", "maLoi"):
                detail_code = (node.text or "").strip() or None
                break
    return Fault(code=code, message=str(exc.message or ""), detail_code=detail_code)


# --- the server side, shared by the SOAP sandboxes ----------------------------------------------
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_MAX_REQUEST = 1024 * 1024
# No DTDs, no network, no entity expansion: with DOCTYPEs refused up front these only matter as a
# second fence (spec/signatures.md pitfall 5).
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True
)


class SoapFault(Exception):
    """Raised by a sandbox handler to answer with a SOAP 1.1 Fault (HTTP 500).

    ``code`` is ``"Client"`` (the request is wrong) or ``"Server"`` (the registry failed);
    ``error_code`` goes to the detail's ``MaLoi``.
    """

    def __init__(self, code: str, error_code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.error_code, self.message = code, error_code, message


def parse_request(body: bytes) -> etree._Element:
    """The first element inside ``soap:Body`` of a request envelope.

    Raises :class:`SoapFault` (Client) for a DOCTYPE, an oversized body, XML that does not parse
    or an envelope without a body element.
    """
    if len(body) > _MAX_REQUEST:
        raise SoapFault("Client", "XML_TOO_LARGE", "request larger than 1 MiB")
    # Checked on the raw bytes, before any parser sees them: no DTD is ever processed.
    if b"<!doctype" in body.lower():
        raise SoapFault("Client", "XML_DOCTYPE", "DOCTYPE is not allowed")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapFault("Client", "XML_SYNTAX", f"not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        # One in UTF-16 or UTF-32 has no "<!doctype" bytes to find above. Parsed with entities
        # unresolved and no network: seen here, refused before anything reads it.
        raise SoapFault("Client", "XML_DOCTYPE", "DOCTYPE is not allowed")
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapFault("Client", "SOAP_ENVELOPE", "not a SOAP 1.1 envelope")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) == 0:
        raise SoapFault("Client", "SOAP_BODY", "envelope without a body element")
    return soap_body[0]


def child_text(parent: etree._Element, *path: str) -> str | None:
    """Text of the descendant reached by local names ``path`` (namespaces ignored), or None."""
    node: etree._Element | None = parent
    for name in path:
        if node is None:
            return None
        node = next(
            (c for c in node if isinstance(c.tag, str) and etree.QName(c).localname == name), None
        )
    if node is None or node.text is None:
        return None
    return node.text.strip() or None


def envelope_bytes(payload: etree._Element) -> bytes:
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    etree.SubElement(env, f"{{{SOAP_ENV}}}Body").append(payload)
    data: bytes = etree.tostring(env, xml_declaration=True, encoding="utf-8")
    return data


def fault_bytes(fault: SoapFault, detail_ns: str, detail_element: str = "LoiDichVu") -> bytes:
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    node = etree.SubElement(etree.SubElement(env, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(node, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(node, "faultstring").text = fault.message
    detail = etree.SubElement(etree.SubElement(node, "detail"), f"{{{detail_ns}}}{detail_element}")
    etree.SubElement(detail, f"{{{detail_ns}}}MaLoi").text = fault.error_code
    etree.SubElement(detail, f"{{{detail_ns}}}MoTa").text = fault.message
    data: bytes = etree.tostring(env, xml_declaration=True, encoding="utf-8")
    return data


class SandboxLedger:
    """Idempotency records and the counters of ``GET /_sandbox/stats``.

    A write is keyed by its request id (``MaYeuCau``); the same id with the same request gets the
    stored answer (a *replay*), with a different request a Client fault. Callers check and record
    with no ``await`` in between, so two concurrent deliveries cannot both register.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.writes: dict[str, int] = {}
        self.replays = 0
        self._answers: dict[str, tuple[bytes, bytes]] = {}

    def replay(self, key: str, fingerprint: bytes) -> bytes | None:
        """The stored answer for ``key``, or None for a new key.

        Raises :class:`SoapFault` (Client) when ``key`` was used for a different request.
        """
        stored = self._answers.get(key)
        if stored is None:
            return None
        if stored[0] != fingerprint:
            raise SoapFault(
                "Client",
                "DUPLICATE_REQUEST_ID",
                f"request id {key} was used for a different request",
            )
        self.replays += 1
        return stored[1]

    def record(self, key: str, fingerprint: bytes, operation: str, answer: bytes) -> None:
        self._answers[key] = (fingerprint, answer)
        self.writes[operation] = self.writes.get(operation, 0) + 1

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "writes": dict(self.writes), "replays": self.replays}


def fingerprint(element: etree._Element) -> bytes:
    """A canonical form of a request element, for telling a replay from a reuse of its id."""
    data: bytes = etree.tostring(element, method="c14n", exclusive=True)
    return data
