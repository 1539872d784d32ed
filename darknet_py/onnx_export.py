"""ONNX export of a network's inference graph (`darknet-py export`, `Network.export_onnx`), built with the
`onnx` package's helpers only.

Each layer type exports itself: `layer.to_onnx(graph)` reads its input tensor(s) from the `OnnxGraph` below,
adds nodes and constants, and returns (output tensor name, output shape without the batch dimension), the
same shape as the CPU engine's `layer.output`. Batch normalization is folded into the convolution or
connected weights with darknet's fuse_conv_batchnorm formula (src/network.c): per filter,
a = scales / sqrt(rolling_variance + .00001), weights *= a, biases -= a * rolling_mean (in double, then stored
as float32). The graph's outputs are the detection heads' outputs ([yolo], [Gaussian_yolo], [region],
[detection], named `<type>_<index>`), or the last layer's output (`output`) for other networks; with
`boxes=True` also `boxes` (batch, N, 4: x1, y1, x2, y2 in network-input pixels) and `scores` (batch, N,
classes: darknet's detection probability, objectness times class probability, before any threshold), ready
for a runtime NMS. The batch dimension is dynamic unless a batch size is given.
"""
import os

import numpy as np

from .activations import GELU_A, GELU_B, NORM_CHANNELS_EPS, SELU_ALPHA, SELU_LAMBDA
from .atomic import write_atomic
from .detection import detection_heads
from .errors import DarknetError

MIN_OPSET = 13
DEFAULT_OPSET = 17


