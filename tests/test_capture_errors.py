"""A failing torch.onnx.export gives a one-line ExportError that names a full log file."""
import os
import sys
import tempfile

import pytest
import torch
import torch.nn as nn

from liftcam.engine.errors import ExportError
from liftcam.export.capture import _export_quietly, torch_to_onnx


class FFTNet(nn.Module):
    """A CNN whose head uses an op the TorchScript exporter cannot convert at opset 17."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x).flatten(1)
        return self.fc(torch.fft.rfft(y).abs()[:, :4])


@pytest.fixture
def logdir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _log_of(err: ExportError, logdir) -> str:
    msg = str(err)
    assert "\n" not in msg
    path = err.log_path
    assert path in msg and os.path.dirname(path) == str(logdir) and os.path.isfile(path)
    assert os.path.basename(path).startswith("liftcam-export-") and path.endswith(".log")
    assert [p.name for p in logdir.iterdir()] == [os.path.basename(path)]  # no temp file left
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_dynamo_fallback_exports_what_torchscript_cannot():
    pytest.importorskip("onnxscript")   # torch.onnx.export(dynamo=True) needs it
    m, _, logits, _ = torch_to_onnx(FFTNet().eval(), (3, 8, 8))
    assert [o.name for o in m.graph.output] == ["logits"] and logits.shape[0] == 2


def test_torch_export_failure_is_one_line_with_a_log(logdir, capfd, monkeypatch):
    import liftcam.export.capture as capture

    monkeypatch.setattr(capture, "_export_dynamo", lambda *a: None)   # the fallback fails too
    with pytest.raises(ExportError) as e:
        torch_to_onnx(FFTNet().eval(), (3, 8, 8))
    msg = str(e.value)
    assert "FFTNet" in msg and "UnsupportedOperatorError" in msg and "fft_rfft" in msg
    assert e.value.__cause__ is None
    log = _log_of(e.value, logdir)
    assert "Traceback" in log and "UnsupportedOperatorError" in log and "fft_rfft" in log
    out, err = capfd.readouterr()
    assert "graph(" not in out + err          # the TorchScript dump went to the log, not here


def test_the_log_holds_the_whole_message_and_the_printed_output(logdir, capfd):
    body = "\n".join(f"%{i} : Float(2, 4) = aten::thing(%{i - 1})" for i in range(1, 2000))

    def run():
        print("printed on stdout")
        print("printed on stderr", file=sys.stderr)
        os.write(1, b"written to fd 1 by native code\n")
        raise RuntimeError(f"\nthe first line\n{body}")

    with pytest.raises(ExportError) as e:
        _export_quietly(run, "Tiny")
    assert str(e.value).startswith("torch.onnx.export failed on the model Tiny "
                                   "(RuntimeError: the first line); full log: ")
    log = _log_of(e.value, logdir)
    for text in (body, "printed on stdout", "printed on stderr", "written to fd 1 by native"):
        assert text in log
    out, err = capfd.readouterr()
    assert "printed" not in out + err and "native" not in out + err


def test_a_successful_export_passes_its_output_on(capfd):
    def run():
        print("hello")
        os.write(2, b"native hello\n")

    _export_quietly(run, "Tiny")
    out, err = capfd.readouterr()
    assert "hello" in out and "native hello" in err
