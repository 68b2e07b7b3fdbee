"""Inbound publishing: parsed events → assistant streams, exactly once, one round trip.

For each webhook the router
1. fans an `account_update` out to every configured number of its WABA, and routes each
   event to its assistant (router/routing.py); events of unknown accounts, like items the
   adapter could not use, are listed in one dead letter per webhook, which carries the whole
   body once, so an operator can replay it after fixing the config (router/deadletters.py),
2. resolves BSUID-only contacts to the wa_id seen with that BSUID before, and renamed
   contacts to their conversation's original id (router/contacts.py: one extra round trip,
   only for webhooks that carry such contacts),
3. assigns `event_id`s, encodes every event once, and builds one publish.lua call per hash
   tag (target stream; router/publish_call.py): an event's dedup mark, stream entry, 24-hour
   window and BSUID mapping are written together, atomically, in its stream's slot, so the
   same calls work on one Redis and on a Redis Cluster. A webhook for one assistant (the
   usual case) is one call,
4. runs the calls side by side (router/runner.py), then writes its dead letters, if any, in
   one more call to `gw:deadletter`'s slot.

`start` begins all of this at once and gives back one `Publishing` (router/runner.py): a
future to wait on, then the `Tally` of what was published. The usual webhook (nothing to look
up, one call) is sent on the lean client's open connection before `start` returns, and its
future is that call's reply: no task or coroutine is made for it. Any other runs as a task.
`publish` awaits the same.

If Redis fails, `RouterUnavailable` is raised and the gateway answers 503 so the platform
retries: what was published is marked and is not published again; dead letters are written
only once the events are in, so a retry does not write them twice.
"""

from __future__ import annotations

from adapters import CHANNELS
from adapters.schema import Parsed
from router import scripts
from router.accounts import Directory
from router.client import RedisClient, scripts_of
from router.contacts import Contacts
from router.deadletters import letter
from router.outcome import RouterUnavailable, Takeovers, Tally
from router.publish_call import CallBuilder
from router.routing import Known, Routing
from router.runner import Publishing, Runner
from router.scriptpipe import PipeScript, ScriptHost
from router.settings import PolicySettings, RouterSettings

__all__ = ["InboundRouter", "Publishing", "RouterUnavailable", "Tally"]

_SCRIPT = scripts.source("publish")


class InboundRouter:
    """Publishes webhooks' events: routing, lookups, calls and their running, in one place."""

    def __init__(
        self,
        redis: RedisClient,
        directory: Directory,
        settings: RouterSettings,
        policy: PolicySettings,
        scripts: ScriptHost | None = None,
        *,
        excerpts: bool = False,
    ) -> None:
        """`scripts` runs publish.lua (default: `redis` itself); everything else uses `redis`.
        `settings` and `policy` are config.yaml's `router` and `policy` sections. `excerpts`:
        keep the latest message's text excerpt on each conversation, for escalation notices,
        which are told of each echo that pauses the assistant through `takeovers`."""
        self._routing = Routing(directory)
        self._contacts = Contacts(redis)
        self._calls = CallBuilder(directory, settings, policy, excerpts=excerpts)
        self.takeovers: Takeovers | None = None
        """Told of the echoes each webhook published (they paused the assistant), once its
        calls succeeded; None: nobody listens."""
        script = (scripts or scripts_of(redis)).register_script(_SCRIPT)
        self._runner = Runner(script)
        self._lean = script if isinstance(script, PipeScript) else None
        """publish.lua on the lean client, which sends a call at once: see `start`."""

    def accounts_changed(self) -> None:
        """The directory changed (a reload): forget what was worked out per account."""
        self._calls.accounts_changed()

    async def publish(
        self, source: str, parsed: Parsed, body: bytes, received_at: int, key: str | None = None
    ) -> Tally:
        """Publish every event of one webhook; raises `RouterUnavailable` if Redis fails.

        A large body (a 3 MB history sync, published from a child process: see
        router/offload.py) goes in slices: each slice has its own script calls, so Redis runs
        live webhooks' scripts in between. Marks make this safe: if a later slice fails, the
        platform's retry publishes only what is missing.
        """
        return await self.start(source, parsed, body, received_at, key).wait()

    def start(
        self, source: str, parsed: Parsed, body: bytes, received_at: int, key: str | None = None
    ) -> Publishing:
        """`publish`, begun at once (`source`: the adapter whose webhook it is, whose
        `channel` the events are routed by; `key`: the account the webhook's path named, kept
        in its dead letter). A webhook that needs nothing looked up first and
        fits one script call (the usual one) is sent now, on the lean client's open connection: no
        task or coroutine per webhook. Any other runs as a task. (The calls sent in one
        event-loop iteration share one write and one round trip: router/scriptpipe.py.)"""
        channel = CHANNELS[source].channel  # the adapter's events' channel (Twilio: whatsapp)
        known, unknown = self._routing.route(channel, parsed)
        pending = self._contacts.hidden_numbers(known)
        lean = self._lean
        if (
            pending
            or lean is None
            or any(r.renamed_to and r.event.conversation_id for r, _ in known)
        ):
            return Publishing.running(
                self._publish_after_lookups(
                    channel, known, unknown, pending, parsed, body, received_at, source, key
                ),
                self.takeovers,
            )
        slices = self._calls.slices(
            channel, known, {}, parsed, unknown, body, received_at, source, key
        )
        if len(slices) == 1 and len(batches := slices[0].batches) == 1:
            for batch in batches.values():
                if not batch.keys:
                    continue
                future = lean.now(batch.keys, batch.args)
                if future is not None:
                    return Publishing(future, batch, slices[0].letters, self.takeovers)
        return Publishing.running(self._runner.slices(slices), self.takeovers)

    async def _publish_after_lookups(
        self,
        channel: str,
        known: Known,
        unknown: dict[str, int],
        pending: Known,
        parsed: Parsed,
        body: bytes,
        received_at: int,
        source: str,
        key: str | None,
    ) -> Tally:
        # The extra round trips below are awaited only for the webhooks that need them.
        if pending:
            await self._contacts.bsuids(pending)
        originals: dict[int, str] = {}
        if renames := [(r, a) for r, a in known if r.renamed_to and r.event.conversation_id]:
            originals = await self._contacts.renames(renames)
        slices = self._calls.slices(
            channel, known, originals, parsed, unknown, body, received_at, source, key
        )
        return await self._runner.slices(slices)

    async def deadletter(
        self,
        reason: str,
        channel: str | None,
        received_at: int,
        detail: str | None,
        body: bytes | None = None,
        command: str | None = None,
        key: str | None = None,
    ) -> None:
        """Keep something the gateway could not understand, for an operator."""
        found = letter(reason, channel, received_at, detail, body, command, key)
        calls = self._calls.letter(found)
        await self._runner.all(calls, [], [])
