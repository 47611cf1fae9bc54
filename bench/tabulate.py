#!/usr/bin/env python3
"""Turns the JSON files of bench/compare.sh into one Markdown table (paxkv next to etcd).

Throughput and latencies are medians over the rounds; a ratio is the median of the per-round
ratios (paxkv's round r against etcd's round r, run one after the other), with their range.
"""

import json
import pathlib
import statistics
import sys


def load(path):
    return json.loads(path.read_text())


def ratio_cell(ratios, digits=2):
    if not ratios:
        return "-"
    middle = statistics.median(ratios)
    return f"{middle:.{digits}f} ({min(ratios):.{digits}f}-{max(ratios):.{digits}f})"


def main(results):
    runs = {}
    for path in sorted(results.glob("load-*.json")):
        for run in load(path)["runs"]:
            # One row per workload and connection setting (every run of a row has the same
            # requests in flight).
            row = (run["workload"], run.get("connections", 1), run["concurrency"])
            runs.setdefault(row, {}).setdefault(run["backend"], {})[run["label"]] = run
    lines = [
        "| workload (in flight, connections) | paxkv ops/s | etcd ops/s | paxkv / etcd ops/s | paxkv p50 / p99 ms "
        "| etcd p50 / p99 ms | paxkv / etcd p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (workload, connections, concurrency), stores in sorted(runs.items()):
        paxkv, etcd = stores.get("paxkv", {}), stores.get("etcd", {})
        rounds = sorted(set(paxkv) & set(etcd))

        def median(store, pick):
            values = [pick(run) for run in store.values()]
            return statistics.median(values) if values else float("nan")

        def ops(run):
            return run["ops_per_sec"]

        def p50(run):
            return run["latency_us"]["p50"] / 1000

        def p99(run):
            return run["latency_us"]["p99"] / 1000

        throughput = [ops(paxkv[r]) / ops(etcd[r]) for r in rounds if ops(etcd[r]) > 0]
        tail = [p99(paxkv[r]) / p99(etcd[r]) for r in rounds if p99(etcd[r]) > 0]
        errors = sum(run["errors"] + run["misses"] for store in stores.values() for run in store.values())
        name = f"{workload} ({concurrency}, {connections})" + (f" ({errors} errors)" if errors else "")
        lines.append(
            f"| {name} | {median(paxkv, ops):,.0f} | {median(etcd, ops):,.0f} "
            f"| {ratio_cell(throughput)} "
            f"| {median(paxkv, p50):.2f} / {median(paxkv, p99):.2f} "
            f"| {median(etcd, p50):.2f} / {median(etcd, p99):.2f} | {ratio_cell(tail)} |"
        )

    failover = {}
    for path in sorted(results.glob("failover-*.json")):
        result = load(path)
        case = (result.get("mode", "kill"), result.get("request_timeout_ms", 0))
        times = failover.setdefault(case, {}).setdefault(result["backend"], [])
        times.append(result["failover_ms"])
    memory = {}
    for path in sorted(results.glob("memory-*.json")):
        result = load(path)
        memory[result["backend"]] = result
    extra = []
    failures = {
        "kill": "kill -9 of the leader",
        "freeze": "SIGSTOP of the leader (frozen, its connections open)",
    }
    # kill before freeze, the longer request timeout first
    order = sorted(failover, key=lambda case: (case[0] != "kill", -case[1]))
    for mode, timeout in order:
        stores = failover[(mode, timeout)]
        pax, etc = stores.get("paxkv", []), stores.get("etcd", [])
        tries = max(len(pax), len(etc))
        extra.append(
            f"| failover: {failures.get(mode, mode)} to the first put, ms, requests time out after "
            f"{timeout / 1000:g} s (median of {tries}) | {fmt_median(pax)} | {fmt_median(etc)} "
            f"| {ratio_of(pax, etc)} |"
        )
        extra.append(f"| (every try) | {fmt_all(pax)} | {fmt_all(etc)} | |")
    replace = {}
    for path in sorted(results.glob("replace-*.json")):
        result = load(path)
        replace[result["backend"]] = result
    if replace:
        pax, etc = replace.get("paxkv"), replace.get("etcd")

        def one(result, field):
            return [result[field]] if result and field in result else []

        for field, what in [
            ("write_gap_ms", "replace a killed follower under 16 writers: longest write gap, ms"),
            ("command_ms", "the change (kill, add, promote, remove), ms"),
            ("new_node_served_ms", "to the new node's first local read, ms"),
        ]:
            extra.append(
                f"| {what} | {fmt_all(one(pax, field))} | {fmt_all(one(etc, field))} "
                f"| {ratio_of(one(pax, field), one(etc, field))} |"
            )
    if memory:
        pax, etc = memory.get("paxkv"), memory.get("etcd")
        keys = (pax or etc)["keys"]
        extra.append(
            f"| resident memory per node with {keys:,} keys of 100 B, MB |"
            f" {fmt_all(pax and pax['rss_mb'])} | {fmt_all(etc and etc['rss_mb'])} |"
            f" {ratio_of(pax and pax['rss_mb'], etc and etc['rss_mb'])} |"
        )
        def memory_again(field, setting, label):
            """A row of each node's memory measured again, if the run measured it."""
            values = [result.get(field) if result else None for result in (pax, etc)]
            if any(values):
                label = label.format((pax or etc).get(setting, ""))
                extra.append(
                    f"| {label} | {fmt_all(values[0])} | {fmt_all(values[1])} |"
                    f" {ratio_of(values[0], values[1])} |"
                )

        memory_again("rss_idle_mb", "idle", "the same {} later, idle, MB")
        memory_again("rss_overwritten_mb", "overwrites", "the same after {} of puts over those keys, MB")
        extra.append(
            f"| data directory per node, MB | {pax['disk_mb'] if pax else '-'}"
            f" | {etc['disk_mb'] if etc else '-'} |"
            f" {ratio_of(pax and [pax['disk_mb']], etc and [etc['disk_mb']])} |"
        )
        extra.append(
            "| restart of a node with them to its first read, ms (median) |"
            f" {fmt_median(pax and pax['restart_ms'])} ({fmt_all(pax and pax['restart_ms'])})"
            f" | {fmt_median(etc and etc['restart_ms'])} ({fmt_all(etc and etc['restart_ms'])}) |"
            f" {ratio_of(pax and pax['restart_ms'], etc and etc['restart_ms'])} |"
        )
        caught_up = [result.get("restart_caught_up_ms") if result else None for result in (pax, etc)]
        if any(caught_up):
            extra.append(
                "| the same restart until the node has applied everything and knows its leader, ms"
                f" (median) | {fmt_median(caught_up[0])} ({fmt_all(caught_up[0])})"
                f" | {fmt_median(caught_up[1])} ({fmt_all(caught_up[1])}) |"
                f" {ratio_of(caught_up[0], caught_up[1])} |"
            )
        catch_up = [
            [result["catch_up_ms"]] if result and result.get("catch_up_ms") is not None else []
            for result in (pax, etc)
        ]
        extra.append(
            f"| a new member catching up on them to its first read, ms | {fmt_all(catch_up[0])}"
            f" | {fmt_all(catch_up[1])} | {ratio_of(*catch_up)} |"
        )
        for field, what in [
            ("fill_elections", "new leaders while the keys were written (most any node saw)"),
            ("catch_up_elections", "new leaders while the new member caught up"),
        ]:
            counts = [
                [result[field]] if result and result.get(field) is not None else []
                for result in (pax, etc)
            ]
            if any(counts):
                extra.append(f"| {what} | {fmt_all(counts[0])} | {fmt_all(counts[1])} | - |")
        # Put latency while the keys are written, and while the new member catches up.
        for name, what in [
            ("fill", f"writing the {keys:,} keys (256 in flight, 4 connections)"),
            ("catch-up-puts", "puts while the new member catches up"),
        ]:
            runs = {}
            for store in ("paxkv", "etcd"):
                path = results / f"{name}-{store}.json"
                if path.exists():
                    runs[store] = load(path)["runs"][0]
            if not runs:
                continue

            def value(store, field):
                run = runs.get(store)
                if not run:
                    return None
                if field == "ops_per_sec":
                    return run[field]
                return run["latency_us"][field] / 1000

            for field, label, shown in [
                ("ops_per_sec", "puts/s", "{:,.0f}"),
                ("p99", "p99 ms", "{:.1f}"),
                ("p999", "p99.9 ms", "{:.1f}"),
                ("max", "max ms", "{:.1f}"),
            ]:
                pax, etc = value("paxkv", field), value("etcd", field)
                pax_cell = "-" if pax is None else shown.format(pax)
                etc_cell = "-" if etc is None else shown.format(etc)
                ratio = f"{pax / etc:.2f}" if pax is not None and etc else "-"
                extra.append(f"| {what}: {label} | {pax_cell} | {etc_cell} | {ratio} |")
    if extra:
        lines += ["", "| measure | paxkv | etcd | paxkv / etcd |", "|---|---:|---:|---:|"] + extra
    lines += watch_table(results)
    print("\n".join(lines))


def watch_table(results):
    """The watch runs: events delivered per second (all watchers), put sent to delivery, the
    serving nodes' memory while watched."""
    watch = {}
    for path in sorted(results.glob("watch-*.json")):
        for run in load(path)["runs"]:
            watch.setdefault(run["concurrency"], {})[run["backend"]] = run
    if not watch:
        return []
    rss = {}
    for path in sorted(results.glob("watch-rss-*.txt")):
        _, _, watchers, store = path.stem.split("-")
        rss[(int(watchers), store)] = path.read_text().strip()
    lines = [
        "",
        "| watchers | paxkv events/s | etcd events/s | paxkv / etcd | paxkv p50 / p99 ms "
        "| etcd p50 / p99 ms | paxkv / etcd p99 | missed (paxkv / etcd) "
        "| nodes' memory idle / watched, MB (paxkv; etcd) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for watchers in sorted(watch):
        pax, etc = watch[watchers].get("paxkv"), watch[watchers].get("etcd")

        def cell(run, pick):
            return pick(run) if run else float("nan")

        def ops(run):
            return run["ops_per_sec"]

        def p(run, q):
            return run["latency_us"][q] / 1000

        both = pax and etc
        lines.append(
            f"| {watchers:,} | {cell(pax, ops):,.0f} | {cell(etc, ops):,.0f} "
            f"| {ops(pax) / ops(etc) if both and ops(etc) else float('nan'):.2f} "
            f"| {cell(pax, lambda r: p(r, 'p50')):.2f} / {cell(pax, lambda r: p(r, 'p99')):.2f} "
            f"| {cell(etc, lambda r: p(r, 'p50')):.2f} / {cell(etc, lambda r: p(r, 'p99')):.2f} "
            f"| {p(pax, 'p99') / p(etc, 'p99') if both and p(etc, 'p99') else float('nan'):.2f} "
            f"| {cell(pax, lambda r: r['misses'])} / {cell(etc, lambda r: r['misses'])} "
            f"| {rss.get((watchers, 'paxkv'), '-')}; {rss.get((watchers, 'etcd'), '-')} |"
        )
    return lines


def fmt_median(values):
    return f"{statistics.median(values):.0f}" if values else "-"


def fmt_all(values):
    return ", ".join(f"{value:.0f}" for value in values) if values else "-"


def ratio_of(pax, etc):
    if not pax or not etc or statistics.median(etc) == 0:
        return "-"
    return f"{statistics.median(pax) / statistics.median(etc):.2f}"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tabulate.py RESULTS_DIR")
    main(pathlib.Path(sys.argv[1]))
