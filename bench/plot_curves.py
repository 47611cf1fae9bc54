#!/usr/bin/env python3
"""Draws the curves of bench/curves.sh: one PNG per sweep, paxkv next to etcd.

    plot_curves.py RESULTS_DIR [OUTDIR]     (OUTDIR: bench/curves beside this file)

RESULTS_DIR holds SWEEP-WORKLOAD-VALUE-STORE.json files (kv-bench --json), machine.json (the
run's date, the machine and the settings) and, for the latency sweep, floor.json. Each plot has
throughput and p99 latency against the sweep's axis (log scales where the axis is one); the
latency plot shows the requests of one client at a time next to the floor of the machine.
Needs matplotlib (curves.sh runs this with the venv it makes in target/plot-venv).
"""

import json
import math
import pathlib
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullLocator  # noqa: E402

STORES = ("paxkv", "etcd")
COLORS = {"paxkv": "tab:blue", "etcd": "tab:orange"}
STYLES = {"put": "-", "get": "--", "mixed": "-"}
NAME = re.compile(r"^(inflight|value|keys|nodes|reads|latency)-(put|get|mixed)-(\d+)-(paxkv|etcd)\.json$")


def size_label(size):
    for unit, bytes_ in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= bytes_ and size % bytes_ == 0:
            return f"{size // bytes_} {unit}"
    return f"{size} B"


def count_label(count):
    if count >= 10 and str(count).rstrip("0") == "1":
        return f"$10^{{{len(str(count)) - 1}}}$"
    return f"{count:,}"


# sweep: title, axis label, scale of the axis (True: logarithmic, False: linear, None: the values
# evenly spaced), tick labels, workloads drawn
SWEEPS = {
    "inflight": ("Requests in flight (one connection)", "requests in flight", True, str, ("put", "get")),
    "value": ("Value size (puts, 16 in flight)", "value size", True, size_label, ("put",)),
    "keys": ("Key count (64 in flight, keys written first)", "keys in the store", True, count_label, ("put", "get")),
    "nodes": ("Cluster size (64 in flight)", "nodes in the cluster", False, str, ("put", "get")),
    "reads": ("Read share (mixed gets and puts, 64 in flight)", "gets, % of requests (not to scale)", None, str,
              ("mixed",)),
}


def load_runs(results):
    """{sweep: {(workload, store): {value: run}}}"""
    runs = {}
    for path in sorted(results.iterdir()):
        match = NAME.match(path.name)
        if not match:
            continue
        sweep, workload, value, store = match.groups()
        report = json.loads(path.read_text())
        if not report.get("runs"):
            continue
        runs.setdefault(sweep, {}).setdefault((workload, store), {})[int(value)] = report["runs"][0]
    return runs


def machine_line(machine):
    if not machine:
        return "machine not recorded"
    return (f"{machine['date']} · {machine['cpu']}, {machine['cores']} cores, "
            f"{machine['memory_gib']:g} GiB, Linux {machine['kernel']}")


def settings_line(machine):
    if not machine:
        return ""
    quick = "QUICK run: " if machine.get("quick") else ""
    connections = machine.get("connections", 1)
    return (f"{quick}{machine['duration']} measured per point after {machine['warmup']} of warm-up, "
            f"{connections} connection{'s' if connections != 1 else ''}, "
            f"{machine.get('keys', 10000):,} keys of 16 B and values of 100 B unless the axis says otherwise; "
            f"3 nodes unless the axis says otherwise, on loopback, data on one disk, fsync on every commit; "
            f"etcd {machine.get('etcd') or '?'}, paxkv {machine.get('paxkv') or '?'}")


def finish(figure, title, machine, path):
    figure.suptitle(f"paxkv and etcd: {title}\n{machine_line(machine)}", fontsize=11)
    figure.text(0.5, 0.01, settings_line(machine), ha="center", fontsize=7, color="dimgray", wrap=True)
    figure.tight_layout(rect=(0, 0.04, 1, 0.93))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(path)


