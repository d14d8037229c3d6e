#!/usr/bin/env python3
"""Data-parallel scaling model for a convnet config (docs/scaling.md).

Reads the model's parameter count and forward FLOPs from `convnet train CONFIG --dry-run --json`
and prints, for 1..64 GPUs, the ring all-reduce time of the fp32 gradients,
2 (N - 1) / N * bytes / bus_bandwidth, and the step efficiency without overlap and with backward
overlapping the all-reduce (backward taken as 2/3 of the step's compute). Every bandwidth and the
sustained compute rate are assumptions given on the command line, not measurements.

  tools/scaling_model.py configs/vgg16_bn.yaml --batch-per-gpu 128 --tflops 100
"""
import argparse
import json
import subprocess


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--convnet", default="build/convnet")
    p.add_argument("--batch-per-gpu", type=int, default=128)
    p.add_argument("--tflops", type=float, default=100.0, help="assumed sustained training TFLOP/s per GPU")
    p.add_argument("--nvlink-gbs", type=float, default=450.0, help="assumed all-reduce bus GB/s within a node")
    p.add_argument("--ib-gbs", type=float, default=45.0, help="assumed all-reduce bus GB/s across nodes")
    p.add_argument("--gpus-per-node", type=int, default=8)
    a = p.parse_args()
    out = subprocess.run([a.convnet, "train", a.config, "--dry-run", "--json"], check=True, capture_output=True,
                         text=True).stdout
    model = json.loads(out)
    grad_bytes = 4 * model["params"]
    compute_s = 3 * model["flops_per_example"] * a.batch_per_gpu / (a.tflops * 1e12)
    print(f"{a.config}: {model['params']:,} parameters, {grad_bytes / 1e6:.1f} MB of fp32 gradients per step; "
          f"compute {compute_s * 1e3:.2f} ms per step at batch {a.batch_per_gpu} per GPU and {a.tflops:g} TFLOP/s")
    print("| GPUs | link | all-reduce ms | efficiency, no overlap | efficiency, overlapped |")
    print("|---:|---|---:|---:|---:|")
    for n in (1, 2, 4, 8, 16, 32, 64):
        bw = a.nvlink_gbs if n <= a.gpus_per_node else a.ib_gbs
        link = "-" if n == 1 else ("NVLink" if n <= a.gpus_per_node else "InfiniBand")
        t = 2 * (n - 1) / n * grad_bytes / (bw * 1e9)
        exposed = max(0.0, t - 2 / 3 * compute_s)
        print(f"| {n} | {link} | {t * 1e3:.3f} | {compute_s / (compute_s + t):.1%} | "
              f"{compute_s / (compute_s + exposed):.1%} |")


if __name__ == "__main__":
    main()
