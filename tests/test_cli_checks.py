"""What a new user hits in the first hour (issue 18): classifier verbs on a detector cfg, NaN/Inf outputs, numeric
options out of range, `ops --batch`, unreadable images in a `detector test` list, weights-less networks and an
image where the weights file should be, the layer table printed after the checks, global flags anywhere; and a
fuzz test of every numeric option of every verb."""
import io
import json

import numpy as np
import pytest
from PIL import Image

import darknet_py
from conftest import REPO, gpu_available, load_quiet, one_error_line
from darknet_py import DarknetError
from darknet_py.classifier import predict_classifier
from darknet_py.cli import Number, main
from darknet_py.data import classify_input
from darknet_py.detection import network_input
from darknet_py.detector import image_array
from darknet_py.table import forward_bytes
from darknet_py.weights import init_weights, save_weights
from test_cli_errors import leaf_commands
from test_detector import LOGITS, TINY_CFG, write

DIGITS_DATA = REPO / "cfg" / "digits.data"
DIGITS_CFG = REPO / "cfg" / "mixnet_tiny_digits.cfg"
DIGITS_WEIGHTS = REPO / "weights" / "mixnet_tiny_digits.weights"
DIGIT = REPO / "data" / "digits" / "samples" / "digit-3.png"
SHAPES_CFG = REPO / "cfg" / "shapes-yolo-tiny.cfg"
SHAPES_WEIGHTS = REPO / "weights" / "shapes-yolo-tiny.weights"
SHAPES_IMAGE = REPO / "data" / "shapes" / "shapes_0001.jpg"


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", stdin)
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv):
    """The one error line of a run that must end with exit code 2 and print nothing else: no layer table."""
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1, err
    return one_error_line(err)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """test_detector's 32x32 yolo net (every cell predicts class "a"), its .data/.names and a 200x100 image."""
    monkeypatch.chdir(tmp_path)
    net = load_quiet(write(tmp_path / "tiny.cfg", TINY_CFG))
    net.layers[1].weights = {"biases": np.array(LOGITS, np.float32), "weights": np.zeros((7, 3, 1, 1), np.float32)}
    save_weights(net, tmp_path / "tiny.weights")
    write(tmp_path / "tiny.names", "a\nb\n")
    write(tmp_path / "tiny.data", "classes = 2\nnames = tiny.names\nvalid = valid.txt\n")
    Image.new("RGB", (200, 100), (120, 60, 30)).save(tmp_path / "img.png")
    write(tmp_path / "valid.txt", "img.png\n")
    write(tmp_path / "img.txt", "0 0.5 0.5 0.5 0.5\n")
    return tmp_path


# -- classifier verbs on a cfg that is not a classifier ------------------------------------------------------------
@pytest.mark.parametrize("verb", ["predict", "valid"])
def test_classifier_verbs_refuse_a_detector_cfg(capsys, verb):
    """darknet would print `175.92%: 2946`: percentages of a yolo head's raw outputs, indexes past the names."""
    argv = ["classifier", verb, DIGITS_DATA, SHAPES_CFG, SHAPES_WEIGHTS] + ([DIGIT] if verb == "predict" else [])
    message = refused(capsys, *argv)
    assert f"{SHAPES_CFG}: the output layer is layer 22 [yolo] ({SHAPES_CFG}:169), not a classifier's" in message
    assert "use detector test" in message


def test_classifier_output_is_softmax_or_logistic_with_one_value_per_class(tmp_path, capsys):
    """A logistic [connected] output is class probabilities (multi-label); a linear one is not; a [softmax] of
    12 values for the 10 digit classes would put top-k indexes outside the names."""
    body = "[net]\nwidth=8\nheight=8\nchannels=3\n[connected]\noutput={n}\nactivation={activation}\n"
    for n, activation, words in [(10, "logistic", None), (10, "linear", "the output layer is layer 0 [connected]"),
                                 (12, "logistic", "classes=10, but the output layer")]:
        cfg = write(tmp_path / "c.cfg", body.format(n=n, activation=activation))
        save_weights(init_weights(load_quiet(cfg)), tmp_path / "c.weights")
        argv = ["classifier", "predict", DIGITS_DATA, cfg, tmp_path / "c.weights", DIGIT, "-t", "10"]
        if words is None:
            code, out, err = run(capsys, *argv)
            assert code == 0, err
            assert len(out.splitlines()) == 11 and "Total BFLOPS" in err
        else:
            assert words in refused(capsys, *argv)


