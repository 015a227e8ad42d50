"""Summarise the last ``mutmut run`` (``make mutate``): the score, then every live mutant.

Reads what mutmut left in ``mutants/`` (one ``<file>.meta`` JSON per mutated file) and
prints, per file and in total, how many mutants the tests killed, then each mutant that
is still alive (survived, no test covers it, suspicious) with its file, line and the
mutation itself (the original line and the mutated one).

    .venv/bin/python tools/mutate_report.py              # run from the repository root
    .venv/bin/python tools/mutate_report.py --markdown   # the survivors as a Markdown list
    .venv/bin/python tools/mutate_report.py --fail-under 85

The score is mutmut's own (as in ``mutmut badge``): (killed + timeout) / (total - skipped),
over the mutants the run tried (all of them, unless it was stopped or limited to some with
``make mutate MUTATE_ONLY=...``). A timeout counts as killed: the tests noticed.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path.cwd()  # the repository root: make mutate runs from there, and so does mutmut
MUTANTS = ROOT / "mutants"

# mutmut's exit-code meaning (mutmut.stats.status_by_exit_code, 3.x); unknown codes are
# "suspicious" there too.
STATUS_BY_EXIT_CODE: dict[int | None, str] = {
    None: "not checked",
    0: "survived",
    1: "killed",
    3: "killed",
    2: "interrupted",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    37: "caught by type check",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
}
DETECTED = {"killed", "timeout", "caught by type check"}
ALIVE = ("survived", "no tests", "suspicious", "segfault")  # checked, and not killed
UNCHECKED = ("not checked", "interrupted")  # the run stopped before it tried them
SEPARATOR = "ǁ"  # mutmut's class/method separator in mutant names


@dataclass
class Mutant:
    name: str
    source: Path  # the original file, relative to ROOT
    status: str
    line: int | None = None
    before: str = ""
    after: str = ""

    @property
    def function(self) -> str:
        """``Class.method`` or ``function``, from ``pkg.mod.xǁClassǁmethod__mutmut_7``."""
        local = self.name.rpartition(".")[2].rpartition("__mutmut_")[0]
        if local.startswith("x" + SEPARATOR):
            _, cls, meth = local.split(SEPARATOR)
            return f"{cls}.{meth}"
        return local.removeprefix("x_")

    @property
    def number(self) -> str:
        return self.name.rpartition("__mutmut_")[2]


def status_of(code: int | None) -> str:
    return STATUS_BY_EXIT_CODE.get(code, "suspicious")


def load_mutants() -> list[Mutant]:
    found: list[Mutant] = []
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        source = meta.relative_to(MUTANTS).with_suffix("")  # greenroom/x.py.meta -> greenroom/x.py
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, code in data.get("exit_code_by_key", {}).items():
            found.append(Mutant(name=name, source=source, status=status_of(code)))
    return found


def function_starts(source: Path) -> dict[str, int]:
    """First line (decorators included) of every function and method of ``source``."""
    try:
        tree = ast.parse((ROOT / source).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}
    starts: dict[str, int] = {}
    for node in tree.body:
        members = [(None, node)]
        if isinstance(node, ast.ClassDef):
            members = [(node.name, child) for child in node.body]
        for cls, child in members:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                starts[f"{cls}.{child.name}" if cls else child.name] = first
    return starts


HUNK = re.compile(r"^@@ -(\d+)")


def describe(mutant: Mutant, starts: dict[str, int], lines: list[str]) -> None:
    """Fill in the mutated line of the original file and the before/after text."""
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant
    except ImportError:  # another mutmut: the name alone still identifies the mutant
        return
    try:  # mutmut reads mutants/ relative to the working directory, ROOT
        diff = get_diff_for_mutant(mutant.name, path=mutant.source)
    except Exception as exc:
        mutant.before = f"(no diff: {exc})"
        return
    offset, index, removed, added = 0, 0, [], []
    for text in diff.splitlines():
        if text.startswith(("---", "+++")):
            continue
        hunk = HUNK.match(text)
        if hunk:
            offset, index = int(hunk.group(1)) - 1, 0
            continue
        if text.startswith("-"):
            if not removed:
                first_removed = offset + index
            removed.append(text[1:])
            index += 1
        elif text.startswith("+"):
            added.append(text[1:])
        else:
            index += 1
    mutant.before = " / ".join(x.strip() for x in removed)
    mutant.after = " / ".join(x.strip() for x in added) or "(line removed)"
    start = starts.get(mutant.function)
    if start is None or not removed:
        return
    # The diff counts lines from the top of the function; find the same text in the
    # current file nearest to where it should be (the file may have moved since).
    expected = start + first_removed
    wanted = removed[0].strip()
    candidates = [i + 1 for i, text in enumerate(lines) if text.strip() == wanted]
    if candidates:
        mutant.line = min(candidates, key=lambda n: abs(n - expected))


def score(counts: Counter[str]) -> tuple[int, int, float]:
    """(killed, tested, percent) as mutmut counts it."""
    detected = sum(counts[s] for s in DETECTED)
    tested = sum(counts.values()) - counts["skipped"] - sum(counts[s] for s in UNCHECKED)
    return detected, tested, (100.0 * detected / tested if tested else 0.0)


def where(m: Mutant) -> str:
    return f"{m.source}:{m.line}" if m.line else str(m.source)


def print_markdown(alive: list[Mutant]) -> None:
    for m in alive:
        print(f"- `{where(m)}` {m.function} #{m.number} ({m.status}): `{m.before}` → `{m.after}`")


def print_text(mutants: list[Mutant], alive: list[Mutant]) -> None:
    by_file: dict[Path, Counter[str]] = {}
    for m in mutants:
        by_file.setdefault(m.source, Counter())[m.status] += 1
    print(f"{'file':42} {'killed':>7} {'timeout':>7} {'alive':>6} {'total':>6} {'score':>7}")
    for source, counts in sorted(by_file.items()):
        _, tested, pct = score(counts)
        print(
            f"{source!s:42} {counts['killed']:7} {counts['timeout']:7} "
            f"{sum(counts[s] for s in ALIVE):6} {tested:6} {pct:6.1f}%"
        )
    if alive:
        print(f"\nlive mutants ({len(alive)}):")
        for m in alive:
            print(f"  {where(m)}  {m.function} #{m.number}  [{m.status}]")
            print(f"      - {m.before}")
            print(f"      + {m.after}")
    total = Counter(m.status for m in mutants)
    unchecked = sum(total[s] for s in UNCHECKED)
    if unchecked:
        print(f"\n{unchecked} mutants were not tried (run stopped, or limited by MUTATE_ONLY)")
    print()
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="the live mutants as Markdown")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 below this %%")
    args = parser.parse_args(argv)

    mutants = load_mutants()
    if not mutants:
        print("no mutmut results in mutants/: run `make mutate` first", file=sys.stderr)
        return 2
    alive = [m for m in mutants if m.status in ALIVE]
    for source in sorted({m.source for m in alive}):
        lines = (ROOT / source).read_text(encoding="utf-8").splitlines()
        starts = function_starts(source)
        for m in alive:
            if m.source == source:
                describe(m, starts, lines)
    alive.sort(key=lambda m: (str(m.source), m.line or 0, m.name))
    if args.markdown:
        print_markdown(alive)
    else:
        print_text(mutants, alive)
    detected, tested, pct = score(Counter(m.status for m in mutants))
    print(f"mutation score: {detected} / {tested} killed = {pct:.1f}%")
    if args.fail_under is not None and pct < args.fail_under:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
