"""``MODULE:ATTR`` names, resolved one way everywhere: ``--storekit``, the
Django setting, ``storekit serve`` and ``storekit check`` all call :func:`resolve`.

The policy for ``sys.path`` is one too: the name is imported as Python would
import it; only when its top-level module is not found there is the
directory the user ran the command from (``search_dir``, by default the
current directory) tried, appended after everything installed, so that a
file beside the user never shadows an installed package.
"""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

__all__ = ["ResolveError", "resolve"]


class ResolveError(ValueError):
    """A ``MODULE:ATTR`` name that does not name an object; the message says why and what to do."""


def resolve(spec: object, *, example: str, search_dir: Path | str | None = None) -> object:
    """The object that ``spec`` (``"module:attribute"``) names, or ResolveError.

    ``example`` is a correct name for the caller's purpose, shown when ``spec``
    is malformed. The message does not repeat ``spec``'s option or setting
    name: the caller puts that in front.
    """
    if not isinstance(spec, str):
        raise ResolveError(f"expects 'module:attribute' text, got {type(spec).__name__} {spec!r}")
    module, sep, attr = spec.partition(":")
    if not sep or not module.strip() or not attr.strip():
        hint = (
            f"; did you mean {module.rpartition('.')[0]}:{module.rpartition('.')[2]}?" if "." in spec else ""
        )
        raise ResolveError(f"expects 'module:attribute', got {spec!r} (for example {example}){hint}")
    try:
        return _import(spec, module, search_dir)
    except ModuleNotFoundError as exc:
        where = Path(search_dir or Path.cwd())
        raise ResolveError(
            f"cannot import module {module!r} ({exc}); is the package installed, or is the "
            f"command run from the directory that holds it (looked in {str(where)!r} too)?"
        ) from None
    except AttributeError as exc:
        raise ResolveError(f"module {module!r} has no attribute {attr!r} ({exc})") from None
    except Exception as exc:
        raise ResolveError(f"importing {module!r} raised {type(exc).__name__}: {exc}") from None


def _import(spec: str, module: str, search_dir: Path | str | None) -> object:
    try:
        return pkgutil.resolve_name(spec)
    except ModuleNotFoundError as exc:
        top = module.partition(".")[0]
        where = str(search_dir or Path.cwd())
        if exc.name != top or where in sys.path:
            raise
        sys.path.append(where)
        return pkgutil.resolve_name(spec)