def test_top_above_the_classes_is_refused(capsys):
    message = refused(capsys, "classifier", "predict", DIGITS_DATA, DIGITS_CFG, DIGITS_WEIGHTS, DIGIT, "-t", "11")
    assert f"-t 11: expected 0 (the .data top) up to the 10 classes of {DIGITS_DATA}:1: classes" in message
    with pytest.raises(DarknetError, match="-t -1: expected 0"):   # the Python API checks it too
        predict_classifier(DIGITS_DATA, DIGITS_CFG, DIGITS_WEIGHTS, DIGIT, top=-1)
    code, out, _ = run(capsys, "classifier", "predict", DIGITS_DATA, DIGITS_CFG, DIGITS_WEIGHTS, DIGIT, "-t", "10")
    assert code == 0 and len(out.splitlines()) == 11


# -- NaN/Inf outputs -----------------------------------------------------------------------------------------------
def first_non_finite_layer(cfg, weights, x):
    """The index of the first layer whose output is not finite, by a forward of `x` outside the verbs."""
    net = load_quiet(cfg, weights=weights)
    with np.errstate(all="ignore"):
        net.forward(x)
    return next(layer.index for layer in net.layers if not np.isfinite(layer.output).all())


def test_darknet_initial_weights_are_refused_naming_the_first_non_finite_layer(shared, capsys, monkeypatch,
                                                                               tmp_path):
    """darknet's own initial weights (rolling variance 0) make activations explode: efficientnet_b0 would print
    `nan%: Siberian husky`, yolov4-tiny thousands of `100%` lines and then an OverflowError."""
    monkeypatch.chdir(tmp_path)
    cfg, weights, dog = shared / "cfg" / "efficientnet_b0.cfg", shared / "weights" / "efficientnet_b0.rand.weights", \
        shared / "data" / "dog.jpg"
    first = first_non_finite_layer(cfg, weights, classify_input(str(dog), load_quiet(cfg).options))
    code, out, err = run(capsys, "classifier", "predict", shared / "cfg" / "imagenet1k.data", cfg, weights, dog)
    message = one_error_line(err)
    assert code == 2 and "%" not in out
    assert f"the output of layer 135 [softmax] ({cfg}:1004) is not finite (NaN/Inf)" in message
    assert f"the first non-finite output is that of layer {first} [convolutional]" in message

    cfg, weights = shared / "cfg" / "yolov4-tiny.cfg", shared / "weights" / "yolov4-tiny.rand.weights"
    first = first_non_finite_layer(cfg, weights, network_input(image_array(dog, 3), 416, 416, False))
    code, out, err = run(capsys, "detector", "test", shared / "cfg" / "coco.data", cfg, weights, dog, "-out",
                         "r.json", "-dont_show")
    message = one_error_line(err)
    assert code == 2 and "%" not in out
    assert f"the output of layer 37 [yolo] ({cfg}:277) is not finite" in message
    assert f"the first non-finite output is that of layer {first} [convolutional]" in message
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "predictions.jpg").exists()


def test_boxes_that_overflow_are_refused_naming_the_head(tiny, capsys):
    """A finite but huge width output: exp(100) is beyond float32, every box would be infinite."""
    net = load_quiet(tiny / "tiny.cfg")
    net.layers[1].weights = {"biases": np.array([0, 0, 100, 0, 3, 2, -8], np.float32),
                             "weights": np.zeros((7, 3, 1, 1), np.float32)}
    save_weights(net, tiny / "huge.weights")
    code, out, err = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "huge.weights", "img.png")
    assert code == 2 and "%" not in out and "warning" not in err
    assert "tiny.cfg: boxes of layer 2 [yolo] (tiny.cfg:17) overflow float32" in one_error_line(err)


