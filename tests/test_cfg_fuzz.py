"""Seeded cfg fuzzing: mutated copies of darknet's own cfgs either build or raise DarknetConfigError with
file:line — never another exception."""
import random
import re
import warnings

import pytest

import darknet_py
from conftest import SHARED
from darknet_py import DarknetConfigError

SOURCES = ["yolov4-tiny.cfg", "yolov3-tiny.cfg", "efficientnet_b0.cfg", "yolov2.cfg", "alexnet.cfg",
           "yolov4-sam-mish-csp-reorg-bfm.cfg", "enet-coco.cfg", "yolo.cfg", "Gaussian_yolov3_BDD.cfg"]
BAD_VALUES = ["0", "-1", "-7", "3.5", "abc", "", "99999", "1e9", "nan", "-2147483649", "1,2,3", ",", "=", "#"]
SECTIONS = ["[convolutional]", "[route]", "[shortcut]", "[yolo]", "[maxpool]", "[nonsense]", "[upsample]",
            "[scale_channels]", "[sam]", "[reorg]", "[softmax]", "[lstm]", "[net]", "["]


def mutate(lines, rng):
    lines = list(lines)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        action = rng.randrange(6)
        if action == 0 and "=" in lines[i]:              # a bad or extreme value
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}={rng.choice(BAD_VALUES)}"
        elif action == 1:                                 # delete a line
            del lines[i]
        elif action == 2:                                 # insert a section header
            lines.insert(i, rng.choice(SECTIONS))
        elif action == 3 and "=" in lines[i]:             # shift a layer index or a size
            key, value = lines[i].split("=", 1)
            numbers = re.findall(r"-?\d+", value)
            if numbers:
                lines[i] = f"{key}={value.replace(numbers[0], str(int(numbers[0]) + rng.choice([-40, -3, 3, 40])), 1)}"
        elif action == 4:                                 # truncate the file
            lines = lines[:i]
        else:                                             # duplicate a line elsewhere
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
        if not lines:
            lines = ["[net]"]
    return lines


@pytest.mark.parametrize("source", SOURCES)
def test_mutated_cfgs_build_or_fail_clearly(shared, tmp_path, source):
    text = (shared / "cfg" / source).read_text().splitlines()
    rng = random.Random(source)
    path = tmp_path / "mutant.cfg"
    outcomes = {"built": 0, "refused": 0}
    for _ in range(120):   # 9 sources x 120 = 1,080 mutants
        path.write_text("\n".join(mutate(text, rng)) + "\n")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = darknet_py.load(path, quiet=True)
            net.summary()
            outcomes["built"] += 1
        except DarknetConfigError as e:
            message = str(e)
            assert re.match(rf"{re.escape(str(path))}:\d+: ", message) or message.startswith(f"{path}: "), message
            assert "\n" not in message
            outcomes["refused"] += 1
    assert outcomes["built"] > 0 and outcomes["refused"] > 0, outcomes
