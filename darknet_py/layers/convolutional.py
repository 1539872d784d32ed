"""[convolutional] / [conv]: grouped, strided, dilated 2-D convolution with optional batch normalization.

Darknet facts (src/parser.c parse_convolutional, src/convolutional_layer.c):
- defaults: filters=1, size=1, stride=1, groups=1, pad=0, padding=0, dilation=1, activation=logistic,
  batch_normalize=0; `pad=1` means padding=size/2; dilation is forced to 1 when size=1;
  stride_x/stride_y override stride when both are >= 1.
- output: (w + 2*padding - size)/stride_x + 1 (darknet's formula does not include the dilation);
- BFLOPS = 2 * nweights * out_h * out_w / 1e9 with nweights = (c/groups) * filters * size^2, /32 for xnor.
- weights file order: biases[n]; if batch_normalize: scales[n], rolling_mean[n], rolling_variance[n];
  weights[n, c/groups, size, size]. A layer with share_index owns no weights: it uses (and accumulates
  gradients into) the weights, biases and BN arrays of the layer it shares, as darknet does.
- compute (forward_convolutional_layer): convolution (backend.py has the exact geometry, dilation included);
  with batch_normalize, batch normalization then scales and biases (batchnorm.py), else + biases; activation.
"""
from . import register
from .base import Layer, darknet_float, fmt_shape
from .batchnorm import (accumulate, bn_forward, fold_batchnorm, image_input, layer_label, layer_params,
                        weighted_names)
from ..activations import read_activation
from ..backend import conv_output_size
from ..errors import DarknetError


