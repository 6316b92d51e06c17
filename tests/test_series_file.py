"""The series task on a user's CSV file: windows, normalisation, baseline, messages."""
import os

import numpy as np
import pytest
import torch

from gradviz import cli
from gradviz.config import RunConfig
from gradviz.engine.runs.runfile import load_run
from gradviz.engine.tasks import TaskInputError, make_task
from gradviz.engine.tasks import series_file
from gradviz.engine.tasks.series_file import FileSeriesTask, load_series

T = 30


@pytest.fixture
def prices(tmp_path):
    """A CSV with a date column, a price column and a volume column, 200 rows."""
    rng = np.random.default_rng(0)
    price = 4000 + np.cumsum(rng.normal(0, 20, 200))
    volume = rng.integers(100, 900, 200)
    lines = ["date,price,volume"] + [f"2020-01-{i:03d},{p:.2f},{v}"
                                     for i, (p, v) in enumerate(zip(price, volume))]
    path = tmp_path / "prices.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, np.round(price, 2), volume.astype(float)


def config_for(path, **kw):
    return RunConfig(task="series", series_file=str(path), seq_len=T, **kw)


def test_each_row_is_t_consecutive_normalised_values_and_the_target_the_next(prices):
    path, price, _ = prices
    task = make_task(config_for(path, series_column="price"))
    assert isinstance(task, FileSeriesTask) and task.name == "series"
    norm = (price - price.mean()) / price.std()
    batch = task.batch(60, torch.Generator().manual_seed(1))
    assert batch.x.shape == (T, 60, 1) and batch.target.shape == (1, 60, 1)
    windows = np.lib.stride_tricks.sliding_window_view(norm, T + 1)     # (n - T, T + 1)
    for row in range(60):
        seq = np.r_[batch.x[:, row, 0].numpy(), batch.target[0, row, 0].numpy()]
        match = np.abs(windows - seq).max(1)
        assert match.min() < 1e-6, row
    assert task.windows == len(price) - T


def test_columns_by_name_by_number_and_the_first_of_numbers(prices):
    path, price, volume = prices
    by_name, name, _ = load_series(path, "volume")
    by_number, number_name, _ = load_series(path, "2")
    assert name == number_name == "volume" and np.array_equal(by_name, volume)
    assert np.array_equal(by_number, volume)
    # Two columns of numbers and none named: which is the series is the user's to say.
    with pytest.raises(TaskInputError, match=r"has 2 columns of numbers: 'price' \(1\), "
                                             r"'volume' \(2\); choose one with --series-column"):
        load_series(path)
    only = path.with_name("only.csv")
    only.write_text("".join(line.rsplit(",", 1)[0] + "\n"
                            for line in path.read_text().splitlines()))
    first, first_name, _ = load_series(only)
    assert first_name == "price" and np.allclose(first, price)      # the dates are skipped


def test_a_headerless_semicolon_file_is_read(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("".join(f"{i};{i * i}\n" for i in range(50)))
    values, name, _ = load_series(path, "1")
    assert name == "1" and np.array_equal(values, np.arange(50.0) ** 2)


def test_the_baseline_is_the_least_squares_line_from_the_last_input(prices):
    path, price, _ = prices
    task = make_task(config_for(path, series_column="price"))
    norm = (price - price.mean()) / price.std()
    last, target = norm[T - 1:-1], norm[T:]
    a, b = np.polyfit(last, target, 1)
    assert task.baseline == pytest.approx(np.mean((a * last + b - target) ** 2), rel=1e-9)
    batch = task.batch(500, torch.Generator().manual_seed(2))
    guess = task.trivial_prediction(batch)
    np.testing.assert_allclose(guess.numpy(), a * batch.x[-1:].numpy() + b, atol=1e-5)


def test_stateful_rows_continue_where_they_ended(prices):
    path, _, _ = prices
    task = make_task(config_for(path, stateful=True, series_column="price").replace(seq_len=10))
    g = torch.Generator().manual_seed(3)
    before = task.batch(4, g)
    continued, restarted = 0, 0
    for _ in range(40):
        goes_on = task._starts < task.windows          # the rows whose data continues
        after = task.batch(4, g)
        assert torch.equal(after.x[0, goes_on], before.target[0, goes_on])
        continued += int(goes_on.sum())
        restarted += int((~goes_on).sum())
        before = after
    assert continued > 100 and restarted > 0


@pytest.mark.parametrize("content, column, message", [
    (None, None, "does not exist"),
    ("date,price\n" + "".join(f"d{i},{i}\n" for i in range(40)) + "d40,n/a\n", "price",
     "line 42: column 'price' is 'n/a', not a finite number"),
    ("a,b\n" + "".join(f"{i},{i}\n" for i in range(10)), "a", "has 10 values; with sequence "
     "length 30 the series task needs at least 31"),
    ("a,b\n1,2\n", "c", "no column named 'c'; its columns: 'a', 'b'"),
    ("a,b\n1,2\n", "5", "has 2 column(s), numbered 0 to 1; there is no column 5"),
    ("name,city\nx,y\n", None, "no column that holds only numbers"),
    ("a\n" + "3\n" * 40, "a", "holds one value only"),
    ("a,b\n", None, "holds no rows of data"),
])
def test_bad_files_are_refused_with_a_message_naming_the_problem(tmp_path, content, column,
                                                                 message):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TaskInputError) as err:
        make_task(config_for(path, series_column=column))
    assert message in str(err.value) and err.value.field == "series_file"


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(TaskInputError, match="not a regular file"):
        load_series(fifo)


