"""``python -m calib study``: do synthetic style proxies calibrate INT8 as well as real faces? Measured by K-fold.

The project claims that style-diverse synthetic samples calibrate at least as well as real images
(the project design, INT8). This package measures it on annotated real faces, with real-image calibration as
the control:

1. The faces are split into K folds, stratified by annotation kind (AFLW2000's 3-D-fit jaw vs 2-D
   annotations) and seeded. Each face is evaluated exactly once, by the models calibrated without it.
2. For each fold, calibration sets are built **only from the other folds' faces** (the evaluation
   fold is passed to ``calib build`` as ``--exclude``, so it is refused by path and by content):

   - ``proxies``: style proxies of the training faces (:mod:`calib.styles`, every style, seeded);
   - ``real``: the training faces as they are, the control. There are only a few, so the set is the
     same crops repeated to the proxies' sample count. Repetition adds no information and changes
     no statistic a calibrator uses (MinMax extremes; entropy/percentile histograms, which are
     normalised; NNCF's per-sample means), so it calibrates exactly as the unique crops would; it
     only equalises the count shown. Augmented crops (jitter, flips) would have added variety,
     which is the very thing under test, so they are not used;
   - ``mixed``: proxies plus every training face once as it is (``calib build --proxies --real``);
   - ``translator`` (with ``--translator``): the training faces in the styles of a ``train.style`` translator.
3. Each set quantizes the model with every quantizer (:data:`QUANTIZERS`: ONNX Runtime Q/DQ with
   MinMax, percentile and entropy ranges, per-channel weights; OpenVINO NNCF INT8 default and with
   the first conv and head left in float).
4. Every INT8 model and the FP32 model run on the evaluation fold; the result is the per-face NME
   change (INT8 - FP32, percent points; inter-ocular and box-normalised, since the AFLW2000 jaws
   follow a 3-D fit). The FP32 reference is ONNX Runtime's for every toolkit (OpenVINO FP32 agrees
   to ~1e-5). Beside it, the label-free error (:mod:`runtime.agreement`): the NME of the INT8 points
   taking the FP32 points as the truth, on the evaluation fold's faces, one variant of each style
   proxy of each of them (``face.jpg@low_light``), and, with ``--video``, the video's frames (cut
   from the FP32 model's own landmarks; every fold's models see all of them, named ``#frame (fold k)``),
   as mean, p95 and max with the worst inputs named. It needs no labels, so it sees ten times the
   faces and every frame.
5. Aggregation pools the K evaluation folds (every face once) and pairs the sources per face:
   ``proxies - real`` for each quantizer, with its spread, the faces where each side wins and an
   exact sign-flip permutation p-value, so the reader sees whether a difference is noise. With
   several ``--proxy-seeds`` the change between two draws of the proxies shows the noise floor of
   the calibration draw itself.

A quantizer that fails on a set becomes a row with its reason (``status: failed``); the rest of the
study still appears. Outputs: ``study.json`` (everything, per face) and ``study.md`` (tables ready
for the README, with the exact command and machine).
"""
from calib.study.command import add_parser, config_from_args, main_from_args
from calib.study.config import ALL_SOURCES, NORMALISATIONS, QUANTIZERS, SOURCES, Quantizer, StudyConfig, StudyError
from calib.study.folds import assign_folds, face_kind, paired_summary, sign_flip_p_value
from calib.study.render import markdown_report
from calib.study.run import build_fold_calibration, run_study, style_variants

__all__ = [
    "ALL_SOURCES", "NORMALISATIONS", "QUANTIZERS", "SOURCES", "Quantizer", "StudyConfig", "StudyError",
    "add_parser", "assign_folds", "build_fold_calibration", "config_from_args", "face_kind", "main_from_args",
    "markdown_report", "paired_summary", "run_study", "sign_flip_p_value", "style_variants",
]  # fmt: skip
