"""Start-up time: how long ``pcxbatch --help`` takes, beside a bare interpreter.

Usage (from the repository root; about half a minute with the default 20 repetitions)::

    .venv/bin/python bench/startup.py              # 20 repetitions of each command
    .venv/bin/python bench/startup.py --repeat 50

What it does: runs ``python -c pass``, ``python -m pcxbatch --help`` and ``python -m pcxbatch
run --help`` (``python`` being the interpreter running this script) one after the other, N
rounds, the order rotated each round so that none always runs first; one round before them is
not counted (it warms the file cache). Each time is the wall time of the whole process, from
``subprocess.run`` to its exit. It prints each command's median (and min, max) in milliseconds
and as a ratio to ``python -c pass``.

Then it runs each ``--help`` once more in a child that calls the command line in-process and
reports which heavy modules (pandas, openpyxl, xlsxwriter, httpx, uvicorn, numpy) ended up in
``sys.modules``, with each one's cumulative import time from ``-X importtime``.

Nothing here is needed by the tests, and no test times anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HEAVY = ("pandas", "openpyxl", "xlsxwriter", "httpx", "uvicorn", "numpy")

#: (label, arguments after the interpreter); the first is the baseline.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("python -c pass", ("-c", "pass")),
    ("python -m pcxbatch --help", ("-m", "pcxbatch", "--help")),
    ("python -m pcxbatch run --help", ("-m", "pcxbatch", "run", "--help")),
)

#: Run in a child: the command line with the given arguments, then the heavy modules it loaded
#: (as JSON on stderr's last line; --help writes to stdout).
_PROBE = """
import json, runpy, sys
sys.argv = ["pcxbatch", *sys.argv[1:]]
try:
    runpy.run_module("pcxbatch", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)
"""


def _time_once(args: Sequence[str]) -> float:
    """Wall time of one run of ``python ARGS``, in seconds."""
    start = time.perf_counter()
    subprocess.run(
        [PYTHON, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def measure(repeat: int) -> dict[str, list[float]]:
    """``repeat`` wall times per command (seconds), the commands alternating, order rotated."""
    for _, args in COMMANDS:  # warm-up, not counted
        _time_once(args)
    times: dict[str, list[float]] = {label: [] for label, _ in COMMANDS}
    for round_ in range(repeat):
        shift = round_ % len(COMMANDS)
        for label, args in COMMANDS[shift:] + COMMANDS[:shift]:
            times[label].append(_time_once(args))
    return times


def heavy_modules(cli_args: Sequence[str]) -> list[str]:
    """The heavy modules in ``sys.modules`` after running ``pcxbatch CLI_ARGS`` in a child."""
    probe = _PROBE.format(heavy=HEAVY)
    done = subprocess.run(
        [PYTHON, "-c", probe, *cli_args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return loaded


def import_times(cli_args: Sequence[str]) -> dict[str, float]:
    """Cumulative import time (ms) of each heavy module, from ``python -X importtime``, and
    under ``"*"`` the sum over every top-level import (all the time spent importing)."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "pcxbatch", *cli_args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, float] = {"*": 0.0}
    for line in done.stderr.splitlines():
        # "import time:  self [us] | cumulative | imported package", nested ones indented
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, field = line.removeprefix("import time:").split("|")
        if not cumulative.strip().isdigit():
            continue  # the header line
        ms = int(cumulative) / 1000
        name = field.strip()
        if name in HEAVY:
            found[name] = ms
        if not field.removeprefix(" ").startswith(" "):
            found["*"] += ms
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="rounds (default 20)")
    options = parser.parse_args(argv)

    version = sys.version.split()[0]
    print(f"python {version} ({PYTHON}); median of {options.repeat} alternating runs each")
    times = measure(options.repeat)
    baseline = statistics.median(times[COMMANDS[0][0]])
    print(f"{'command':<32} {'median':>9} {'min':>9} {'max':>9}  vs python -c pass")
    for label, _ in COMMANDS:
        runs = times[label]
        median = statistics.median(runs)
        print(
            f"{label:<32} {median * 1000:>6.0f} ms {min(runs) * 1000:>6.0f} ms"
            f" {max(runs) * 1000:>6.0f} ms  {median / baseline:>5.1f}x"
        )

    print()
    print(f"heavy modules imported ({', '.join(HEAVY)}), each with its cumulative import time")
    print("(times nest: numpy's is also inside whichever imported it first), and all imports:")
    for label, args in COMMANDS[1:]:
        cli_args = args[2:]
        loaded = heavy_modules(cli_args)
        cost = import_times(cli_args)
        listed = ", ".join(
            f"{name} ({cost[name]:.0f} ms)" if name in cost else name for name in loaded
        )
        print(f"  {label:<30} {listed or 'none'}; all imports {cost['*']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
