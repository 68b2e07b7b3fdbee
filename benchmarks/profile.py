"""Where the gateway's CPU goes under inbound load: py-spy samples the gateway process while
`inbound.py` loads it, then this prints self time by package and the top functions.

    .venv/bin/pip install py-spy        # a profiler, not a dependency of the project
    .venv/bin/python benchmarks/profile.py                     # 1-item WhatsApp, 8 s sampled
    .venv/bin/python benchmarks/profile.py --seconds 15 -- --items 10
    .venv/bin/python benchmarks/profile.py --raw /tmp/prof.txt  # keep the collapsed stacks

Arguments after `--` go to inbound.py (it always runs with `--targets gateway`). Self time is
the innermost Python frame of each sample: time in C code (a socket write, msgspec, HMAC) is
counted to the Python function that called it. Under uvloop py-spy cannot see the C event
loop's own frames, so coroutine stacks start at the handler.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
PACKAGES = (
    "aiohttp",
    "redis",
    "prometheus_client",
    "adapters",
    "router",
    "gateway",
    "asyncio",
    "hmac",
    "msgspec",
    "multidict",
    "yarl",
)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=8, help="how long to sample (whole seconds)")
    p.add_argument("--rate", type=int, default=250, help="samples per second")
    p.add_argument("--top", type=int, default=25, help="functions to list")
    p.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    return p.parse_args(argv), extra


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def gateway_pid(parent: int, timeout_s: float) -> int:
    """The `gateway serve` process that inbound.py started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if int(fields[1]) == parent and b"gateway serve" in cmdline:
                return int(stat.parent.name)
        time.sleep(0.2)
    sys.exit("inbound.py did not start a gateway")


def package(frame: str) -> str:
    match = re.search(r"\(([^:]+)", frame)
    where = match.group(1) if match else frame
    for name in PACKAGES:
        if where.startswith(name) or f"/{name}/" in where or where == f"{name}.py":
            return name
    return where or "?"


def summarize(raw: str, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        own[leaf] += n
        by_package[package(leaf)] += n
    if not total:
        return "no samples"
    out = [f"{total} samples; self time by package:"]
    out += [f"  {100 * n / total:5.1f} %  {name}" for name, n in by_package.most_common(12)]
    out.append(f"top {top} functions by self time:")
    out += [f"  {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    spy = py_spy()
    warmup = 2.0
    duration = args.seconds + warmup + 2
    cmd = [
        sys.executable,
        str(HERE / "inbound.py"),
        "--targets",
        "gateway",
        "--warmup",
        str(warmup),
        "--duration",
        str(duration - warmup),
        *extra,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        pid = gateway_pid(bench.pid, 60.0)
        # the gateway answers /readyz before the load starts; wait out setup and warm-up
        time.sleep(warmup + 3)
        record = [spy, "record", "--pid", str(pid), "-r", str(args.rate)]
        record += ["-d", str(round(args.seconds)), "-f", "raw", "-o", str(out), "--nonblocking"]
        spied = subprocess.run(record, check=False, capture_output=True, text=True)
        if spied.returncode:
            print(f"py-spy failed: {spied.stderr.strip()}", file=sys.stderr)
        table, _ = bench.communicate()
        raw = out.read_text() if out.exists() else ""
        if args.raw:
            args.raw.write_text(raw)
    print(table)
    print(summarize(raw, args.top))
    return bench.returncode


if __name__ == "__main__":
    sys.exit(main())
