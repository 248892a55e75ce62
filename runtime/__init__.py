"""edgemark runtime: the torch-free landmark core and the tracker.

Core: layouts, metrics, heatmap decoding, the crop rule and the artifact card. Runtime: backends
(ONNX Runtime, OpenVINO, TensorRT, torch) behind one small interface, the landmarker, face
detection, smoothing, the tracker (``python -m runtime.track``), the benchmark and the report.

Importing this package never imports torch, tensorrt or openvino.
"""