# -- numeric options -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("verb, option, value, words", [
    ("test", "-thresh", "-0.5", "argument -thresh: expected a number in 0..1; got '-0.5'"),
    ("test", "-thresh", "5", "argument -thresh: expected a number in 0..1; got '5'"),
    ("test", "-nms", "-1", "argument -nms: expected a number in 0..1; got '-1'"),
    ("test", "-hier", "inf", "argument -hier: expected a number in 0..1; got 'inf'"),
    ("map", "-iou_thresh", "-1", "argument -iou_thresh: expected a number in 0..1; got '-1'"),
    ("map", "-points", "7", "argument -points: invalid choice: 7 (choose from 0, 11, 101)"),
    ("test", "-gpus", "x", "argument -gpus: expected GPU indexes such as 0 or 0,1"),
    ("test", "-gpus", "-1", "got '-1'"),
    ("map", "-gpus", "0,0", "each a number >= 0, once); got '0,0'"),
    ("test", "-gpus", "1.5", "got '1.5'"),
])
def test_numbers_out_of_range_are_refused(tiny, capsys, verb, option, value, words):
    argv = ["detector", verb, "tiny.data", "tiny.cfg", "tiny.weights"] + (["img.png"] if verb == "test" else [])
    assert words in refused(capsys, *argv, option, value)


def test_thresholds_at_their_bounds_run(tiny, capsys):
    code, out, _ = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "img.png", "-thresh", "1")
    assert code == 0 and out.splitlines()[1:] == []          # no probability is above 1
    code, out, _ = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "img.png", "-thresh", "0",
                       "-nms", "0")
    assert code == 0 and len(out.splitlines()) == 1 + 2 * 16   # every cell, both classes (b's probability > 0)


def test_several_gpus_use_the_first_and_say_so(tiny, capsys):
    code, out, err = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "img.png", "-gpus", "0,1")
    assert code == 0 and "Predicted in" in out
    assert "warning: -gpus 0,1: this verb runs on one GPU; using cuda:0 only" in err
    if not gpu_available():
        assert "warning: -gpus 0,1: " in err and "running on the CPU" in err


# -- ops --batch ---------------------------------------------------------------------------------------------------
def test_ops_batch_sets_both_memory_lines(capsys):
    """Both lines at the given batch, and equal to what the network's memory check compares (forward_bytes)."""
    lines = {}
    for batch in ("1", "8"):
        code, out, _ = run(capsys, "ops", SHAPES_CFG, "--batch", batch)
        assert code == 0
        lines[batch] = [line for line in out.splitlines() if line.startswith("Memory, ")]
        assert [line.split(":")[0] for line in lines[batch]] == [f"Memory, inference at batch {batch}",
                                                                 f"Memory, training at batch {batch}"]
    assert lines["1"][0] != lines["8"][0] and lines["1"][1] != lines["8"][1]
    code, out, _ = run(capsys, "ops", SHAPES_CFG, "--batch", "8", "--format", "json")
    memory = json.loads(out)["memory"]
    net = load_quiet(SHAPES_CFG)
    for mode, train in (("inference", False), ("training", True)):
        expected = memory["weights_mib"] + forward_bytes(net, 8, train) / 2 ** 20
        assert memory[mode]["batch"] == 8 and memory[mode]["total_mib"] == pytest.approx(expected, rel=1e-9)
    code, out, _ = run(capsys, "ops", SHAPES_CFG)
    assert "Memory, inference at batch 1:" in out and "Memory, training at batch 32:" in out   # the cfg's 64/2


# -- detector test lists: unreadable images skipped and counted, the JSON kept -------------------------------------
def test_unreadable_images_in_a_list_are_skipped_and_the_json_is_written(tiny, capsys):
    (tiny / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    write(tiny / "list.txt", "img.png\nbroken.png\nmissing.png\nimg.png\n")
    code, out, err = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "list.txt", "-out",
                         "r.json", "-dont_show")
    assert code == 0, err
    assert out.count("Predicted in") == 2
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and "broken.png: cannot read image" in warnings[0]
    assert "missing.png: cannot read image" in warnings[1] and err.endswith("Skipped 2 unreadable images\n")
    frames = json.loads((tiny / "r.json").read_text())
    assert [(f["frame_id"], f["filename"]) for f in frames] == [(1, "img.png"), (2, "img.png")]
    assert all(len(f["objects"]) == 16 for f in frames)

    write(tiny / "bad.txt", "broken.png\nmissing.png\n")
    code, out, err = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "bad.txt", "-out",
                         "b.json")
    assert code == 2 and out == ""
    assert "bad.txt: none of the 2 images could be read; first: broken.png: cannot read image" in one_error_line(err)
    assert not (tiny / "b.json").exists()