class OnnxExportError(DarknetError):
    """A layer or option with no ONNX equivalent here."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise DarknetError("ONNX export needs the 'onnx' package: pip install 'darknet_py[export]'") from None
    return onnx


class OnnxGraph:
    """The graph being built: nodes, constants, and the ONNX tensor holding each layer's output."""

    def __init__(self, net, opset):
        self.net = net
        self.opset = opset
        self.helper = _onnx().helper
        self.nodes = []
        self.initializers = []
        self.tensors = {}      # layer index -> (tensor name, shape without batch)
        self.input_name = "input"
        self.layer = None      # the layer being exported (names its nodes, and errors)
        self._names = set()

    # -- names and constants --------------------------------------------------------------------------
    def _name(self, hint):
        prefix = f"l{self.layer.index}_{hint}" if self.layer is not None else hint
        name, n = prefix, 1
        while name in self._names:
            n += 1
            name = f"{prefix}_{n}"
        self._names.add(name)
        return name

    def const(self, value, hint="const", dtype=np.float32):
        """A constant (initializer) holding `value` as `dtype`."""
        from onnx import numpy_helper
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values, hint="shape"):
        return self.const(list(values), hint, np.int64)

    def op(self, op_type, inputs, hint=None, **attrs):
        """Add a node; returns its output's name."""
        name = self._name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    # -- layer inputs ---------------------------------------------------------------------------------
    def source(self, index):
        """(tensor, shape) of layer `index`'s output."""
        return self.tensors[index]

    def input(self, layer):
        """(tensor, shape) of what feeds `layer`: the previous layer's output or the network input."""
        if layer.index == 0:
            return self.input_name, (self.net.channels, self.net.height, self.net.width)
        return self.tensors[layer.index - 1]

    def image(self, name, shape, c, h, w):
        """`name` as a (batch, c, h, w) tensor (a flat (batch, c*h*w) one is reshaped, as the engine does)."""
        if tuple(shape) == (c, h, w):
            return name
        return self.reshape(name, (c, h, w))

    def image_input(self, layer):
        return self.image(*self.input(layer), layer.c, layer.h, layer.w)

    # -- building blocks ------------------------------------------------------------------------------
    def reshape(self, name, shape):
        """Reshape to (batch, *shape), the batch dimension kept dynamic."""
        return self.op("Reshape", [name, self.ints([-1] + list(shape))], "reshape")

    def flatten(self, name):
        return self.op("Flatten", [name], "flatten", axis=1)

    def slice(self, name, axis, start, end):
        if start == 0 and end is None:
            return name
        end = np.iinfo(np.int64).max if end is None else end
        return self.op("Slice", [name, self.ints([start], "starts"), self.ints([end], "ends"),
                                 self.ints([axis], "axes")], "slice")

    def concat(self, names, axis):
        return names[0] if len(names) == 1 else self.op("Concat", names, "concat", axis=axis)

    def mul(self, name, value):
        return self.op("Mul", [name, value if isinstance(value, str) else self.const(value)], "mul")

    def add(self, name, value):
        return self.op("Add", [name, value if isinstance(value, str) else self.const(value)], "add")

    def reduce(self, op_type, name, axes, keepdims=1):
        """ReduceSum/ReduceMax/... over `axes`: an input from the opset where ONNX made it one, else an attribute."""
        since = 13 if op_type == "ReduceSum" else 18
        if self.opset >= since:
            return self.op(op_type, [name, self.ints(axes, "axes")], op_type.lower(), keepdims=keepdims)
        return self.op(op_type, [name], op_type.lower(), axes=list(axes), keepdims=keepdims)

    def pad(self, name, pads, value=0.0):
        """Constant padding: `pads` lists the amounts before every axis, then after every axis (ONNX Pad)."""
        return self.op("Pad", [name, self.ints(pads, "pads"), self.const(value, "pad_value")], "pad", mode="constant")

    def pad_crop(self, name, top, left, bottom, right, value=0.0):
        """Spatially pad a (batch, c, h, w) tensor with `value` (positive amounts) and crop it (negative ones)."""
        if min(top, left, bottom, right) < 0:
            # only bottom/right can be negative here: the windows end before the input does
            h_end = bottom if bottom < 0 else None
            w_end = right if right < 0 else None
            if h_end is not None:
                name = self.slice(name, 2, 0, h_end)
            if w_end is not None:
                name = self.slice(name, 3, 0, w_end)
            bottom, right = max(bottom, 0), max(right, 0)
        if max(top, left, bottom, right) == 0:
            return name
        return self.pad(name, [0, 0, top, left, 0, 0, bottom, right], value)

    def conv(self, name, weights, biases, h, w, stride_x, stride_y, padding, dilation, groups):
        """Darknet's convolution (backend.py) of a (batch, c, h, w) tensor: its output size, its receptive-field
        offset padding*dilation, and a crop where the windows end before the input does."""
        from .backend import conv_output_size
        k = weights.shape[2]
        out_h, out_w = conv_output_size(h, w, k, stride_x, stride_y, padding)
        off = padding * dilation
        bottom = (out_h - 1) * stride_y + (k - 1) * dilation + 1 - h - off
        right = (out_w - 1) * stride_x + (k - 1) * dilation + 1 - w - off
        name = self.pad_crop(name, 0, 0, min(bottom, 0), min(right, 0))
        return self.op("Conv", [name, self.const(weights, "weights"), self.const(biases, "biases")], "conv",
                       kernel_shape=[k, k], strides=[stride_y, stride_x], dilations=[dilation, dilation],
                       group=groups, pads=[off, off, max(bottom, 0), max(right, 0)])

    def numpy(self, array):
        return np.asarray(self.net.ops.to_numpy(array), dtype=np.float32)

    def where(self, condition, a, b):
        return self.op("Where", [condition, a, b], "where")

    def activation(self, name, activation):
        """Darknet's activation (activations.py) with ONNX operators, in float32."""
        op = self.op
        if activation == "linear":
            return name
        simple = {"logistic": ("Sigmoid", {}), "tanh": ("Tanh", {}), "relu": ("Relu", {}),
                  "leaky": ("LeakyRelu", {"alpha": 0.1}), "revleaky": ("LeakyRelu", {"alpha": 0.1}),
                  "relie": ("LeakyRelu", {"alpha": 0.01}), "elu": ("Elu", {"alpha": 1.0}),
                  "selu": ("Selu", {"alpha": SELU_ALPHA, "gamma": SELU_LAMBDA})}
        if activation in simple:
            op_type, attrs = simple[activation]
            return op(op_type, [name], activation, **attrs)
        if activation == "loggy":
            return self.add(self.mul(op("Sigmoid", [name], "sigmoid"), 2.0), -1.0)
        if activation in ("relu6", "hardtan"):
            low, high = (0.0, 6.0) if activation == "relu6" else (-1.0, 1.0)
            return self.clip(name, low, high)
        if activation == "ramp":
            return op("Add", [op("Relu", [name], "relu"), self.mul(name, 0.1)], "ramp")
        if activation in ("plse", "lhtan"):
            # piecewise linear: slope `inner` on [low, high], `outer` outside, continuous
            low, high, inner, offset, outer = (-4.0, 4.0, 0.125, 0.5, 0.01) if activation == "plse" else \
                (0.0, 1.0, 1.0, 0.0, 0.001)
            clipped = self.clip(name, low, high)
            inside = self.add(self.mul(clipped, inner), offset) if offset else self.mul(clipped, inner)
            outside = self.mul(op("Sub", [name, clipped], "sub"), outer)
            return op("Add", [inside, outside], activation)
        if activation == "stair":
            n = op("Floor", [name], "floor")
            half = op("Floor", [self.mul(name, 0.5)], "floor")
            n_half = op("Floor", [self.mul(n, 0.5)], "floor")
            odd_part = op("Sub", [n, self.mul(n_half, 2.0)], "parity")
            even = op("Equal", [odd_part, self.const(0.0)], "even")
            frac = op("Sub", [name, n], "frac")
            return self.where(even, half, op("Add", [frac, half], "add"))
        if activation == "gelu":
            x2 = op("Mul", [name, name], "square")
            inner = op("Mul", [name, self.add(self.mul(x2, GELU_B), GELU_A)], "inner")
            t = op("Tanh", [inner], "tanh")
            return op("Mul", [self.mul(name, 0.5), self.add(t, 1.0)], "gelu")
        if activation == "swish":
            return op("Mul", [name, op("Sigmoid", [name], "sigmoid")], "swish")
        if activation == "mish":
            return op("Mul", [name, op("Tanh", [op("Softplus", [name], "softplus")], "tanh")], "mish")
        if activation == "hard_mish":
            # x > 0: x; -2 < x <= 0: x^2/2 + x; else 0  ==  relu(x) + c*(c/2 + 1) with c = clip(x, -2, 0)
            c = self.clip(name, -2.0, 0.0)
            quad = op("Mul", [c, self.add(self.mul(c, 0.5), 1.0)], "quad")
            return op("Add", [op("Relu", [name], "relu"), quad], "hard_mish")
        if activation == "normalize_channels":
            positive = op("Relu", [name], "relu")
            total = self.add(self.reduce("ReduceSum", positive, [1]), NORM_CHANNELS_EPS)
            return op("Div", [positive, total], "normalize")
        if activation in ("normalize_channels_softmax", "normalize_channels_softmax_maxval"):
            shifted = name
            if activation.endswith("maxval"):
                shifted = op("Sub", [name, self.reduce("ReduceMax", name, [1])], "shift")
            e = op("Exp", [shifted], "exp")
            total = self.add(self.reduce("ReduceSum", e, [1]), NORM_CHANNELS_EPS)
            return op("Div", [e, total], "normalize")
        raise self.unsupported(self.layer, "activation", activation, "no ONNX form")

    def clip(self, name, low, high):
        return self.op("Clip", [name, self.const(low, "min"), self.const(high, "max")], "clip")

    def pad_channels(self, name, count, value=0.0):
        """Append `count` channels of `value` to a (batch, c, h, w) tensor."""
        return self.pad(name, [0, 0, 0, 0, 0, count, 0, 0], value)

    def fixed_activations(self, name, layer, logistic, scaled, alpha, beta):
        """A head's activations on a (batch, anchors*values, h, w) tensor: the logistic on the per-anchor value
        indexes `logistic` (slices or ints), then x*alpha + beta on the indexes `scaled`."""
        per = layer.c // layer.n
        mask = np.zeros(per, dtype=bool)
        for part in logistic:
            mask[part] = True
        if mask.any():
            # sigmoid(x)*m + x*(1-m) with m 0/1 is exact, and float masks load where bool tensors do not
            # (OpenCV 4.x's ONNX importer)
            channels = np.tile(mask, layer.n).reshape(1, -1, 1, 1)
            activated = self.mul(self.op("Sigmoid", [name], "sigmoid"), channels.astype(np.float32))
            name = self.op("Add", [activated, self.mul(name, (~channels).astype(np.float32))], "blend")
        if scaled and (alpha != 1 or beta != 0):
            a, b = np.ones(per, np.float32), np.zeros(per, np.float32)
            for part in scaled:
                a[part], b[part] = alpha, beta
            name = self.add(self.mul(name, np.tile(a, layer.n).reshape(1, -1, 1, 1)),
                            np.tile(b, layer.n).reshape(1, -1, 1, 1))
        return name

    def anchor_table(self, layer):
        """A [yolo]/[Gaussian_yolo] output as (batch, anchors*h*w, values) in darknet's detection order (anchor,
        row, column), with each entry's column, row and anchor size in network-input pixels."""
        per = layer.c // layer.n
        name = self.reshape(self.tensors[layer.index][0], (layer.n, per, layer.h * layer.w))
        name = self.op("Transpose", [name], "transpose", perm=[0, 1, 3, 2])
        table = self.reshape(name, (layer.n * layer.h * layer.w, per))
        cells = layer.h * layer.w
        anchor = np.repeat(np.arange(layer.n), cells)
        mask = np.asarray(layer.mask)
        if (mask >= layer.total).any():
            raise self.unsupported(layer, "mask", ",".join(map(str, layer.mask)),
                                   f"anchor indexes beyond num={layer.total} leave boxes undefined")
        anchors = np.asarray(layer.anchors, np.float64).reshape(-1, 2)[mask[anchor]]
        col = np.tile(np.arange(layer.w), layer.n * layer.h)
        row = np.tile(np.repeat(np.arange(layer.h), layer.w), layer.n)
        return table, col, row, anchors[:, 0], anchors[:, 1]

    def decode_boxes(self, layer, table, col, row, anchor_w, anchor_h, xy, wh, obj, classes_start,
                     sigmoid_xy=False, square_wh=False, uncertainty=(), point=0):
        """Darknet's box decoding (get_yolo_box, get_gaussian_yolo_box, get_region_box) of a (batch, N, values)
        table in network-input pixels: center (col + x, row + y) * net size / grid size, size exp(t) * anchor
        (t*t*4 * anchor with new_coords); `point` -1/+1 shifts the center by half the box (yolo_point
        right_bottom/left_top). Returns (boxes (batch, N, 4) as x1, y1, x2, y2; scores (batch, N, classes) =
        objectness * class probability, times 1 - the mean `uncertainty` values when given)."""
        def plane(index):
            return self.slice(table, 2, index, index + 1)

        def column(values):
            return self.const(np.asarray(values, np.float32).reshape(1, -1, 1), "grid")

        px, py = plane(xy[0]), plane(xy[1])
        if sigmoid_xy:
            px, py = self.op("Sigmoid", [px], "sigmoid"), self.op("Sigmoid", [py], "sigmoid")
        cx = self.mul(self.add(px, column(col)), np.float32(self.net.width / layer.w))
        cy = self.mul(self.add(py, column(row)), np.float32(self.net.height / layer.h))
        tw, th = plane(wh[0]), plane(wh[1])
        if square_wh:
            bw = self.mul(self.op("Mul", [tw, tw], "square"), column(4 * anchor_w))
            bh = self.mul(self.op("Mul", [th, th], "square"), column(4 * anchor_h))
        else:
            bw = self.mul(self.op("Exp", [tw], "exp"), column(anchor_w))
            bh = self.mul(self.op("Exp", [th], "exp"), column(anchor_h))
        half_w, half_h = self.mul(bw, 0.5), self.mul(bh, 0.5)
        if point:
            cx = self.add(cx, half_w) if point > 0 else self.op("Sub", [cx, half_w], "sub")
            cy = self.add(cy, half_h) if point > 0 else self.op("Sub", [cy, half_h], "sub")
        corners = [self.op("Sub", [cx, half_w], "x1"), self.op("Sub", [cy, half_h], "y1"),
                   self.op("Add", [cx, half_w], "x2"), self.op("Add", [cy, half_h], "y2")]
        boxes = self.concat(corners, 2)
        scores = self.op("Mul", [plane(obj), self.slice(table, 2, classes_start, classes_start + layer.classes)],
                         "scores")
        if uncertainty:
            total = self.concat([plane(i) for i in uncertainty], 2)
            mean = self.mul(self.reduce("ReduceSum", total, [2]), 1.0 / len(uncertainty))
            scores = self.op("Mul", [scores, self.op("Sub", [self.const(1.0), mean], "certainty")], "scores")
        return boxes, scores

    def unsupported(self, layer, option, value, why):
        return OnnxExportError(f"{self.net.cfg_path}: layer {layer.index} [{layer.section.name}] "
                               f"({layer.section.path}:{layer.section.line}): {option}={value} cannot be exported "
                               f"to ONNX: {why}")


