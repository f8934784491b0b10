"""The report of make bench: docs/benchmarks.md's tables and docs/benchmarks.png's chart, from the
runs that measure.py returns. Every figure is the median of its runs; every ratio is taken against a
server named in servers.py (BASELINE, GUNICORN, BURST_BASELINE), found by its name, not its place."""

from __future__ import annotations

from pathlib import Path
from statistics import median

from measure import (
    BURST_CONNECTIONS,
    CONNECTIONS,
    INSTALLS,
    NOT_SCRAPED,
    ROUNDS,
    SECONDS,
    WRK,
    Deploys,
    Load,
    Memory,
)
from servers import BASELINE, BURST_BASELINE, GUNICORN, SERVERS
from testhosts import PROJECT

DOCS = PROJECT / "docs"


def runs_of(loads: dict[str, list[Load]], name: str) -> list[Load]:
    """The runs of the server of this name; a LookupError if it was not measured."""
    if name not in loads:
        raise LookupError(f"no figures for {name!r}; the servers measured: {'; '.join(loads)}")
    return loads[name]


def median_rps(loads: dict[str, list[Load]], name: str) -> float:
    return median([load.rps for load in runs_of(loads, name)])


def heading(title: str) -> list[str]:
    """A section's heading, with a blank line before and after it."""
    return ["", f"## {title}", ""]


def listed(values: list[float], spec: str = ".1f") -> str:
    """The runs of a figure, as written beside their median."""
    return ", ".join(f"{value:{spec}}" for value in values)


def render(
    deployed: dict[str, Deploys],
    loads: dict[str, list[Load]],
    burst: dict[str, list[Load]],
    lifecycle: dict[str, list[float]],
    mem: dict[str, Memory],
    scraped: dict[str, list[Load]],
) -> str:
    """The text of docs/benchmarks.md."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py). Medians of the runs given; ratios are taken within",
        "this one run. The test host is a Debian 12 container on the same 2-core machine as the",
        f"controller and the load generator (wrk, {WRK.split(' ', 1)[1]} --connections {CONNECTIONS},"
        f" {SECONDS} s per run, loopback). wrk corrects its latencies for stalls: it adds the requests",
        "that would have arrived during one at the measured rate, so a stall shows in p99 as its share of the run.",
    ]
    lines += deploy_section(deployed)
    lines += serving_section(loads)
    lines += burst_section(burst)
    lines += exporter_section(scraped)
    lines += lifecycle_section(lifecycle)
    lines += memory_section(mem)
    lines += ["", "![Requests per second and p99 latency](benchmarks.png)", ""]
    return "\n".join(lines)


def deploy_section(deployed: dict[str, Deploys]) -> list[str]:
    """Each install's deploy times, then the slowest tasks of those whose Install asks for them."""
    lines = [
        *heading("Deploy (the demo app on fresh hosts, one per run)"),
        "| how uWSGI is installed | fresh deploy (apt, pip, code, service answering) | idempotent re-run |",
        "|---|---:|---:|",
    ]
    for install, runs in deployed.items():
        lines.append(
            f"| {install} | {median(runs.fresh):.1f} s ({listed(runs.fresh)})"
            f" | {median(runs.again):.1f} s ({listed(runs.again)}) |"
        )
    for install, runs in deployed.items():
        if not INSTALLS[install].slowest_tasks:
            continue
        lines += ["", f"Slowest tasks of the fresh deploy, {install} (profile_tasks, median):", ""]
        lines += ["| task | seconds |", "|---|---:|"]
        slowest = sorted(runs.tasks.items(), key=lambda item: -median(item[1]))[:6]
        lines += [f"| {task} | {median(times):.1f} |" for task, times in slowest]
    return lines


