"""[connected] / [conn]: fully connected layer on the flattened input.

Darknet facts (parse_connected, make_connected_layer): output=1, activation=logistic, batch_normalize=0;
output shape 1 x 1 x output; darknet counts no BFLOPS for it (its Total BFLOPS leaves it out), but the FMA
column does. Weights file: biases[out]; weights[out, in]; if batch_normalize: scales, rolling_mean,
rolling_variance [out]. Files written with major or minor > 1000 store weights transposed.
Compute (forward_connected_layer): z = x @ weights.T; with batch_normalize, batch normalization over the batch
then scales (batchnorm.py); + biases; activation. Output is flat: (batch, output).
"""
from . import register
from .base import Layer
from .batchnorm import accumulate, bn_forward, fold_batchnorm, layer_label, layer_params, weighted_names
from ..activations import read_activation
from ..errors import DarknetError


@register("connected", "conn")
class Connected(Layer):
    kind = "connected"
    needs_image = False

    def configure(self, s, ctx):
        self.units = s.get_int("output", 1, minimum=1)
        self.activation = read_activation(s, "logistic")
        self.batch_normalize = s.get_int("batch_normalize", 0, minimum=0, maximum=1)
        self.out_w = self.out_h = 1
        self.out_c = self.units

    @property
    def fma(self):
        return self.inputs * self.units

    def weight_layout(self):
        n = self.units
        layout = [("biases", (n,)), ("weights", (n, self.inputs))]
        if self.batch_normalize:
            layout += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        return layout

    @property
    def train_floats(self):
        return 2 * self.outputs if self.batch_normalize else 0

    def row(self):
        return f"connected                            {self.inputs:4d}  ->  {self.units:4d}"

    # -- compute ------------------------------------------------------------------------------------
    def _flat(self, x):
        if x.ndim not in (2, 4) or x.size != x.shape[0] * self.inputs:
            raise DarknetError(f"{layer_label(self)}: input of shape {tuple(x.shape)}; expected (batch, "
                               f"{self.inputs}) or an image of {self.inputs} values per batch item")
        return x.reshape(x.shape[0], self.inputs)

    def forward(self, x, net):
        ops = net.ops
        x = self._flat(x)
        params = layer_params(self, self, weighted_names(self), ops)
        z = ops.linear(x, params["weights"])
        if self.batch_normalize:
            self._z = None
            out, self._bn = bn_forward(self, ops, z, params, self.weights, net.train, self.activation)
            return out
        z += params["biases"]
        self._z, self._bn = z, None
        return ops.activate(z, self.activation)

    def backward(self, x, net):
        ops = net.ops
        params = layer_params(self, self, ("weights",), ops)
        if self.batch_normalize:
            dz, dscales, dbiases = ops.batchnorm_backward(self.delta, self._bn)
            accumulate(self.grads, "scales", dscales, (self.units,))
        else:
            dz = ops.activate_backward(self._z, self.delta.reshape(self._z.shape), self.activation)
            dbiases = ops.channel_sum(dz)
        accumulate(self.grads, "biases", dbiases, (self.units,))
        dx, dw = ops.linear_backward(self._flat(x), params["weights"], dz)
        accumulate(self.grads, "weights", dw, (self.units, self.inputs))
        return dx.reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        p = {name: graph.numpy(value)
             for name, value in layer_params(self, self, weighted_names(self), graph.net.ops).items()}
        weights, biases = fold_batchnorm(p)
        x = graph.flatten(graph.input(self)[0])
        z = graph.op("Gemm", [x, graph.const(weights, "weights"), graph.const(biases, "biases")], "gemm", transB=1)
        return graph.activation(z, self.activation), (self.units,)
