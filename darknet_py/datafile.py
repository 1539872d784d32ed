"""Darknet's .data files (src/option_list.c read_data_cfg): `key = value` lines, `#`/`;` comments, blank lines.

    classes = 10
    train   = data/train.list      # one image path per line
    valid   = data/valid.list
    labels  = data/labels.list     # label i is the string whose presence in an image path marks class i
    names   = data/names.list      # display names (darknet's predict falls back to labels)
    backup  = backup/
    top     = 5

Differences from darknet, all of them on input darknet would misread silently:
- `classes`, `train`, `valid` and `labels` have no defaults. Darknet assumes classes=2 and data/train.list for
  both train and valid (validating on the training list); here a missing key is an error naming the key, raised
  when that key is first needed (a detector's .data has no `labels`).
- Keys and values are stripped at both ends only (darknet removes every blank, also inside a path).
- A line without `=`, or with an empty value, is an error (darknet prints a warning and goes on).
Darknet's other defaults are kept: backup "/backup/", names = labels, top 1 (`classifier train` uses 5 when
the file has no `top`: `get("top", 5)`). When a key repeats, the first line wins, as in darknet.

Relative paths: darknet opens them relative to the current directory. We do the same; when a file is not
found there, we look relative to the .data file's directory (a dataset directory with relative paths works
from anywhere), then relative to that directory's parent (darknet's own layout: cfg/coco.data names
data/coco.names from darknet's root). `backup` (a directory to create) is taken relative to the current
directory unless it already exists next to the .data file.

Labels/names files with more lines than `classes` are read as darknet does: the first `classes` lines are
used (darknet's imagenet1k.data names the 21,842-line imagenet.labels.list), with a warning. Fewer lines than
`classes` is an error (darknet would read past the end of its array).
"""
from pathlib import Path

from .errors import DarknetDataError, located, warn


class DarknetDataWarning(UserWarning):
    """Input darknet accepts that is probably not what was meant (e.g. more labels than classes)."""


def read_data_file(path):
    """Parse a darknet .data file into a DataFile (errors: DarknetDataError naming the file and line)."""
    return DataFile(path)


class DataFile:
    """One parsed .data file. Values are read lazily so that a detector's file (no labels) and a classifier's
    file (no names) both load; each property raises DarknetDataError naming the file, key and line."""

    def __init__(self, path):
        self.path = Path(path)
        self.options = {}   # key -> (value, line); first occurrence wins
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise DarknetDataError(f"{self.path}: cannot read .data file: {e.strerror or e}") from None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            key, eq, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key:
                raise DarknetDataError(located(self.path, number, f"expected 'key = value'; got '{line}'"))
            if not value:
                raise DarknetDataError(located(self.path, number, f"{key}: expected a value after '='; got none"))
            self.options.setdefault(key, (value, number))
        self._lists = {}

    # -- generic access ------------------------------------------------------------------------------
    def get(self, key, default=None):
        """The raw string value of `key`, or `default`."""
        entry = self.options.get(key)
        return default if entry is None else entry[0]

    def where(self, key):
        """`file:line: key` of a key present in the file, or `file: key` when absent."""
        entry = self.options.get(key)
        return located(self.path, entry[1] if entry else None, key)

    def error(self, key, message):
        return DarknetDataError(f"{self.where(key)}: {message}")

    def get_int(self, key, default=None, minimum=None):
        value = self.get(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.error(key, f"expected an integer; got '{value}'") from None
        if minimum is not None and number < minimum:
            raise self.error(key, f"expected {key} >= {minimum}; got {number}")
        return number

    def require(self, key, why=""):
        value = self.get(key)
        if value is None:
            raise self.error(key, f"missing: expected a line '{key} = ...'{why}")
        return value

    def resolve(self, value):
        """A relative path: as given if it exists (relative to the current directory, as darknet), else
        relative to this .data file's directory or its parent if it exists there, else as given."""
        given = Path(value)
        if given.is_absolute() or given.exists():
            return given
        for base in (self.path.parent, self.path.parent.parent):
            if (base / given).exists():
                return base / given
        return given

    def existing_file(self, key, why=""):
        """The resolved path of the file named by `key`, which must exist."""
        value = self.require(key, why)
        path = self.resolve(value)
        if not path.is_file():
            raise self.error(key, f"file '{value}' not found (looked in the current directory, in "
                                  f"{self.path.parent} and in {self.path.parent.parent})")
        return path

    # -- darknet's keys ------------------------------------------------------------------------------
    @property
    def classes(self):
        self.require("classes", " (darknet would silently assume 2)")
        return self.get_int("classes", minimum=1)

    @property
    def train(self):
        return self.existing_file("train", " (darknet would fall back to data/train.list)")

    @property
    def valid(self):
        return self.existing_file("valid", " (darknet would validate on data/train.list)")

    @property
    def backup(self):
        value = self.get("backup", "/backup/")
        beside = self.path.parent / value
        return beside if not Path(value).is_absolute() and not Path(value).exists() and beside.is_dir() \
            else Path(value)

    @property
    def top(self):
        return self.get_int("top", 1, minimum=1)

    @property
    def labels(self):
        """Label strings of `labels`, one per class (their presence in an image path gives its class)."""
        return self._class_list("labels")

    @property
    def names(self):
        """Display names from `names`, falling back to `labels` as darknet's predict does."""
        return self._class_list("names" if "names" in self.options else "labels")

    def _class_list(self, key):
        if key not in self._lists:
            path = self.existing_file(key)
            entries = read_class_list(path)
            classes = self.classes
            if len(entries) < classes:
                raise self.error(key, f"'{path}' has {len(entries)} entries; expected classes = {classes} "
                                      f"({self.where('classes')})")
            if len(entries) > classes:
                warn(f"{self.where(key)}: '{path}' has {len(entries)} entries for classes = {classes}; using the "
                     f"first {classes}, as darknet does", DarknetDataWarning)
            self._lists[key] = entries[:classes]
        return self._lists[key]


def read_class_list(path):
    """Labels or names: one per line, ends stripped; trailing blank lines ignored. A blank line inside the list
    is an error (an empty label matches every path, and it would shift the class indices)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise DarknetDataError(f"{path}: cannot read: {e.strerror or e}") from None
    entries = [line.strip() for line in lines]
    while entries and not entries[-1]:
        entries.pop()
    for number, entry in enumerate(entries, 1):
        if not entry:
            raise DarknetDataError(located(path, number, "empty line inside the list; expected one entry per "
                                                         "class"))
    return entries
