"""train.style: the style translator on real faces (faces68), at tiny widths so the file stays fast.

What is checked: transfer batching (S x J outputs in one pass, each equal to decoding that pair
alone), a short fit lowering the reconstruction loss on real faces, exact resume, the written AVS
layout (384-px images, labels = the structure face's landmarks mapped into the 384 crop frame, WFLW
box and flags kept) read back by runtime's AVS reader, train's dataset and ``calib build --avs``,
the VGG19 perceptual path with a user weights file, and one-line refusals.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from runtime.annotations import (
    AVS_IMAGE_SIZE,
    read_avs_root,
    read_dataset,
    read_pts_folder,
)
from runtime.card import Card, write_card
from runtime.crop import (
    CropRule,
    Normalisation,
    apply,
    compose,
    crop_matrix,
    landmark_box,
)
from runtime.errors import UsageError
from tests.conftest import one_error_line
from train.checkpoint import load_checkpoint, save_checkpoint
from train.style.__main__ import main as style_main
from train.style.generate import frame_to_output
from train.style.losses import VGG19_LAYERS, vgg19_features
from train.style.network import StyleTranslator, TranslatorShape, kl_unit_gaussians

FIXTURES = Path(__file__).parent / "fixtures"
TINY = ["--image-size", "32", "--width", "8", "--max-width", "16", "--blocks", "1", "--workers", "0"]
FIT_STEPS = 40


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions: one thread is fastest, and two spinning OpenMP threads crawl on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(data: Path, out: Path, steps: int, *flags: str) -> int:
    return style_main(["fit", "--data", str(data), "--out-dir", str(out), "--steps", str(steps), *TINY, *flags])


@pytest.fixture(scope="module")
def fitted(faces68_dir, tmp_path_factory) -> Path:
    """A tiny translator fitted FIT_STEPS steps on the twelve real faces (no augmentation: a stable curve)."""
    out = tmp_path_factory.mktemp("style_fit")
    assert fit(faces68_dir, out, FIT_STEPS, "--augment", "false", "--save-every", "1000") == 0
    return out / "last.pt"


@pytest.fixture(scope="module")
def generated(fitted, faces68_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("style_gen") / "avs"
    grid = out.parent / "grid.png"
    argv = ["generate", str(fitted), "--data", str(faces68_dir), "--styles", "3", "--out", str(out), "--grid", str(grid)]
    assert style_main([*argv, "--batch-size", "5"]) == 0
    return out


def test_transfer_gives_every_style_with_every_structure_in_one_pass():
    torch.manual_seed(0)
    model = StyleTranslator(TranslatorShape(image_size=32, num_points=5, width=8, max_width=16, blocks=1)).eval()
    images, maps = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 5, 32, 32)
    grid = model.transfer(images, maps)
    assert grid.shape == (3, 3, 3, 32, 32)  # n images -> n^2 outputs
    assert torch.allclose(model.transfer(images, maps, chunk=2), grid, atol=1e-6)
    styles, structure = model.encode_style(images), model.encode_structure(maps)
    for i in range(3):
        for j in range(3):
            alone, _ = model.decode([f[j : j + 1] for f in structure], {k: v[i : i + 1] for k, v in styles.items()})
            assert torch.allclose(grid[i, j], alone[0], atol=1e-5)
    # Training view: posterior and prior at 8x8 and 4x4 only; KL zero when they agree.
    output, posteriors, _ = model.train()(images, maps)
    assert output.shape == images.shape and output.abs().max() <= 1
    assert sorted(tuple(p.shape[-2:]) for p in posteriors.values()) == [(4, 4), (8, 8)]
    assert kl_unit_gaussians(posteriors, posteriors).item() == 0



def test_latent_channels_and_levels_set_the_posterior_and_prior_shapes():
    torch.manual_seed(0)
    images, maps = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 5, 32, 32)
    base = {"image_size": 32, "num_points": 5, "width": 8, "max_width": 16, "blocks": 1}
    for extra, expected in (
        ({}, [(16, 4, 4), (16, 8, 8)]),  # default: the feature width of each scale, at 8x8 and 4x4
        ({"latent_channels": 4}, [(4, 4, 4), (4, 8, 8)]),
        ({"latent_channels": 4, "latent_levels": 1}, [(4, 4, 4)]),
    ):
        model = StyleTranslator(TranslatorShape(**base, **extra))
        output, posteriors, priors = model(images, maps)
        assert output.shape == images.shape
        assert sorted(tuple(p.shape[1:]) for p in posteriors.values()) == expected
        assert {k: p.shape for k, p in priors.items()} == {k: p.shape for k, p in posteriors.items()}
        assert model.eval().transfer(images, maps).shape == (2, 2, 3, 32, 32)
    # A checkpoint's shape from before these fields existed still builds the paper's model.
    assert TranslatorShape(**base) == TranslatorShape(**base, latent_channels=0, latent_levels=2)
    for bad in ({"latent_channels": -1}, {"latent_levels": 0}, {"latent_levels": 3}):
        with pytest.raises(UsageError, match="--latent"):
            TranslatorShape(**base, **bad)

def test_fallback_loss_punishes_an_inverted_channel(faces68_dir):
    """SSIM on signed values scores an inverted channel high (a fit found that optimum); on [0, 1] it must not."""
    from train.style.data import face_dataset, layout_of, read_faces
    from train.style.losses import SsimL1Loss

    samples = read_faces(faces68_dir)[:2]
    images = torch.stack([item["image"] for item in (face_dataset(samples, layout_of(samples), 64, 1.4, False, 0)[i] for i in range(2))])
    inverted = images.clone()
    inverted[:, 0] = -inverted[:, 0]  # red channel inverted
    blurred = torch.nn.functional.avg_pool2d(images, 3, 1, 1)
    loss = SsimL1Loss()
    assert loss(images, images).item() == pytest.approx(0, abs=1e-5)
    assert loss(inverted, images) > 4 * loss(blurred, images)  # signed SSIM gave 2.5x, this 8.8x


def test_a_short_fit_on_real_faces_lowers_the_reconstruction_loss(fitted, capsys):
    state = load_checkpoint(fitted)
    history = state["history"].numpy()  # (steps, 4): loss, reconstruction, KL, KL weight
    assert state["kind"] == "style-translator" and state["step"] == FIT_STEPS == len(history)
    assert state["perceptual"]["kind"] == "l1_msssim"
    start, end = history[:5, 1].mean(), history[-5:, 1].mean()
    print(f"reconstruction loss, mean of the first and last 5 steps: {start:.4f} -> {end:.4f}")
    assert end < start - 0.02, (start, end)
    # The KL ramp: zero weight for the first half, full weight from three quarters on.
    assert history[: FIT_STEPS // 2, 3].max() == 0 and history[-1, 3] == pytest.approx(0.1)


def test_resume_continues_exactly(faces68_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert fit(faces68_dir, straight, 4, "--batch-size", "2") == 0
    assert fit(faces68_dir, resumed, 2, "--batch-size", "2") == 0
    assert fit(faces68_dir, resumed, 4, "--batch-size", "2", "--resume", "auto") == 0
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["model_sha256"] == b["model_sha256"]
    assert torch.equal(a["history"], b["history"])


def test_generated_layout_keeps_the_structure_faces_labels(generated, faces68_dir, fitted):
    samples = read_pts_folder(faces68_dir)
    manifest = json.loads((generated / "generate.json").read_text())
    assert manifest["outputs"] == 3 * len(samples) and len(manifest["styles"]) == 3
    synthetic = read_avs_root(generated)
    assert len(synthetic) == 3 * len(samples)
    crop_scale = load_checkpoint(fitted)["crop_scale"]
    for item in synthetic:
        index = int(Path(item.image).stem)  # the structure face j
        source = samples[index]
        to_384 = compose(frame_to_output(32), crop_matrix(landmark_box(source.points), CropRule("landmarks", crop_scale), 32))
        np.testing.assert_allclose(item.points, apply(to_384, source.points), atol=1e-3)
        # The same frame as a crop taken directly at 384: the resize and the crop rule agree.
        direct = crop_matrix(landmark_box(source.points), CropRule("landmarks", crop_scale), AVS_IMAGE_SIZE)
        np.testing.assert_allclose(item.points, apply(direct, source.points), atol=1e-3)
        assert cv2.imread(str(item.image)).shape == (AVS_IMAGE_SIZE, AVS_IMAGE_SIZE, 3)
    assert {item.source for item in synthetic} == {s["name"] for s in manifest["styles"]}
    sheet = cv2.imread(str(generated.parent / "grid.png"))
    assert sheet.shape == (4 * 128, 6 * 128, 3)  # header + 3 styles; reference column + 5 structures


def test_trains_reader_and_calib_build_read_the_generated_set(generated, tmp_path):
    from calib.__main__ import main as calib_main
    from export.calibration import read_calibration_array
    from runtime.layouts import get_layout
    from train.data import LandmarkDataset

    synthetic = read_dataset(generated)  # what python -m train --avs-root / --train-data read
    item = LandmarkDataset(synthetic, get_layout("ibug68"), input_size=64)[0]
    assert item["image"].shape == (3, 64, 64) and item["weights"].sum() == 68
    card = Card(layout="ibug68", num_points=68, input_size=64, normalisation=Normalisation(), output_kind="coords",
                decode="direct", crop_rule=CropRule(box="landmarks", scale=1.2))  # fmt: skip
    artifact = tmp_path / "model.onnx"
    write_card(artifact, card)
    output = tmp_path / "calib.npz"
    assert calib_main(["build", "--card", str(artifact), "--avs", str(generated), "--size", "9", "--batch-size", "3",
                       "--out", str(output)]) == 0  # fmt: skip
    manifest = read_calibration_array(output).manifest
    assert manifest["styles"] == {f"avs/{name}": 3 for name in sorted(p.name for p in generated.iterdir() if p.is_dir())}


def test_wflw_lines_keep_box_and_attributes_and_styles_from_unlabelled_images(faces68_dir, tmp_path):
    wflw = FIXTURES / "wflw" / "list_98pt_rect_attr_train.txt"
    assert fit(wflw, tmp_path / "fit", 1, "--batch-size", "2") == 0
    photos = tmp_path / "photos"  # unlabelled: images only
    photos.mkdir()
    for name in ("einstein", "breakingbad"):
        shutil.copy(faces68_dir / f"{name}.jpg", photos)
    out = tmp_path / "avs"
    argv = ["generate", str(tmp_path / "fit" / "last.pt"), "--data", str(wflw), "--styles", "2", "--out", str(out)]
    assert style_main([*argv, "--style-images", str(photos)]) == 0
    sources = read_dataset(wflw)
    synthetic = read_avs_root(out)
    assert sorted({s.source for s in synthetic}) == ["style0_breakingbad", "style1_einstein"]
    for item in synthetic:
        source = sources[int(Path(item.image).stem)]
        assert item.attributes == source.attributes
        matrix = crop_matrix(landmark_box(source.points), CropRule("landmarks", 1.4), AVS_IMAGE_SIZE)
        np.testing.assert_allclose(item.points, apply(matrix, source.points), atol=1e-3)
        np.testing.assert_allclose(item.box, apply(matrix, source.box.reshape(2, 2)).ravel(), atol=1e-3)


def test_vgg19_perceptual_loss_from_a_weights_file(faces68_dir, tmp_path, capsys):
    torch.manual_seed(0)
    weights = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, weights)
    assert len([c for c in VGG19_LAYERS if c != "M"]) == 16
    assert fit(faces68_dir, tmp_path / "run", 1, "--batch-size", "2", "--perceptual-weights", str(weights)) == 0
    record = load_checkpoint(tmp_path / "run" / "last.pt")["perceptual"]
    assert record["kind"] == "vgg19" and len(record["weights_sha256"]) == 64
    assert "VGG19 perceptual" in capsys.readouterr().out


def test_bad_inputs_are_one_line(faces68_dir, fitted, generated, tmp_path, capsys):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    detector = save_checkpoint(tmp_path / "detector.pt", {"model_name": "resnet18_deconv", "model": {"w": torch.zeros(1)}})
    cases = {
        "no faces": (["fit", "--data", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "o")], "not found"),
        "image size": (["fit", "--data", str(faces68_dir), "--image-size", "48", "--out-dir", str(tmp_path / "o")], "power of two"),
        "weights": (["fit", "--data", str(faces68_dir), *TINY, "--perceptual-weights", str(junk), "--out-dir", str(tmp_path / "o")], "VGG19"),
        "ramp": (["fit", "--data", str(faces68_dir), "--kl-ramp-start", "0.9", "--kl-ramp-end", "0.5"], "KL ramp"),
        "out exists": (["generate", str(fitted), "--data", str(faces68_dir), "--out", str(generated)], "already exists"),
        "styles": (["generate", str(fitted), "--data", str(faces68_dir), "--styles", "13", "--out", str(tmp_path / "g")], "13"),
        "layout": (["generate", str(fitted), "--data", str(FIXTURES / "wflw" / "list_98pt_rect_attr_train.txt"),
                    "--out", str(tmp_path / "g")], "98 points"),
        "junk checkpoint": (["generate", str(junk), "--data", str(faces68_dir), "--out", str(tmp_path / "g")], "junk.pth"),
        "detector checkpoint": (["generate", str(detector), "--data", str(faces68_dir), "--out", str(tmp_path / "g")],
                                "not a style translator checkpoint"),
    }  # fmt: skip
    for name, (argv, expected) in cases.items():
        assert style_main(argv) != 0, name
        assert expected in one_error_line(capsys.readouterr()), name
    assert not (tmp_path / "o").exists() and not (tmp_path / "g").exists()


def _rewrite_images(generated: Path, out: Path, image_of) -> Path:
    """A copy of a generated folder whose image (style, face j) is ``image_of(style entry, j)``, JPEG as generate writes."""
    shutil.copytree(generated, out)
    manifest = json.loads((out / "generate.json").read_text())
    for style in manifest["styles"]:
        for path in sorted((out / style["name"] / "Image").glob("*.jpg")):
            assert cv2.imwrite(str(path), image_of(style, int(path.stem)), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return out


def test_score_of_a_perfect_translator_equals_the_real_crops(generated, faces68_dir, pfld, tmp_path, capsys):
    """Each output replaced by its structure face's real crop (structure kept exactly, no style): the
    structure NME is the real crops' (JPEG aside), the styles do not spread and no transfer follows
    the style face; the score's bookkeeping (faces, frames, labels) is what is checked."""
    from train.style.score import ScoreConfig, real_crops, score

    manifest = json.loads((generated / "generate.json").read_text())
    crops = real_crops(read_pts_folder(faces68_dir), manifest["crop_scale"], manifest["image_size"], tmp_path)
    perfect = _rewrite_images(generated, tmp_path / "perfect", lambda style, j: cv2.imread(str(crops[j].image)))
    result = score(ScoreConfig(perfect, model=str(pfld)))
    structure = result["structure"]
    assert structure["generated"]["inter_ocular"]["n"] == 3 * 12
    assert abs(structure["excess_median"]) < 0.3, structure
    assert abs(structure["generated"]["box"]["mean"] - structure["real_crops"]["box"]["mean"]) < 0.2
    layout = result["layout"]
    assert layout["transfers"] == 3 * 11
    assert abs(layout["closer_to_style_face"] - layout["real_crops_closer_to_style_face"]) <= 2 / 33, layout
    for name, row in result["style"].items():
        assert row["between_styles_sd"] < 0.05 * row["real_crops_sd"] + 0.01, (name, row)
    # The style faces' own crops as outputs (a translator that copies the style face): every transfer
    # follows the style face, and the structure is lost.
    by_name = {Path(s.image).name: k for k, s in enumerate(read_pts_folder(faces68_dir))}

    def style_face(style, j):
        return cv2.imread(str(crops[by_name[Path(style["image"]).name]].image))

    copied = score(ScoreConfig(_rewrite_images(generated, tmp_path / "copied", style_face), model=str(pfld)))
    assert copied["layout"]["closer_to_style_face"] > 0.9  # two aligned crops can still agree by chance
    assert copied["structure"]["excess_median"] > 10
    for name in ("L mean", "a mean", "b mean"):  # the colour is the reference's
        assert copied["style"][name]["follows_reference_corr"] > 0.8, name  # measured in different hulls
    # The command: the same numbers as JSON, the output policy, one-line refusals.
    out = tmp_path / "score.json"
    assert style_main(["score", str(perfect), "--model", str(pfld), "--json", str(out)]) == 0
    assert "real crops (perfect)" in capsys.readouterr().out
    assert json.loads(out.read_text())["structure"] == json.loads(json.dumps(structure))
    assert style_main(["score", str(perfect), "--model", str(pfld), "--json", str(out)]) == 2
    assert "--force" in one_error_line(capsys.readouterr())
    assert style_main(["score", str(tmp_path), "--model", str(pfld)]) == 2
    assert "generate.json" in one_error_line(capsys.readouterr())
    assert style_main(["score", str(perfect), "--model", str(pfld), "--data", str(tmp_path / "moved")]) == 2
    assert "pass --data" in one_error_line(capsys.readouterr())
    wrong = tmp_path / "wrong"  # other faces than the ones generated from: refused, not mis-scored
    wrong.mkdir()
    for path in sorted(faces68_dir.iterdir())[2:]:
        (wrong / path.name).symlink_to(path)
    assert style_main(["score", str(perfect), "--model", str(pfld), "--data", str(wrong)]) == 2
    assert "do not belong together" in one_error_line(capsys.readouterr())
    old = json.loads((perfect / "generate.json").read_text())
    del old["crop_scale"]
    (perfect / "generate.json").write_text(json.dumps(old))
    assert style_main(["score", str(perfect), "--model", str(pfld)]) == 2
    assert "generate the set again" in one_error_line(capsys.readouterr())


