"""What the connectors quote of a registry, and what they take from it and send it: error text
masked in every spelling an echo uses, SOAP faults quoted as error pages are, province codes of
3 digits, representatives' ids masked, names without invisible characters."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest
from aiohttp import web

from connectors.api import Endpoint, PermanentError, excerpt
from connectors.identifiers import mask_personal_id, province_from_registry
from connectors.insurance.mapping import card_check_body
from connectors.population import mapping as population
from connectors.population.client import PopulationConnector
from connectors.population.sandbox import SANDBOX_OFFICER_ID as OFFICER
from connectors.sandboxes import serve_app
from connectors.text import fold, nfc

SECRET = "S3cret&<pw>'x\"q"


def _numeric(text: str, form: str) -> str:
    return "".join(form.format(ord(c)) if c in "&<>'\"" else c for c in text)


@pytest.mark.parametrize(
    "spelt",
    [
        html.escape(SECRET),  # Python's: &#x27; and &quot;
        html.escape(SECRET, quote=False),  # quotes left as they are
        html.escape(SECRET).replace("&#x27;", "&#39;"),  # Spring's HtmlUtils, Jinja's &#39;
        html.escape(SECRET).replace("&#x27;", "&#039;"),  # PHP's htmlspecialchars
        _numeric(SECRET, "&#{};"),  # every one a decimal reference
        _numeric(SECRET, "&#X{:X};"),  # or a hex one, in upper case
        html.escape(quote(SECRET, safe="")),  # the URL as sent, quoted in a page
        re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote(SECRET, safe="")),  # .NET's
    ],
    ids=["html", "html-no-quotes", "html-39", "php-039", "decimal", "hex", "url-in-html", "lower"],
)
def test_an_html_escaped_echo_of_a_secret_is_masked(spelt: str) -> None:
    """Found by probing: masking knew a secret as sent, percent-encoded and JSON-escaped; an
    HTML error page quoting the request with & < > ' " escaped showed BHXH's password."""
    page = f"<p>Request: /api/egw/x?password={spelt}</p>".encode()
    said = excerpt(page, hide=[SECRET])
    assert "password=***" in said, said
    assert "S3cret" not in said and "pw" not in said, said


def test_a_secret_that_holds_an_entity_is_masked_as_it_came_too() -> None:
    secret = "pw&amp;word"
    assert excerpt(f"echo: {secret}".encode(), hide=[secret]) == "echo: ***"
    assert excerpt(f"echo: {html.escape(secret)}".encode(), hide=[secret]) == "echo: ***"


def test_an_html_page_reads_as_its_text() -> None:
    assert excerpt(b"<h1>Fehler &amp; Co &#8211; 503</h1>") == "<h1>Fehler & Co \u2013 503</h1>"


LOOKUP = {"personal_id": "026092008262", "full_name": "A B", "birth_date": "1992-01-01"}


async def _fault_for(faultstring: str, error_code: str) -> PermanentError:
    """What a lookup raises against a registry answering a Client fault with ``faultstring``
    and a detail whose MaLoi is ``error_code``, each ``{key}`` the ApiKey it was sent."""

    async def fault(request: web.Request) -> web.Response:
        key = request.headers["ApiKey"]
        body = (
            '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
            'envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>'
            f"{html.escape(faultstring.format(key=key))}</faultstring><detail>"
            f'<LoiDichVu xmlns="urn:x"><MaLoi>{error_code.format(key=key)}</MaLoi></LoiDichVu>'
            "</detail></s:Fault></s:Body></s:Envelope>"
        )
        return web.Response(status=500, text=body, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/soap", fault)
    async with serve_app(app) as base:
        endpoint = Endpoint(url=base + "/soap", username="u", secret="s", api_key="API-KEY-1234")
        async with PopulationConnector(endpoint, officer_id=OFFICER) as population_registry:
            with pytest.raises(PermanentError) as caught:
                await population_registry.call("citizen.lookup", LOOKUP)
    return caught.value


async def test_a_soap_fault_is_quoted_masked_and_cut() -> None:
    """Found by probing: a fault's text went into the error (a lookup's detail, a step's error)
    whole, whatever it echoed of the request and however long."""
    caught = await _fault_for("refused for ApiKey={key} " + "x" * 200_000, "E-{key}")
    assert caught.message.startswith("SOAP fault Client: refused for ApiKey=***"), caught.message
    assert len(caught.message) <= 200 and "API-KEY" not in caught.message, caught.message
    assert caught.code == "E-***"


async def test_a_soap_faults_own_code_still_comes_through() -> None:
    caught = await _fault_for("no such citizen", "KHONG_TIM_THAY")
    assert (caught.code, caught.message) == ("KHONG_TIM_THAY", "SOAP fault Client: no such citizen")


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        ("40", "040"),
        ("08", "008"),
        ("1", "001"),  # Hà Nội's 01 without its zero
        ("001", "001"),
        (" 40 ", "040"),
        ("99", None),  # no province's
        ("400", None),
        ("4O", None),
        ("\u0664\u0660", None),  # Arabic-Indic digits
        ("", None),
        (None, None),  # MaTinhThanh is minOccurs=0
    ],
)
def test_a_registrys_province_code_is_answered_with_3_digits_or_none(
    sent: str | None, answered: str | None
) -> None:
    assert province_from_registry(sent) == answered


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("001092110867", "001******867"),  # a registry that did not mask it
        ("001******867", "001******867"),
        ("**********67", "**********67"),
        ("123456789", "******789"),  # an old ID card's 9 digits
        ("0010921108671", "**********671"),
        ("12345", "*****"),
        ("", ""),
    ],
)
def test_a_representatives_personal_id_is_masked_by_the_gateway(sent: str, shown: str) -> None:
    assert mask_personal_id(sent) == shown


INVISIBLE = ["\u200b", "\u00ad", "\ufeff", "\u2060", "\u200e", "\u202e"]


@pytest.mark.parametrize("mark", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_invisible_format_characters_are_not_part_of_a_name(mark: str) -> None:
    """Found by probing: a name pasted from Word with a zero-width space (a soft hyphen, a BOM,
    a word joiner) was sent to the registries as it came, and answered "does not match"."""
    pasted = f"{mark}Nguy{mark}ễn Thị{mark} Lan{mark}"
    assert fold(pasted) == "NGUYEN THI LAN"
    assert nfc(pasted) == "Nguyễn Thị Lan"
    asked = population.lookup_request(
        {**LOOKUP, "full_name": pasted},
        "r1",
        service_code="1.001193",
        officer_id=OFFICER,
        agency_id="000.00.00.H41",
        account="u",
    )
    assert asked["HoVaTen"] == "NGUYEN THI LAN"
    card = {"card_number": "HS4010120878811", "full_name": pasted, "birth_date": "1992-01-01"}
    assert card_check_body(card, "Cán Bộ", OFFICER)["hoTen"] == "Nguyễn Thị Lan"
