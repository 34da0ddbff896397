"""The clause catalogue: the contract's version, every clause, its section, the
levels, and the profiles that read the levels for what a user relies on.

The IDs are public: a failing test, the JSON report and ``docs/contract.md``
all name the same clause. ``tests/test_docs.py`` checks that the docs list
exactly these, and the levels and profiles as they are here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADDED_OPTIONAL",
    "CLAUSES",
    "CONTRACT",
    "HTTP_CLAUSES",
    "HTTP_PROTOCOL",
    "LEVELS",
    "PROFILES",
    "SECTIONS",
    "STATEFUL",
    "Clause",
    "Profile",
    "by_id",
    "profile",
]

CONTRACT = "2"
"""The version of the contract that these clauses are. Every result names it (the JSON
report's ``contract``, the badge's ``v2``, the terminal table's header): a later version
adds clauses, and a result says which ones it was checked against. Each clause names the
version that added it (:attr:`Clause.since`)."""


@dataclass(frozen=True)
class Clause:
    id: str
    summary: str
    since: str = "1"
    """The contract version that added the clause."""

    @property
    def section(self) -> str:
        return self.id.partition(".")[0]


SECTIONS: dict[str, str] = {
    "sid": "required",
    "get": "required",
    "set": "required",
    "destroy": "required",
    "ttl": "required",
    "touch": "recommended",
    "length": "optional",
    "clear": "optional",
    "all": "optional",
    "replace": "optional",
    "renew": "optional",
    "threads": "required",
    "process": "shared",
    "sticky": "sticky",
    "errors": "outage",
}
"""Each section and what it takes: required of every store, recommended or
optional methods (a store that lacks one is "not offered"), or clauses for
targets that claim to be shared, to work behind the sticky server, or to
have an outage hook."""

LEVELS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("sid", "get", "set", "destroy", "ttl", "threads")),
    ("full", ("touch", "length", "clear", "all", "replace", "renew")),
    ("shared", ("process",)),
    ("sticky", ("sticky",)),
]
"""Conformance levels, each adding its sections to the ones before it."""

ADDED_OPTIONAL = ("replace", "renew")
"""Optional sections that a later version added. A store that does not offer one keeps the
level it had under version 1 (its clauses count as met when "not offered"); a store that
offers it must pass its clauses for the level, as for any section."""

STATEFUL = "model"
"""The stateful model test's row: no clause of its own, but every level of every
profile needs it to hold (it checks JSON values only)."""


@dataclass(frozen=True)
class Profile:
    """A reading of the levels for one kind of store: the same levels and sections, less
    the clauses (``waived``) that promise what that kind of store does not keep.

    A profile never weakens a clause it keeps: a level of a profile needs each of its
    clauses exactly as the clause is written.
    """

    name: str
    promise: str
    waived: tuple[str, ...] = ()

    def requires(self, level: str) -> tuple[str, ...]:
        """The clause IDs that ``level`` adds to the levels below it, in this profile."""
        sections = dict(LEVELS)[level]
        return tuple(c.id for c in CLAUSES if c.section in sections and c.id not in self.waived)


PROFILES: tuple[Profile, ...] = (
    Profile("json", "sessions are kept as JSON, so any JSON reader (a Node app included) shares them"),
    Profile(
        "python-values",
        "sessions are kept as Python values (pickled, say): JSON values round-trip, others may be kept",
        waived=("get.2", "set.2", "set.4"),
    ),
)
"""The profiles, each a name for its levels in the report: ``json`` (JSON interop, the
levels as the clauses define them) and ``python-values`` (a store that keeps what it is
given rather than its JSON: it need not turn tuples into lists (get.2), refuse what JSON
cannot hold (set.2), or measure sessions as encoded JSON (set.4)). Every clause a profile
keeps is checked with JSON values only, so a Python-values store can meet it."""

CLAUSES: list[Clause] = [
    Clause("sid.1", "a sid that is not a non-empty str raises InvalidSessionId"),
    Clause("sid.2", "distinct sids never share a session"),
    Clause("sid.3", "every sid round-trips or raises InvalidSessionId; none escapes the namespace"),
    Clause("get.1", "get of an unknown sid returns None and creates nothing"),
    Clause("get.2", "get returns the session last set, as its JSON round trip"),
    Clause("get.3", "every get returns a new object; no aliasing with set's argument"),
    Clause("set.1", "set replaces the whole session; it never merges"),
    Clause("set.2", "a non-JSON session raises InvalidSessionData and changes nothing"),
    Clause("set.3", "values round-trip exactly"),
    Clause("set.4", "sessions up to max_session_bytes are kept; larger raise, never truncated"),
    Clause("destroy.1", "after destroy, get returns None"),
    Clause("destroy.2", "destroy of an unknown sid is a no-op"),
    Clause("destroy.3", "destroy removes that sid only"),
    Clause("ttl.1", "a session is returned until expires - resolution"),
    Clause("ttl.2", "from expires + resolution, get, length and all leave it out"),
    Clause("ttl.3", "set with an expiry at or before now stores nothing and removes the sid"),
    Clause("ttl.4", "a later set replaces the expiry, longer or shorter"),
    Clause("ttl.5", "a session with no expiry lives for the default TTL"),
    Clause("ttl.6", "a malformed cookie.expires raises InvalidSessionData and changes nothing"),
    Clause("touch.1", "touch sets the expiry and leaves the data as it was"),
    Clause("touch.2", "touch of an unknown, destroyed or expired sid creates nothing"),
    Clause("touch.3", "touch with an expiry at or before now removes the session"),
    Clause("length.1", "length counts live sessions"),
    Clause("clear.1", "after clear, every get returns None and length is 0"),
    Clause("clear.2", "clear on an empty store is a no-op"),
    Clause("clear.3", "clear removes its own namespace only"),
    Clause("all.1", "all returns a new dict of every live sid to its session"),
    Clause(
        "replace.1", "replace of a live session replaces it and returns True; else stores nothing, False", "2"
    ),
    Clause(
        "replace.2", "replace of a session set would refuse raises InvalidSessionData, changes nothing", "2"
    ),
    Clause("replace.3", "replace sets the new expiry; a past expiry removes the live session", "2"),
    Clause(
        "replace.4", "replace beside set, get and destroy from 8 threads (or 64 tasks) is linearizable", "2"
    ),
    Clause("replace.5", "replace beside set, get and destroy from 4 processes is linearizable", "2"),
    Clause("renew.1", "renew of a live session returns its data and renews its expiry as touch does", "2"),
    Clause("renew.2", "renew of an unknown, destroyed or expired sid returns None, creates nothing", "2"),
    Clause("renew.3", "renew with a past expiry removes the session; a malformed one raises", "2"),
    Clause(
        "threads.1",
        "one store from 8 threads (or 64 tasks) on every method: nothing raises or tears, counts fit, "
        "linearizable",
    ),
    Clause("process.1", "a write that returned in one process is seen by later operations in others"),
    Clause("process.2", "concurrent operations from 4+ processes tear no session and are linearizable"),
    Clause("process.3", "a SIGKILLed process loses no returned write and breaks nothing"),
    Clause("process.4", "every process sees the same expiry"),
    Clause("sticky.1", "under ip-hash, every request from one address reaches the same worker"),
    Clause("sticky.2", "under ip-hash, each client's session persists across its requests"),
    Clause("sticky.3", "under round-robin, sessions persist for a shared store"),
    Clause("sticky.4", "a killed worker is replaced in its slot; shared sessions survive"),
    Clause("sticky.5", "64 addresses over 4 workers: no worker gets over twice its share"),
    Clause("errors.1", "during an outage, operations raise StoreUnavailable in time; recovery after"),
]

HTTP_PROTOCOL = "1"
"""The version of the probe protocol (``docs/http.md``) that the HTTP suite speaks."""

HTTP_CLAUSES: list[Clause] = [
    Clause("http.1", "no cookie, a forged, tampered or ended one: a fresh session, never adopted", "2"),
    Clause("http.2", "login with regenerate issues a new cookie; the one from before loads nothing", "2"),
    Clause("http.3", "after logout, the old cookie loads no session", "2"),
    Clause("http.4", "a slow writing request begun before the logout does not undo it", "2"),
    Clause("http.5", "a slow read-only request begun before the logout does not undo it", "2"),
    Clause("http.6", "the server forgets a session once its declared lifetime has passed", "2"),
    Clause("http.7", "the cookie is HttpOnly, with Secure and SameSite as declared", "2"),
    Clause("http.8", "a response that used the session carries Vary: Cookie", "2"),
    Clause("http.9", "an anonymous visit that changes nothing gets no Set-Cookie", "2"),
    Clause("http.10", "an oversized session fails with an error status; the previous one is kept", "2"),
    Clause("http.11", "in a store outage, session routes answer an error, never an empty session", "2"),
    Clause("http.12", "two concurrent writes of different keys: merged, or one lost (information)", "2"),
    Clause("http.13", "ending a group logs out every session in it", "2"),
]
"""The middleware's clauses, checked over HTTP against a running app (``pytest
--storekit-http=URL``). http.11 and http.13 are optional (``not offered`` when the app
declares no outage switch or no groups); http.12 is information, whatever it finds."""

_BY_ID = {clause.id: clause for clause in [*CLAUSES, *HTTP_CLAUSES]}


def by_id(clause_id: str) -> Clause:
    """The clause with that ID; KeyError naming the known IDs otherwise."""
    try:
        return _BY_ID[clause_id]
    except KeyError:
        raise KeyError(f"unknown clause {clause_id!r}; known: {', '.join(_BY_ID)}") from None


def profile(name: str) -> Profile:
    """The profile called ``name``; KeyError naming the profiles otherwise."""
    for candidate in PROFILES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown profile {name!r}; profiles: {', '.join(p.name for p in PROFILES)}")
