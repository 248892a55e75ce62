"""The user's commands work as typed (issue 13): ``export.ort/openvino/trt --int8`` alone, and the one
output policy (an earlier result is never replaced without ``--force``; every output is named)."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import left_in, one_error_line

INT8_COMMANDS = ["export.ort", "export.openvino", "export.trt"]


def command_main(name: str):
    import importlib

    return importlib.import_module(name).main


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch, pfld_onnx):
    """A models cache holding only the zoo's downloaded PFLD-GhostOne file (no artifact yet), as after
    a first download; the current folder is an empty temporary one."""
    from runtime.zoo import CACHE_ENV, model_paths

    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    download, _ = model_paths("pfld_ghostone")
    download.parent.mkdir(parents=True)
    shutil.copyfile(pfld_onnx, download)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def pseudo_frames(folder, faces68_dir, count: int) -> None:
    """``count`` annotated faces linked into ``folder`` as if ``runtime.track --save-frames`` wrote them."""
    folder.mkdir()
    for points in sorted(faces68_dir.glob("*.pts"))[:count]:
        image = next(path for path in faces68_dir.glob(f"{points.stem}.*") if path.suffix != ".pts")
        os.symlink(image, folder / image.name)
        os.symlink(points, folder / points.name)


@pytest.mark.parametrize("command", INT8_COMMANDS)
def test_int8_alone_without_calibration_is_one_line_naming_the_command(command, fresh_cache, capsys):
    assert command_main(command)(["--int8"]) == 2
    line = one_error_line(capsys.readouterr())
    assert "python -m runtime.track VIDEO.mp4 --save-frames pseudo" in line, line
    assert left_in(fresh_cache) == [], "nothing is written when the calibration is missing"


@pytest.mark.parametrize("command", INT8_COMMANDS)
def test_int8_alone_offline_with_nothing_cached_is_one_line(command, tmp_path, monkeypatch, capsys):
    from runtime.zoo import CACHE_ENV, URL_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty_cache"))
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9")  # the discard port: refused at once, as offline
    monkeypatch.chdir(tmp_path)
    assert command_main(command)(["--int8"]) == 1
    line = one_error_line(capsys.readouterr())
    assert "pfld_ghostone" in line and "by hand" in line and "run again" in line and "MODEL.onnx" in line, line


def test_trt_int8_alone_ends_in_qdq_onnx_and_trtexec_script(fresh_cache, faces68_dir, capsys):
    """The acceptance case: on a fresh install (no TensorRT) `python -m export.trt --int8` with pseudo-labelled
    frames at hand writes the Q/DQ ONNX and the trtexec script, and says where they went."""
    from runtime.card import read_card
    from export.trt_build import cuda_gpu_name, tensorrt_version

    pseudo_frames(fresh_cache / "pseudo", faces68_dir, 2)
    status = command_main("export.trt")(["--int8"])
    captured = capsys.readouterr()
    if tensorrt_version() is None or cuda_gpu_name() is None:
        assert status == 1
        assert "tensorrt" in one_error_line(captured)
    else:
        assert status == 0, captured.err
        assert (fresh_cache / "pfld_ghostone_int8.engine").is_file()
    for name in ("pfld_ghostone_calib.npz", "pfld_ghostone_int8.qdq.onnx", "pfld_ghostone_int8.engine.trtexec.sh"):
        assert (fresh_cache / name).is_file(), left_in(fresh_cache)
        assert f"wrote {name}" in captured.out
    assert read_card(fresh_cache / "pfld_ghostone_int8.qdq.onnx").precision == "int8"
    # typed again: the earlier result stays, and the line says how to replace it
    assert command_main("export.trt")(["--int8"]) == 2
    assert "--force" in one_error_line(capsys.readouterr())


@pytest.mark.slow
def test_ort_and_openvino_int8_alone_make_artifacts(fresh_cache, faces68_dir, capsys):
    pytest.importorskip("nncf", reason="export.openvino --int8 needs the openvino extra (nncf)")
    from runtime.card import read_card

    pseudo_frames(fresh_cache / "pseudo", faces68_dir, 2)
    assert command_main("export.ort")(["--int8"]) == 0
    assert read_card(fresh_cache / "pfld_ghostone_int8.onnx").precision == "int8"
    assert (fresh_cache / "pfld_ghostone_calib.npz").is_file()
    assert command_main("export.openvino")(["--int8"]) == 0  # reuses pfld_ghostone_calib.npz
    assert read_card(fresh_cache / "pfld_ghostone_int8.xml").precision == "int8"
    out = capsys.readouterr().out
    assert "wrote pfld_ghostone_int8.onnx" in out and "wrote pfld_ghostone_int8.xml" in out


@pytest.mark.slow
def test_calib_folder_makes_style_proxies(tmp_path, pfld, faces68_dir, capsys):
    """``--calib FACES/``: style proxies of the annotated faces, beside the output."""
    from export.calibration import read_calibration_array

    faces = tmp_path / "faces"
    pseudo_frames(faces, faces68_dir, 2)
    output = tmp_path / "q.onnx"
    assert command_main("export.ort")(["--int8", str(pfld), "--calib", str(faces), "-o", str(output)]) == 0
    calibration = read_calibration_array(tmp_path / "pfld_calib.npz")
    assert len(calibration) == 2 * 9 * 8  # two faces, nine styles, eight variants each
    assert set(calibration.summary()["sources"]) == {"proxy"}
    assert f"wrote {tmp_path / 'pfld_calib.npz'}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ output policy
def test_refuse_overwrite_names_existing_outputs(tmp_path):
    from runtime.outputs import OutputExists, refuse_overwrite

    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("earlier result")
    with pytest.raises(OutputExists, match=r"old\.csv already exists .*--force"):
        refuse_overwrite([new, None, old], force=False)
    assert refuse_overwrite([new, old], force=True) == [new, old]
    assert old.read_text() == "earlier result"


def test_export_onnx_refuses_to_replace_an_artifact(tmp_path, pfld_onnx, capsys):
    from runtime.zoo import PFLD_IMPORT_FLAGS

    output = tmp_path / "pfld.onnx"
    argv = ["--import", str(pfld_onnx), "-o", str(output), *PFLD_IMPORT_FLAGS]
    main = command_main("export.onnx")
    assert main(argv) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    before = output.stat().st_mtime_ns
    assert main(argv) == 2
    assert "--force" in one_error_line(capsys.readouterr())
    assert output.stat().st_mtime_ns == before
    assert main([*argv, "--force"]) == 0


def test_track_refuses_to_replace_a_result(tmp_path, pfld, face_video, capsys):
    """A short trial run cannot replace an earlier result under the same name (issue 13)."""
    csv_path = tmp_path / "landmarks.csv"
    argv = [str(face_video), "--model", str(pfld), "--detector", "haar", "--no-show", "--csv", str(csv_path)]
    main = command_main("runtime.track")
    assert main([*argv, "--max-frames", "3"]) == 0
    first = csv_path.read_text()
    assert f"wrote {csv_path}" in capsys.readouterr().out
    assert main([*argv, "--max-frames", "2"]) == 2
    assert "landmarks.csv already exists" in one_error_line(capsys.readouterr())
    assert csv_path.read_text() == first
    assert main([*argv, "--max-frames", "2", "--force"]) == 0
    assert csv_path.read_text() != first


def test_a_folder_output_appears_whole_or_not_at_all(tmp_path):
    """runtime.outputs' folder policy (train.style generate, calib avs): a new or empty folder only,
    filled under a hidden partial name and renamed at the end; a failure leaves nothing behind."""
    from runtime.outputs import OutputExists, folder_when_complete, refuse_nonempty_folder

    target = tmp_path / "sub" / "set"
    refuse_nonempty_folder(target)
    with pytest.raises(RuntimeError), folder_when_complete(target) as partial:
        (partial / "half.txt").write_text("half")
        raise RuntimeError("stopped mid-way")
    assert not target.exists() and left_in(tmp_path / "sub") == []
    target.mkdir()  # an empty folder is taken over
    with folder_when_complete(target) as partial:
        assert partial.parent == target.parent and partial.name.startswith(".set.partial-")
        (partial / "done.txt").write_text("done")
    assert left_in(target) == ["done.txt"] and left_in(tmp_path / "sub") == ["set"]
    with pytest.raises(OutputExists, match="not an empty folder"):
        refuse_nonempty_folder(target)
