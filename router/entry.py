"""One outbox entry, decoded once into the typed `Command`, and what the consumer does with it.

`decode` applies CONTRACT §2.2 to the entry's `command` field. A valid command costs one typed
decode; only an entry that fails it is decoded again, untyped, to say why, with the same
outcomes as ever:

    no command field, not JSON, nested too deep, not an object   gw:deadletter invalid_command
    no or malformed conversation_id, or an unknown account       gw:deadletter unknown_conversation
    no command_id                                                 gw:deadletter invalid_command
    routable, but not a valid command (unknown type, ...)         rejected/invalid_command delivery

An entry of an assistant's own outbox (`gw:outbox:<assistant>`) whose conversation belongs
to another assistant's account is never sent: it is answered `rejected/invalid_command` with
a `detail`, and its record and delivery live in the writer's slot (its inbox), so the owner's
inbox, command records and conversation are never touched by it.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from adapters.schema import COMMAND_DECODER, COMMAND_TYPES, Command
from router import keys
from router.accounts import Directory
from router.target import Target, route


class Usable(NamedTuple):
    """A routable entry: its target and command (None: not a valid command)."""

    target: Target
    command_id: str
    ctype: str
    """The command type, or `invalid` (a closed set, for metrics)."""
    command: Command | None
    """None: routable, but not a valid command (`rejected/invalid_command`)."""
    refusal: str | None = None
    """Why it is refused unsent (`rejected/invalid_command` with this detail): a command of an
    assistant's own outbox for another assistant's conversation."""


class Unusable(NamedTuple):
    """An entry that goes to gw:deadletter instead of its handler."""

    reason: str
    detail: str


class Job(NamedTuple):
    """One routable outbox entry as its handler gets it."""

    entry_id: str
    """The entry's reference: its stream id in gw:outbox, `<stream>/<id>` in an assistant's
    outbox (ids are only unique within one stream)."""
    raw: bytes
    usable: Usable
    give_up: bool
    """Delivered more than `max_deliveries` times: end it unsent."""
    wait_until: float
    """Monotonic time after which it no longer waits for a rate-limit slot."""


def decode(raw: bytes | None, directory: Directory, writer: str | None = None) -> Usable | Unusable:
    """The entry routed with its typed Command (one decode when it is valid), or why it is
    dead-lettered. `writer`: the assistant whose own outbox the entry came from (None: the
    shared gw:outbox)."""
    decoded = _decode(raw, directory)
    if writer is None or not isinstance(decoded, Usable):
        return decoded
    target = decoded.target
    if target.account.assistant == writer:
        return decoded
    # Answered in the writer's slot: nothing of the owner's (its command records, where a
    # squatted command_id would shadow the owner's own command, or its inbox) is touched.
    mine = Target(target.account, target.contact_id, target.conversation_id, keys.inbox(writer))
    why = (
        f"the conversation belongs to another assistant's account: commands in "
        f"{keys.outbox(writer)} may address only {writer}'s conversations"
    )
    return decoded._replace(target=mine, command=None, refusal=why)


def _decode(raw: bytes | None, directory: Directory) -> Usable | Unusable:
    if raw is None:
        return Unusable("invalid_command", "entry has no command field")
    try:
        command = COMMAND_DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return _untyped(raw, directory)
    target = route(directory, command.conversation_id)
    if target is None:
        return Unusable("unknown_conversation", "conversation_id not routable")
    if not command.command_id:
        return Unusable("invalid_command", "command_id missing")
    return Usable(target, command.command_id, command.type, command)


def _untyped(raw: bytes, directory: Directory) -> Usable | Unusable:
    """The rules of CONTRACT §2.2 for an entry that is not a valid command."""
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        # RecursionError: nested deeper than msgspec decodes.
        return Unusable("invalid_command", f"not JSON ({type(exc).__name__}: {exc})")
    if not isinstance(obj, dict):
        return Unusable("invalid_command", "entry is not a JSON object")
    target = route(directory, obj.get("conversation_id"))
    if target is None:
        return Unusable("unknown_conversation", "conversation_id not routable")
    command_id = obj.get("command_id")
    if not isinstance(command_id, str) or not command_id:
        return Unusable("invalid_command", "command_id missing")
    kind = obj.get("type")
    return Usable(target, command_id, kind if kind in COMMAND_TYPES else "invalid", None)
