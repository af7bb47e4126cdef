// The page: draw a digit (or pick a test image) and see each exported network's
// prediction and the latency of its forward pass. The networks run in host.js.
// With `?selftest`, it runs every test image through every network and POSTs the
// logits to /result (how the project's test compares them with the CPU's).

import { compileKernels, Network, fetchBytes, fetchText } from "./host.js";

const base = new URL(".", location.href).href;
const statusLine = document.getElementById("status");
const selftest = new URLSearchParams(location.search).has("selftest");

function fail(error) {
  statusLine.className = "error";
  statusLine.textContent = String(error.stack ?? error);
  if (selftest) report({ error: String(error) });
}

async function report(result) {
  await fetch(`${base}result`, { method: "POST", body: JSON.stringify(result) });
}

async function main() {
  if (!navigator.gpu) {
    throw new Error(
      "This browser has no WebGPU (navigator.gpu). Chrome and Edge 113+ have it, Safari 26+, " +
        "Firefox 141+ on Windows; elsewhere it may need a flag.",
    );
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("WebGPU found no adapter.");
  const device = await adapter.requestDevice();
  device.addEventListener("uncapturederror", (e) => fail(e.error.message));
  const manifest = JSON.parse(await fetchText(`${base}manifest.json`));
  const kernels = new Set(
    manifest.networks.flatMap((n) => n.commands.filter((c) => c.dispatch).map((c) => c.dispatch)),
  );
  const pipelines = await compileKernels(device, base, kernels);
  const networks = [];
  for (const entry of manifest.networks) {
    const net = await Network.load(device, base, entry, pipelines);
    // One pass first, so that the latencies shown are not the first use's setup.
    await net.forward(new Float32Array(entry.input.reduce((a, b) => a * b, 1)));
    networks.push(net);
  }
  const samples = await loadSamples(manifest.samples);
  const info = adapter.info ?? {};
  const adapterName = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ");
  statusLine.textContent = `${networks.length} network(s), ${kernels.size} kernels, on ${adapterName || "a WebGPU adapter"}`;
  if (selftest) return runSelftest(networks, samples, adapterName);
  interactive(networks, samples, manifest.classes);
}

async function loadSamples(s) {
  const bytes = new Uint8Array(await fetchBytes(`${base}${s.file}`));
  const size = s.count ? bytes.length / s.count : 0;
  const images = [];
  for (let i = 0; i < s.count; i++) {
    images.push(Float32Array.from(bytes.subarray(i * size, (i + 1) * size), (b) => b / 255));
  }
  return { images, labels: s.labels, shape: s.shape };
}

async function runSelftest(networks, samples, adapter) {
  const result = { adapter, networks: [] };
  for (const net of networks) {
    const logits = [];
    const t0 = performance.now();
    for (const image of samples.images) logits.push(...(await net.forward(image)));
    const ms = (performance.now() - t0) / Math.max(samples.images.length, 1);
    result.networks.push({ name: net.entry.name, logits, ms_per_image: ms });
  }
  statusLine.textContent += " — selftest done";
  await report(result);
}

function interactive(networks, samples, classes) {
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const panels = networks.map((net) => panel(net, classes));
  let busy = false;
  let again = false;
  async function predict(pixels) {
    if (busy) {
      again = pixels;
      return;
    }
    busy = true;
    for (const [i, net] of networks.entries()) {
      const t0 = performance.now();
      const logits = await net.forward(pixels);
      panels[i](logits, performance.now() - t0);
    }
    busy = false;
    if (again) {
      const next = again;
      again = false;
      predict(next);
    }
  }
  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    document.getElementById("truth").textContent = "";
  }
  clear();
  let drawing = false;
  let last = null;
  const point = (e) => {
    const r = pad.getBoundingClientRect();
    return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    last = point(e);
    pad.setPointerCapture(e.pointerId);
  });
  pad.addEventListener("pointerup", () => (drawing = false));
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const p = point(e);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 20;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
    predict(mnistLike(pad));
  });
  document.getElementById("clear").onclick = clear;

  // The test images as thumbnails: a click shows one and predicts it.
  const strip = document.getElementById("samples");
  samples.images.forEach((image, i) => {
    const thumb = document.createElement("canvas");
    const [, h, w] = samples.shape;
    thumb.width = w;
    thumb.height = h;
    const data = thumb.getContext("2d").createImageData(w, h);
    image.forEach((v, j) => data.data.set([255 * v, 255 * v, 255 * v, 255], 4 * j));
    thumb.getContext("2d").putImageData(data, 0, 0);
    thumb.title = `test image ${i}: ${classes[samples.labels[i]]}`;
    thumb.onclick = () => {
      strip.querySelectorAll(".chosen").forEach((c) => c.classList.remove("chosen"));
      thumb.classList.add("chosen");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(thumb, 0, 0, pad.width, pad.height);
      document.getElementById("truth").textContent = `label: ${classes[samples.labels[i]]}`;
      predict(image);
    };
    strip.appendChild(thumb);
  });
  strip.firstChild?.click();
}

