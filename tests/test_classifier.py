"""`classifier train | valid | predict` end to end on the real digits dataset (scikit-learn's handwritten digits
as image files, darknet_py.datasets.make_digits), against its held-out labels and OpenCV DNN 4.x."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, one_error_line
from darknet_py.classifier import predict_classifier, train_classifier, validate_classifier
from darknet_py.cli import main
from darknet_py.datasets import make_digits

DIGITS_CFG = REPO / "cfg" / "mixnet_tiny_digits.cfg"
LINE = re.compile(r"^(\d+), ([\d.]+): ([\d.]+), ([\d.]+) avg, ([\d.]+) rate, ([\d.]+) seconds, (\d+) images, "
                  r"([\d.-]+) hours left$", re.M)


def data_file(digits, tmp_path, **changes):
    """A copy of the digits .data in tmp_path with absolute paths; `changes` replace keys (None drops one)."""
    root = digits.parent
    keys = {"classes": "10", "train": root / "train.list", "valid": root / "valid.list",
            "labels": root / "labels.txt", "names": root / "names.txt", "backup": tmp_path / "backup", "top": "2"}
    keys.update(changes)
    path = tmp_path / "d.data"
    path.write_text("".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None))
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """The digits cfg trained to its max_batches (400 iterations) with top-k checks, as the shipped weights were."""
    folder = tmp_path_factory.mktemp("trained")
    data, chart = data_file(digits, folder), folder / "chart.png"
    with open(folder / "train.log", "w") as log:
        return train_classifier(data, DIGITS_CFG, calc_topk=True, chart=chart, seed=1, progress=False, out=log), chart


def test_digits_train_to_95_percent(trained, digits, capsys):
    result, chart = trained
    assert result["iteration"] == 400 and result["seen"] == 400 * 32
    backup = chart.parent / "backup"
    assert sorted(p.name for p in backup.iterdir()) == ["mixnet_tiny_digits_final.weights",
                                                        "mixnet_tiny_digits_last.weights"]
    top1, top2 = validate_classifier(digits, DIGITS_CFG, backup / "mixnet_tiny_digits_final.weights")
    assert top1 >= 0.95 and top2 >= top1
    assert result["topk"][-1][0] == 400 and result["topk"][-1][1] == pytest.approx(top1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"{len(lines) - 1} images: top 1: {top1:f}, top 2: {top2:f}"
    assert Image.open(chart).size[0] > 100


def test_saved_weights_match_opencv_dnn(trained, digits):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip("this OpenCV has no darknet importer")
    from darknet_py.data import classify_input, read_list
    net = trained[0]["net"]
    cvnet = cv2.dnn.readNetFromDarknet(str(DIGITS_CFG), trained[0]["final"])
    paths = read_list(digits.parent / "valid.list")
    x = np.concatenate([classify_input(p, net.options) for p in paths])
    ours = net.forward(x)
    theirs = []
    for image in x:                  # OpenCV's darknet importer runs route groups= at batch 1 only
        cvnet.setInput(image[None])
        theirs.append(cvnet.forward().reshape(-1))
    theirs = np.array(theirs)
    np.testing.assert_allclose(theirs, ours, atol=1e-3)       # OpenCV folds BN into the convolutions
    assert (theirs.argmax(1) == ours.argmax(1)).all()


def test_resume_from_last_continues_iterations_and_rate(digits, tmp_path):
    """Stopped at 30 iterations with _last saved at 20: resuming from _last prints iterations 21..30 with the
    same learning rates (burn_in=50 with power=1: rate = 0.1 * i/50) and the same seen counts."""
    import io
    data = data_file(digits, tmp_path, backup=tmp_path / "b")
    full, resumed = io.StringIO(), io.StringIO()
    train_classifier(data, DIGITS_CFG, max_batches=30, last_every=20, progress=False, seed=2, out=full, chart=None)
    last = tmp_path / "b" / "mixnet_tiny_digits_last.weights"
    result = train_classifier(data, DIGITS_CFG, last, max_batches=30, progress=False, seed=3, out=resumed,
                              chart=None)
    first = {int(m[0]): m for m in LINE.findall(full.getvalue())}
    again = [m for m in LINE.findall(resumed.getvalue())]
    assert [int(m[0]) for m in again] == list(range(21, 31))
    for m in again:
        i = int(m[0])
        assert float(m[4]) == pytest.approx(0.1 * i / 50, abs=1e-6)
        assert m[4] == first[i][4] and m[6] == first[i][6] == str(i * 32)
    assert result["seen"] == 30 * 32
    cleared = train_classifier(data, DIGITS_CFG, last, clear=True, max_batches=2, progress=False, out=io.StringIO(),
                               chart=None)
    assert cleared["iteration"] == 2 and cleared["seen"] == 64


def test_cli_train_output_lines_and_files(digits, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = data_file(digits, tmp_path, backup="out/")
    assert main(["classifier", "train", str(data), str(DIGITS_CFG), "-dont_show", "--max_batches", "3"]) == 0
    out = capsys.readouterr().out
    lines = LINE.findall(out)
    assert [int(m[0]) for m in lines] == [1, 2, 3]
    assert [int(m[6]) for m in lines] == [32, 64, 96]
    n_train = len((digits.parent / "train.list").read_text().split())
    assert float(lines[2][1]) == pytest.approx(96 / n_train, abs=1e-3)
    assert len(re.findall(r"^Loaded: [\d.]+ seconds$", out, re.M)) == 3
    assert (tmp_path / "out" / "mixnet_tiny_digits_final.weights").stat().st_size > 40000
    assert (tmp_path / "chart.png").is_file()


def test_mixnet_m_trains_a_few_iterations(tmp_path, capsys):
    """cfg/mixnet_m.cfg (1000 classes, 224x224) on the CPU at mini-batch 2: loss near ln(1000) per image."""
    labels = [f"class-{i:04d}" for i in range(1000)]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (240, 260, 3), dtype=np.uint8)).save(tmp_path / f"{labels[i * 7]}.jpg")
    (tmp_path / "train.list").write_text("".join(f"{labels[i * 7]}.jpg\n" for i in range(4)))
    data = tmp_path / "m.data"
    data.write_text(f"classes = 1000\ntrain = {tmp_path / 'train.list'}\nvalid = {tmp_path / 'train.list'}\n"
                    f"labels = {tmp_path / 'labels.txt'}\nbackup = {tmp_path / 'backup'}\n")
    argv = ["classifier", "train", str(data), str(REPO / "cfg" / "mixnet_m.cfg"), "-dont_show", "--batch", "2",
            "--subdivisions", "1", "--max_batches", "2", "-chart", str(tmp_path / "chart.png")]
    assert main(argv) == 0
    lines = LINE.findall(capsys.readouterr().out)
    assert [int(m[0]) for m in lines] == [1, 2]
    assert all(3 < float(m[2]) < 12 for m in lines)      # ln(1000) = 6.9 at random weights
    assert (tmp_path / "backup" / "mixnet_m_final.weights").stat().st_size > 4 * 5_000_000


def test_shipped_weights_predict_the_samples(capsys, monkeypatch):
    """The shipped classifier, from the repository root with no download."""
    monkeypatch.chdir(REPO)
    assert main(["classifier", "predict", "cfg/digits.data", "cfg/mixnet_tiny_digits.cfg",
                 "weights/mixnet_tiny_digits.weights", "data/digits/samples/digit-3.png"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("data/digits/samples/digit-3.png: Predicted in ")
    assert re.fullmatch(r"[ \d]\d\.\d\d%: three", lines[1]) and re.fullmatch(r"[ \d]\d\.\d\d%: \w+", lines[2])
    assert len(lines) == 3                                    # top = 2 in cfg/digits.data
    names = (REPO / "cfg" / "digits.names").read_text().split()
    right = 0
    for digit in range(10):
        result = predict_classifier(REPO / "cfg" / "digits.data", DIGITS_CFG, REPO / "weights" /
                                    "mixnet_tiny_digits.weights", f"data/digits/samples/digit-{digit}.png", top=10,
                                    out=open("/dev/null", "w"))
        assert sum(p for p, _ in result) == pytest.approx(1, abs=1e-4)
        right += result[0][1] == names[digit]
    assert right >= 9


@pytest.mark.parametrize("case", ["no_classes", "bad_weights", "bad_image", "classes_mismatch", "bad_list",
                                  "bad_top", "backup_is_a_file", "chart_folder_missing", "chart_bad_extension"])
def test_cli_errors_are_one_line(digits, tmp_path, capsys, case):
    weights = str(REPO / "weights" / "mixnet_tiny_digits.weights")
    image = str(REPO / "data" / "digits" / "samples" / "digit-1.png")
    verb, changes = "predict", {}
    if case == "no_classes":
        changes, expect = {"classes": None}, "classes"
    elif case == "bad_weights":
        weights, expect = str(tmp_path / "missing.weights"), "missing.weights"
    elif case == "bad_image":
        image, expect = str(tmp_path / "nothing.png"), "nothing.png"
    elif case == "classes_mismatch":
        changes, expect = {"classes": "9"}, "classes"
    elif case == "bad_top":
        changes, expect = {"top": "five"}, "top"
    elif case == "backup_is_a_file":
        (tmp_path / "taken").write_text("")
        verb, changes, expect = "train", {"backup": tmp_path / "taken" / "backup"}, "taken"
    elif case == "chart_folder_missing":
        verb, expect = "train", "no-folder"
    elif case == "chart_bad_extension":
        verb, expect = "train", "chart.txt: -chart: expected a file ending in one of"
    else:
        verb, expect = "valid", "image_digit-1.png"
        (tmp_path / "v.list").write_text("no/such/image_digit-1.png\n")
        changes = {"valid": tmp_path / "v.list"}
    data = data_file(digits, tmp_path, **changes)
    argv = ["classifier", verb, str(data), str(DIGITS_CFG), weights] + ([image] if verb == "predict" else [])
    if verb == "train":
        chart = "chart.txt" if case == "chart_bad_extension" else "no-folder/chart.png"
        argv += ["-dont_show", "-clear", "--max_batches", "1", "-chart", str(tmp_path / chart)]
    assert main(argv) == 2
    assert expect in one_error_line(capsys.readouterr().err)
