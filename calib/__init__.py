"""Calibration sets for INT8: preprocessed model inputs plus a manifest of where each came from.

``python -m calib build`` (library: :func:`calib.build.build_calibration_set`) makes an ``.npz``
calibration array (the format of :mod:`export.calibration`, read by every INT8 toolkit adapter) from

- AVS synthetic-style sets (``--avs``; one stratum per style folder),
- style proxies of real annotated faces (``--proxies``; :mod:`calib.styles`: illumination gradient,
  low light, colour cast, motion and defocus blur, sensor noise, JPEG artefacts, make-up, occlusion),
- plain real faces (``--real``; the control the project's claim is measured against),

stratified to an equal share per style, seeded, cropped and normalised exactly as the runtime does
from the target model's card, with evaluation images kept out by path and by content hash.
:mod:`calib.preview` draws a contact sheet of what the set holds.
"""
