"""Google's tracking protocols mapped onto canonical hits: Universal Analytics (v=1), GA4 web
(gtag.js, v=2) and the GA4 Measurement Protocol.

Universal Analytics (`/collect`, `/batch`): `t=pageview` is a pageview; a product action `pa`
(detail, add, remove, purchase) on a pageview or event hit adds one `event_product` row per
product `pr<N>id`, so a `t=pageview&pa=detail` product page logs a pageview AND a detail at the
same millisecond, as the Coveo release does. Hits and actions without a browsing signal are
acknowledged and counted as ignored, never refused: hit types timing, exception, social,
screenview, transaction and item; `event` without `pa`; `pa` checkout, checkout_option, click,
refund and promo_click, and products without `pa` (a pageview carrying them still logs its
pageview). The page is `dl`, or `dh` + `dp` without it (stored hashed).

GA4 (`/g/collect`, `/mp/collect`): events by name (GA4_ACTIONS): `page_view` is a pageview;
view_item, add_to_cart, remove_from_cart and purchase log one row per item (its `item_id`, or
`item_name` without one). Other events are ignored and counted (by name for Google's own event
names, as `custom event` for others, so the reasons stay a fixed vocabulary). The session id is
derived from the client and GA4's session id (`ga4_session_id`): GA4's `sid` is the session's
start in seconds, which two shoppers may share.

Message ids are namespaced by protocol (`ga:<cid>:<z>`; `ga4:<cid>:<_p>:<_s>:<line>`, the page
load id, the request's sequence number and the event's line in it) and suffixed `#<n>` for the
n-th extra row of a message. A message without an id gets a random one: it is logged, but a
retry cannot be recognised (the Measurement Protocol has no message id).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError

from smallboat.collect.events import Hit, HitError, TimePolicy, hash_url, row_id
from smallboat.collect.models import (
    MAX_ID,
    Ga4Item,
    Ga4MpBody,
    Ga4WebEvent,
    GaHit,
    validator,
)
from smallboat.web.errors import describe_error

GA_MAX_PRODUCTS = 200
UA_MAX_BATCH = 20
"""Most hits in one `POST /batch` (Google's limit)."""
GA4_MAX_EVENTS = 100
"""Most events (body lines) in one `POST /g/collect`."""
UA_ACTIONS = frozenset({"detail", "add", "remove", "purchase"})
"""UA product actions that map to rows; the other `pa` values are ignored."""
UA_NO_SIGNAL_TYPES = frozenset(
    {"timing", "exception", "social", "screenview", "transaction", "item"}
)
GA4_ACTIONS: dict[str, str] = {
    "view_item": "detail",
    "add_to_cart": "add",
    "remove_from_cart": "remove",
    "purchase": "purchase",
}
"""GA4 event names -> product actions (`page_view` is the pageview)."""
GA4_KNOWN_EVENTS = frozenset(
    {
        "session_start", "first_visit", "user_engagement", "scroll", "click", "file_download",
        "form_start", "form_submit", "video_start", "video_progress", "video_complete",
        "view_search_results", "search", "view_item_list", "select_item", "view_cart",
        "begin_checkout", "add_shipping_info", "add_payment_info", "add_to_wishlist", "refund",
        "view_promotion", "select_promotion", "login", "sign_up", "generate_lead", "share",
        "select_content", "screen_view", "app_remove", "first_open",
    }
)  # fmt: skip
"""Google's automatic and recommended event names: ignored events are counted by these names,
any other as `custom event`."""
_UA_PRODUCT = re.compile(r"^pr([1-9][0-9]{0,2})id$")
_GA4_ITEM = re.compile(r"^pr([1-9][0-9]{0,2})$")

Row = tuple[str, str | None, str | None]
M = TypeVar("M", bound=BaseModel)


@dataclass
class Mapped:
    """The rows of a request, and the hits it carried that log no row (reason -> count)."""

    hits: list[Hit] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)

    def add(self, other: Mapped) -> None:
        self.hits.extend(other.hits)
        self.ignored.update(other.ignored)


def _random_id(protocol: str) -> str:
    return f"{protocol}:~{uuid.uuid4().hex}"


