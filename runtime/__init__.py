"""edgemark runtime: torch-free landmark core (layouts, metrics, decoding, crops) and, later, backends.

Importing this package never imports torch, tensorrt or openvino.
"""
