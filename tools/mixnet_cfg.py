"""Writes cfg/mixnet_m.cfg (MixNet-M, Tan & Le 2019, as timm's `mixnet_m` defines it), cfg/mixnet_tiny.cfg
(the same building blocks, small, for tests) and cfg/mixnet_tiny_digits.cfg (mixnet_tiny with training options
for the digits dataset) as darknet cfgs.

    python tools/mixnet_cfg.py

MixConv (several depthwise kernel sizes on equal channel splits) becomes `[route] groups=G group_id=i` +
a depthwise `[convolutional]` per split + a `[route]` concatenating them; a grouped 1x1 expansion/projection
("a1.1"/"p1.1") is `[convolutional] groups=2`; squeeze-and-excitation is `[avgpool]` + two 1x1 convolutions +
`[scale_channels]`; residuals are `[shortcut]`."""
from pathlib import Path

CFG = Path(__file__).resolve().parents[1] / "cfg"

# (repeats, kernel sizes, expansion groups, projection groups, stride, expansion, out channels, se ratio, swish)
MIXNET_M = [
    ("ds", 1, [3], 1, 1, 1, 1, 24, 0, False),
    ("ir", 1, [3, 5, 7], 2, 2, 2, 6, 32, 0, False),
    ("ir", 1, [3], 2, 2, 1, 3, 32, 0, False),
    ("ir", 1, [3, 5, 7, 9], 1, 1, 2, 6, 40, 0.5, True),
    ("ir", 3, [3, 5], 2, 2, 1, 6, 40, 0.5, True),
    ("ir", 1, [3, 5, 7], 1, 1, 2, 6, 80, 0.25, True),
    ("ir", 3, [3, 5, 7, 9], 2, 2, 1, 6, 80, 0.25, True),
    ("ir", 1, [3], 1, 1, 1, 6, 120, 0.5, True),
    ("ir", 3, [3, 5, 7, 9], 2, 2, 1, 3, 120, 0.5, True),
    ("ir", 1, [3, 5, 7, 9], 1, 1, 2, 6, 200, 0.5, True),
    ("ir", 3, [3, 5, 7, 9], 1, 2, 1, 6, 200, 0.5, True),
]
MIXNET_TINY = [
    ("ds", 1, [3], 1, 1, 1, 1, 8, 0, False),
    ("ir", 1, [3, 5], 2, 2, 2, 3, 16, 0, False),
    ("ir", 1, [3, 5], 2, 2, 1, 3, 16, 0.5, True),
    ("ir", 1, [3, 5, 7], 1, 1, 2, 3, 24, 0.25, True),
]


class CfgWriter:
    def __init__(self, header):
        self.lines = [header]
        self.count = 0   # layers written so far

    def layer(self, section, **options):
        self.lines.append(f"\n[{section}]")
        self.lines += [f"{key}={value}" for key, value in options.items()]
        self.count += 1
        return self.count - 1

    def rel(self, index):
        """A reference to layer `index` from the next layer, darknet-style (negative = relative)."""
        return index - self.count

    def conv(self, filters, size=1, stride=1, groups=1, bn=True, activation="linear"):
        options = dict(filters=filters, size=size, stride=stride, pad=1 if size > 1 else 0)
        if groups > 1:
            options["groups"] = groups
        if bn:
            options["batch_normalize"] = 1
        options["activation"] = activation
        return self.layer("convolutional", **options)

    def mixed_depthwise(self, channels, kernels, stride, activation):
        if len(kernels) == 1:
            return self.conv(channels, kernels[0], stride, groups=channels, activation=activation)
        source, split = self.count - 1, channels // len(kernels)
        outputs = []
        for i, k in enumerate(kernels):
            self.layer("route", layers=self.rel(source), groups=len(kernels), group_id=i)
            outputs.append(self.conv(split, k, stride, groups=split, activation=activation))
        return self.layer("route", layers=",".join(str(self.rel(i)) for i in outputs))

    def squeeze_excite(self, channels, reduced, activation):
        source = self.count - 1
        self.layer("avgpool")
        self.conv(reduced, bn=False, activation=activation)
        self.conv(channels, bn=False, activation="logistic")
        return self.layer("scale_channels", **{"from": self.rel(source)})


# [net] training options of the ImageNet-style cfgs; `training=` in write() replaces them all (its own dict)
TRAINING = dict(momentum=0.9, decay="0.00001", learning_rate=0.1, burn_in=1000, policy="poly", power=4,
                max_batches=1600000, angle=0, hue=".1", saturation=".75", exposure=".75", aspect=".75")
# 1,437 32x32 grey digits (tools/make_digits.py): no flips or scale jitter (they change what a digit is),
# decay as darknet's small classifiers, a short poly schedule that reaches >= 95% top-1 in about 400 iterations
DIGITS_TRAINING = dict(momentum=0.9, decay=0.0005, learning_rate=0.1, burn_in=50, policy="poly", power=1,
                       max_batches=400, angle=0, hue=0, saturation=1, exposure=1.25, aspect=1, flip=0,
                       min_crop=32, max_crop=32)


def write(path, blocks, width, stem, head, classes, batch, subdivisions, training=TRAINING):
    options = "".join(f"\n{key}={value}" for key, value in training.items())
    out = CfgWriter(f"# MixNet written as a darknet cfg by tools/mixnet_cfg.py; do not edit by hand.\n[net]\n"
                    f"batch={batch}\nsubdivisions={subdivisions}\nwidth={width}\nheight={width}\nchannels=3"
                    + options)
    channels = stem
    out.conv(stem, 3, 2, activation="relu")
    for kind, repeats, kernels, exp_groups, proj_groups, stride, expansion, filters, se, swish in blocks:
        activation = "swish" if swish else "relu"
        for r in range(repeats):
            block_input = out.count - 1
            s = stride if r == 0 else 1
            if kind == "ds":
                out.mixed_depthwise(channels, kernels, s, activation)
                out.conv(filters, groups=proj_groups)
            else:
                hidden = channels * expansion
                out.conv(hidden, groups=exp_groups, activation=activation)
                out.mixed_depthwise(hidden, kernels, s, activation)
                if se:
                    out.squeeze_excite(hidden, max(1, int(channels * se)), activation)
                out.conv(filters, groups=proj_groups)
            if s == 1 and channels == filters:
                out.layer("shortcut", **{"from": out.rel(block_input)}, activation="linear")
            channels = filters
    out.conv(head, activation="relu")
    out.layer("avgpool")
    out.layer("dropout", probability=0.25)
    out.layer("connected", output=classes, activation="linear")
    out.layer("softmax", groups=1)
    path.write_text("\n".join(out.lines) + "\n")


if __name__ == "__main__":
    write(CFG / "mixnet_m.cfg", MIXNET_M, 224, 24, 1536, 1000, batch=128, subdivisions=2)
    write(CFG / "mixnet_tiny.cfg", MIXNET_TINY, 32, 8, 64, 10, batch=16, subdivisions=1)
    write(CFG / "mixnet_tiny_digits.cfg", MIXNET_TINY, 32, 8, 64, 10, batch=32, subdivisions=1,
          training=DIGITS_TRAINING)
