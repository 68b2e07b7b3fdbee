"""Several Meta apps in one channel's config section: the `apps` list that `whatsapp:`,
`messenger:` and `instagram:` share, which app each number, Page or account belongs to, and
Meta's `appsecret_proof`.

    whatsapp:
      app_secret: ${APP_SECRET}          # the default app (optional once `apps` is listed)
      appsecret_proof: false             # the default app's Graph calls carry the proof
      apps:
        - {name: shop, app_secret: "${SHOP_SECRET}", app_id: "1234", appsecret_proof: true}
      numbers:
        - {phone_number_id: "1065", ..., app: shop}   # no `app`: the default app

An account without `app` belongs to the default app (`app_secret`, named `default`), or to
the only app listed when there is no `app_secret`. Config errors name the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Final

import msgspec

from adapters.account import SECTION_STRUCT

DEFAULT_APP: Final = "default"
"""The name of the app a section's own `app_secret` (and `app_id`, `appsecret_proof`) is."""
_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DIGITS: Final = re.compile(r"[0-9]{1,32}")


class MetaApp(msgspec.Struct, **SECTION_STRUCT):
    """One Meta app: the secret that signs its webhooks and keys its `appsecret_proof`."""

    name: str
    app_secret: str
    app_id: str | None = None
    """Its numeric id: `gateway webhooks show` looks for this app on its accounts' edges."""
    appsecret_proof: bool = False
    """Every Graph call with a token of its accounts carries `appsecret_proof` (needed when
    the app has "Require app secret" on)."""


def section_apps(
    app_secret: str, app_id: str | None, appsecret_proof: bool, listed: Sequence[MetaApp]
) -> tuple[MetaApp, ...]:
    """A section's apps: the default one (its own `app_secret`, if set) first, then `apps`."""
    default = MetaApp(
        name=DEFAULT_APP, app_secret=app_secret, app_id=app_id, appsecret_proof=appsecret_proof
    )
    return (default, *listed) if app_secret else tuple(listed)


def check_apps(section: str, app_secret: str, listed: Sequence[MetaApp]) -> None:
    """ValueError naming the key: no app at all, a bad or repeated name, a missing or shared
    secret (the signature would not say which app signed), a non-numeric app id."""
    if not app_secret and not listed:
        raise ValueError(
            f"{section}.app_secret: required, or list the Meta apps under {section}.apps "
            "(signatures are never switched off)"
        )
    names = {DEFAULT_APP: f"{section}.app_secret"} if app_secret else {}
    secrets = {app_secret: f"{section}.app_secret"} if app_secret else {}
    for i, app in enumerate(listed):
        where = f"{section}.apps[{i}]"
        if not _NAME.fullmatch(app.name):
            raise ValueError(f"{where}.name: use 1-64 characters of A-Z a-z 0-9 _ . -")
        if app.name in names:
            raise ValueError(f"{where}.name: {app.name!r} is already {names[app.name]}")
        if not app.app_secret:
            raise ValueError(f"{where}.app_secret: required")
        if app.app_secret in secrets:
            raise ValueError(
                f"{where}.app_secret: the same secret as {secrets[app.app_secret]} (one app, "
                "listed once: a signature must say which app signed)"
            )
        if app.app_id is not None and not _DIGITS.fullmatch(app.app_id):
            raise ValueError(f"{where}.app_id: must be the numeric id of the app")
        names[app.name] = f"{where}.name"
        secrets[app.app_secret] = f"{where}.app_secret"


def app_named(apps: Sequence[MetaApp], name: str | None, where: str) -> MetaApp:
    """The app an account names (`where`: its `app` key), or its implicit one: the default
    app, else the only one. ValueError naming `where` when there is none."""
    if name is not None:
        found = next((app for app in apps if app.name == name), None)
        if found is None:
            known = ", ".join(app.name for app in apps)
            raise ValueError(f"{where}: no app named {name!r} (the apps: {known})")
        return found
    if apps and (apps[0].name == DEFAULT_APP or len(apps) == 1):
        return apps[0]
    raise ValueError(f"{where}: required: there are several apps and no app_secret (default app)")


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """Meta's `appsecret_proof`: the hex HMAC-SHA256 of the access token keyed by the app
    secret (Graph API "Securing requests")."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def token_proof(app: MetaApp, access_token: str) -> str | None:
    """What an account's calls carry as `appsecret_proof`: None unless its app asks for it."""
    if not app.appsecret_proof or not access_token:
        return None
    return appsecret_proof(access_token, app.app_secret)


def with_proof(url: str, proof: str | None) -> str:
    """`url` with `appsecret_proof` in its query when the account's app asks for it (hex: no
    escaping needed)."""
    if proof is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}appsecret_proof={proof}"