def validate(model: type[M], data: Mapping[str, Any], where: str = "") -> M:
    """`model` from `data`, or a HitError naming the first bad field (prefixed by `where`)."""
    try:
        return validator(model)(data)
    except ValidationError as exc:
        param, _, problem = describe_error(exc.errors()[0]).partition(" ")
        raise HitError(f"{where}{param}", problem) from None


def body_text(body: bytes) -> str:
    """A request body as text: hits are URL-encoded UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HitError("body", f"is not UTF-8 text (byte {exc.start})") from None


def form(text: str) -> dict[str, str]:
    """URL-encoded parameters (the last of a repeated name wins, as in a query string)."""
    return dict(parse_qsl(text, keep_blank_values=True))


def ga4_session_id(client_id: str, session: str) -> str:
    """The canonical session id of GA4 session `session` of `client_id` (sha256 hex)."""
    return hashlib.sha256(f"ga4\n{client_id}\n{session}".encode()).hexdigest()


# -- Universal Analytics ---------------------------------------------------------------------


def _ua_products(hit: GaHit, where: str) -> list[str]:
    """The hit's `pr<N>id` values in N order."""
    found: list[tuple[int, str]] = []
    for name, value in (hit.model_extra or {}).items():
        match = _UA_PRODUCT.match(name)
        if match is None:
            continue
        index = int(match.group(1))
        if index > GA_MAX_PRODUCTS:
            raise HitError(
                f"{where}{name}", f"is past the last product index, pr{GA_MAX_PRODUCTS}id"
            )
        if not isinstance(value, str) or not value:
            raise HitError(f"{where}{name}", "is empty; expected the product's SKU")
        if len(value) > MAX_ID:
            raise HitError(
                f"{where}{name}", f"is {len(value)} characters long; at most {MAX_ID} are accepted"
            )
        found.append((index, value))
    return [sku for _, sku in sorted(found)]


def ua_hits(hit: GaHit, *, received_ms: int, policy: TimePolicy, where: str = "") -> Mapped:
    """The rows of one Universal Analytics hit (see the module docstring); `where` prefixes
    parameter names in errors (`line 3: pr1id`)."""
    if hit.ts_ms is not None and hit.qt is not None:
        raise HitError(f"{where}qt", "cannot be combined with ts_ms: send the event time one way")
    if hit.ts_ms is not None:
        ts = policy.check(f"{where}ts_ms", hit.ts_ms, received_ms)
    else:
        ts = received_ms - (hit.qt or 0)
    mapped = Mapped()
    if hit.t in UA_NO_SIGNAL_TYPES:
        mapped.ignored[f"t={hit.t}"] += 1
        return mapped
    products = _ua_products(hit, where)
    rows: list[Row] = []
    if hit.t == "pageview":
        rows.append(("pageview", None, None))
    if hit.pa is None:
        if products:
            mapped.ignored["products without pa"] += 1
        elif hit.t == "event":
            mapped.ignored["event without pa"] += 1
    elif hit.pa not in UA_ACTIONS:
        mapped.ignored[f"pa={hit.pa}"] += 1
    elif not products:
        raise HitError(f"{where}pr1id", f"is required with pa={hit.pa}: the product's SKU")
    else:
        rows.extend(("event_product", hit.pa, sku) for sku in products)
    base = f"ga:{hit.cid}:{hit.z}" if hit.z is not None else _random_id("ga")
    extra = hit.model_extra or {}
    page = hit.dl or (f"{extra.get('dh') or ''}{extra['dp']}" if extra.get("dp") else None)
    url = hash_url(page) if page else None
    mapped.hits.extend(
        Hit(row_id(base, i), event_type, action, sku, ts, url, hit.sid, hit.cid, "ga")
        for i, (event_type, action, sku) in enumerate(rows)
    )
    return mapped


# -- GA4 -------------------------------------------------------------------------------------


def _ga4_rows(name: str, skus: Sequence[str], mapped: Mapped) -> list[Row]:
    if name == "page_view":
        return [("pageview", None, None)]
    action = GA4_ACTIONS.get(name)
    if action is None:
        mapped.ignored[name if name in GA4_KNOWN_EVENTS else "custom event"] += 1
        return []
    if not skus:
        mapped.ignored[f"{name} without items"] += 1
        return []
    return [("event_product", action, sku) for sku in skus]


