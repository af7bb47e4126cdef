// Replays a network's recorded forward pass on WebGPU. manifest.json (written by
// `distill export --format web`, see models/src/web.rs) lists, per network, its buffers
// (with the values they start with, in weights/NAME.bin), the kernels it runs (kernels/*.wgsl,
// the very sources the desktop compiles) and the commands of one forward pass at batch 1:
// dispatches with their params bytes, clears and copies. This file knows no layer and
// no shape: it creates buffers and records commands, nothing else.

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

// The pipelines of `names`, compiled once for every network; a shader that does not
// compile is an error naming it.
export async function compileKernels(device, base, names) {
  const pipelines = new Map();
  for (const name of names) {
    const code = await fetchText(`${base}kernels/${name}.wgsl`);
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ label: name, code });
    const pipeline = device.createComputePipeline({
      label: name,
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    const error = await device.popErrorScope();
    if (error) {
      const info = await module.getCompilationInfo();
      const lines = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      throw new Error(`compiling kernels/${name}.wgsl: ${error.message} ${lines.join("; ")}`);
    }
    pipelines.set(name, pipeline);
  }
  return pipelines;
}

// A network of the manifest, ready to run: `await net.forward(pixels)` takes one image's
// (c, h, w) pixels in [0, 1] as a Float32Array and returns its logits.
export class Network {
  static async load(device, base, entry, pipelines) {
    const weights = new Float32Array(await fetchBytes(`${base}${entry.weights}`));
    const buffers = entry.buffers.map((b, i) => {
      const buffer = device.createBuffer({
        label: `${entry.name} buffer ${i}`,
        size: 4 * b.words,
        usage: STORAGE,
        mappedAtCreation: b.init !== null,
      });
      if (b.init !== null) {
        const [offset, words] = b.init;
        new Float32Array(buffer.getMappedRange()).set(weights.subarray(offset, offset + words));
        buffer.unmap();
      }
      return buffer;
    });
    // Each dispatch's params and bind group are fixed: made once, here.
    const steps = entry.commands.map((c) => {
      if (c.dispatch === undefined) return c;
      const pipeline = pipelines.get(c.dispatch);
      const params = new Uint32Array(c.params);
      const uniform = device.createBuffer({
        label: `${c.dispatch} params`,
        size: Math.ceil(params.byteLength / 16) * 16,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(uniform, 0, params);
      const entries = [{ binding: 0, resource: { buffer: uniform } }];
      c.bindings.forEach(([buffer, words], i) =>
        entries.push({ binding: i + 1, resource: { buffer: buffers[buffer], size: 4 * words } }),
      );
      const group = device.createBindGroup({
        label: c.dispatch,
        layout: pipeline.getBindGroupLayout(0),
        entries,
      });
      return { pipeline, group, grid: c.grid };
    });
    const readback = device.createBuffer({
      label: `${entry.name} logits`,
      size: 4 * entry.outputs,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    return new Network(device, entry, buffers, steps, readback);
  }

  constructor(device, entry, buffers, steps, readback) {
    Object.assign(this, { device, entry, buffers, steps, readback });
  }

  async forward(pixels) {
    const { device, entry, buffers } = this;
    device.queue.writeBuffer(buffers[entry.input_buffer], 0, pixels);
    const encoder = device.createCommandEncoder({ label: entry.name });
    let pass = null;
    for (const s of this.steps) {
      if (s.pipeline) {
        // Consecutive dispatches share a pass; WebGPU orders their reads after the
        // writes before them.
        pass ??= encoder.beginComputePass({ label: entry.name });
        pass.setPipeline(s.pipeline);
        pass.setBindGroup(0, s.group);
        pass.dispatchWorkgroups(s.grid[0], s.grid[1]);
        continue;
      }
      pass?.end();
      pass = null;
      if (s.clear !== undefined) {
        encoder.clearBuffer(buffers[s.clear], 0, 4 * s.words);
      } else {
        encoder.copyBufferToBuffer(buffers[s.copy[0]], 0, buffers[s.copy[1]], 0, 4 * s.words);
      }
    }
    pass?.end();
    encoder.copyBufferToBuffer(buffers[entry.output_buffer], 0, this.readback, 0, 4 * entry.outputs);
    device.queue.submit([encoder.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ);
    const logits = new Float32Array(this.readback.getMappedRange()).slice();
    this.readback.unmap();
    return logits;
  }
}

export async function fetchText(url) {
  return (await fetchOk(url)).text();
}

export async function fetchBytes(url) {
  return (await fetchOk(url)).arrayBuffer();
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}
