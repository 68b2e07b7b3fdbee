"""Rich outbound content (issue #17): the list menu and the contact cards a command carries,
and the words a channel refuses a rich type with.

Four command types beyond CONTRACT §2.2 (extensions, `adapters.schema.CommandType`):

    list              `text` (the body) and `menu` (a `ListMenu`): a button that opens rows
                      grouped in sections; a tap comes back as an `interactive` event with
                      `reply.id` = the row's id (WhatsApp's interactive list message)
    location_request  `text`: the body above a "Send location" button; the answer comes back
                      as a `location` event
    contacts          `contacts`: one or more `ContactCard`s, Graph's contact object field for
                      field (name, phones, emails, urls, addresses, org, birthday)
    sticker           `media` (`url` or `id`) of a WebP sticker, no caption

and one shape of an existing type: `interactive` whose buttons are all link buttons (`url`
instead of `id`) is a call-to-action message (WhatsApp's CTA URL button, Messenger's and
Instagram's button template with `web_url` buttons; Telegram's link buttons as before).

WhatsApp (Cloud API) and Telegram send all four (Telegram: a list as a callback button a
row, a contact one card a message, a location button in private chats only;
adapters/telegram/_rich.py). Messenger, Instagram and WhatsApp through Twilio refuse them,
saying what to send instead (through Twilio a sticker and a contact card go as plain media).

The structs decode leniently (every field has a default) so that a command missing a part
reaches its channel's builder, which refuses it with a detail naming the part, instead of
failing to decode into a delivery that cannot say why. A channel that cannot send a type
refuses it (`rejected/invalid_command`) with `refusal`'s words or better ones of its own;
nothing is ever dropped silently.
"""

from __future__ import annotations

from typing import Final

import msgspec

RICH_TYPES: Final = frozenset({"list", "location_request", "contacts", "sticker"})
"""The command types added for issue #17."""


class ListRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One choice of a list: `id` comes back as the tapped reply's `reply.id`."""

    id: str = ""
    title: str = ""
    description: str | None = None


class ListSection(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    title: str | None = None
    rows: list[ListRow] = msgspec.field(default_factory=list)


class ListMenu(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A `list` command's menu: `button` opens it; `header` and `footer` are optional text."""

    button: str = ""
    sections: list[ListSection] = msgspec.field(default_factory=list)
    header: str | None = None
    footer: str | None = None


class ContactName(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    formatted_name: str = ""
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    prefix: str | None = None
    suffix: str | None = None


class ContactPhone(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    phone: str = ""
    type: str | None = None
    """Graph's label: `CELL`, `MAIN`, `IPHONE`, `HOME`, `WORK`."""
    wa_id: str | None = None
    """The number's WhatsApp id: the card then offers "Message" instead of "Invite"."""


class ContactEmail(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    email: str = ""
    type: str | None = None


class ContactUrl(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    url: str = ""
    type: str | None = None


class ContactAddress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: str | None = None
    type: str | None = None


class ContactOrg(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    company: str | None = None
    department: str | None = None
    title: str | None = None


class ContactCard(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One contact of a `contacts` command, shaped as Graph's contact object, so that
    `msgspec.to_builtins(card)` is the object WhatsApp takes (absent parts left out)."""

    name: ContactName | None = None
    phones: list[ContactPhone] = msgspec.field(default_factory=list)
    emails: list[ContactEmail] = msgspec.field(default_factory=list)
    urls: list[ContactUrl] = msgspec.field(default_factory=list)
    addresses: list[ContactAddress] = msgspec.field(default_factory=list)
    org: ContactOrg | None = None
    birthday: str | None = None
    """`YYYY-MM-DD`."""


_WHAT: Final = {
    "list": "has no list message; send `interactive` with reply buttons instead",
    "location_request": "cannot ask for a location with a button; ask for it in a `text`",
    "contacts": "cannot send a contact card; send the details as a `text`",
    "sticker": "sends no stickers; send the picture as an `image`",
}


_BUT: Final = {
    # Instagram sends one sticker of its own (`attachment {type: like_heart}`), no other.
    ("sticker", "Instagram"): (
        "sends no stickers but its own heart (like_heart); send the picture as an `image`"
    ),
    # Twilio's "Guidance on WhatsApp Media Messages": `image/webp` is "only used for WhatsApp
    # stickers", and a vCard (.vcf) MediaUrl is a contact; both go as plain media there.
    ("sticker", "WhatsApp through Twilio"): (
        "sends no stickers as a type of their own; send an `image` whose media.url is the "
        "sticker's .webp (512x512), which Twilio delivers as a sticker"
    ),
    ("contacts", "WhatsApp through Twilio"): (
        "cannot send a contact card from its fields; publish the card as a .vcf file and send "
        "its URL as a `document`, which Twilio delivers as a contact"
    ),
}


def refusal(kind: str, platform: str) -> str | None:
    """Why `platform` (a display name: "Messenger", "Instagram") cannot send the rich type
    `kind`, or None when `kind` is not one of `RICH_TYPES`. Only for platforms that really
    lack the type (Telegram and WhatsApp's Cloud API have all four)."""
    what = _BUT.get((kind, platform)) or _WHAT.get(kind)
    return f"{kind}: {platform} {what}" if what else None
