"""Layer types, registered by their cfg section names. The network looks layers up here and knows nothing
layer-specific."""
import importlib

REGISTRY = {}

# Sections darknet knows that darknet_py does not run yet: a clear error instead of a wrong network.
UNSUPPORTED = ("rnn", "crnn", "lstm", "gru", "conv_lstm", "history", "contrastive", "local", "lrn",
               "normalization", "implicit", "activation", "empty", "silence")

_MODULES = ("convolutional", "connected", "maxpool", "local_avgpool", "avgpool", "route", "shortcut", "upsample",
            "yolo", "gaussian_yolo", "region", "detection", "reorg", "reorg3d", "scale_channels", "sam", "dropout",
            "softmax", "cost", "crop", "batchnorm")


def register(*names):
    def add(cls):
        for name in names:
            REGISTRY[name] = cls
        return cls
    return add


def layer_class(section):
    if section.name in REGISTRY:
        return REGISTRY[section.name]
    if section.name in UNSUPPORTED:
        raise section.error(None, f"[{section.name}] layers are not supported by darknet_py yet")
    known = ", ".join(sorted(REGISTRY))
    raise section.error(None, f"unknown section [{section.name}]; expected one of: net, {known}")


for _module in _MODULES:
    importlib.import_module(f"{__name__}.{_module}")
