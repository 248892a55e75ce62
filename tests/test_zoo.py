"""Model zoo against a real HTTP server on 127.0.0.1: download, checksum, card, load, run; and failures.

The server serves the real PFLD-GhostOne file from ../shared/data; the failure cases serve wrong
bytes, nothing (404), or nothing at all (a closed port). Every failure must be one line naming the
file's manual location and checksum, and must leave nothing in the cache.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from pathlib import Path

import cv2
import pytest

from runtime.annotations import read_pts_folder
from runtime.backends import load_backend
from runtime.card import CardError, read_card, sidecar_path
from runtime.errors import UsageError
from runtime.landmarker import Landmarker
from runtime.layouts import IBUG68, to_68
from runtime.metrics import nme_per_image
from runtime.zoo import CACHE_ENV, URL_ENV, ZOO, ZooError, fetch_model, file_sha256, model_paths, zoo_entry

PFLD = ZOO["pfld_ghostone"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def serve():
    """``serve(folder) -> base URL`` of a threaded HTTP server on an ephemeral 127.0.0.1 port."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/models"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror(tmp_path, pfld_onnx) -> Path:
    """A folder laid out like the server's ``/models`` path, holding the real file."""
    folder = tmp_path / "www"
    (folder / "models").mkdir(parents=True)
    shutil.copyfile(pfld_onnx, folder / "models" / PFLD.file_name)
    return folder


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/models"  # nothing listens there any more


def cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_entry_matches_the_shared_data(pfld_onnx):
    assert PFLD.sha256 == file_sha256(pfld_onnx)
    assert PFLD.licence == "Apache-2.0"
    assert PFLD.url() == f"https://github.com/AnthonyF333/PFLD_GhostOne/raw/main/onnx_models/{PFLD.file_name}"
    for entry in ZOO.values():
        local = pfld_onnx.parent / entry.file_name
        if local.is_file():
            assert file_sha256(local) == entry.sha256, entry.name


def test_fetch_downloads_verifies_imports_and_runs(tmp_path, serve, mirror, faces68_dir):
    cache = tmp_path / "cache"
    artifact = fetch_model("pfld_ghostone", cache_dir=cache, base_url=serve(mirror), progress=False)
    assert artifact == cache / "pfld_ghostone" / "pfld_ghostone.onnx"
    assert cache_files(cache) == [
        f"pfld_ghostone/{PFLD.file_name}",
        "pfld_ghostone/pfld_ghostone.onnx",
        "pfld_ghostone/pfld_ghostone.onnx.json",
    ]
    card = read_card(artifact)
    assert card.source_sha256 == PFLD.sha256
    facts = (card.layout, card.input_size, card.output_kind, card.normalisation.channel_order)
    assert facts == ("wflw98", 112, "coords", "BGR")
    assert (card.crop_rule.box, card.crop_rule.scale, card.batch) == ("landmarks", 1.2, None)

    sample = read_pts_folder(faces68_dir)[-1]
    with load_backend(artifact) as backend:
        points = Landmarker(backend).predict_from_points(cv2.imread(str(sample.image)), sample.points).points
    nme = nme_per_image(to_68(points), sample.points[None], IBUG68, "inter_ocular")[0]
    assert nme < 0.10

    # Cached: no network needed any more.
    again = fetch_model("pfld_ghostone", cache_dir=cache, base_url=closed_port_url(), progress=False)
    assert again == artifact


def test_environment_variables_choose_cache_and_mirror(tmp_path, serve, mirror, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "edgemark-cache"))
    monkeypatch.setenv(URL_ENV, serve(mirror))
    artifact = fetch_model(progress=False)
    assert artifact == tmp_path / "edgemark-cache" / "models" / "pfld_ghostone" / "pfld_ghostone.onnx"
    assert sidecar_path(artifact).is_file()


def test_wrong_bytes_fail_the_checksum_and_leave_nothing(tmp_path, serve):
    folder = tmp_path / "www"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / PFLD.file_name).write_bytes(b"<html>rate limited</html>")
    cache = tmp_path / "cache"
    with pytest.raises(ZooError) as error:
        fetch_model(cache_dir=cache, base_url=serve(folder), progress=False)
    message = str(error.value)
    download, _ = model_paths("pfld_ghostone", cache)
    assert "\n" not in message and "sha256" in message and PFLD.sha256 in message
    assert str(download) in message and "nothing was kept" in message
    assert cache_files(cache) == []


def test_unreachable_server_says_offline_and_where_to_put_the_file(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ZooError) as error:
        fetch_model(cache_dir=cache, base_url=closed_port_url(), progress=False, timeout_s=5)
    message = str(error.value)
    download, _ = model_paths("pfld_ghostone", cache)
    assert "\n" not in message and "offline?" in message
    assert f"put it at {download} (sha256 {PFLD.sha256})" in message and PFLD.url() in message
    assert cache_files(cache) == []


