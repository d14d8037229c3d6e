#!/usr/bin/env python3
"""The markdown table of docs/results.md from results.jsonl files (tools/gpu_results.sh,
tools/torch_reference.py --json-out).

    tools/results_table.py OUT/results.jsonl [MORE.jsonl ...] > table.md

One row per recipe x runner (convnet:cuda, convnet:cudnn, torch:fp32, ...) x GPU, over the runs
that finished: test accuracy as mean +- sample standard deviation over seeds, the same without
test-time augmentation where the recipe uses it, time from the start of training to the final
test accuracy, the whole process's wall time, and training throughput. Failed runs are counted in
their own column. Below the table: the GPU, each row's command (of its first seed) and dates.
"""

import argparse
import json
import statistics
import sys

RECIPE_ORDER = {"fast94": 0, "fast96": 1, "vgg11_bn": 2, "vgg16_bn": 3, "resnet20": 4, "resnet18": 5}
RUNNER_ORDER = {"convnet:cuda": 0, "convnet:cudnn": 1, "convnet:cuda_tf32": 2, "convnet:cudnn_tf32": 3, "convnet:cpu": 4,
                "torch:fp32": 5, "torch:tf32": 6}


def runner_of(r):
    if r.get("runner"):
        return r["runner"]
    if r.get("framework") == "pytorch":
        return "torch:" + r.get("precision", "fp32")
    return "convnet:" + str(r.get("backend"))


def time_to_result(r):
    """Seconds from the start of training to the final test accuracy: convnet's Trainer::run time
    ("done: N steps in X s"); torch_reference.py's wall_seconds (model construction to the final
    accuracy, per-epoch evaluations included)."""
    return r.get("run_seconds") if r.get("framework") == "convnet" else r.get("wall_seconds")


def mean_std(values, scale=1.0, digits=2):
    values = [v * scale for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def mean(values, digits=1):
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):,.{digits}f}" if values else "-"


def load(paths):
    records = []
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError as e:
                    print(f"results_table: {path}:{n}: not JSON ({e}); skipped", file=sys.stderr)
    return records


def table(records):
    groups = {}
    for r in records:
        key = (r.get("recipe", "?"), runner_of(r), r.get("gpu") or r.get("device") or "?")
        groups.setdefault(key, []).append(r)
    keys = sorted(groups, key=lambda k: (RECIPE_ORDER.get(k[0], 99), k[0], RUNNER_ORDER.get(k[1], 99), k[1], k[2]))
    lines = [
        "| recipe | runner | precision | runs | test accuracy % | without TTA % | time to result s | process s "
        "| images/s | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for key in keys:
        recipe, runner, gpu = key
        runs = groups[key]
        ok = [r for r in runs if r.get("ok", True) and r.get("test_accuracy") is not None]
        failed = len(runs) - len(ok)
        precision = next((r.get("precision") for r in runs if r.get("precision")), "-")
        tta = [r.get("test_accuracy_no_tta") for r in ok if r.get("tta", "flip_translate") != "none"
               or r.get("framework") == "convnet"]
        with_tta = recipe in ("fast94", "fast96")  # the recipes evaluated with TTA
        ips = [r.get("median_epoch_images_per_sec") or r.get("images_per_sec") for r in ok]
        lines.append("| " + " | ".join([
            recipe, runner, precision, str(len(ok)),
            mean_std([r["test_accuracy"] for r in ok], 100),
            mean_std(tta, 100) if with_tta else "-",
            mean_std([time_to_result(r) for r in ok], 1, 1),
            mean_std([r.get("process_seconds") for r in ok], 1, 1),
            mean(ips, 0),
            str(failed),
        ]) + " |")
        dates = sorted(r["date"] for r in runs if r.get("date"))
        first = min(runs, key=lambda r: r.get("seed", 0))
        seeds = sorted(r.get("seed") for r in ok if r.get("seed") is not None)
        versions = []
        if first.get("convnet"):
            versions.append(first["convnet"])
        if first.get("torch"):
            versions.append(f"torch {first['torch']}" + (f", CUDA {first['cuda']}, cuDNN {first['cudnn']}"
                                                          if first.get("cuda") else ""))
        if first.get("commit"):
            versions.append(f"commit {first['commit']}")
        span = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}") if dates else "no date"
        notes.append(f"- {recipe}, {runner} on {gpu}: seeds {seeds}; {span}; {'; '.join(versions)}; "
                     f"command: `{first.get('command', '?')}`")
    return "\n".join(lines), notes


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="results.jsonl files")
    args = p.parse_args()
    records = load(args.files)
    if not records:
        print("results_table: no results in " + ", ".join(args.files), file=sys.stderr)
        return 1
    body, notes = table(records)
    gpus = sorted({r.get("gpu") or r.get("device") or "?" for r in records})
    print(f"GPU: {', '.join(gpus)}")
    print()
    print(body)
    print()
    print("time to result: convnet, `done: ... in X s` (Trainer::run: training, evaluations and checkpoint "
          "writes); PyTorch, model construction to the final accuracy (data already on the GPU, after an untimed "
          "warm-up). process: the whole command, start-up and data loading included. images/s: median over "
          "epochs of the training throughput. Accuracy: mean ± sample standard deviation over the seeds.")
    print()
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
