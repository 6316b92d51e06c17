"""The texts a character model reads: a user's file (:func:`load_text`) or, when none is
named, the source of a few modules of Python's own standard library (:func:`stdlib_corpus`),
which every Python installation has. Plain Python, no torch: the window checks a text file
with :func:`load_text` before it remembers it.

:class:`TaskInputError` is the error every task raises for what the user gave it; it is
defined here so that the torch-free readers can raise it.
"""
from __future__ import annotations

import codecs
import os
import sysconfig
from pathlib import Path

from gradviz.engine.runs.files import NotRegularFileError, read_head

# The standard-library modules of the built-in corpus, in this order: pure Python with long
# docstrings, present in every CPython 3 installation. As Karpathy trained min-char-rnn on
# the Linux source, a character model learns words, indentation and syntax from them.
CORPUS_MODULES = ("textwrap.py", "string.py", "fnmatch.py", "glob.py", "bisect.py",
                  "queue.py", "sched.py", "colorsys.py", "copy.py", "cmd.py", "pprint.py",
                  "csv.py", "code.py", "calendar.py", "random.py", "argparse.py")
# What the window calls the corpus before the model says more (its note).
CORPUS_LABEL = "Python's standard library source (built in)"


class TaskInputError(ValueError):
    """The task cannot be built from what the user gave it (a text file, a sequence length).

    The message names the file or setting and says how to fix it. ``field`` names the
    RunConfig field to blame, when there is one.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def stdlib_folder() -> Path:
    """The running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_corpus() -> tuple[str, str]:
    """(text, description) of the built-in corpus: the :data:`CORPUS_MODULES` found in
    :func:`stdlib_folder`, one after another. The description names the modules' folder,
    how many there are and the size. Raises :class:`TaskInputError` when none is found
    (an installation without the source files)."""
    folder = stdlib_folder()
    found = [folder / name for name in CORPUS_MODULES if (folder / name).is_file()]
    if not found:
        raise TaskInputError(f"Python's standard library source was not found in {folder}, "
                             "so the text task has no built-in text here; choose a text "
                             "file.", field="text_file")
    text = "".join(path.read_text(encoding="utf-8") for path in found)
    names = ", ".join(path.stem for path in found[:3])
    description = (f"Python's standard library source: {len(found)} modules ({names}, …) "
                   f"from {folder}, {_human_size(len(text.encode('utf-8')))}")
    return text, description


def read_text(text_file: str | os.PathLike | None) -> tuple[str, str | None]:
    """(text, note) of the text task: :func:`load_text` of ``text_file``, or, when it is
    None or empty, :func:`stdlib_corpus` with its description as the note."""
    return load_text(text_file) if text_file else stdlib_corpus()


def _human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


# A byte order mark names the encoding of a text that is not UTF-8 (Notepad's "Unicode" is
# UTF-16 with one). UTF-32's marks begin with UTF-16's, so they are tried first.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
         (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"), (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
         (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"))


def load_text(path: str | Path, max_bytes: int = 5_000_000) -> tuple[str, str | None]:
    """Read a text file for the text task: (text, note).

    The text is UTF-8, or UTF-16 or UTF-32 where the file begins with that encoding's byte
    order mark; the mark is dropped. A file larger than ``max_bytes`` is read only in part
    (its first ``max_bytes``, cut back to a whole character) and ``note`` says so;
    otherwise ``note`` is None. Only a regular file is read (a FIFO would wait forever).
    Raises :class:`TaskInputError` naming the file and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise TaskInputError(f"The text file {path} does not exist; choose an existing UTF-8 "
                             f"text file.", field="text_file")
    if path.is_dir():
        raise TaskInputError(f"{path} is a folder, not a file; choose a UTF-8 text file.",
                             field="text_file")
    try:
        data, partial, size = read_head(path, max_bytes)
    except NotRegularFileError as error:
        raise TaskInputError(f"The text file {path} is {error.strerror}; choose a plain UTF-8 "
                             f"text file.", field="text_file") from None
    except OSError as error:
        raise TaskInputError(f"The text file {path} cannot be read ({error.strerror or error}); "
                             f"check that you may read it, or choose another file.",
                             field="text_file") from None
    if not data:
        raise TaskInputError(f"The text file {path} is empty; choose a file with text in it.",
                             field="text_file")
    binary = TaskInputError(f"{path} looks like a binary file (it contains NUL bytes), not "
                            f"text; choose a plain UTF-8 text file.", field="text_file")
    codec, name = next(((c, n) for bom, c, n in _BOMS if data.startswith(bom)), ("utf-8", "UTF-8"))
    if name == "UTF-8" and b"\x00" in data:     # before decoding: binary, not "invalid UTF-8"
        raise binary
    # Incremental: a partial read may stop inside a character, which is then left out.
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        text = decoder.decode(data, final=not partial)
    except UnicodeDecodeError as error:
        raise TaskInputError(f"The text file {path} is not valid {name} (byte {error.start} "
                             f"is {data[error.start]:#04x}); save it as UTF-8 and try again.",
                             field="text_file") from None
    if "\x00" in text:
        raise binary
    if not text:
        raise TaskInputError(f"The text file {path} holds no text; choose a file with text "
                             f"in it.", field="text_file")
    note = None
    if partial:
        used = len(data) - len(decoder.getstate()[0])
        note = f"{path.name}: read the first {_human_size(used)} of {_human_size(size)}"
    return text, note


def text_file_problem(path: str | os.PathLike) -> str | None:
    """Why the text task could not use the file ``path`` (the message of
    :func:`load_text`'s error), or None if it can."""
    try:
        load_text(path)
    except TaskInputError as error:
        return str(error)
    return None


__all__ = ["TaskInputError", "load_text", "read_text", "stdlib_corpus", "stdlib_folder",
           "text_file_problem", "CORPUS_MODULES", "CORPUS_LABEL"]
