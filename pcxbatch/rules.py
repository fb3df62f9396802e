"""The rules every stage must agree on, each defined once: where requests may go, which words
name an action or a status, what a user ID may be, and the defaults that go with them.

In: texts as a person or a file gives them (a base URL, an action or status cell, a user ID).
Out: the normalised value, or the reason it is refused, as words for a person. Standard library
and the package's own ``model`` only, so that ``config`` (job files), ``validate`` (rows) and
``client`` (requests) can all import it without importing each other: when two of them held a
rule each, the copies drifted (``config`` accepted ``http://127.0.0.2`` as loopback, ``client``
knew four loopback names and raised on it).

- Base URLs: :func:`check_base_url` (https; plain http only to :func:`is_loopback` hosts or when
  asked for by name), :data:`DEFAULT_BASE_URL`.
- Words: :func:`read_action` and :func:`read_status` look a spelling up in :data:`ACTION_WORDS`
  and :data:`STATUS_WORDS` after :func:`word_key` (case, spaces, ``_ - .`` ignored).
- User IDs: :func:`check_user_id` (the path-safety rule, then the job's pattern),
  :func:`compile_id_pattern`, :data:`DEFAULT_ID_PATTERN`.
- :data:`DEFAULT_PAGE_SIZE` for ``GET /users/list``.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit, urlunsplit

from pcxbatch.model import DEACTIVATED_STATUS, SETTABLE_STATUSES, Action

__all__ = [
    "ACTION_WORDS",
    "DEFAULT_BASE_URL",
    "DEFAULT_ID_PATTERN",
    "DEFAULT_PAGE_SIZE",
    "HIDDEN_ROW_CHOICES",
    "STATUS_WORDS",
    "check_base_url",
    "check_user_id",
    "compile_id_pattern",
    "is_loopback",
    "read_action",
    "read_status",
    "same_api",
    "word_key",
]

# --- where requests go ------------------------------------------------------------------------

#: The API's address unless a job, a flag or ``PCX_BASE_URL`` says otherwise
#: (pcxbatch/CONTRACT.md).
DEFAULT_BASE_URL = "https://prod-api.pcxpay.com/v1"

#: How many users one ``GET /users/list`` page asks for. PCX documents no maximum.
DEFAULT_PAGE_SIZE = 500

# --- what a file's rows are ---------------------------------------------------------------------

#: What may be done with a workbook's hidden (or filtered-out) rows (``hidden_rows``): refuse
#: the file (the default: a reviewer may have hidden rows to say "not these"), skip those rows,
#: or include them like any other.
HIDDEN_ROW_CHOICES: tuple[str, ...] = ("refuse", "skip", "include")

# A host name in ASCII: labels of letters, digits, "_" and inner hyphens (an international name
# is given in its punycode form, so that what is checked is what is dialled).
_HOST_NAME = re.compile(r"^(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*\.?$", re.ASCII)
_INSECURE_HINT = (
    "plain http would send the credential unencrypted; use https (or, if you really mean it,"
    " allow_insecure_http: true / --allow-insecure-http)"
)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: all of 127.0.0.0/8 and ``::1``, with or
    without the brackets a URL puts around an IPv6 address."""
    host = host.strip()
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """The API base URL, normalised (scheme and host in lower case, no trailing ``/``).

    ``https://`` always; plain ``http://`` only to a loopback host (the local sandbox) or when
    ``allow_insecure_http`` says the person asked for it by name. Never a user or password, a
    query or a fragment: the first would put a secret in every log line that shows the URL,
    the others would be silently dropped or mangled when paths are appended. Raises
    ``ValueError`` with a message for a person (without a key name: callers add their own).
    """
    text = url.strip()
    if not text.isprintable() or any(c.isspace() for c in text):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" around an IPv6 address
        raise ValueError(f"not a URL: {text!r}") from None
    try:
        port = parts.port  # reading it checks it: a non-number or out of range raises here
    except ValueError:
        raise ValueError("the port must be a number from 0 to 65535") from None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("https", "http") or not host:
        raise ValueError(f"must be an https URL, e.g. {DEFAULT_BASE_URL}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold a user name or password (credentials go elsewhere)")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError("must not hold a query (?...) or a fragment (#...)")
    if not _valid_host(host):
        raise ValueError(f"{host!r} is not a host name or IP address (use punycode for IDNs)")
    if scheme == "http" and not allow_insecure_http and not is_loopback(host):
        raise ValueError(_INSECURE_HINT)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host.isascii() and _HOST_NAME.match(host) is not None


# --- action and status words ------------------------------------------------------------------

_SEPARATORS = str.maketrans("", "", " _-.\t")


def word_key(text: str) -> str:
    """How spellings are compared: case, spaces, ``_``, ``-`` and ``.`` make no difference
    (``Set Status``, ``set-status`` and ``SET_STATUS`` are one word)."""
    return text.casefold().translate(_SEPARATORS)


#: Every spelling of an action a job, a flag or an ``action`` cell may use, by :func:`word_key`.
ACTION_WORDS: Mapping[str, Action] = MappingProxyType(
    {
        word_key(word): action
        for word, action in (
            ("deactivate", Action.DEACTIVATE),
            ("deactivation", Action.DEACTIVATE),
            ("set_status", Action.SET_STATUS),
            ("status_change", Action.SET_STATUS),
            ("change_status", Action.SET_STATUS),
            ("activate", Action.SET_STATUS),  # the endpoint's name
        )
    }
)