def test_images_done_are_written_when_the_run_is_interrupted(tiny, capsys, monkeypatch):
    class Interrupted(io.StringIO):
        def readline(self):
            line = super().readline()
            if not line:
                raise KeyboardInterrupt   # Ctrl-C at the second prompt
            return line
    code, out, _ = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "-out", "r.json",
                       stdin=Interrupted("img.png\n"), monkeypatch=monkeypatch)
    assert code == 130 and out.count("Predicted in") == 1
    assert [f["filename"] for f in json.loads((tiny / "r.json").read_text())] == ["img.png"]


# -- weights: darknet's init, and an image where the weights file should be ----------------------------------------
def test_load_without_weights_can_use_darknets_initialisation(tmp_path):
    net = darknet_py.load(SHAPES_CFG, init=True, quiet=True)
    reference = init_weights(load_quiet(SHAPES_CFG))
    for mine, theirs in zip(net.layers, reference.layers):
        assert mine.weights.keys() == theirs.weights.keys()
        for name in mine.weights:
            np.testing.assert_array_equal(mine.weights[name], theirs.weights[name])
    x = np.random.default_rng(0).random((1, 3, net.height, net.width), dtype=np.float32)
    assert np.isfinite(net.forward(x)).all()
    with pytest.raises(DarknetError, match="layer 0 convolutional has no weights: load a .weights file"):
        load_quiet(SHAPES_CFG).forward(x)
    with pytest.raises(DarknetError, match="weights=.* and init=True: give one of them"):
        darknet_py.load(SHAPES_CFG, weights=SHAPES_WEIGHTS, init=True, quiet=True)


def test_an_image_as_the_weights_argument_says_the_weights_file_is_missing(tiny, capsys):
    message = refused(capsys, "detector", "test", "tiny.data", "tiny.cfg", "img.png")
    assert message == ("error: img.png: a PNG image, not a darknet .weights file: the weights file is missing from the "
                       "arguments (e.g. detector test DATA CFG WEIGHTS IMAGE)")
    message = refused(capsys, "classifier", "predict", DIGITS_DATA, DIGITS_CFG, DIGIT)
    assert f"{DIGIT} is a PNG image: the weights file is missing" in message
    message = refused(capsys, "classifier", "predict", DIGITS_DATA, DIGITS_CFG, DIGITS_WEIGHTS)
    assert message.endswith("expected DATA CFG WEIGHTS IMAGE; IMAGE is missing")


# -- the layer table comes after the checks ------------------------------------------------------------------------
def test_errors_found_before_the_first_forward_are_the_only_output(tiny, capsys, monkeypatch):
    (tiny / "big.weights").write_bytes((tiny / "tiny.weights").read_bytes() + bytes(40))
    assert "left over" in refused(capsys, "detector", "test", "tiny.data", "tiny.cfg", "big.weights", "img.png")
    write(tiny / "three.data", "classes = 3\nnames = three.names\nvalid = valid.txt\n")
    write(tiny / "three.names", "a\nb\nc\n")
    assert "three.names has 3 names" in refused(capsys, "detector", "map", "three.data", "tiny.cfg", "tiny.weights")
    assert "classes=9" in refused(capsys, "classifier", "predict", write(tiny / "d.data", DIGITS_DATA.read_text()
                                                                          .replace("classes = 10", "classes = 9")
                                                                          .replace("cfg/", f"{REPO}/cfg/")),
                                  DIGITS_CFG, DIGITS_WEIGHTS, DIGIT)
    monkeypatch.setenv("DARKNET_PY_MEMORY_LIMIT", "1K")
    assert "MiB available" in refused(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "img.png")
    monkeypatch.delenv("DARKNET_PY_MEMORY_LIMIT")
    code, _, err = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "img.png")
    assert code == 0 and "Total BFLOPS" in err


# -- global flags --------------------------------------------------------------------------------------------------
def test_debug_anywhere_and_version(capsys, tmp_path):
    code, out, err = run(capsys, "ops", SHAPES_CFG, "--debug")
    assert code == 0 and "Total BFLOPS" in out and err == ""
    with pytest.raises(DarknetError):
        main(["ops", str(tmp_path / "missing.cfg"), "--debug"])
    assert "missing.cfg: cannot read cfg file" in refused(capsys, "ops", tmp_path / "missing.cfg")
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"darknet-py {darknet_py.__version__}\n"


