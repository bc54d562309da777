// Run explain_raw.onnx with onnxruntime-web (WASM) in Node.js.
// node run_raw.mjs MODEL PIXELS.bin H W OUT_MAP.bin  (pixels: uint8 H*W*3; map: float32 H*W)
import * as ort from 'onnxruntime-web';
import fs from 'fs';
ort.env.wasm.numThreads = 1;
const model = fs.readFileSync(process.argv[2]);
const px = new Uint8Array(fs.readFileSync(process.argv[3]));
const [h, w] = [parseInt(process.argv[4]), parseInt(process.argv[5])];
const s = await ort.InferenceSession.create(model, {executionProviders: ['wasm']});
const out = await s.run({pixels: new ort.Tensor('uint8', px, [h, w, 3]),
                         target: new ort.Tensor('int64', BigInt64Array.from([-1n]), [1])});
fs.writeFileSync(process.argv[6], Buffer.from(out.map.data.buffer));
console.log(JSON.stringify({logits: Array.from(out.logits.data), map: out.map.dims, overlay: out.overlay.dims}));
