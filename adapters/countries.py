"""Countries of numbers and contacts, for the cross-country rule (CONTRACT §3, PLATFORM §8).

A contact's country comes from its wa_id (E.164 digits) or, when the number is hidden, from
its business-scoped user id's ISO prefix (`BR.1234` → BR). Calling codes are prefix-free,
so +55 (BR) and +62 (ID) are exact prefix tests; the full region (for codes shared by several
countries such as +1) comes from libphonenumber's metadata.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

RESTRICTED = frozenset({"BR", "ID"})
"""Business-initiated messages into or out of these countries must stay in the country."""


@lru_cache(maxsize=65536)
def of_contact(contact_id: str) -> str | None:
    """ISO alpha-2 region of a wa_id (digits) or a BSUID (`CC.…`); None if unknown."""
    if not contact_id:
        return None
    if not contact_id.isdigit():
        prefix = contact_id.split(".", 1)[0]
        return prefix.upper() if len(prefix) == 2 and prefix.isalpha() else None
    try:
        number = phonenumbers.parse("+" + contact_id, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    if region is None or region == "ZZ":
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    return None if region == "ZZ" else region


def crosses_restricted_border(business: str | None, contact: str | None) -> bool:
    """True when the two countries differ and either is Brazil or Indonesia."""
    if business is None or contact is None:
        return bool({business, contact} & RESTRICTED)
    return business != contact and bool({business, contact} & RESTRICTED)
