"""Credentials never leave the process: a URL's user and password (``http://alice:secret@host``,
``s3://KEY:SECRET@bucket``) and the secret parts of its query (a presigned URL's signature, a
``token=``) are replaced by ``***`` wherever a URL is logged, recorded or shown.

The fetch itself still uses the URL as given; everything written (records, releases, logs, error
lines) goes through ``redact``. Lineage stays exact without the secret: it keeps the redacted URL
and the hash of the bytes that were read.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://userinfo@ : userinfo is everything up to the first @ before the host's path.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s'\"<>`]+)@")
# ?X-Amz-Signature=..., &sig=..., ?token=..., &access_key=...: the value is the secret.
_QUERY = re.compile(r"(?P<key>[?&][^=&#\s'\"<>`]*(?:sig|signature|token|secret|password|passwd|pwd|key|"
                    r"credential|auth)[^=&#\s'\"<>`]*=)(?P<value>[^&#\s'\"<>`]+?)(?=[&#\s'\"<>`]|:\s|:?$)",
                    re.IGNORECASE)  # (an error line's "URL: reason" keeps its colon)


def redact(text: str) -> str:
    """``text`` with every URL's credentials replaced by ``***`` (anything else unchanged)."""
    if "://" not in text and "=" not in text:  # the common case: nothing to look at
        return text
    text = _USERINFO.sub(lambda m: m["scheme"] + MASK + "@", text)
    return _QUERY.sub(lambda m: m["key"] + (m["value"] if m["value"] == MASK else MASK), text)


def redact_any(value: Any) -> Any:
    """``redact`` applied to every string in a JSON-like tree (keys included); other values as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_any(k): redact_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_any(v) for v in value]
    return value


def is_redacted(url: str) -> bool:
    """Whether ``url`` had its credentials taken out (a remembered or recorded URL cannot fetch)."""
    return f"://{MASK}@" in url or f"={MASK}" in url
