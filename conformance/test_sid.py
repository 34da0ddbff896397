"""sid: session IDs are non-empty strings, opaque and case-sensitive."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from storekit.conformance._support import (
    all_sessions,
    check,
    expiring,
    new_sid,
    not_offered,
    offers,
    show,
    tidy,
)
from storekit.errors import InvalidSessionId

BAD_SIDS = [None, 0, 7, 1.5, b"sid", bytearray(b"sid"), ["sid"], ("sid",), {"sid": 1}, ""]

CALLS = {
    "get": lambda store, sid: store.get(sid),
    "set": lambda store, sid: store.set(sid, {"n": 1}),
    "destroy": lambda store, sid: store.destroy(sid),
    "touch": lambda store, sid: store.touch(sid, expiring(3600)),
}


@pytest.mark.clause("sid.1")
@pytest.mark.parametrize("method", list(CALLS))
@pytest.mark.parametrize("sid", BAD_SIDS, ids=repr)
def test_a_sid_that_is_not_a_non_empty_str_is_rejected(storekit_store: Any, method: str, sid: object) -> None:
    """sid.1: get, set, destroy and touch raise InvalidSessionId for a sid that is not a non-empty str."""
    if method == "touch" and not offers(storekit_store, "touch"):
        not_offered("touch")
    try:
        CALLS[method](storekit_store, sid)
    except InvalidSessionId:
        return
    except Exception as exc:
        raise AssertionError(
            f"sid.1: {method}({show(sid)}) raised {type(exc).__name__}: {exc} (expected InvalidSessionId)"
        ) from exc
    raise AssertionError(f"sid.1: {method}({show(sid)}) raised nothing (expected InvalidSessionId)")


def _lookalikes(prefix: str) -> list[str]:
    word = "caf\u00e9"
    return [
        f"{prefix}a",
        f"{prefix}A",
        prefix + unicodedata.normalize("NFC", word),
        prefix + unicodedata.normalize("NFD", word),
        f"{prefix}x:y",
        f"{prefix}x_y",
        f"{prefix}x.y",
        f"{prefix}a b",
        f"{prefix}ab",
        f"{prefix}../x",
        f"{prefix}x",
        f"{prefix}*",
        f"{prefix}?",
        f"{prefix}[",
        f"{prefix}%",
        f"{prefix}%25",
        f"{prefix}\U0001f600",
        f"{prefix}\U0001f601",
        (prefix + "z" * 256)[:256],
        (prefix + "z" * 256)[:255],
    ]


@pytest.mark.clause("sid.2")
def test_distinct_sids_never_share_a_session(storekit_store: Any) -> None:
    """sid.2: sids that differ only in case, normalization, punctuation or length are distinct."""
    sids = _lookalikes(new_sid("look") + "-")
    assert len(set(sids)) == len(sids)
    kept = []
    for index, sid in enumerate(sids):
        try:
            storekit_store.set(sid, {"index": index})
        except InvalidSessionId:
            continue  # sid.3 allows a store to reject a sid; sid.2 is about the ones it keeps
        kept.append((index, sid))
    check(len(kept) >= len(sids) // 2, "sid.2", f"the store rejected most ordinary sids: kept only {kept!r}")
    for index, sid in kept:
        got = storekit_store.get(sid)
        check(
            got == {"index": index},
            "sid.2",
            f"get({show(sid)}) returned {show(got)}; expected {{'index': {index}}} (another sid wrote it)",
        )
    tidy(storekit_store, *(sid for _, sid in kept))


ODD_SIDS = [
    "*",
    "?",
    "[a-z]",
    "\\",
    "../escape",
    "/etc/passwd",
    "..",
    ".",
    "a/../../b",
    "%2e%2e%2f",
    "sess:x",
    "x\x00y",
    "\n",
    " ",
    "\U0001f600",
    "\u202e",
    "NUL",
    "con",
    "z" * 256,
]


@pytest.mark.clause("sid.3")
@pytest.mark.parametrize("odd", ODD_SIDS, ids=repr)
def test_an_odd_sid_round_trips_or_is_rejected_and_stays_in_its_namespace(
    storekit_stores: Any, odd: str
) -> None:
    """sid.3: a sid either round-trips or raises InvalidSessionId, and never reaches other sessions."""
    store = storekit_stores.isolated()
    neighbours = {new_sid("n"): {"neighbour": i} for i in range(3)}
    for sid, session in neighbours.items():
        store.set(sid, session)
    before = store.length() if offers(store, "length") else None
    try:
        store.set(odd, {"odd": True})
    except InvalidSessionId:
        kept = False
    else:
        kept = True
        got = store.get(odd)
        check(
            got == {"odd": True},
            "sid.3",
            f"get({show(odd)}) returned {show(got)} after set (expected it back)",
        )
        if before is not None:
            now = store.length()
            check(now == before + 1, "sid.3", f"length() went from {before} to {now} after set({show(odd)})")
        if offers(store, "all"):
            every = all_sessions(store)
            check(odd in every, "sid.3", f"all() does not list {show(odd)}: keys {show(sorted(every))}")
        try:
            store.destroy(odd)
        except InvalidSessionId:
            raise AssertionError(
                f"sid.3: destroy({show(odd)}) raised InvalidSessionId although set() accepted that sid"
            ) from None
    if not kept:
        tidy(store, odd)
    for sid, session in neighbours.items():
        got = store.get(sid)
        check(
            got == session, "sid.3", f"a neighbour {show(sid)} became {show(got)} after using sid {show(odd)}"
        )
    tidy(store, *neighbours)
