"""Checks an exported model against our logits: onnx.checker (full check), then
onnxruntime on the same images. Usage: check.py MODEL.onnx IMAGES.f32 LOGITS.f32 N TOL
(IMAGES: N x 1 x 28 x 28 float32 pixels in [0, 1]; LOGITS: ours, N x classes float32).
Prints the largest difference; exits 1 when it is above TOL."""
import sys

import numpy as np
import onnx
import onnxruntime as ort

path, images, logits, n, tol = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
model = onnx.load(path)
onnx.checker.check_model(model, full_check=True)
x = np.fromfile(images, dtype="<f4").reshape(n, 1, 28, 28)
ours = np.fromfile(logits, dtype="<f4").reshape(n, -1)
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
theirs = session.run(["logits"], {"input": x})[0]
diff = float(np.abs(theirs - ours).max())
agree = int((theirs.argmax(1) == ours.argmax(1)).sum())
print(f"{path}: opset {model.opset_import[0].version}, max |onnxruntime - ours| = {diff:.3g} "
      f"(max |logit| {float(np.abs(ours).max()):.3g}), same class on {agree} of {n}")
sys.exit(0 if diff <= tol else 1)