def test_study_translator_source_and_checkpoint_go_together(faces68_dir, fitted, tmp_path, capsys):
    from calib.__main__ import main as calib_main

    base = ["study", "--model", str(tmp_path / "m.onnx"), "--faces", str(faces68_dir), "--out", str(tmp_path / "s")]
    assert calib_main([*base, "--sources", "translator,real"]) == 2
    assert "--translator" in one_error_line(capsys.readouterr())
    assert calib_main([*base, "--translator", str(fitted)]) == 2
    assert "go together" in one_error_line(capsys.readouterr())


@pytest.mark.slow
def test_calib_study_translator_arm_on_pfld(pfld_artifact, faces68_dir, fitted, tmp_path):
    """The fourth arm end to end: per fold, the training faces styled by the translator calibrate PFLD INT8."""
    from calib.__main__ import main as calib_main

    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("einstein", "breakingbad", "aflw2000_image00050", "aflw2000_image00251"):
        for path in faces68_dir.glob(f"{name}.*"):
            (faces / path.name).symlink_to(path)
    argv = ["study", "--model", str(pfld_artifact), "--faces", str(faces), "--out", str(tmp_path / "study"),
            "--folds", "2", "--quantizers", "ort-minmax", "--sources", "translator,real", "--size", "16",
            "--translator", str(fitted)]  # fmt: skip
    assert calib_main(argv) == 0
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert [(r["source"], r["status"]) for r in study["rows"]].count(("translator", "ok")) == 2
    assert any(p["first"] == "translator" and p["second"] == "real" for p in study["paired"])
