"""A style translator after AVS (Qian et al., "Aggregation via Separation", ICCV 2019), written from the paper.

A conditional variational U-Net (:mod:`train.style.network`) learns, by reconstructing each face
from itself, to separate a face's style (a posterior at 8x8 and 4x4 from the image alone) from its
structure (a landmark map). Decoding one face's structure with another's style gives a new image
whose landmarks are the structure face's: synthetic styles for any annotated set, written in the
AVS release layout (:mod:`train.style.generate`) that ``python -m train --avs-root`` and
``python -m calib build --avs`` read. ``python -m train.style fit`` / ``generate`` are the commands.
"""