def test_http_error_is_one_line(tmp_path, serve):
    empty = tmp_path / "www"
    empty.mkdir()
    cache = tmp_path / "cache"
    with pytest.raises(ZooError) as error:
        fetch_model(cache_dir=cache, base_url=serve(empty), progress=False)
    assert "HTTP 404" in str(error.value) and "\n" not in str(error.value)
    assert cache_files(cache) == []


def test_file_put_by_hand_is_used_offline(tmp_path, pfld_onnx):
    cache = tmp_path / "cache"
    download, artifact = model_paths("pfld_ghostone", cache)
    download.parent.mkdir(parents=True)
    shutil.copyfile(pfld_onnx, download)
    assert fetch_model(cache_dir=cache, base_url=closed_port_url(), progress=False) == artifact
    assert read_card(artifact).source_sha256 == PFLD.sha256


def test_wrong_file_put_by_hand_is_refused(tmp_path):
    cache = tmp_path / "cache"
    download, artifact = model_paths("pfld_ghostone", cache)
    download.parent.mkdir(parents=True)
    download.write_bytes(b"something else")
    with pytest.raises(ZooError) as error:
        fetch_model(cache_dir=cache, base_url=closed_port_url(), progress=False)
    assert "delete it" in str(error.value) and PFLD.sha256 in str(error.value)
    assert not artifact.exists()


def test_unknown_model_name():
    with pytest.raises(UsageError) as error:
        zoo_entry("pfld_ghost1")
    assert "Did you mean 'pfld_ghostone'?" in str(error.value)
    with pytest.raises(UsageError):
        fetch_model("nope")


def test_a_damaged_cached_artifact_is_rebuilt_from_the_verified_download(tmp_path, pfld_onnx):
    """Issue 9: the cache re-verifies its artifact (the card's model hash); zeroed weights are not served."""
    import onnx
    from onnx import numpy_helper

    cache = tmp_path / "cache"
    download, artifact = model_paths("pfld_ghostone", cache)
    download.parent.mkdir(parents=True)
    shutil.copyfile(pfld_onnx, download)
    fetch_model(cache_dir=cache, base_url=closed_port_url(), progress=False)
    good = artifact.read_bytes()
    model = onnx.load(str(artifact))
    weights = model.graph.initializer[0]
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 0, weights.name))
    onnx.save(model, str(artifact))  # metadata (the card) kept, weights zeroed
    with pytest.raises(CardError, match="does not match its card"):
        read_card(artifact)
    assert fetch_model(cache_dir=cache, base_url=closed_port_url(), progress=False) == artifact
    assert artifact.read_bytes() == good


def test_the_detector_is_fetched_verified_and_cached_like_a_model(tmp_path, serve, yunet_onnx):
    """Issue 8: YuNet comes through the zoo (checksum while streaming, atomic cache, offline message)."""
    from runtime.detect import make_detector
    from runtime.zoo import fetch_file

    yunet = ZOO["yunet"]
    assert yunet.kind == "detector" and yunet.sha256 == file_sha256(yunet_onnx)
    www = tmp_path / "www"
    (www / "models").mkdir(parents=True)
    (www / "models" / yunet.file_name).write_bytes(b"not the model")
    cache = tmp_path / "cache"
    with pytest.raises(ZooError, match="not the expected"):
        fetch_file("yunet", cache_dir=cache, base_url=serve(www), progress=False)
    assert cache_files(cache) == []
    shutil.copyfile(yunet_onnx, www / "models" / yunet.file_name)
    path = fetch_file("yunet", cache_dir=cache, base_url=serve(www), progress=False)
    assert path == model_paths("yunet", cache)[0] and file_sha256(path) == yunet.sha256
    assert fetch_file("yunet", cache_dir=cache, base_url=closed_port_url(), progress=False) == path  # cached
    assert make_detector(f"yunet:{path}").name == "yunet"
    with pytest.raises(UsageError, match="face detector, not a landmark model"):
        fetch_model("yunet", cache_dir=cache)


@pytest.mark.parametrize("name", ["pfld_ghostone", "openseeface_lm0", "peppa_slim160"])
def test_zoo_cards_and_their_import_flags_agree(name):
    """The zoo holds each model's card; import_flags renders it for export.onnx, which reads it back."""
    from export.onnx import build_parser, config_from_args
    from runtime.zoo import import_flags, zoo_entry

    card = zoo_entry(name).card
    args = build_parser().parse_args(["--import", "model.onnx", "-o", "out.onnx", *import_flags(card)])
    assert config_from_args(args).card.to_dict() == card.to_dict()
