"""The soak's latency over time as an SVG (no plotting library): p50, p99, p99.9 and max of
each interval of `benchmarks/soak.py --json FILE`, on a log scale, with the dedup marks'
growth. `.venv/bin/python benchmarks/plot_soak.py soak.json soak.svg`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 900, 420, 70, 20, 30, 50
SERIES = (
    ("p50_ms", "#1b9e77"),
    ("p99_ms", "#d95f02"),
    ("p999_ms", "#7570b3"),
    ("max_ms", "#e7298a"),
)
TICKS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def svg(data: dict[str, Any]) -> str:
    intervals = data["intervals"]
    times = [i["reading"]["elapsed_s"] / 60 for i in intervals]
    values = [v for i in intervals for key, _ in SERIES if (v := i.get(key)) and v > 0]
    low = min([*values, 1.0]) / 1.5
    high = max([*values, 100.0]) * 1.5
    t_max = max(times, default=1.0) or 1.0

    def x(t: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * t / t_max

    def y(ms: float) -> float:
        span = math.log10(high) - math.log10(low)
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (math.log10(ms) - math.log10(low)) / span)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="18">webhook latency per interval (ms, log scale); '
        f"{data.get('rate', 0):,.0f} webhooks/s open loop</text>",
    ]
    for ms in TICKS_MS:
        if low <= ms <= high:
            out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" '
                       'stroke="#ddd"/>')  # fmt: skip
            out.append(f'<text x="{LEFT - 8}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:g}</text>')
    for minute in range(0, int(t_max) + 1, max(1, int(t_max) // 10 or 1)):
        out.append(f'<text x="{x(minute):.1f}" y="{HEIGHT - BOTTOM + 18}" '
                   f'text-anchor="middle">{minute} min</text>')  # fmt: skip
    for n, (key, colour) in enumerate(SERIES):
        points = " ".join(
            f"{x(t):.1f},{y(i[key]):.1f}"
            for t, i in zip(times, intervals, strict=True)
            if i.get(key) and i[key] > 0
        )
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        lx = LEFT + 10 + n * 110
        out.append(f'<rect x="{lx}" y="{HEIGHT - 22}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 16}" y="{HEIGHT - 12}">{key.removesuffix("_ms")}</text>')
    scan = data.get("scan", {})
    out.append(f'<text x="{LEFT + 460}" y="{HEIGHT - 12}">dedup marks at the end: '
               f'{scan.get("marks", 0):,} in {scan.get("dedup", 0):,} hashes</text>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    Path(argv[1]).write_text(svg(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