def test_a_large_file_is_read_in_part_and_says_so(prices, monkeypatch):
    path, price, _ = prices
    monkeypatch.setattr(series_file, "MAX_BYTES", 2000)
    values, _, note = load_series(path, "price")
    assert note is not None and "read the first" in note
    assert 0 < len(values) < len(price) and np.allclose(values, price[:len(values)])


def test_gradviz_run_trains_on_the_file_and_keeps_its_absolute_path(prices, tmp_path,
                                                                    monkeypatch, capsys):
    path, _, _ = prices
    monkeypatch.chdir(path.parent)
    status = cli.main(["run", "--task", "series", "--series-file", path.name, "--series-column",
                       "price", "--seq-len", "30", "--hidden", "8", "--steps", "3", "--quiet",
                       "--out", str(tmp_path / "run")])
    assert status == 0, capsys.readouterr().err
    config, history, _ = load_run(tmp_path / "run")
    assert config.series_file == str(path) and config.series_column == "price"
    assert len(history) == 3 and history.baseline == pytest.approx(
        make_task(config).baseline)


def test_gradviz_run_says_what_is_wrong_in_one_line(tmp_path, capsys):
    status = cli.main(["run", "--task", "series", "--series-file", str(tmp_path / "no.csv"),
                       "--steps", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("gradviz run: --series-file: The series file") and "does not exist" in err
    assert not (tmp_path / "run").exists()


# -- issue 20, point 8 ----------------------------------------------------------------------------
@pytest.mark.parametrize("column", ["²", "①", "٣", "9" * 5000, "1" * 12, "x" * 3000])
def test_a_column_that_is_not_one_is_one_line(prices, column):
    path, _, _ = prices
    with pytest.raises(TaskInputError) as err:
        load_series(path, column)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400
    assert "there is no column" in message or "no column named" in message


def test_a_field_over_the_csv_limit_is_one_line(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("a,b\n1,2\n3," + "4" * 140_000 + "\n5,6\n")
    with pytest.raises(TaskInputError) as err:
        load_series(path, "a")
    message = str(err.value)
    assert "\n" not in message and "line 3" in message and "131072" in message


def test_values_near_the_float64_limit_normalise_and_train(tmp_path, capsys):
    path = tmp_path / "huge.csv"
    rng = np.random.default_rng(1)
    values = 1.7e308 * np.sin(np.arange(300) / 7.0) * rng.uniform(0.5, 1.0, 300)
    path.write_text("v\n" + "".join(f"{float(v)!r}\n" for v in values))
    task = make_task(config_for(path))
    norm = task.values.numpy()
    assert np.isfinite(norm).all() and abs(norm.mean()) < 1e-9 and norm.std() == pytest.approx(1)
    assert np.isfinite(task.baseline)
    status = cli.main(["run", "--series-file", str(path), "--seq-len", "20", "--hidden", "4",
                       "--steps", "3", "--quiet", "--out", str(tmp_path / "run")])
    assert status == 0, capsys.readouterr().err
    _, history, _ = load_run(tmp_path / "run")
    assert np.isfinite(history.loss).all() and not history.nonfinite.any()


def test_series_file_implies_the_series_task_and_refuses_another(prices, tmp_path, capsys):
    path, _, _ = prices
    common = ["--series-file", str(path), "--series-column", "price", "--seq-len", "30",
              "--hidden", "4", "--steps", "2", "--quiet"]
    assert cli.main(["run", *common, "--out", str(tmp_path / "a")]) == 0
    config, _, _ = load_run(tmp_path / "a")
    assert config.task == "series" and config.series_file == str(path)
    capsys.readouterr()
    assert cli.main(["run", "--task", "copy", *common, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--series-file: only the series task reads" in err
    assert "--task copy" in err
    assert cli.main(["run", "--series-column", "price", "--steps", "1", "--quiet",
                     "--out", str(tmp_path / "c")]) == 2
    assert "--series-column: give --series-file too" in capsys.readouterr().err
