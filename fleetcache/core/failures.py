"""What a failed leader leaves in Redis for its followers, and how it is read back.

When the leader's ``compute`` raises, followers in other processes cannot receive the
exception object; they read a short-lived *failure record* and raise
:class:`~fleetcache.errors.LeaderFailed`.  The record is JSON: ``{"t": "<module>.<type>"}``,
plus ``"m": "<message>"`` only when ``Policy.share_error_message`` opts in.  Exception
messages carry URLs with API keys, prompts and personal data, and the record is readable by
anyone who can read the cache: by default nothing but the type is stored
(ARCHITECTURE §9).  With ``share_error_message=True`` the message is passed through
:func:`redact` first; a callable replaces :func:`redact` with your own redaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

#: Longest message stored (after redaction), in characters.
MAX_MESSAGE = 500
#: Longest exception type name accepted from a record.
MAX_TYPE = 200
REDACTED = "<redacted>"

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # URL query strings and fragments (signed URLs, ?api_key=..., tokens in links)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s?#\"'<>]*)[?#][^\s\"'<>]*"), r"\1?" + REDACTED),
    # user:password@ in URLs
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@:\"'<>]+:[^\s/@\"'<>]*@"),
        r"\1" + REDACTED + "@",
    ),
    # Authorization headers and bearer tokens
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + REDACTED),
    # key=value / key: value for secret-looking keys
    (
        re.compile(
            r"(?i)\b([\w\-]*(?:api[_\-]?key|token|secret|password|passwd|authorization|"
            r"credential|signature)[\w\-]*)(\"?\s*[=:]\s*\"?)[^\s\"',;&]+"
        ),
        r"\1\2" + REDACTED,
    ),
    # provider keys: sk-..., sk-proj-..., sk-ant-..., AKIA..., ghp_..., xox?-...
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}"), REDACTED),
    (
        re.compile(r"\b(?:ghp|gho|ghs|ghu|github_pat|glpat|xox[abpors])[_\-][A-Za-z0-9_\-]{8,}"),
        REDACTED,
    ),
    # long opaque strings (keys, signatures, session ids)
    (re.compile(r"[A-Za-z0-9_\-+/=]{32,}"), REDACTED),
)


def redact(message: str) -> str:
    """``message`` with URL query strings, credentials and key-like strings masked."""
    for pattern, repl in _RULES:
        message = pattern.sub(repl, message)
    return message


def type_name(exc: BaseException) -> str:
    """``module.QualifiedName`` of an exception's type (``builtins.`` for built-ins)."""
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def encode(exc: BaseException, share: bool | Callable[[BaseException], str]) -> bytes:
    """The failure record of ``exc``; the message only when ``share`` says so."""
    record: dict[str, str] = {"t": type_name(exc)}
    if share is True:
        record["m"] = redact(str(exc))[:MAX_MESSAGE]
    elif callable(share):
        try:
            text = share(exc)
        except Exception as err:  # a broken hook must not hide the leader's failure
            text = f"(share_error_message hook raised {type(err).__name__})"
        record["m"] = str(text)[:MAX_MESSAGE]
    return orjson.dumps(record)


def decode(raw: bytes | str) -> tuple[str, str]:
    """``(exception type, message)`` of a record; ``("unknown", "")`` when malformed."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "unknown", ""
    if not isinstance(record, dict):
        return "unknown", ""
    exc_type = record.get("t")
    message = record.get("m", "")
    if not isinstance(exc_type, str) or not exc_type or len(exc_type) > MAX_TYPE:
        exc_type = "unknown"
    if not isinstance(message, str):
        message = ""
    return exc_type, message[:MAX_MESSAGE]
