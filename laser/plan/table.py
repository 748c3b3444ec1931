"""The plan as text: one row per phase, the verdict, and the knobs when it does not fit."""

from __future__ import annotations

from laser.plan.inputs import GIB
from laser.plan.planner import MemoryPlan


def gib(size: int) -> str:
    """Bytes as GiB: two decimals, or three significant digits below 1 GiB (small models)."""
    value = size / GIB
    return f"{value:.2f}" if value >= 0.995 or value == 0 else f"{value:.3g}"


def format_table(plan: MemoryPlan) -> str:
    """The phase table (GiB = 2^30 bytes): own bytes, the device's peak, and whether it fits."""
    rows = [("phase", "shapes", "own GiB", "peak GiB", "")]
    for row in plan.rows:
        mark = "ok" if row.peak <= plan.inputs.usable else "OVER"
        rows.append((row.phase, row.shapes, gib(row.own), gib(row.peak), mark))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]),
                 row[3].rjust(widths[3]), row[4]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def budget_text(plan: MemoryPlan) -> str:
    inputs = plan.inputs
    return (f"{gib(inputs.usable)} GiB usable ({inputs.device_gb:g} GB, {inputs.device_source}; "
            f"plan.reserve_gb={inputs.reserve_gb:g} kept free)")


def verdict(plan: MemoryPlan) -> str:
    """`fits <N> GB: ...` or `does not fit <N> GB: ...`, one line."""
    worst = plan.worst
    size = f"{plan.inputs.device_gb:g} GB"
    if plan.fits:
        return f"fits {size}: peak {gib(worst.peak)} GiB ({worst.phase}) of {budget_text(plan)}"
    over = ", ".join(f"{row.phase} {gib(row.peak)}" for row in plan.failing())
    return f"does not fit {size}: {over} GiB, over {budget_text(plan)}"


def advice_lines(advice: list[tuple[str, list[str]]]) -> list[str]:
    """One line per phase over the budget: the knobs that make it fit, or that none does."""
    lines = []
    for phase, knobs in advice:
        if phase == "RMs":
            lines.append(f"  first: {knobs[0]}")
        elif knobs:
            lines.append(f"  {phase}: fits with " + ", or ".join(knobs))
        else:
            lines.append(f"  {phase}: no single knob makes it fit (a larger device, or several: trainer=fsdp shards "
                         "the policy)")
    return lines


def format_plan(plan: MemoryPlan, advice: list[tuple[str, list[str]]], title: str) -> str:
    """The whole printout: title, table, notes, verdict, knobs."""
    parts = [title, format_table(plan)]
    parts += [f"note: {note}" for note in plan.notes]
    parts.append(verdict(plan))
    parts += advice_lines(advice)
    return "\n".join(parts)
