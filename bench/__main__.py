"""Run every ``bench/bench_*.py`` module's ``main()`` in turn: ``python -m bench [name…]``."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        t = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as exc:  # one broken bench must not hide the others
            failed += 1
            print(f"   {name} failed: {type(exc).__name__}: {exc}")
        print(f"   ({time.perf_counter() - t:.1f} s)\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