_DEACTIVATION_WORDS = ("inactive", "deactivated", "deactivate")
#: Every spelling of a target status, by :func:`word_key`: the statuses ``/activate`` can set,
#: and the words that mean a deactivation (they map to ``DEACTIVATED_STATUS``).
STATUS_WORDS: Mapping[str, str] = MappingProxyType(
    {
        **{word_key(status): status for status in SETTABLE_STATUSES},
        **{word_key(word): DEACTIVATED_STATUS for word in _DEACTIVATION_WORDS},
    }
)


def read_action(text: str) -> Action | None:
    """The action ``text`` names (see :data:`ACTION_WORDS`), or ``None``."""
    return ACTION_WORDS.get(word_key(text))


def read_status(text: str) -> str | None:
    """The status ``text`` names: one of ``SETTABLE_STATUSES``, or ``DEACTIVATED_STATUS`` for
    the words that mean a deactivation (``inactive``, ``deactivated``); else ``None``."""
    return STATUS_WORDS.get(word_key(text))


# --- user IDs ---------------------------------------------------------------------------------

#: What a PCX user ID looks like unless the job says otherwise (matched against the whole ID).
DEFAULT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"

# A user ID becomes one URL path segment. Whatever a job's pattern allows, these could change
# which endpoint a request reaches, and are refused:
# - separators and escapes that survive our percent-encoding in a gateway that decodes it
#   (``/``, ``%``), whitespace, control and invisible characters, and dot segments (``.`` and
#   ``..`` are removed or resolved by URL normalisation: ``users/../deactivate`` is
#   ``/deactivate``; ``..`` is refused anywhere in the ID, as the contract asks);
# - characters that our percent-encoding makes harmless but a server or proxy in the way may
#   misread: ``\`` (a separator to some), ``?`` and ``#`` (a query, a fragment), and
#   compatibility forms that NFKC turns into any of the above (fullwidth U+FF0E, U+FF0F).
# A message names the first kind before a pattern mismatch and the second after it, so an
# ordinary typo (``a#b``) is told as "does not match the user ID pattern".
# _UNSAFE_ASCII is the fast path for the usual ASCII ID: it matches either kind.
_UNSAFE_ASCII = re.compile(r"[\s\x00-\x1f\x7f/\\%?#]|\.\.|\A\.\Z")
_MISREAD = {"\\": "a backslash", "?": "'?'", "#": "'#'"}
_INVISIBLE = frozenset({"Cf", "Zl", "Zp", "Co", "Cs", "Cn"})


def compile_id_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a user-ID pattern (matched against the whole ID); ``ValueError`` if it is bad."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"the user ID pattern {pattern!r} is not a valid regular expression: {exc}"
        ) from exc


def check_user_id(user_id: str, pattern: re.Pattern[str]) -> str | None:
    """``None`` when ``user_id`` is safe as one URL path segment and matches ``pattern``;
    otherwise why not, as words that follow the ID in a sentence ("contains '/'").

    The path-safety rule is applied whatever the pattern says, so even a permissive pattern
    cannot let an ID change which endpoint a request reaches (see ``_UNSAFE_ASCII``).
    """
    if not user_id:
        return "is empty"
    if user_id.isascii() and not _UNSAFE_ASCII.search(user_id):
        if pattern.fullmatch(user_id):
            return None
        return f"does not match the user ID pattern {pattern.pattern}"
    problem = _breaks_path(user_id)
    if problem is None and not pattern.fullmatch(user_id):
        problem = f"does not match the user ID pattern {pattern.pattern}"
    return problem or _misread_in_path(user_id)


def _breaks_path(user_id: str) -> str | None:
    """The first kind of ``_UNSAFE_ASCII``'s comment, character by character."""
    for char in user_id:
        if char in "/%":
            return f"contains {char!r}"
        if char.isspace():
            return f"contains whitespace ({_codepoint(char)})"
        category = unicodedata.category(char)
        if category == "Cc":
            return f"contains a control character ({_codepoint(char)})"
        if category in _INVISIBLE:
            return f"contains an invisible or unassigned character ({_codepoint(char)})"
    if ".." in user_id:
        return "contains '..'"
    if user_id == ".":
        return "is '.', which a URL path reads as 'this folder'"
    return None


def _misread_in_path(user_id: str) -> str | None:
    """The second kind of ``_UNSAFE_ASCII``'s comment."""
    for char, name in _MISREAD.items():
        if char in user_id:
            return f"contains {name}"
    folded = unicodedata.normalize("NFKC", user_id)
    if folded != user_id and (problem := _breaks_path(folded) or _misread_in_path(folded)):
        return f"{problem} once its characters are normalised (NFKC)"
    return None


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


#: The host names PCX's docs give for the same API (pcxbatch/CONTRACT.md, "Base URL"): a
#: base URL may move between them (for a resume, an apply) without changing where changes go.
PCX_API_HOSTS = frozenset({"prod-api.pcxpay.com", "api.pcxpay.com"})


def same_api(a: str, b: str) -> bool:
    """True when base URLs ``a`` and ``b`` (as :func:`check_base_url` gives them) reach the same
    API: the same URL, or PCX's two documented host names with the same scheme, port and path.
    """
    if a.rstrip("/") == b.rstrip("/"):
        return True
    one, two = urlsplit(a), urlsplit(b)
    return (
        one.scheme == two.scheme == "https"
        and (one.hostname or "") in PCX_API_HOSTS
        and (two.hostname or "") in PCX_API_HOSTS
        and one.port == two.port
        and one.path.rstrip("/") == two.path.rstrip("/")
    )
