"""The CLI reads compressed CSVs (#16): gzip / bzip2 / xz / zip give the same table as the plain
file (told by their leading bytes, so a misnamed one reads too), a ``bayes-hlm glmer`` / ``reml``
run on a ``.csv.gz`` gives the plain file's numbers, and a damaged archive is one clear error
naming the file."""

import bz2
import gzip
import json
import lzma
import zipfile

import numpy as np
import pandas as pd
import pytest

from bayes_hlm.cli import main, read_table

F = "y ~ x + (1|g)"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(10), 8)
    x = rng.normal(size=g.size)
    y = (rng.random(g.size) < 1 / (1 + np.exp(-(0.2 + x + rng.normal(size=10)[g])))).astype(int)
    d = tmp_path_factory.mktemp("compressed")
    text = "y,x,g\n" + "\n".join(f"{a},{b:.5f},g{k}" for a, b, k in zip(y, x, g)) + "\n"
    p = d / "d.csv"
    p.write_text(text)
    return d, text, str(p)


def _write(d, name, data: bytes) -> str:
    p = d / name
    p.write_bytes(data)
    return str(p)


def _zip(text: str) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("d.csv", text)
    return buf.getvalue()


@pytest.mark.parametrize("name,pack", [
    ("d.csv.gz", lambda t: gzip.compress(t.encode())),
    ("d.csv.bz2", lambda t: bz2.compress(t.encode())),
    ("d.csv.xz", lambda t: lzma.compress(t.encode())),
    ("d.zip", _zip),
    ("misnamed.csv", lambda t: gzip.compress(t.encode())),   # gzip bytes under a .csv name
])
def test_compressed_csv_reads_as_the_plain_file(plain, name, pack):
    d, text, path = plain
    want = read_table(path, F, [], {})
    got = read_table(_write(d, name, pack(text)), F, [], {})
    pd.testing.assert_frame_equal(got, want)


def test_glmer_and_reml_on_csv_gz_match_the_plain_file(plain, tmp_path, capsys):
    d, text, path = plain
    gz = _write(d, "run.csv.gz", gzip.compress(text.encode()))
    out = {}
    for cmd, extra in (("glmer", ["--family", "binomial"]), ("reml", [])):
        for src in (path, gz):
            o = tmp_path / f"{cmd}{len(out)}.json"
            rc = main([cmd, F, src, *extra, "--out", str(o)])
            cap = capsys.readouterr()
            assert rc == 0, cap.err
            out[(cmd, src)] = json.loads(o.read_text())
        a, b = out[(cmd, path)], out[(cmd, gz)]
        assert a["fixed"] == b["fixed"] and a["group_sd"] == b["group_sd"]


@pytest.mark.parametrize("name,data,fragment", [
    ("cut.csv.gz", gzip.compress(b"y,x,g\n" + b"1,2,a\n" * 500)[:40], "gzip-compressed"),
    ("bad.csv.bz2", b"BZh9 not really bzip2 data", "bzip2-compressed"),
    ("two.zip", None, "exactly one file"),
])
def test_damaged_archive_is_one_clear_error_naming_the_file(plain, capsys, name, data, fragment):
    d, text, _ = plain
    if data is None:
        import io

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("a.csv", text)
            zf.writestr("b.csv", text)
        data = buf.getvalue()
    p = _write(d, name, data)
    rc = main(["glmer", F, p, "--family", "binomial"])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 1 and len(errors) == 1, err
    assert name in errors[0] and fragment in errors[0], errors[0]
    assert "Traceback" not in err
