"""storekit: the session-store contract, a conformance suite for it, and reference stores."""

from storekit.codec import expires_in
from storekit.contract import (
    AsyncStore,
    Session,
    Store,
    SupportsAll,
    SupportsAsyncAll,
    SupportsAsyncClear,
    SupportsAsyncLength,
    SupportsAsyncRenew,
    SupportsAsyncReplace,
    SupportsAsyncTouch,
    SupportsClear,
    SupportsLength,
    SupportsRenew,
    SupportsReplace,
    SupportsTouch,
)
from storekit.errors import InvalidSessionData, InvalidSessionId, StoreError, StoreUnavailable
from storekit.target import Target

__version__ = "0.1.0"

__all__ = [
    "AsyncStore",
    "InvalidSessionData",
    "InvalidSessionId",
    "Session",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SupportsAll",
    "SupportsAsyncAll",
    "SupportsAsyncClear",
    "SupportsAsyncLength",
    "SupportsAsyncRenew",
    "SupportsAsyncReplace",
    "SupportsAsyncTouch",
    "SupportsClear",
    "SupportsLength",
    "SupportsRenew",
    "SupportsReplace",
    "SupportsTouch",
    "Target",
    "__version__",
    "expires_in",
]
