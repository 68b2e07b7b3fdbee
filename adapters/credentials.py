"""Credentials that are empty or still a placeholder: gateway/config.py calls `check` on
every config it loads, so they stop startup (and a reload) with the key named.

A copied example config (`access_token: <your token>`, `changeme`, `xxxx`) would otherwise
start, then fail every send or, for a webhook secret, verify signatures made with a value
anyone can guess. Every credential a channel section lists (`ChannelSettings.secrets`) is
checked, except:

- one that belongs to an entry with `enabled: false` (the entry that holds it, or any above
  it, is disabled): a disabled account may keep a placeholder until it is set up;
- a per-account token left out of the config altogether (the account then cannot send, as
  before); written but empty, it is refused.

A section's own secrets (app secrets, verify tokens, auth tokens) are always checked: its
webhooks are verified with them whichever accounts are enabled.

What counts as a placeholder (`problem_of`; case-insensitive, the whole value, and for a
`<id>:<secret>` token also the part after the first colon): empty or whitespace; no letter or
digit at all (`...`, `***`, `-`); only x's and separators, at least three x's (`xxx`,
`XXXX-XXXX`); in angle brackets (`<token>`) or braces (`{{token}}`), or an unexpanded
`$VAR`/`${VAR}`; one of the words changeme, change-me, change_me, replaceme, placeholder,
todo, tbd, fixme, none, null, nil, undefined, secret, token, password, passwd; beginning
with `replace` or `change`+`me`, `your` followed by a separator or by
app/access/auth/bot/api/page/verify/secret/token/key (`your-token`, `YOUR_APP_SECRET`), or
`insert`/`enter`/`paste`/`put` and a separator; ending in a separator and `here`
(`token_here`). demo.env's values (`demo-access-token`, `demo-app-secret-change-me`) are
not placeholders: they are refused off loopback by the exposed-secret check instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from adapters.account import Secret

_WORDS: Final = (
    "changeme|change-me|change_me|change me|replaceme|placeholder|todo|tbd|fixme|none|null|nil"
    "|undefined|secret|token|password|passwd"
)
PLACEHOLDER: Final = re.compile(
    "|".join(
        (
            r"[^a-z0-9]*",  # nothing but punctuation (or nothing)
            r"(?=(?:[^x]*x){3})[x\W_]+",  # xxx, xxxx-xxxx
            r"<.*>|\{\{.*\}\}|\$\{?[a-z_][a-z0-9_]*\}?",
            f"(?:{_WORDS})",
            r"replace.*|change[-_ .]?me.*",
            r"your(?:[-_ .]|app|access|auth|bot|api|page|verify|secret|token|key).*",
            r"(?:insert|enter|paste|put)[-_ ].*",
            r".*[-_ .]here",
        )
    ),
    re.IGNORECASE | re.DOTALL,
)
_PART: Final = re.compile(r"([^.\[\]]+)|\[([0-9]+)\]")


def problem_of(value: str) -> str | None:
    """Why `value` is not a usable credential (`is empty`, `is a placeholder`), or None."""
    if not value.strip():
        return "is empty"
    _, colon, after = value.partition(":")
    candidates = (value, after) if colon and after else (value,)
    if any(PLACEHOLDER.fullmatch(text.strip()) for text in candidates):
        return "is a placeholder, not a credential"
    return None


def check(settings: object, secrets: Iterable[Secret], tree: Mapping[str, Any]) -> None:
    """ValueError naming the first credential that is empty or a placeholder where it is
    used; `tree` is the config as written (after substitution), to tell a key left out from
    one written empty; `settings` the decoded config, to find `enabled: false` entries."""
    for secret in secrets:
        problem = problem_of(secret.value)
        if problem is None or not _written(tree, secret.key):
            continue
        owner = _owner(settings, secret.key)
        if owner == "disabled":
            continue
        hint = "; set the real value"
        if owner == "account":
            hint += ", or `enabled: false` on its entry"
        raise ValueError(f"{secret.key}: {problem}{hint} (the value is not shown)")


def _parts(key: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _PART.findall(key)]


def _written(tree: Any, key: str) -> bool:
    """Whether the config as written has `key` (`a.b[0].c`)."""
    node = tree
    for part in _parts(key):
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            continue
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _owner(settings: object, key: str) -> Literal["disabled", "account", "section"]:
    """Whether an entry on the way to `key` says `enabled: false` ("disabled"); otherwise
    whether the nearest entry holding it has such a switch ("account") or not ("section").
    A path that cannot be followed counts as enabled."""
    node: Any = settings
    owner: Literal["account", "section"] = "section"
    for part in _parts(key)[:-1]:
        try:
            node = node[part] if isinstance(part, int) else getattr(node, _attribute(node, part))
        except (AttributeError, IndexError, TypeError):
            return owner
        enabled = getattr(node, "enabled", None)
        if enabled is False:
            return "disabled"
        owner = "account" if isinstance(enabled, bool) else "section"
    return owner


def _attribute(node: object, name: str) -> str:
    """The attribute of a msgspec struct field written `name` in the config (a field may
    be renamed: `accounts_` is written `accounts`)."""
    cls = type(node)
    encoded: tuple[str, ...] = getattr(cls, "__struct_encode_fields__", ())
    fields: tuple[str, ...] = getattr(cls, "__struct_fields__", ())
    return dict(zip(encoded, fields, strict=False)).get(name, name)