def _build(net, opset, batch, boxes):
    onnx = _onnx()
    helper = onnx.helper
    graph = OnnxGraph(net, opset)
    for layer in net.layers:
        graph.layer = layer
        export = getattr(layer, "to_onnx", None)
        if export is None:
            raise graph.unsupported(layer, "type", layer.kind, "this layer type has no ONNX export yet")
        graph.tensors[layer.index] = export(graph)
    graph.layer = None
    heads = detection_heads(net)
    batch_dim = batch if batch else "batch"
    outputs = []
    named = [(f"{layer.kind}_{layer.index}", layer.index) for layer in heads] or [("output", len(net.layers) - 1)]
    for out_name, index in named:
        tensor, shape = graph.tensors[index]
        graph.nodes.append(helper.make_node("Identity", [tensor], [out_name], name=out_name))
        outputs.append(helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, [batch_dim, *shape]))
    if boxes:
        decodable = [layer for layer in heads if hasattr(layer, "onnx_boxes")]
        if not decodable:
            raise OnnxExportError(f"{net.cfg_path}: --boxes needs a [yolo], [Gaussian_yolo] or [region] head; "
                                  f"this network has none")
        parts = []
        for layer in decodable:
            graph.layer = layer
            parts.append(layer.onnx_boxes(graph))
        graph.layer = None
        classes = {layer.classes for layer in decodable}
        if len(classes) > 1:
            raise OnnxExportError(f"{net.cfg_path}: --boxes needs every head to have the same classes; got "
                                  f"{sorted(classes)}")
        count = sum(layer.n * layer.h * layer.w for layer in decodable)
        for out_name, index, width in (("boxes", 0, 4), ("scores", 1, classes.pop())):
            tensor = graph.concat([part[index] for part in parts], 1)
            graph.nodes.append(helper.make_node("Identity", [tensor], [out_name], name=out_name))
            outputs.append(helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, [batch_dim, count, width]))
    inputs = [helper.make_tensor_value_info(graph.input_name, onnx.TensorProto.FLOAT,
                                            [batch_dim, net.channels, net.height, net.width])]
    body = helper.make_graph(graph.nodes, os.path.splitext(os.path.basename(net.cfg_path))[0], inputs, outputs,
                             graph.initializers)
    from . import __version__
    model = helper.make_model(body, producer_name="darknet_py", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", opset)])
    # the IR version that came with the opset: onnx writes its newest otherwise, which older runtimes refuse
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)
    return model


