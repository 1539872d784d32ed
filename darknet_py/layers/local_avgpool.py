"""[local_avgpool] / [local_avg]: windowed average pooling, same options and shapes as [maxpool] without
maxpool_depth (darknet parse_local_avgpool)."""
from . import register
from .maxpool import Pooling


@register("local_avgpool", "local_avg")
class LocalAvgPool(Pooling):
    kind = "local_avgpool"
    label = "avg"