# -- fuzz: every numeric option of every verb ----------------------------------------------------------------------
FUZZ_VALUES = ["-1", "0", "nan", "inf", "abc", "1e30", "99999999999"]


def numeric_options(parser):
    """(name, action) of every numeric argument of a verb: Number-typed options and positionals, -points, -gpus."""
    return [(a.option_strings[0] if a.option_strings else a.metavar or a.dest, a) for a in parser._actions
            if isinstance(a.type, Number) or a.type in (int, float) or a.dest == "gpus"]


@pytest.fixture
def fuzz_inputs(tiny):
    """A valid command line per verb, quick to run: the tiny detector, the shipped digits classifier on its
    samples, a 12-image shapes set for detector training; outputs inside the test folder."""
    from test_detector_train import make_dataset
    samples = sorted((REPO / "data" / "digits" / "samples").glob("*.png"))
    write(tiny / "digits.list", "".join(f"{p}\n" for p in samples))
    digits = write(tiny / "digits.data", f"classes = 10\ntrain = digits.list\nvalid = digits.list\nlabels = "
                                         f"{REPO}/cfg/digits.labels\nnames = {REPO}/cfg/digits.names\nbackup = "
                                         f"backup\ntop = 2\n")
    (tiny / "shapes").mkdir()
    shapes_data, shapes_cfg = make_dataset(tiny / "shapes", max_batches=1)
    train = ["-dont_show", "--max_batches", "1", "--batch", "2", "--subdivisions", "1", "--threads", "1", "-chart",
             "chart.png"]
    return {
        "ops": ["ops", SHAPES_CFG],
        "partial": ["partial", SHAPES_CFG, SHAPES_WEIGHTS, "part.weights", "2"],
        "export": ["export", SHAPES_CFG, SHAPES_WEIGHTS, "out.onnx"],
        "classifier train": ["classifier", "train", digits, DIGITS_CFG] + train,
        "classifier predict": ["classifier", "predict", digits, DIGITS_CFG, DIGITS_WEIGHTS, DIGIT],
        "detector test": ["detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "img.png", "-dont_show"],
        "detector map": ["detector", "map", "tiny.data", "tiny.cfg", "tiny.weights"],
        "detector train": ["detector", "train", shapes_data, shapes_cfg] + train,
        "benchmark": ["benchmark", DIGITS_CFG, "--iterations", "1", "--warmup", "0"],
    }


def test_fuzz_every_numeric_option_of_every_verb(fuzz_inputs, capsys):
    """Each numeric option set to negative, zero, NaN, Inf, a word and huge values, on a command line that is
    otherwise valid: exit 0 with the verb's output, or exit 2 with one error line naming that option; never a
    traceback. Negative, NaN, Inf and words are always refused (no option takes them), as is anything above
    darknet's C int or above 1 for a threshold."""
    verbs = {" ".join(prefix): parser for prefix, parser in leaf_commands()}
    fuzzed = {command for command, parser in verbs.items() if numeric_options(parser)}
    assert fuzzed == set(fuzz_inputs)   # a verb with numbers added later needs a command line here
    ran = []
    for command, base in fuzz_inputs.items():
        base = [str(a) for a in base]
        for name, action in numeric_options(verbs[command]):
            for value in FUZZ_VALUES:
                argv = list(base)
                if action.option_strings:
                    argv += [name, value]
                else:   # a positional: replace its value in the valid command line
                    argv[len(base) - 1] = value
                code = main(argv)
                out, err = capsys.readouterr()
                assert code in (0, 2) and "Traceback" not in out + err, (argv, code, err)
                if code == 2:
                    message = one_error_line(err)
                    assert f"argument {name}:" in message, (argv, message)
                    assert value in message, (argv, message)
                else:
                    assert value == "0" and out.strip(), (argv, out, err)
                    ran.append(f"{command} {name}")
    assert sorted(ran) == sorted(
        ["partial N", "classifier train -gpus", "classifier train --seed", "detector train --seed",
         "classifier predict -t", "detector test -thresh",
         "detector test -hier", "detector test -nms", "detector test -gpus", "detector map -thresh",
         "detector map -iou_thresh", "detector map -points", "detector map -gpus", "detector train -gpus",
         "benchmark --warmup", "benchmark -gpus"])
