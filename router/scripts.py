"""The Lua scripts of `router/lua/`, as Redis is given them.

A script may name shared Lua with a `-- uses: <name>` line (one `router/lua/<name>.lua`
per line, e.g. `gcra`, the limiter step); the named files are prepended, once each, in the
order named, so every script that paces sends runs the same GCRA code (Redis has no
`require` for scripts).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from router.scriptpipe import ScriptHost

LUA = Path(__file__).parent / "lua"
_USES = "-- uses: "


@functools.cache
def source(name: str) -> str:
    """`router/lua/<name>.lua` with the shared Lua it names prepended."""
    text = (LUA / f"{name}.lua").read_text()
    uses = [line[len(_USES) :].strip() for line in text.splitlines() if line.startswith(_USES)]
    return "".join(source(used) for used in dict.fromkeys(uses)) + text


def load(host: ScriptHost, name: str) -> Any:
    """`source(name)`, registered on `host` (loaded again on NOSCRIPT)."""
    return host.register_script(source(name))
