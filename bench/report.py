"""The report of make bench: docs/benchmarks.md's tables and docs/benchmarks.png's chart, from the
runs that measure.py returns. Every figure is the median of its runs; every ratio is taken against a
server named in servers.py (BASELINE, GUNICORN, BURST_BASELINE), found by its name, not its place."""

from __future__ import annotations

from math import isnan
from pathlib import Path
from statistics import median

from measure import (
    BURST_CONNECTIONS,
    CLOSE,
    CONNECTIONS,
    INSTALLS,
    KEEPALIVE,
    NEWCOMER_TIMEOUT,
    NOT_SCRAPED,
    ROUNDS,
    SECONDS,
    WRK,
    Deploys,
    KeepAlive,
    Load,
    Memory,
)
from servers import BASELINE, BURST_BASELINE, GRANIAN, GUNICORN, NGINX_BASELINE, SERVERS, UWSGI_WAYS
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
    keep: KeepAlive,
    nginx: dict[str, list[Load]],
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
    lines += keepalive_section(keep)
    lines += nginx_section(nginx)
    lines += burst_section(burst)
    lines += exporter_section(scraped)
    lines += lifecycle_section(lifecycle)
    lines += memory_section(mem)
    lines += ["", "![Requests per second and p99 latency](benchmarks.png)", ""]
    lines += ["![Keep-alive, Connection: close, and through nginx](benchmarks-keepalive.png)", ""]
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


def keepalive_section(keep: KeepAlive) -> list[str]:
    """Each server under keep-alive traffic (with the newcomer's wait) and under Connection: close,
    against BASELINE; then BASELINE and the fastest of UWSGI_WAYS against Granian (keep-alive), and
    BASELINE against gunicorn sync (close)."""
    kept, closed = keep.loads[KEEPALIVE], keep.loads[CLOSE]
    kept_base, closed_base = median_rps(kept, BASELINE), median_rps(closed, BASELINE)
    granian = median_rps(kept, GRANIAN.name)
    fastest = max((server.name for server in UWSGI_WAYS), key=lambda name: median_rps(kept, name))
    lines = [
        *heading(f"Keep-alive, or a connection per request ({ROUNDS} rounds)"),
        "wrk's connections either keep their connection (keep-alive) or ask for it to be closed after each",
        "answer (`Connection: close`); a server that ignores that keeps it open. A newcomer opens one more",
        f"connection 3 s into the keep-alive load: its wait for an answer (none: not within {NEWCOMER_TIMEOUT:g} s).",
        "Failed: answers other than 2xx or 3xx, and answers after 2 s or more, with either traffic.",
        "",
        "| server | keep-alive: requests/s | vs role defaults | p99 | a newcomer's wait"
        " | Connection: close: requests/s | vs role defaults | p99 | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in kept:
        k_rps, c_rps = median_rps(kept, name), median_rps(closed, name)
        lines.append(
            f"| {name} | {k_rps:,.0f} | {k_rps / kept_base:.2f}x | {median_p99(kept, name):.2f} ms"
            f" | {waited(keep.newcomer_s[name])} | {c_rps:,.0f} | {c_rps / closed_base:.2f}x"
            f" | {median_p99(closed, name):.2f} ms | {sum(load.failed for load in kept[name] + closed[name]):,} |"
        )
    return [
        *lines,
        "",
        f"- Role defaults vs Granian, keep-alive traffic: **{kept_base / granian:.2f}x** (target: 1.0 or more).",
        f"- The fastest way of serving with uWSGI measured here vs Granian, keep-alive traffic:"
        f" **{median_rps(kept, fastest) / granian:.2f}x**: {fastest}.",
        f"- Role defaults vs gunicorn sync, a connection per request:"
        f" **{closed_base / median_rps(closed, GUNICORN.name):.2f}x** (target: 1.5 or more).",
    ]


def median_p99(loads: dict[str, list[Load]], name: str) -> float:
    return median([load.p99_ms for load in runs_of(loads, name)])


def waited(seconds: list[float]) -> str:
    """The newcomer's median wait, or how many of its runs got no answer."""
    unanswered = sum(1 for value in seconds if isnan(value))
    if unanswered:
        return f"none in {unanswered} of {len(seconds)} runs"
    wait = median(seconds)
    return f"{wait * 1000:.1f} ms" if wait < 1 else f"{wait:.1f} s"


def nginx_section(nginx: dict[str, list[Load]]) -> list[str]:
    """The paths through nginx against the role's production path (NGINX_BASELINE)."""
    return [
        *heading(f"Through nginx, clients keeping their connections to it ({ROUNDS} rounds)"),
        "nginx as `flask_uwsgi_nginx` writes its sites (one nginx worker per core), in the same host;",
        "upstream keep-alive added by the benchmark where the path says so (the role does not write it).",
        "Failed: answers other than 2xx or 3xx, and answers after 2 s or more, in all rounds.",
        "",
        "| path | requests/s | vs the first | p50 | p99 | failed |",
        "|---|---:|---:|---:|---:|---:|",
        *load_rows(nginx, NGINX_BASELINE, failed=True),
    ]


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


def load_rows(loads: dict[str, list[Load]], baseline: str, failed: bool = False) -> list[str]:
    """A table row per server: medians of requests/s (and its ratio to the baseline's), p50 and p99;
    with failed, the failed requests of all its runs."""
    base_rps = median_rps(loads, baseline)
    rows = []
    for name, runs in loads.items():
        rps = median_rps(loads, name)
        p50, p99 = median([load.p50_ms for load in runs]), median_p99(loads, name)
        row = f"| {name} | {rps:,.0f} | {rps / base_rps:.2f}x | {p50:.2f} ms | {p99:.2f} ms |"
        rows.append(row + (f" {sum(load.failed for load in runs):,} |" if failed else ""))
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


def write(
    text: str, loads: dict[str, list[Load]], keep: KeepAlive, nginx: dict[str, list[Load]], docs: Path = DOCS
) -> None:
    """Write the report to docs/benchmarks.md, and the charts of the serving figures beside it."""
    docs.mkdir(exist_ok=True)
    (docs / "benchmarks.md").write_text(text)
    chart(loads, docs / "benchmarks.png")
    keepalive_chart(keep, nginx, docs / "benchmarks-keepalive.png")


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


def keepalive_chart(keep: KeepAlive, nginx: dict[str, list[Load]], path: Path) -> None:
    """Requests per second: each server with keep-alive and with Connection: close, then the paths
    through nginx."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{name} ({traffic})", median_rps(keep.loads[traffic], name)) for name in keep.loads[KEEPALIVE]
            for traffic in (KEEPALIVE, CLOSE)]  # fmt: skip
    rows += [(name, median_rps(nginx, name)) for name in nginx]
    figure, axes = plt.subplots(figsize=(12, 0.4 * len(rows) + 1))
    colours = ["#2a7" if BASELINE in name or name == NGINX_BASELINE else "#888" for name, _ in rows]
    axes.barh([name for name, _ in rows][::-1], [rps for _, rps in rows][::-1], color=colours[::-1])
    axes.set_xlabel("requests per second (median), GET / of the demo app")
    figure.savefig(path, dpi=110, bbox_inches="tight")