@register("convolutional", "conv")
class Convolutional(Layer):
    kind = "convolutional"

    def configure(self, s, ctx):
        self.filters = s.get_int("filters", 1, minimum=1)
        self.groups = s.get_int("groups", 1, minimum=1)
        self.size = s.get_int("size", 1, minimum=1)
        stride_x = s.get_int("stride_x", -1)
        stride_y = s.get_int("stride_y", -1)
        if stride_x < 1 or stride_y < 1:
            stride = s.get_int("stride", 1, minimum=1)
            stride_x = stride if stride_x < 1 else stride_x
            stride_y = stride if stride_y < 1 else stride_y
        else:
            s.get_int("stride", 1)
        self.stride_x, self.stride_y = stride_x, stride_y
        self.dilation = s.get_int("dilation", 1, minimum=1)
        if self.size == 1:
            self.dilation = 1
        pad = s.get_int("pad", 0)
        self.padding = s.get_int("padding", 0, minimum=0)
        if pad:
            self.padding = self.size // 2
        self.activation = read_activation(s, "logistic")
        self.batch_normalize = s.get_int("batch_normalize", 0, minimum=0, maximum=1)
        if s.get_int("cbn", 0):
            self.batch_normalize = 1
        self.binary = s.get_int("binary", 0)
        self.xnor = s.get_int("xnor", 0)
        self.bin_output = s.get_int("bin_output", 0)
        if self.xnor:
            self.groups = 1   # darknet disables groups for XNOR nets
        for key in ("antialiasing", "sway", "rotate", "stretch", "stretch_sway", "coordconv"):
            if s.get_int(key, 0):
                raise s.error(key, f"{key}={s.options[key].value} is not supported by darknet_py yet")
        if s.get_float("assisted_excitation", 0):
            raise s.error("assisted_excitation", "assisted_excitation is not supported by darknet_py yet")
        self.flipped = s.get_int("flipped", 0)
        s.get_float("dot", 0); s.get_float("angle", 15); s.get_int("grad_centr", 0); s.get_float("reverse", 0)
        s.get_int("stream", -1); s.get_int("wait_stream", -1)

        share = s.get_int("share_index", None)
        self.share_index = None
        if share is not None:
            self.share_index = ctx.resolve(s, "share_index", share)
            other = ctx.layers[self.share_index]
            if not isinstance(other, Convolutional) or (other.size, other.c, other.filters, other.groups) != \
                    (self.size, self.c, self.filters, self.groups):
                raise s.error("share_index", f"expected a [convolutional] layer with the same size, channels, "
                                             f"filters and groups; layer {self.share_index} differs")

        if self.c % self.groups:
            raise s.error("groups", f"expected groups to divide the {self.c} input channels; got groups={self.groups}")
        if self.filters % self.groups:
            raise s.error("groups", f"expected groups to divide filters={self.filters}; got groups={self.groups}")
        self.out_h, self.out_w = conv_output_size(self.h, self.w, self.size, self.stride_x, self.stride_y,
                                                  self.padding)
        self.out_c = self.filters
        if self.out_w < 1 or self.out_h < 1:
            raise s.error("size", f"expected size <= input + 2*padding; got size={self.size} on a "
                                  f"{self.w}x{self.h} input with padding {self.padding}, output {self.out_w}x{self.out_h}")

    @property
    def nweights(self):
        return (self.c // self.groups) * self.filters * self.size * self.size

    @property
    def bflops(self):
        value = 2.0 * self.nweights * self.out_h * self.out_w / 1e9
        return darknet_float(value / 32 if self.xnor else value)

    @property
    def fma(self):
        return self.nweights * self.out_h * self.out_w

    def weight_layout(self):
        if self.share_index is not None:
            return []
        n = self.filters
        layout = [("biases", (n,))]
        if self.batch_normalize:
            layout += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        return layout + [("weights", (n, self.c // self.groups, self.size, self.size))]

    @property
    def train_floats(self):
        extra = 2 * self.outputs if self.batch_normalize else 0       # x and x_norm kept for BN backward
        if self.activation in ("swish", "mish", "hard_mish", "gelu"):
            extra += self.outputs                                      # pre-activation input
        return extra

    @property
    def is_pointwise(self):
        return self.size == 1 and self.stride_x == 1 and self.stride_y == 1 and self.padding == 0

    @property
    def is_depthwise(self):
        return self.groups == self.c and self.groups > 1

    @property
    def workspace_bytes(self):
        # 1x1/stride-1 convolutions multiply the input directly and depthwise ones run without im2col;
        # everything else needs one image's im2col matrix (darknet's get_workspace_size32 formula).
        if self.is_pointwise or self.is_depthwise:
            return 0
        return self.out_h * self.out_w * self.size * self.size * (self.c // self.groups) * 4

    def engine_memory(self, ops, batch, train):
        # the backend says which algorithm it runs (Winograd, im2col, depthwise, pointwise) and what it needs
        _, cache, scratch = ops.conv_memory(self, batch, train)
        return cache, scratch

    def row(self):
        if self.xnor and self.bin_output:
            name = "convXB"
        elif self.xnor:
            name = "convX "
        elif self.share_index is not None:
            name = "convS "
        else:
            name = "conv  "
        text = name + (f"{self.filters:5d}/{self.groups:4d} " if self.groups > 1 else f"{self.filters:5d}      ")
        k = self.size
        if self.stride_x != self.stride_y:
            text += f"{k:2d}x{k:2d}/{self.stride_x:2d}x{self.stride_y:2d} "
        elif self.dilation > 1:
            text += f"{k:2d} x{k:2d}/{self.stride_x:2d}({self.dilation:1d})"
        else:
            text += f"{k:2d} x{k:2d}/{self.stride_x:2d}   "
        return text + f"{fmt_shape(self.w, self.h, self.c)} -> {fmt_shape(*self.output_shape)} {self.bflops:5.3f} BF"

    # -- compute ------------------------------------------------------------------------------------
    def _owner(self, net):
        return net.layers[self.share_index] if self.share_index is not None else self

    def _params(self, net, names):
        return layer_params(self, self._owner(net), names, net.ops)

    def _forward_for_backward(self, x, net):
        """Convolution, then batch normalization with the activation (its cache in self._bn) or biases and the
        activation (the pre-activation kept in self._z): the output."""
        ops = net.ops
        params = self._params(net, weighted_names(self))
        z = ops.conv2d(x, params["weights"], self.stride_x, self.stride_y, self.padding, self.dilation, self.groups)
        if self.batch_normalize:
            self._z = None
            out, self._bn = bn_forward(self, ops, z, params, self._owner(net).weights, net.train, self.activation)
            return out
        z += params["biases"].reshape(1, -1, 1, 1)
        self._z, self._bn = z, None
        return ops.activate(z, self.activation)

    def forward(self, x, net):
        if self.binary or self.xnor:
            raise DarknetError(f"{layer_label(self)}: binary/xnor convolutions are not supported by the CPU engine")
        x = image_input(self, x)
        ops = net.ops
        if net.train:
            return self._forward_for_backward(x, net)
        # Inference: batch normalization folded into a per-filter scale and shift, applied with the activation
        # in one pass; nothing is kept for backward (it recomputes the pre-activation if ever called).
        self._z = self._bn = None
        params = self._params(net, weighted_names(self))
        scale, shift = ops.batchnorm_affine(params["scales"], params["biases"], params["rolling_mean"],
                                            params["rolling_variance"]) if self.batch_normalize else (None, params["biases"])
        return ops.conv2d_affine_activation(x, params["weights"], scale, shift, self.activation, self.stride_x,
                                            self.stride_y, self.padding, self.dilation, self.groups)

    def backward(self, x, net):
        ops = net.ops
        owner = self._owner(net)
        if self._z is None and self._bn is None:   # after an inference forward
            self._forward_for_backward(image_input(self, x), net)
        params = self._params(net, ("weights",))
        n = self.filters
        if self.batch_normalize:
            dz, dscales, dbiases = ops.batchnorm_backward(self.delta, self._bn)
            accumulate(owner.grads, "scales", dscales, (n,))
        else:
            dz = ops.activate_backward(self._z, self.delta.reshape(self._z.shape), self.activation)
            dbiases = ops.channel_sum(dz)
        accumulate(owner.grads, "biases", dbiases, (n,))
        dx, dw = ops.conv2d_backward(image_input(self, x), params["weights"], dz, self.stride_x, self.stride_y,
                                     self.padding, self.dilation, self.groups)
        accumulate(owner.grads, "weights", dw, params["weights"].shape)
        return dx.reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        if self.binary or self.xnor:
            key = "xnor" if self.xnor else "binary"
            raise graph.unsupported(self, key, 1, "binary convolutions are not run by the CPU engine either")
        p = {name: graph.numpy(value) for name, value in self._params(graph.net, weighted_names(self)).items()}
        weights, biases = fold_batchnorm(p)
        z = graph.conv(graph.image_input(self), weights, biases, self.h, self.w, self.stride_x, self.stride_y,
                       self.padding, self.dilation, self.groups)
        return graph.activation(z, self.activation), (self.out_c, self.out_h, self.out_w)
