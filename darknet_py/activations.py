"""Darknet activation names (src/activations.c get_activation). Their math comes with the CPU engine."""

ACTIVATIONS = (
    "logistic", "swish", "mish", "hard_mish", "normalize_channels", "normalize_channels_softmax",
    "normalize_channels_softmax_maxval", "loggy", "relu", "relu6", "elu", "selu", "gelu", "relie", "plse",
    "hardtan", "lhtan", "linear", "ramp", "revleaky", "leaky", "tanh", "stair",
)


def read_activation(section, default):
    """The section's `activation`, checked. Darknet silently falls back to relu for an unknown name; we refuse."""
    return section.get_str("activation", default, choices=ACTIVATIONS)