def thousands(value, _position=None):
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def log_y(ax):
    """A logarithmic y axis with plain numbers: 2 and 5 times a power of ten labelled too when
    the axis spans less than two decades (else its few labels would be all there is)."""

    def minor(value, _position):
        low, high = ax.get_ylim()
        if value <= 0 or low <= 0 or high / low > 100:
            return ""
        lead = value / 10 ** math.floor(math.log10(value) + 1e-9)
        return thousands(value) if round(lead, 6) in (2, 5) else ""

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(thousands))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def plot_sweep(sweep, series, machine, outdir):
    title, axis_label, logarithmic, tick_label, workloads = SWEEPS[sweep]
    panels = [("throughput, requests/s", lambda run: run["ops_per_sec"]),
              ("p99 latency, ms", lambda run: run["latency_us"]["p99"] / 1000)]
    if sweep == "value":
        panels.insert(1, ("throughput, MB/s of values",
                          lambda run: run["ops_per_sec"] * run["value_size"] / 1e6))
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8))
    values = sorted({value for points in series.values() for value in points})
    # Where the axis is not to scale, a value is drawn at its rank.
    position = (lambda value: values.index(value)) if logarithmic is None else (lambda value: value)
    for ax, (ylabel, measure) in zip(axes, panels):
        for workload in workloads:
            for store in STORES:
                points = series.get((workload, store), {})
                xs = sorted(points)
                if not xs:
                    continue
                label = store if len(workloads) == 1 else f"{store} {workload}"
                ax.plot([position(x) for x in xs], [measure(points[x]) for x in xs], STYLES[workload],
                        marker="o", color=COLORS[store], label=label)
                failed = [x for x in xs if points[x]["errors"] or points[x]["misses"]]
                if failed:
                    ax.plot([position(x) for x in failed], [measure(points[x]) for x in failed], "x",
                            color="red", markersize=10, label=f"{label}: with errors")
        if logarithmic:
            ax.set_xscale("log", base=4 if sweep == "inflight" else 10)
            log_y(ax)
        else:
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_formatter(FuncFormatter(thousands))
        ax.set_xticks([position(value) for value in values])
        ax.set_xticklabels([tick_label(value) for value in values])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(axis_label)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    finish(figure, title, machine, outdir / f"{sweep}.png")


def plot_latency(series, floor, machine, outdir):
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 6))
    workloads = ("put", "get")
    width = 0.2
    for w, workload in enumerate(workloads):
        for s, store in enumerate(STORES):
            run = series.get((workload, store), {}).get(1)
            if run is None:
                continue
            x = w + (s - 0.5) * 2 * width
            latency = run["latency_us"]
            label = store if w == 0 else None
            left.bar(x - width / 2, latency["p50"] / 1000, width, color=COLORS[store], label=label and f"{store} p50")
            left.bar(x + width / 2, latency["p99"] / 1000, width, color=COLORS[store], alpha=0.45,
                     hatch="//", label=label and f"{store} p99")
            right.bar(x, run["ops_per_sec"], 2 * width * 0.9, color=COLORS[store], label=label)
    if floor:
        put_floor = floor["floor_us"] / 1000
        trip = floor["round_trip_us"] / 1000
        left.axhline(put_floor, color="black", linewidth=1.2,
                     label=f"floor of a put: fdatasync {floor['fdatasync_us'] / 1000:.3f} ms "
                           f"+ round trip {trip:.3f} ms = {put_floor:.3f} ms")
        left.axhline(trip, color="black", linestyle=":", linewidth=1.2,
                     label=f"floor of a get: round trip over ::1, {trip:.3f} ms")
        right.axhline(1000 / put_floor, color="black", linewidth=1.2, label="1 / floor of a put")
        right.axhline(1000 / trip, color="black", linestyle=":", linewidth=1.2, label="1 / floor of a get")
    for ax in (left, right):
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads)
        log_y(ax)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    left.set_ylabel("latency, ms (p50 solid, p99 hatched)")
    right.set_ylabel("throughput, requests/s")
    finish(figure, "one request at a time, next to the machine's floor (medians of "
           f"{floor['samples'] if floor else '?'} fdatasyncs and round trips)", machine, outdir / "latency.png")


def main(results, outdir):
    outdir.mkdir(parents=True, exist_ok=True)
    machine_path = results / "machine.json"
    machine = json.loads(machine_path.read_text()) if machine_path.exists() else None
    floor_path = results / "floor.json"
    floor = json.loads(floor_path.read_text()) if floor_path.exists() else None
    runs = load_runs(results)
    for sweep in SWEEPS:
        if sweep in runs:
            plot_sweep(sweep, runs[sweep], machine, outdir)
    if "latency" in runs or floor:
        plot_latency(runs.get("latency", {}), floor, machine, outdir)
    if not runs and not floor:
        sys.exit(f"plot_curves.py: no results in {results}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    default_out = pathlib.Path(__file__).resolve().parent / "curves"
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else default_out)
