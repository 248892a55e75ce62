"""edgemark export: checkpoints and third-party models to deployable artifacts, each with its card.

Commands (thin front ends over one library function each)::

    python -m export.onnx    checkpoint -> ONNX, or --import a third-party ONNX model with a card
    python -m export.ort     --int8: static INT8 Q/DQ (TensorRT-ready) with ONNX Runtime
    python -m export.verify  compare an artifact with its reference on annotated faces

Library modules: :mod:`export.onnx_export`, :mod:`export.ort_quantize`, :mod:`export.qdq`
(TensorRT-readiness checks), :mod:`export.calibration` (calibration arrays),
:mod:`export.evaluation` (ONNX Runtime runner + landmark math on faces), :mod:`export.artifact`.
The command module is ``export/onnx.py``; the library is ``onnx_export`` and every import is
absolute, so ``import onnx`` inside this package is always the ``onnx`` package (run the command
as ``python -m export.onnx``, never as ``python export/onnx.py``).
"""
