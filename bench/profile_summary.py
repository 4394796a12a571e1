"""Summarise py-spy's collapsed stacks (`bench/run.py --profile DIR`): the functions with the most samples,
inclusive (anywhere on the stack) and exclusive (at the top).

    .venv/bin/python bench/profile_summary.py DIR/04-B4-lean.txt [--top 25] [--filter kimi_lsp]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default="", help="only frames whose text contains this")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    for line in args.file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [re.sub(r"\s+\(.*?/(site-packages|lib/python3\.\d+|server)/", " (", f) for f in stack.split(";")]
        if any("idle" in f for f in frames[-1:]) or frames[-1].startswith("select ") or "epoll" in frames[-1]:
            pass
        total += n
        for f in set(frames):
            if args.filter in f:
                inclusive[f] += n
        exclusive[frames[-1]] += n
    print(f"{total} samples")
    print("\ninclusive:")
    for f, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {f}")
    print("\nexclusive:")
    for f, n in exclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
