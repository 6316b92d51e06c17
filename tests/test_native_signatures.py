"""The compiled loops' signatures are written twice, in _native.c and in the ctypes table of
gradviz.engine.native; a mismatch would pass pointers where ints are read (or the reverse)
and crash or compute garbage. This test reads the C prototypes and holds the table to them."""
from __future__ import annotations

import re
from pathlib import Path

from gradviz.engine import native

SOURCE = Path(native.__file__).with_name("_native.c")


def c_signatures(text: str) -> dict[str, str]:
    """Every exported (non-static) function of the C source: name -> one letter per
    parameter, "t" for a pointer, "i" for an int, "d" for a double."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    found = {}
    for m in re.finditer(r"^(?:void|int)\s+(S\((\w+)\)|(\w+))\s*\(([^)]*)\)\s*\{", text,
                         flags=re.M):
        name = m.group(2) or m.group(3)
        letters = []
        for param in (p.strip() for p in m.group(4).split(",")):
            if "*" in param:
                letters.append("t")
            elif re.match(r"^(const\s+)?int\b", param):
                letters.append("i")
            elif re.match(r"^(const\s+)?(double|real)\b", param):
                letters.append("d")
            else:
                raise AssertionError(f"{name}: cannot read the parameter {param!r}")
        found[name] = "".join(letters)
    return found


def test_the_ctypes_table_matches_the_c_prototypes():
    in_c = c_signatures(SOURCE.read_text(encoding="utf-8"))
    for suffix in ("f32", "f64"):         # bound by hand in Kernels, checked below
        in_c.pop(f"top_singular_{suffix}")
    # Each table entry lists the arguments after (T, B, H), which every loop takes first.
    in_python = {name: "iii" + sig for name, sig in native._SIGNATURES.items()}
    assert in_c == in_python


def test_top_singular_matches_its_binding():
    in_c = c_signatures(SOURCE.read_text(encoding="utf-8"))
    assert in_c["top_singular_f64"] == in_c["top_singular_f32"] == "iiittdtt"
    loops = native.kernels()
    if loops is not None:
        import ctypes
        for fn in loops._top_singular.values():
            assert fn.argtypes == [ctypes.c_int] * 3 + [ctypes.c_void_p] * 2 + \
                [ctypes.c_double] + [ctypes.c_void_p] * 2


def test_the_reader_sees_a_changed_prototype():
    # The check must be able to fail: one int turned into a pointer is seen.
    text = "void S(rnn_cell_backward)(int T, int B, int H, const real *a, int *b, real x)\n{\n"
    assert c_signatures(text) == {"rnn_cell_backward": "iiittd"}
