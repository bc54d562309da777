// liftcam edge page: explain_raw.onnx (raw RGB pixels in, map + overlay at the image's size
// out) in onnxruntime-web's WASM backend; every file is local to this folder.
// After a run, window.liftcamResult = {map, dims, logits, top, ms} (read by the tests).
'use strict';
const $ = (id) => document.getElementById(id);
ort.env.wasm.wasmPaths = new URL('./', location.href).href;
ort.env.wasm.numThreads = 1;          // threads need cross-origin isolation headers
let session = null;
let labels = null;

function fail(e) {
  window.liftcamError = String(e && e.message ? e.message : e);
  $('status').textContent = 'Error: ' + window.liftcamError;
  document.body.dataset.state = 'error';
}

async function init() {
  const info = await (await fetch('model.json')).json();
  labels = info.labels;
  session = await ort.InferenceSession.create('explain_raw.onnx',
                                              {executionProviders: ['wasm']});
  $('status').textContent = `${info.name}: model loaded (${info.input}). Pick an image.`;
  document.body.dataset.state = 'ready';
}

async function explain(file) {
  document.body.dataset.state = 'running';
  $('status').textContent = 'Explaining ' + file.name + '…';
  const bmp = await createImageBitmap(file, {colorSpaceConversion: 'none',
                                             premultiplyAlpha: 'none'});
  const [w, h] = [bmp.width, bmp.height];
  const canvas = $('image');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.fillStyle = '#000';             // transparent pixels over black, as liftcam does
  ctx.fillRect(0, 0, w, h);
  ctx.drawImage(bmp, 0, 0);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  const t0 = performance.now();
  const out = await session.run({
    pixels: new ort.Tensor('uint8', rgb, [h, w, 3]),
    target: new ort.Tensor('int64', BigInt64Array.from([-1n]), [1]),
  });
  const ms = performance.now() - t0;
  const oc = $('overlay');
  oc.width = w;
  oc.height = h;
  const octx = oc.getContext('2d');
  const img = octx.createImageData(w, h);
  const ov = out.overlay.data;
  for (let i = 0, j = 0; j < ov.length; i += 4, j += 3) {
    img.data[i] = ov[j];
    img.data[i + 1] = ov[j + 1];
    img.data[i + 2] = ov[j + 2];
    img.data[i + 3] = 255;
  }
  octx.putImageData(img, 0, 0);
  const logits = Array.from(out.logits.data);
  const top = logits.indexOf(Math.max(...logits));
  const name = labels ? labels[top] : 'class ' + top;
  $('result').textContent = `predicted: ${name} (class ${top}), explained in ${ms.toFixed(0)} ms`;
  $('status').textContent = file.name + ` (${w}x${h})`;
  window.liftcamResult = {map: Array.from(out.map.data), dims: out.map.dims, logits, top, ms};
  document.body.dataset.state = 'done';
}

$('file').addEventListener('change', (ev) => {
  const f = ev.target.files[0];
  if (f) explain(f).catch(fail);
});
init().catch(fail);
