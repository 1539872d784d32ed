"""Darknet .cfg reader.

Darknet strips every whitespace character from a line, skips lines starting with '#' or ';', starts a section
at '[name]', and splits other lines at the first '='. It also tolerates trailing comments after a value because
atoi/atof stop at the first non-numeric character; we strip them explicitly. Every option keeps its file and line
so that errors and 'Unused field' warnings can point at it.
"""
import re

from .errors import DarknetConfigError, located, warn

_INT = re.compile(r"[+-]?\d+\Z")


class DarknetConfigWarning(UserWarning):
    """An option darknet would ignore (its 'Unused field'), or a value darknet would silently replace."""


class Option:
    __slots__ = ("key", "value", "line", "used")

    def __init__(self, key, value, line):
        self.key, self.value, self.line, self.used = key, value, line, False


class Section:
    """One `[name]` block: its options in file order, with typed, tracked accessors."""

    def __init__(self, name, path, line):
        self.name = name
        self.path = path
        self.line = line
        self.options = {}      # first occurrence of each key: darknet's option_find returns the first one
        self.duplicates = []   # later occurrences, never read (darknet reports them as unused)
        self.index = None      # layer index, set by the network builder (None for [net])

    # -- lookup -------------------------------------------------------------------------------------
    def __contains__(self, key):
        return key in self.options

    def _take(self, key):
        opt = self.options.get(key)
        if opt is not None:
            opt.used = True
        return opt

    def where(self, key=None):
        opt = self.options.get(key) if key else None
        label = f"[{self.name}]" + (f" (layer {self.index})" if self.index is not None else "")
        if opt is not None:
            return located(self.path, opt.line, f"{label} {key}")
        return located(self.path, self.line, label + (f" {key}" if key else ""))

    def error(self, key, message):
        """A DarknetConfigError pointing at `key` (or at the section header when the key is absent)."""
        return DarknetConfigError(f"{self.where(key)}: {message}")

    def warn(self, key, message):
        warn(f"{self.where(key)}: {message}", DarknetConfigWarning)

    # -- typed accessors ----------------------------------------------------------------------------
    def get_str(self, key, default=None, choices=None):
        opt = self._take(key)
        if opt is None:
            return default
        if choices is not None and opt.value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}; got '{opt.value}'")
        return opt.value

    def get_int(self, key, default=None, minimum=None, maximum=None):
        opt = self._take(key)
        if opt is None:
            return default
        value = self._int(key, opt.value)
        self._check_range(key, value, minimum, maximum)
        return value

    def get_float(self, key, default=None, minimum=None, maximum=None):
        opt = self._take(key)
        if opt is None:
            return default
        value = self._float(key, opt.value)
        self._check_range(key, value, minimum, maximum)
        return value

    def get_int_list(self, key, default=None):
        opt = self._take(key)
        if opt is None:
            return default
        return [self._int(key, item) for item in self._items(key, opt.value)]

    def get_float_list(self, key, default=None):
        opt = self._take(key)
        if opt is None:
            return default
        return [self._float(key, item) for item in self._items(key, opt.value)]

    def _items(self, key, text):
        items = text.split(",")
        if items and items[-1] == "":   # a trailing comma is harmless in darknet
            items.pop()
        if not items or any(item == "" for item in items):
            raise self.error(key, f"expected a comma-separated list; got '{text}'")
        return items

    def _int(self, key, text):
        if not _INT.match(text):
            raise self.error(key, f"expected an integer; got '{text}'")
        return int(text)

    def _float(self, key, text):
        try:
            value = float(text)
        except ValueError:
            raise self.error(key, f"expected a number; got '{text}'") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(key, f"expected a finite number; got '{text}'")
        return value

    def _check_range(self, key, value, minimum, maximum):
        if minimum is not None and value < minimum:
            raise self.error(key, f"expected >= {minimum}; got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"expected <= {maximum}; got {value}")

    def unused(self):
        return [o for o in self.options.values() if not o.used] + self.duplicates


def _strip_comment(value):
    cut = min((i for i in (value.find("#"), value.find(";")) if i >= 0), default=-1)
    return value if cut < 0 else value[:cut]


def parse_cfg_text(text, path="<string>"):
    """Sections of a cfg given as text. Raises DarknetConfigError for lines darknet would misread."""
    sections = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())   # darknet's strip(): removes all whitespace, CR included
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise DarknetConfigError(located(path, lineno, f"expected a section header like [convolutional]; got '{raw.strip()}'"))
            sections.append(Section(line[1:-1], path, lineno))
            continue
        if "=" not in line:
            raise DarknetConfigError(located(path, lineno, f"expected key=value; got '{raw.strip()}'"))
        key, value = line.split("=", 1)
        value = _strip_comment(value)
        if not key or not value:
            raise DarknetConfigError(located(path, lineno, f"expected key=value with both parts; got '{raw.strip()}'"))
        if not sections:
            raise DarknetConfigError(located(path, lineno, f"option '{key}' before the first [section]"))
        section = sections[-1]
        option = Option(key, value, lineno)
        if key in section.options:
            section.duplicates.append(option)
        else:
            section.options[key] = option
    if not sections:
        raise DarknetConfigError(located(path, 0, "no sections: expected [net] followed by layer sections"))
    if sections[0].name not in ("net", "network"):
        first = sections[0]
        raise DarknetConfigError(located(path, first.line, f"expected [net] or [network] as the first section; got [{first.name}]"))
    return sections


def parse_cfg(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DarknetConfigError(f"{path}: cannot read cfg file: {e.strerror}") from None
    if b"\0" in data:
        raise DarknetConfigError(f"{path}: not a text cfg file (it contains NUL bytes)")
    return parse_cfg_text(data.decode("utf-8", errors="replace"), str(path))
