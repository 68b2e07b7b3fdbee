"""Who a contact is, when the webhook alone does not say: hidden phone numbers (BSUID-only
contacts, CONTRACT §2.1) and contacts that changed their number.

The body itself is read first (`hidden_numbers`): a contact often shows its wa_id next to
its BSUID in the same body. What it does not show costs one extra round trip (`bsuids`,
`renames`), awaited only by the webhooks that need it; the usual webhook needs none.
"""

from __future__ import annotations

from adapters.schema import AnyEvent
from router import keys
from router.client import REDIS_ERRORS, RedisClient
from router.outcome import RouterUnavailable
from router.routing import Known


class Contacts:
    """The lookups of contacts' identities in Redis, before a webhook is published."""

    __slots__ = ("_redis",)

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    @staticmethod
    def hidden_numbers(known: Known) -> Known:
        """Give a contact whose phone number is hidden the wa_id it had before (CONTRACT §2.1)
        when this same body shows it; the others are left for `bsuids`."""
        pending: Known = []
        seen: dict[tuple[str, str], str] = {}  # mappings this same body establishes
        for item, assistant in known:
            event, user_id = item.event, getattr(item.event, "user_id", None)
            if not _bsuid_only(event):
                if user_id and event.contact_id:
                    seen[(event.account_id, user_id)] = event.contact_id
            elif (wa_id := seen.get((event.account_id, user_id or ""))) is not None:
                _set_contact(event, wa_id)
            else:
                pending.append((item, assistant))
        return pending

    async def bsuids(self, pending: Known) -> None:
        """The wa_ids that earlier bodies showed for these BSUID-only contacts."""
        # GETs in a pipeline, not one MGET: the keys of several assistants are in several
        # slots, and a cluster splits a pipeline by node.
        pipe = self._redis.pipeline(transaction=False)
        for item, assistant in pending:
            event = item.event
            pipe.get(keys.bsuid(keys.inbox(assistant), event.account_id, event.contact_id or ""))
        try:
            found = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        for (item, _), wa_id in zip(pending, found, strict=True):
            if wa_id:
                _set_contact(item.event, wa_id.decode())

    async def renames(self, renames: Known) -> dict[int, str]:
        """For a contact that changed its number: the contact id its conversation started
        with (the old number may itself be a renamed one), by `id()` of the event."""
        pipe = self._redis.pipeline(transaction=False)
        for item, assistant in renames:
            pipe.hget(
                keys.conversation(keys.inbox(assistant), item.event.conversation_id or ""), "alias"
            )
        try:
            aliases = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        return {
            id(item.event): (alias.decode() if alias else item.event.contact_id or "")
            for (item, _), alias in zip(renames, aliases, strict=True)
        }


def _bsuid_only(event: AnyEvent) -> bool:
    user_id = getattr(event, "user_id", None)
    return bool(user_id) and event.contact_id == user_id


def _set_contact(event: AnyEvent, contact_id: str) -> None:
    event.contact_id = contact_id
    event.conversation_id = f"{event.channel}:{event.account_id}:{contact_id}"
