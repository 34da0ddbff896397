"""The storekit conformance suite: one module per contract section.

Run it with ``pytest --storekit=MODULE:ATTR`` or ``storekit check MODULE:ATTR``.
"""
