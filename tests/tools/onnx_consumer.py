#!/usr/bin/env python3
"""The consumer side of the ONNX export test: onnx.checker on the file, then ONNX Runtime on the
inputs convnet saw, compared with convnet's logits.

usage: onnx_consumer.py MODEL.onnx INPUTS.f32 LOGITS.f32 N C H W CLASSES
INPUTS.f32 is float32 NCHW, LOGITS.f32 float32 [N, CLASSES] (raw, little-endian). Prints the
model's op types ("ops A,B,...") and "relative_l2 X max_abs Y" and exits 0 when the relative L2 error is below 1e-4, 1 otherwise.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    model, inputs, logits = sys.argv[1:4]
    n, c, h, w, classes = map(int, sys.argv[4:9])
    proto = onnx.load(model)
    onnx.checker.check_model(proto, full_check=True)
    ops = sorted({node.op_type for node in proto.graph.node})
    print("ops " + ",".join(ops))
    x = np.fromfile(inputs, dtype="<f4").reshape(n, c, h, w)
    expected = np.fromfile(logits, dtype="<f4").reshape(n, classes)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"input": x})
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        print(f"bad output: shape {got.shape}, finite {np.all(np.isfinite(got))}")
        return 1
    rel = float(np.linalg.norm(got.astype(np.float64) - expected) / max(np.linalg.norm(expected.astype(np.float64)), 1e-30))
    print(f"relative_l2 {rel:.3e} max_abs {float(np.max(np.abs(got - expected))):.3e}")
    return 0 if rel < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
