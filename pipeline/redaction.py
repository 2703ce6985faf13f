"""Secrets never leave the job: `redact` is the one function that removes credentials from text
that is written or printed (rows of tokens/, failures/ and retryable/, the run record
(`manifest.json`), the dataset card, the QA report, stderr), and `terminal_line` makes a line from
data safe to print.

A URI can carry a credential in two places, and both are replaced by `REDACTED`:
- its userinfo: `s3://KEY:SECRET@bucket/a.wav` → `s3://REDACTED@bucket/a.wav`;
- the query parameters of presigned URLs: S3 (SigV4 `X-Amz-*`, SigV2 `AWSAccessKeyId`,
  `Signature`, `x-amz-security-token`), GCS (`X-Goog-*`, `GoogleAccessId`), Azure SAS (`sig` and,
  in a query that has a `sig`, the fields it signs: `sv`, `se`, `st`, `sp`, `skoid`, ...), and
  generic ones (`token`, `access_token`, `api_key`, `key`, `password`, ...). Their names stay, so
  `?X-Amz-Signature=REDACTED` still says what the URL was.

Text is scanned for every `scheme://...` in it, so the same function serves a bare URI, an error
message that quotes one, a chained fsspec URL (`simplecache::s3://...`) or a whole file's text.
Redacting twice changes nothing. The job keeps reading with the URI as given (the workers get it
in the work unit, in memory); only what is written or printed is redacted.
"""

from __future__ import annotations

import re
import unicodedata

REDACTED = "REDACTED"

# A URL runs to whitespace, a quote, an angle bracket or a backslash; `::` starts the next link of
# a chained fsspec URL.
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.\-]*://(?:(?!::)[^\s'"<>`\\])+""")
_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#]+)=(?P<value>[^&;#]*)")
_SECRET_PREFIXES = ("x-amz-", "x-goog-")
_CONTAINER_AT_ACCOUNT = frozenset({"abfs", "abfss", "az", "wasb", "wasbs"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SECRET_NAMES = frozenset({
    "signature", "awsaccesskeyid", "googleaccessid", "sig", "security-token", "token", "access_token",
    "id_token", "refresh_token", "session_token", "auth", "authorization", "api_key", "apikey", "key",
    "password", "passwd", "secret", "client_secret", "credential", "credentials",
})
# Azure SAS: the fields a `sig` signs (service version, expiry, start, permissions, the signing key's
# object and tenant ids, ...). Redacted only beside a `sig`: elsewhere `st` or `sp` mean other things.
_SAS_FIELDS = frozenset({
    "sv", "ss", "srt", "sp", "se", "st", "spr", "si", "sr", "sdd", "ses", "skoid", "sktid", "skt", "ske", "sks",
    "skv", "saoid", "suoid", "scid", "sduoid", "rscc", "rscd", "rsce", "rscl", "rsct",
})


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by REDACTED (see the module docstring)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: _redact_url(match.group(0)), text)


def has_password(text: str) -> bool:
    """Whether a URL in `text` carries `user:password@` (as `s3://KEY:SECRET@bucket/` does)."""
    return any(":" in userinfo for userinfo in map(_userinfo, (m.group(0) for m in _URL.finditer(text))) if userinfo)


def redact_all(value):
    """`redact` applied to every string in a JSON-like value (dicts, lists, tuples), keys left as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_all(item) for item in value)
    return value


def terminal_line(text: str) -> str:
    """`text` redacted, with every control character but newline and tab (and the bidi overrides)
    written as an escape (`\\x1b`, `\\r`, `\\x9b`, `\\u202e`): data (ids, uris, error messages)
    cannot move the cursor, rewrite earlier lines, retitle the terminal or hide what follows."""
    return "".join(repr(ch)[1:-1] if _is_control(ch) else ch for ch in redact(text))


def _is_control(ch: str) -> bool:
    return ch not in "\n\t" and (unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS)


def _redact_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    userinfo = _userinfo(url)
    if userinfo is not None:
        rest = REDACTED + rest[len(userinfo):]
    query = rest.find("?")
    if query < 0:
        return f"{scheme}://{rest}"
    head, tail = rest[:query], rest[query:]
    names = {match.group("name").lower() for match in _PARAM.finditer(tail)}
    sas = "sig" in names

    def value(match: re.Match) -> str:
        name = match.group("name")
        if _is_secret(name.lower(), sas) and match.group("value"):
            return f"{match.group('lead')}{name}={REDACTED}"
        return match.group(0)

    return f"{scheme}://{head}{_PARAM.sub(value, tail)}"


def _userinfo(url: str) -> str | None:
    """The `user:password` before the `@` of `url`'s authority, or None. A secret may hold a `/`
    (AWS secret keys do), so an `@` after the first `/` still ends the userinfo when the part
    before that `/` is `name:secret`, not `host:port`. Azure's `abfs://container@account...` names
    a container there, not a credential."""
    scheme, rest = url.split("://", 1)
    end = min([len(rest)] + [found for found in (rest.find("?"), rest.find("#")) if found >= 0])
    slash = rest.find("/", 0, end)
    authority = rest[:slash if slash >= 0 else end]
    if "@" in authority:
        userinfo = authority[:authority.rfind("@")]
        return None if scheme.lower() in _CONTAINER_AT_ACCOUNT and ":" not in userinfo else userinfo
    _, colon, after = authority.partition(":")
    at = rest.find("@", slash, end) if slash >= 0 else -1
    return rest[:at] if colon and not after.isdigit() and at >= 0 else None


def _is_secret(name: str, sas: bool) -> bool:
    return name.startswith(_SECRET_PREFIXES) or name in _SECRET_NAMES or (sas and name in _SAS_FIELDS)
