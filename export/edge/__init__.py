"""Edge deployment of a bundle's explain graph (``liftcam edge``): ORT format and the
minimal-build operators config, INT8 and float16 variants measured against float32, and a
static web page on onnxruntime-web. Build time: onnx, onnxruntime.quantization and
onnxruntime.tools. See :mod:`liftcam.export.edge.build`."""