def build_model(net, opset=DEFAULT_OPSET, batch=None, boxes=False):
    """The ONNX ModelProto of `net`'s inference graph (weights must be loaded)."""
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise DarknetError(f"opset {opset}: expected {MIN_OPSET}..{newest} (the installed onnx {onnx.__version__} "
                           f"knows opsets up to {newest})")
    if batch is not None and batch < 1:
        raise DarknetError(f"batch {batch}: expected >= 1, or None for a dynamic batch dimension")
    model = _build(net, opset, batch, boxes)
    onnx.checker.check_model(model)
    return model


def export_onnx(net, path, opset=DEFAULT_OPSET, batch=None, boxes=False):
    """Write `net` as an ONNX file at `path`, atomically (a temporary file, then rename). Returns the model."""
    model = build_model(net, opset, batch, boxes)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DarknetError(f"{path}: cannot write the ONNX file: folder {folder} does not exist")
    write_atomic(path, model.SerializeToString(), what="the ONNX file", error=DarknetError)
    return model


# -- command line -------------------------------------------------------------------------------------
def cmd_export(args):
    import sys
    from .network import Network
    from .weights import load_weights
    net = Network(args.cfg, batch=1, width=args.width, height=args.height)
    load_weights(net, args.weights)
    export_onnx(net, args.out, opset=args.opset, batch=args.batch, boxes=args.boxes)
    print(net.summary(), file=sys.stderr)   # darknet's table once every check passed, not above their error
    batch = args.batch if args.batch else "dynamic"
    extra = " with boxes and scores" if args.boxes else ""
    print(f"Exported {args.cfg} ({net.width}x{net.height}, batch {batch}, opset {args.opset}){extra} to {args.out}")


def register_cli(sub):
    from .cli import POSITIVE
    export = sub.add_parser("export", help="write the network as an ONNX file (inference graph, BN folded)")
    export.add_argument("cfg")
    export.add_argument("weights")
    export.add_argument("out", help="the .onnx file to write")
    export.add_argument("--batch", type=POSITIVE, help="fixed batch size (default: a dynamic batch dimension)")
    export.add_argument("--width", type=POSITIVE)
    export.add_argument("--height", type=POSITIVE)
    export.add_argument("--opset", type=POSITIVE, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    export.add_argument("--boxes", action="store_true",
                        help="also output decoded boxes (x1, y1, x2, y2 in input pixels) and class scores")
    export.set_defaults(run=cmd_export)