def _item_sku(item: Ga4Item, where: str) -> str:
    sku = item.item_id or item.item_name
    if sku is None:
        raise HitError(f"{where}item_id", "is required (or item_name): the product's SKU")
    return sku


def _web_item(value: str, where: str) -> str:
    """The SKU of a gtag item parameter: `~`-separated fields, each a 2-letter key and its
    value (`idSKU-1~nmShoes~caMen~pr9.99~qt1`)."""
    fields: dict[str, str] = {}
    for part in value.split("~"):
        if len(part) >= 2:
            fields.setdefault(part[:2], part[2:])
    item = validate(
        Ga4Item, {"item_id": fields.get("id"), "item_name": fields.get("nm")}, f"{where} "
    )
    sku = item.item_id or item.item_name
    if sku is None:
        raise HitError(where, "has no id (or nm) field: expected id<SKU>~nm<name>~...")
    return sku


def _web_event_items(params: Mapping[str, str], where: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for name, value in params.items():
        match = _GA4_ITEM.match(name)
        if match is None:
            continue
        index = int(match.group(1))
        if index > GA_MAX_PRODUCTS:
            raise HitError(f"{where}{name}", f"is past the last item index, pr{GA_MAX_PRODUCTS}")
        found.append((index, _web_item(value, f"{where}{name}")))
    return [sku for _, sku in sorted(found)]


def ga4_web_hits(
    query: Mapping[str, str],
    lines: Sequence[Mapping[str, str]],
    *,
    received_ms: int,
    policy: TimePolicy,
) -> Mapped:
    """The rows of one gtag.js request: shared parameters in `query`, one event per body line
    (a line's parameters override the query's); without lines, the query is the one event."""
    if len(lines) > GA4_MAX_EVENTS:
        raise HitError("body", f"has {len(lines)} events; at most {GA4_MAX_EVENTS} are accepted")
    mapped = Mapped()
    for i, line in enumerate(lines or [{}]):
        where = f"body line {i + 1}: " if lines else ""
        params = {**query, **line}
        event = validate(Ga4WebEvent, params, where)
        ts = received_ms
        if event.ts_ms is not None:
            ts = policy.check(f"{where}ts_ms", event.ts_ms, received_ms)
        rows = _ga4_rows(event.en, _web_event_items(params, where), mapped)
        if event.p is not None and event.s is not None:
            base = f"ga4:{event.cid}:{event.p}:{event.s}:{i}"
        else:
            base = _random_id("ga4")
        session = None if event.sid is None else ga4_session_id(event.cid, event.sid)
        url = hash_url(event.dl) if event.dl else None
        mapped.hits.extend(
            Hit(row_id(base, j), kind, action, sku, ts, url, session, event.cid, "ga4")
            for j, (kind, action, sku) in enumerate(rows)
        )
    return mapped


def ga4_mp_hits(body: Ga4MpBody, *, received_ms: int, policy: TimePolicy) -> Mapped:
    """The rows of one Measurement Protocol request (the JSON body of `POST /mp/collect`)."""
    client = body.client_id or body.app_instance_id
    if client is None:
        raise HitError("client_id", "is required (app_instance_id for an app stream)")
    mapped = Mapped()
    for i, event in enumerate(body.events):
        at = f"events[{i}]."
        params = event.params
        micros = event.timestamp_micros or body.timestamp_micros
        ts = received_ms
        if micros is not None:
            field_name = (
                "timestamp_micros" if event.timestamp_micros is None else f"{at}timestamp_micros"
            )
            ts = policy.check(field_name, micros // 1000, received_ms)
        items = (params.items if params else None) or []
        skus = [_item_sku(item, f"{at}params.items[{j}].") for j, item in enumerate(items)]
        rows = _ga4_rows(event.name, skus, mapped)
        session_param = params.session_id if params else None
        session = None if session_param is None else ga4_session_id(client, session_param)
        page = params.page_location if params else None
        url = hash_url(page) if page else None
        base = _random_id("ga4mp")
        mapped.hits.extend(
            Hit(row_id(base, j), kind, action, sku, ts, url, session, client, "ga4mp")
            for j, (kind, action, sku) in enumerate(rows)
        )
    return mapped
