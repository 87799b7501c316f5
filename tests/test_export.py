"""`inloop export --format onnx` (issue #20): a trained model file becomes an ONNX file whose
onnxruntime output equals PyTorch's on a real decoded frame, at more than one frame size (the
height and width axes are dynamic), and a bad model file is a one-line error naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inloop.cli import main
from inloop.models import build_model
from inloop.models.export import default_output, onnx_session
from inloop.models.io import torch_save
from inloop.yuv import YuvReader, parse_yuv_name

# Small widths (fast); GL-Fusion pads to 4, NL-ConvLSTM to its pool (4): the sizes below need the pad.
NETS = {
    "glfusion": {"channels": 4, "hgf_depth": 2, "hlf_modules": 1},
    "spilf": {"channels": 8, "grad_blocks": 1, "pixel_units": 1, "dru_layers": 2, "growth": 4, "fusion_units": 1,
              "reduction": 4},
    "nlconvlstm": {"channels": 4, "pool": 4, "frames": 3, "enc_layers": 1, "dec_layers": 1},
}
# |onnxruntime - PyTorch| on [0, 1] samples. Convolutional networks: float rounding only (measured
# ~1e-7). NL-ConvLSTM: eq. (4)'s softmax at tau = 1e-3 amplifies the rounding of the distances
# (measured 6e-5); 5e-4 is half of one 10-bit code value (1/1023).
ATOL = {"glfusion": 1e-5, "spilf": 1e-5, "nlconvlstm": 5e-4}
SECOND = (slice(3, 48), slice(5, 76))  # a 71x45 crop: another size, neither side a multiple of 4


def _decoded_luma(path: str) -> torch.Tensor:
    """All luma planes of a real decode, (frames, H, W) in [0, 1]."""
    _, fmt = parse_yuv_name(path)
    with YuvReader(path, fmt) as r:
        return torch.from_numpy(np.stack([np.asarray(f.y, dtype=np.float32) / fmt.max_value for f in r]))


def _input(arch: str, frames: torch.Tensor, centre: int = 2) -> torch.Tensor:
    """What apply_model gives the network: a frame (1, 1, H, W), or the clip centred on it (1, T, 1, H, W)."""
    t = NETS[arch].get("frames", 1)
    if arch == "nlconvlstm":
        return frames[centre - t // 2: centre + t // 2 + 1][None, :, None].contiguous()
    return frames[centre][None, None].contiguous()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, two_sources):
    """The three networks with weights that do something (a random last layer, batch-norm statistics
    from real frames), saved as training saves them, then exported by one `inloop export` call."""
    d = tmp_path_factory.mktemp("export")
    frames = _decoded_luma(two_sources[1][0])
    torch.manual_seed(0)
    nets = {}
    for arch, kwargs in NETS.items():
        net = build_model(arch, **kwargs)
        torch.nn.init.normal_(net.last_conv.weight, std=0.1)
        net.train()
        with torch.no_grad():
            net(_input(arch, frames))  # batch-norm running statistics from a real frame
        net.eval()
        payload = {"name": arch, "instance": arch, "kwargs": kwargs, "state_dict": net.state_dict(), "bitdepth": 8,
                   "planes": ["y"], "describe": {"codec": "x265", "config": "ai", "qp": 37}, "result": {}}
        torch_save(payload, d / "models" / arch / "model.pt", "model file")
        nets[arch] = net
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(["export", "--format", "onnx", *(str(d / "models" / a / "model.pt") for a in NETS),
                   "--out", str(d / "onnx")])
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    return d, nets, frames


@pytest.mark.parametrize("arch", list(NETS))
def test_onnxruntime_equals_pytorch_on_a_real_frame_at_two_sizes(arch, exported):
    d, nets, frames = exported
    path = d / "onnx" / arch / "model.onnx"  # --out keeps the files' paths relative to their common folder
    assert path.is_file() and not list(path.parent.glob("*.data"))  # weights inside the one file
    sess = onnx_session(path, threads=1)
    (inp,), (outp,) = sess.get_inputs(), sess.get_outputs()
    assert inp.shape[-2:] == ["height", "width"] and outp.shape[-2:] == ["height", "width"]
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["inloop.network"] == arch and meta["inloop.bitdepth"] == "8"
    assert meta["inloop.pad_multiple"] == str(nets[arch].pad_multiple)

    x = _input(arch, frames)
    assert x.shape[-2:] == (96, 128)  # the whole decoded frame; the export traced a 64x48 input
    for x in (x, x[..., SECOND[0], SECOND[1]].contiguous()):
        with torch.no_grad():
            want = nets[arch](x).numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        assert got.shape == want.shape == (1, 1, *x.shape[-2:])
        target = x[:, x.shape[1] // 2] if x.dim() == 5 else x
        assert np.abs(want - target.numpy()).max() > 1e-2  # the network changes the frame: a real comparison
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL[arch])


def test_missing_or_unreadable_model_file_is_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "none" / "model.pt"
    assert main(["export", "--format", "onnx", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and err.startswith("inloop export: error:")
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model file")
    assert main(["export", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "unreadable" in err
    assert not list(tmp_path.rglob("*.onnx"))


def test_where_exports_go(tmp_path):
    pt = tmp_path / "results" / "models" / "x265" / "ai" / "qp37" / "model.pt"
    assert default_output(pt) == pt.with_name("model.onnx")
    assert default_output(pt, out_dir=tmp_path / "onnx", common=tmp_path / "results" / "models") == \
        tmp_path / "onnx" / "x265" / "ai" / "qp37" / "model.onnx"
