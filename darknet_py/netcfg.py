"""The [net] section: input size, batch, optimizer and augmentation options with darknet's defaults
(src/parser.c parse_net_options)."""
from .errors import DarknetConfigError

POLICIES = ("constant", "step", "poly", "steps", "exp", "sigmoid", "random", "sgdr")

# key: (type, default). Defaults that depend on other options are filled in NetOptions.__init__.
SIMPLE_OPTIONS = {
    "max_batches": ("int", 0), "batch": ("int", 1), "learning_rate": ("float", 0.001),
    "learning_rate_min": ("float", 0.00001), "sgdr_mult": ("int", 2), "momentum": ("float", 0.9),
    "decay": ("float", 0.0001), "subdivisions": ("int", 1), "time_steps": ("int", 1), "track": ("int", 0),
    "augment_speed": ("int", 2), "try_fix_nan": ("int", 0), "weights_reject_freq": ("int", 0),
    "equidistant_point": ("int", 0), "badlabels_rejection_percentage": ("float", 0.0),
    "num_sigmas_reject_badlabels": ("float", 0.0), "ema_alpha": ("float", 0.0), "use_cuda_graph": ("int", 0),
    "loss_scale": ("float", 1.0), "dynamic_minibatch": ("int", 0), "optimized_memory": ("int", 0),
    "workspace_size_limit_MB": ("float", 1024.0), "adam": ("int", 0), "height": ("int", 0), "width": ("int", 0),
    "channels": ("int", 0), "flip": ("int", 1), "blur": ("int", 0), "gaussian_noise": ("int", 0),
    "mixup": ("int", 0), "cutmix": ("int", 0), "mosaic": ("int", 0), "letter_box": ("int", 0),
    "mosaic_bound": ("int", 0), "contrastive": ("int", 0), "contrastive_jit_flip": ("int", 0),
    "contrastive_color": ("int", 0), "unsupervised": ("int", 0), "label_smooth_eps": ("float", 0.0),
    "resize_step": ("float", 32.0), "attention": ("int", 0), "adversarial_lr": ("float", 0.0),
    "max_chart_loss": ("float", 20.0), "angle": ("float", 0.0), "aspect": ("float", 1.0),
    "saturation": ("float", 1.0), "exposure": ("float", 1.0), "hue": ("float", 0.0), "power": ("float", 4.0),
    "burn_in": ("int", 0), "show_receptive_field": ("float", 0.0), "max_epochs": ("int", 0), "seen": ("int", 0),
}


class NetOptions:
    """Parsed [net]. `batch` is the cfg's batch; `mini_batch` = batch/subdivisions as darknet runs it."""

    def __init__(self, section, batch=None, width=None, height=None):
        s = self.section = section
        for key, (typ, default) in SIMPLE_OPTIONS.items():
            setattr(self, key, (s.get_int if typ == "int" else s.get_float)(key, default))
        for key in ("batch", "subdivisions", "time_steps"):
            if getattr(self, key) < 1:
                raise s.error(key, f"expected {key} >= 1; got {getattr(self, key)}")
        self.sgdr_cycle = s.get_int("sgdr_cycle", self.max_batches)
        self.sequential_subdivisions = min(s.get_int("sequential_subdivisions", self.subdivisions), self.subdivisions)
        self.mini_batch = max(1, self.batch // self.subdivisions)
        if self.adam:
            self.B1, self.B2, self.eps = s.get_float("B1", 0.9), s.get_float("B2", 0.999), s.get_float("eps", 1e-6)
        if width is not None:
            self.width = width
        if height is not None:
            self.height = height
        for key in ("width", "height", "channels"):
            if getattr(self, key) < 0:
                raise s.error(key, f"expected {key} >= 0; got {getattr(self, key)}")
        self.inputs = s.get_int("inputs", self.height * self.width * self.channels, minimum=0)
        self.max_crop = s.get_int("max_crop", self.width * 2)
        self.min_crop = s.get_int("min_crop", self.width)
        if not self.inputs and not (self.height and self.width and self.channels):
            raise s.error(None, "no input size: expected width, height and channels (or inputs) in [net]")
        self.policy = s.get_str("policy", "constant", choices=POLICIES)
        self.step = self.scale = self.gamma = None
        self.steps, self.scales, self.seq_scales = [], [], []
        if self.policy == "step":
            self.step = s.get_int("step", 1, minimum=1)
            self.scale = s.get_float("scale", 1.0)
        elif self.policy in ("steps", "sgdr"):
            self.steps = s.get_int_list("steps", [])
            self.scales = s.get_float_list("scales", [])
            self.seq_scales = s.get_float_list("seq_scales", [])
            if self.policy == "steps" and (not self.steps or not self.scales):
                raise s.error("policy", "policy=steps needs steps=... and scales=...")
            if self.scales and len(self.scales) != len(self.steps):
                raise s.error("scales", f"expected as many scales as steps ({len(self.steps)}); got {len(self.scales)}")
        elif self.policy in ("exp", "sigmoid"):
            self.gamma = s.get_float("gamma", 1.0)
            if self.policy == "sigmoid":
                self.step = s.get_int("step", 1, minimum=1)
        if batch is not None:
            if batch < 1:
                raise DarknetConfigError(f"{s.path}: batch override must be >= 1; got {batch}")
            self.mini_batch = batch