// One column per network: its guess, the softmax of its logits, its latency.
function panel(net, classes) {
  const root = document.createElement("div");
  root.className = "net";
  const e = net.entry;
  root.innerHTML = `<h2></h2><div class="meta"></div><div class="guess">–</div><div class="time"></div><div class="bars"></div>`;
  root.querySelector("h2").textContent = e.name;
  root.querySelector(".meta").textContent =
    `${e.architecture}: ${e.parameters.toLocaleString()} parameters, ${(e.flops / 1e6).toFixed(2)} MFLOP`;
  document.getElementById("networks").appendChild(root);
  return (logits, ms) => {
    const max = Math.max(...logits);
    const exp = Array.from(logits, (z) => Math.exp(z - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    const best = exp.indexOf(Math.max(...exp));
    root.querySelector(".guess").textContent = classes[best] ?? best;
    root.querySelector(".time").textContent = `forward pass ${ms.toFixed(2)} ms`;
    root.querySelector(".bars").innerHTML = exp
      .map((v, c) => `<div class="bar"><span>${classes[c] ?? c}</span><div style="width:${(100 * v) / sum}px"></div><span>${((100 * v) / sum).toFixed(1)}%</span></div>`)
      .join("");
  };
}

// A drawing as MNIST's digits were made: the stroke's bounding box scaled to fit 20 x 20
// pixels, placed in 28 x 28 with its centre of mass at the centre.
function mnistLike(pad) {
  const src = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
  let [x0, y0, x1, y1] = [pad.width, pad.height, -1, -1];
  for (let y = 0; y < pad.height; y++) {
    for (let x = 0; x < pad.width; x++) {
      if (src[4 * (y * pad.width + x)] > 0) {
        [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
      }
    }
  }
  const out = new Float32Array(28 * 28);
  if (x1 < 0) return out;
  const scale = 20 / Math.max(x1 - x0 + 1, y1 - y0 + 1);
  const small = document.createElement("canvas");
  small.width = small.height = 28;
  const s = small.getContext("2d");
  const [w, h] = [(x1 - x0 + 1) * scale, (y1 - y0 + 1) * scale];
  s.drawImage(pad, x0, y0, x1 - x0 + 1, y1 - y0 + 1, (28 - w) / 2, (28 - h) / 2, w, h);
  const px = s.getImageData(0, 0, 28, 28).data;
  let [mass, mx, my] = [0, 0, 0];
  for (let i = 0; i < 784; i++) {
    const v = px[4 * i] / 255;
    mass += v;
    mx += v * (i % 28);
    my += v * Math.floor(i / 28);
  }
  const [dx, dy] = [Math.round(13.5 - mx / mass), Math.round(13.5 - my / mass)];
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const [sx, sy] = [x - dx, y - dy];
      if (sx >= 0 && sx < 28 && sy >= 0 && sy < 28) out[y * 28 + x] = px[4 * (sy * 28 + sx)] / 255;
    }
  }
  return out;
}

main().catch(fail);