def serving_section(loads: dict[str, list[Load]]) -> list[str]:
    """Every server against BASELINE, and BASELINE against gunicorn and the fastest uWSGI settings."""
    lines = [
        *heading(f"Serving GET / of the demo app ({ROUNDS} rounds)"),
        "| server | requests/s | vs role defaults | p50 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += load_rows(loads, BASELINE)
    defaults = median_rps(loads, BASELINE)
    per_round = [
        ours.rps / theirs.rps
        for ours, theirs in zip(runs_of(loads, BASELINE), runs_of(loads, GUNICORN.name), strict=True)
    ]
    ceiling = max((server.name for server in SERVERS if server.ceiling), key=lambda name: median_rps(loads, name))
    lines += [
        "",
        f"- Role defaults vs gunicorn sync, as many workers: **{defaults / median_rps(loads, GUNICORN.name):.2f}x**"
        f" (target: 1.5x or more; round by round: {', '.join(f'{ratio:.2f}x' for ratio in per_round)}).",
        f"- Role defaults vs the fastest uWSGI settings tried for the same app ({ceiling}):"
        f" **{defaults / median_rps(loads, ceiling):.0%}** (target: 90% or more).",
    ]
    return lines


def burst_section(burst: dict[str, list[Load]]) -> list[str]:
    """The burst's servers against BURST_BASELINE."""
    return load_table(
        f"A burst: {BURST_CONNECTIONS} connections at once ({ROUNDS} rounds)",
        [
            "The kernel queues up to `listen` connections for the workers; past that it drops handshakes,",
            "and those clients retry after a second.",
        ],
        ("server", "vs the first"),
        burst,
        BURST_BASELINE,
    )


def load_table(
    title: str, notes: list[str], columns: tuple[str, str], loads: dict[str, list[Load]], baseline: str
) -> list[str]:
    """A section of loads: its heading, notes, and a row per server against the baseline. columns names the
    first column and the ratio's."""
    first, versus = columns
    return [
        *heading(title),
        *notes,
        "",
        f"{f'| {first}'.rstrip()} | requests/s | {versus} | p50 | p99 |",
        "|---|---:|---:|---:|---:|",
        *load_rows(loads, baseline),
    ]


def load_rows(loads: dict[str, list[Load]], baseline: str) -> list[str]:
    """A table row per server: medians of requests/s (and its ratio to the baseline's), p50 and p99."""
    base_rps = median_rps(loads, baseline)
    rows = []
    for name, runs in loads.items():
        rps = median_rps(loads, name)
        p50, p99 = median([load.p50_ms for load in runs]), median([load.p99_ms for load in runs])
        rows.append(f"| {name} | {rps:,.0f} | {rps / base_rps:.2f}x | {p50:.2f} ms | {p99:.2f} ms |")
    return rows


def exporter_section(scraped: dict[str, list[Load]]) -> list[str]:
    """The role's service with its host's exporter scraped, against the same service not scraped."""
    return load_table(
        f"The exporter's cost ({ROUNDS} rounds, in turns)",
        ["flask_uwsgi_exporter reads the app's stats socket at each scrape, from uWSGI's master."],
        ("", "vs not scraped"),
        scraped,
        NOT_SCRAPED,
    )


def lifecycle_section(lifecycle: dict[str, list[float]]) -> list[str]:
    lines = [*heading("Stop and reload (the role's service)"), "| | median | runs |", "|---|---:|---|"]
    for what, values in lifecycle.items():
        unit = "" if "requests" in what else " s"
        lines.append(f"| {what} | {median(values):g}{unit} | {listed(values, 'g')} |")
    return lines


def memory_section(mem: dict[str, Memory]) -> list[str]:
    lines = [
        *heading("Memory (after load)"),
        "| | RSS per worker | PSS per worker | PSS of the master and its workers |",
        "|---|---:|---:|---:|",
    ]
    for name, figures in mem.items():
        lines.append(
            f"| {name} | {listed(figures.rss)} MiB | {listed(figures.pss)} MiB | {figures.total_pss:.1f} MiB |"
        )
    return lines


def write(text: str, loads: dict[str, list[Load]], docs: Path = DOCS) -> None:
    """Write the report to docs/benchmarks.md, and the chart of the serving figures beside it."""
    docs.mkdir(exist_ok=True)
    (docs / "benchmarks.md").write_text(text)
    chart(loads, docs / "benchmarks.png")


def chart(loads: dict[str, list[Load]], path: Path) -> None:
    """Requests per second of each server, with its p99 latency written beside its bar; BASELINE's in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(loads)
    rps = [median_rps(loads, name) for name in names]
    p99 = [median([load.p99_ms for load in loads[name]]) for name in names]
    figure, axes = plt.subplots(figsize=(12, 0.4 * len(names) + 1))
    colours = ["#2a7" if name == BASELINE else "#888" for name in names]
    bars = axes.barh(names[::-1], rps[::-1], color=colours[::-1])
    for bar, latency in zip(bars, p99[::-1], strict=True):
        axes.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" p99 {latency:.1f} ms", va="center")
    axes.set_xlabel("requests per second (median), GET / of the demo app")
    axes.set_xlim(0, max(rps) * 1.4)
    figure.savefig(path, dpi=110, bbox_inches="tight")
