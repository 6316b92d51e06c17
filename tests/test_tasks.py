"""The training problems: shapes, seeding, baselines against their no-memory predictors,
memory-using oracles, stateful streams and loading a user's text."""
from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from gradviz.config import RunConfig
from gradviz.registry import TASKS
from gradviz.engine.tasks import (TASK_CLASSES, ReberTask, Task, TaskInputError, TextTask,
                                  load_text, make_task)

SAMPLE_TEXT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
    "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, "
    "it was the season of Light, it was the season of Darkness — café, naïve, über.\n"
) * 4


def build(name: str, seq_len: int, stateful: bool = False) -> Task:
    config = RunConfig(task=name, seq_len=seq_len, stateful=stateful,
                       text_file="sample.txt" if name == "text" else None)
    return make_task(config, text=SAMPLE_TEXT if name == "text" else None)


def per_sequence_loss(task: Task, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss of each batch row (B,), averaged over the loss positions."""
    if target.dtype == torch.long:
        losses = F.cross_entropy(y.reshape(-1, y.shape[-1]), target.reshape(-1),
                                 reduction="none").view(target.shape)
        return losses.mean(0)
    return ((y - target) ** 2).mean(dim=(0, 2))


def positions_count(task: Task) -> int:
    return len(range(task.seq_len)[task.loss_positions])


# -- shapes and seeding -----------------------------------------------------------------

@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("seq_len", [3, 17])
def test_batch_shapes_and_dtypes(name, seq_len):
    task = build(name, seq_len)
    batch = task.batch(5, torch.Generator().manual_seed(0))
    P = positions_count(task)
    assert batch.x.shape == (seq_len, 5, task.input_size)
    assert batch.x.dtype == torch.float32 and batch.x.device.type == "cpu"
    if batch.target.dtype == torch.long:
        assert batch.target.shape == (P, 5)
        assert 0 <= int(batch.target.min()) and int(batch.target.max()) < task.output_size
    else:
        assert batch.target.dtype == torch.float32
        assert batch.target.shape == (P, 5, task.output_size)
    y = task.trivial_prediction(batch)
    assert y.shape == (P, 5, task.output_size)
    loss = task.loss(y, batch.target)
    assert loss.dim() == 0 and math.isfinite(float(loss))
    # The engine may train in float64; the loss must accept that.
    assert task.loss(y.double(), batch.target).dtype == torch.float64


@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("stateful", [False, True])
def test_same_seed_same_batches_different_seed_different(name, stateful):
    def draw(seed):
        task, generator = build(name, 12, stateful), torch.Generator().manual_seed(seed)
        return [task.batch(6, generator) for _ in range(3)]

    first, again, other = draw(7), draw(7), draw(8)
    for a, b in zip(first, again):
        assert torch.equal(a.x, b.x) and torch.equal(a.target, b.target)
    assert not all(torch.equal(a.x, c.x) for a, c in zip(first, other))
    # Consecutive batches of one run differ too.
    assert not torch.equal(first[0].x, first[1].x)


@pytest.mark.parametrize("name", list(TASKS))
def test_probe_is_fixed(name):
    task = build(name, 10, stateful=True)
    probe = task.probe()
    assert probe.shape == (10, 1, task.input_size) and probe.dtype == torch.float32
    task.batch(4, torch.Generator().manual_seed(3))
    probe.zero_()  # a caller writing into its copy must not change the task's probe
    assert torch.equal(task.probe(), build(name, 10).probe())
    assert task.probe().abs().sum() > 0


# -- baselines: the no-memory predictor reaches them, a memory oracle beats them --------

@pytest.mark.parametrize("name", list(TASKS))
def test_trivial_predictor_reaches_baseline(name):
    task = build(name, 20)
    generator = torch.Generator().manual_seed(11)
    losses = []
    for _ in range(5):
        batch = task.batch(4000, generator)
        y = task.trivial_prediction(batch)
        losses.append(per_sequence_loss(task, y, batch.target))
        assert float(task.loss(y, batch.target)) == pytest.approx(
            float(losses[-1].mean()), rel=1e-5)
    losses = torch.cat(losses)
    mean = float(losses.mean())
    standard_error = float(losses.std()) / math.sqrt(len(losses))
    assert abs(mean - task.baseline) <= 4 * standard_error + 1e-5, (mean, task.baseline)


def test_baselines_have_their_closed_forms():
    assert build("adding", 20).baseline == pytest.approx(1 / 6)
    assert build("copy", 20).baseline == pytest.approx(math.log(8))
    assert build("recall", 20).baseline == pytest.approx(math.log(4))


def test_adding_oracle_is_exact_and_last_input_is_uninformative():
    task = build("adding", 9)
    batch = task.batch(500, torch.Generator().manual_seed(1))
    markers = batch.x[:, :, 1]
    assert torch.equal(markers.sum(0), torch.full((500,), 2.0))
    assert markers[-1].sum() == 0
    half = (9 - 1) // 2
    assert torch.equal(markers[:half].sum(0), torch.ones(500))
    oracle = (batch.x[:, :, 0] * markers).sum(0).view(1, -1, 1)
    assert float(task.loss(oracle, batch.target)) < 1e-10
    assert float(task.loss(task.trivial_prediction(batch), batch.target)) > 0.1


def test_copy_layout_and_oracle():
    task = build("copy", 25)
    S = task.string_len
    assert S == 8
    batch = task.batch(300, torch.Generator().manual_seed(2))
    symbols = batch.x.argmax(2)
    assert torch.equal(symbols[:S], batch.target)
    assert (symbols[task.seq_len - S - 1] == 9).all()          # delimiter
    assert (symbols[S:task.seq_len - S - 1] == 8).all()        # blanks
    assert (symbols[task.seq_len - S:] == 8).all()             # blank answer slots
    oracle = 20.0 * batch.x[:S, :, :8]
    assert float(task.loss(oracle, batch.target)) < 0.01 < task.baseline


def test_recall_oracle_beats_baseline():
    task = build("recall", 15)
    batch = task.batch(300, torch.Generator().manual_seed(3))
    assert (batch.x[1:, :, :4].sum() == 0) and (batch.x[0, :, 4:].sum() == 0)
    oracle = 20.0 * batch.x[:1, :, :4]
    assert float(task.loss(oracle, batch.target)) < 0.01 < task.baseline


def test_series_linear_fit_matches_and_memory_helps():
    task = build("series", 20)
    train = task.batch(4000, torch.Generator().manual_seed(4))
    test = task.batch(4000, torch.Generator().manual_seed(5))
    # The one-lag least-squares fit lands on the task's analytic coefficient.
    last, nxt = train.x[-1, :, 0].double(), train.target[0, :, 0].double()
    design = torch.stack([last, torch.ones_like(last)], dim=1)
    slope, intercept = torch.linalg.lstsq(design, nxt.unsqueeze(1)).solution[:, 0]
    assert float(slope) == pytest.approx(task.coefficient, abs=0.02)
    assert abs(float(intercept)) < 0.02
    # A linear predictor on the last 8 values beats the one-lag baseline clearly.
    window = lambda b: b.x[-8:, :, 0].T.double()                      # noqa: E731
    coefficients = torch.linalg.lstsq(window(train), nxt.unsqueeze(1)).solution
    predicted = (window(test) @ coefficients).float().view(1, -1, 1)
    assert float(task.loss(predicted, test.target)) < 0.7 * task.baseline
    assert abs(float(test.x.abs().max())) < 1.5


def trigram_beats_bigram(task: Task) -> tuple[float, float]:
    """Mean loss at steps 1..T-1 of a trigram model fitted on one sample and of the
    no-memory predictor, both on a fresh sample."""
    V = task.input_size
    train = task.batch(3000, torch.Generator().manual_seed(6))
    test = task.batch(3000, torch.Generator().manual_seed(7))

    def contexts(batch):
        chars = batch.x.argmax(2)
        return chars[:-1] * V + chars[1:], batch.target[1:]

    context, following = contexts(train)
    counts = torch.full((V * V, V), 0.01)
    counts.index_put_((context.reshape(-1), following.reshape(-1)),
                      torch.ones(following.numel()), accumulate=True)
    log_prob = (counts / counts.sum(1, keepdim=True)).log()
    context, following = contexts(test)
    trigram = F.cross_entropy(log_prob[context].reshape(-1, V), following.reshape(-1))
    bigram = task.loss(task.trivial_prediction(test)[1:], test.target[1:])
    return float(trigram), float(bigram)


@pytest.mark.parametrize("name", ["text", "reber"])
def test_language_memory_oracle_beats_baseline(name):
    trigram, bigram = trigram_beats_bigram(build(name, 20))
    assert trigram < bigram - 0.1


# -- language tasks -------------------------------------------------------------------

def test_text_vocabulary_and_round_trip():
    task = build("text", 30)
    assert task.is_language and task.symbols == sorted(set(SAMPLE_TEXT))
    assert task.input_size == task.output_size == len(set(SAMPLE_TEXT))
    piece = SAMPLE_TEXT[40:120]
    encoded = task.encode(piece)
    assert encoded.dtype == torch.long and task.decode(encoded) == piece
    assert task.decode(encoded.tolist()) == piece
    with pytest.raises(TaskInputError, match="'§'"):
        task.encode("a§b")


def test_text_windows_are_pieces_of_the_text():
    task = build("text", 30)
    batch = task.batch(20, torch.Generator().manual_seed(8))
    circular = SAMPLE_TEXT + SAMPLE_TEXT[:31]
    for b in range(20):
        window = task.decode(batch.x[:, b].argmax(1)) + task.decode(batch.target[-1:, b])
        assert window in circular
        assert task.decode(batch.target[:, b]) == window[1:]


def test_reber_round_trip_and_symbols():
    task = build("reber", 10)
    assert task.is_language and task.symbols == ["B", "T", "P", "S", "X", "V", "E"]
    assert task.decode(task.encode("BTBPVVETE")) == "BTBPVVETE"
    with pytest.raises(TaskInputError):
        task.encode("BQ")


REBER = r"B(?:TS*X(?:S|XT*V(?:PXT*V)*(?:V|PS))|PT*V(?:PXT*V)*(?:V|PS))E"
EMBEDDED_REBER = re.compile(rf"(?:B([TP]){REBER}\1E)+")


@pytest.mark.parametrize("name", ["text", "reber", "series"])
def test_stateful_batches_are_contiguous(name):
    task = build(name, 15, stateful=True)
    generator = torch.Generator().manual_seed(9)
    batches = [task.batch(4, generator) for _ in range(30)]
    for before, after in zip(batches, batches[1:]):
        if name == "series":
            assert torch.equal(after.x[0], before.target[0])
        else:
            assert torch.equal(after.x[0].argmax(1), before.target[-1])
    if name == "series":
        return
    for row in range(4):
        stream = task.decode(batches[0].x[:1, row].argmax(1)) + "".join(
            task.decode(b.target[:, row]) for b in batches)
        if name == "text":
            start = SAMPLE_TEXT.find(stream[:40])
            assert start >= 0
            looped = (SAMPLE_TEXT * 3)[start:start + len(stream)]
            assert stream == looped
        else:
            # Whole embedded Reber strings between the first and the last string boundary.
            whole = stream[stream.index("EB") + 1:stream.rindex("EB") + 1]
            assert len(whole) > 100 and EMBEDDED_REBER.fullmatch(whole)


def test_stateless_batches_are_not_contiguous():
    task = build("text", 15)
    generator = torch.Generator().manual_seed(9)
    first, second = task.batch(8, generator), task.batch(8, generator)
    assert not torch.equal(second.x[0].argmax(1), first.target[-1])


def test_stateful_streams_restart_when_batch_size_changes():
    task = build("reber", 15, stateful=True)
    generator = torch.Generator().manual_seed(10)
    task.batch(4, generator)
    assert task.batch(6, generator).x.shape == (15, 6, 7)


# -- user input errors ----------------------------------------------------------------

@pytest.mark.parametrize("name, seq_len", [("adding", 2), ("copy", 2), ("recall", 1)])
def test_too_short_sequences_are_refused(name, seq_len):
    with pytest.raises(TaskInputError, match="sequence length") as error:
        build(name, seq_len)
    assert error.value.field == "seq_len"


@pytest.mark.parametrize("name", ["series", "reber", "text"])
def test_one_step_sequences_work_where_they_make_sense(name):
    task = build(name, 1)
    assert task.batch(3, torch.Generator().manual_seed(0)).x.shape == (1, 3, task.input_size)


def test_unknown_task_is_refused_clearly():
    with pytest.raises(TaskInputError, match="'juggling'.*adding") as error:
        make_task(RunConfig(task="juggling"))
    assert error.value.field == "task"


def test_the_tasks_are_the_registered_ones():
    assert list(TASK_CLASSES) == list(TASKS)
    for name, spec in TASKS.items():
        task = build(name, 12)
        assert task.name == name and task.is_language == spec.is_language


def test_load_text_reads_a_file(tmp_path):
    path = tmp_path / "story.txt"
    path.write_bytes("\ufeffHello, wörld\n".encode())
    assert load_text(path) == ("Hello, wörld\n", None)


@pytest.mark.parametrize("kind, expected", [
    ("missing", "does not exist"),
    ("folder", "folder"),
    ("empty", "empty"),
    ("binary", "binary"),
    ("invalid", "not valid UTF-8 .byte 6"),
])
def test_load_text_errors_name_the_file(tmp_path, kind, expected):
    path = tmp_path / "input.dat"
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(b"PK\x03\x04\x00\x00 some zip")
    elif kind == "invalid":
        path.write_bytes(b"hello \xff world")
    with pytest.raises(TaskInputError, match=expected) as error:
        load_text(path)
    assert str(path) in str(error.value)
    assert error.value.field == "text_file"


def test_large_file_is_read_in_part_at_a_character_boundary(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes("é".encode() * 3_000_000)   # 6 MB of two-byte characters
    text, note = load_text(path, max_bytes=1001)
    assert text == "é" * 500
    assert note == "big.txt: read the first 1.0 kB of 6.0 MB"
    text, note = load_text(path)
    assert len(text) == 2_500_000 and note == "big.txt: read the first 5.0 MB of 6.0 MB"


def test_text_too_short_or_too_plain_names_the_file(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abcdef", encoding="utf-8")
    config = RunConfig(task="text", seq_len=10, text_file=str(short))
    with pytest.raises(TaskInputError, match="6 characters.*at least 11") as error:
        make_task(config)
    assert str(short) in str(error.value)
    plain = tmp_path / "plain.txt"
    plain.write_text("a" * 100, encoding="utf-8")
    with pytest.raises(TaskInputError, match="2 distinct") as error:
        make_task(config.replace(text_file=str(plain)))
    assert str(plain) in str(error.value)
    task = make_task(config.replace(seq_len=5))
    assert isinstance(task, TextTask) and task.note is None and task.symbols == list("abcdef")


def test_make_task_loads_the_file_and_keeps_the_note(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("ab" * 10, encoding="utf-8")
    task = make_task(RunConfig(task="text", seq_len=4, text_file=str(path)))
    assert task.decode(task.encode("abba")) == "abba"
    # In "abab..." the next character is certain given the current one.
    assert task.baseline == pytest.approx(0.0, abs=1e-12)


def test_reber_windows_are_stationary():
    """Symbol frequencies at the first and last step of a window agree, so every window
    comes from the stream whose bigram entropy is the baseline."""
    task = build("reber", 20)
    chars = task.batch(8000, torch.Generator().manual_seed(14)).x.argmax(2)
    first = torch.bincount(chars[0], minlength=7) / 8000.0
    last = torch.bincount(chars[-1], minlength=7) / 8000.0
    assert (first - last).abs().max() < 0.03
    assert first.min() > 0.03       # every symbol can open a window


def test_reber_baseline_matches_a_long_sample():
    """The exact stationary bigram entropy agrees with counts from a long stream."""
    task = ReberTask(2000, stateful=True)
    chars = task.batch(8, torch.Generator().manual_seed(12)).x.argmax(2)      # (T, B)
    codes = (chars[:-1] * 7 + chars[1:]).reshape(-1)
    pairs = torch.bincount(codes, minlength=49).view(7, 7).double()
    conditional = pairs / pairs.sum(1, keepdim=True).clamp(min=1)
    entropy = -(pairs * conditional.clamp(min=1e-300).log()).sum() / pairs.sum()
    assert float(entropy) == pytest.approx(task.baseline, abs=0.02)


def test_large_vocabulary_text_reaches_its_baseline():
    """More than 2048 distinct characters: the bigram table is kept sparse."""
    generator = torch.Generator().manual_seed(13)
    codes = 0x4E00 + torch.randint(0, 2100, (20000,), generator=generator)
    # Every third character repeats its predecessor, so bigrams carry some information.
    codes[2::3] = codes[1::3][:len(codes[2::3])]
    task = TextTask("".join(map(chr, codes.tolist())), 20)
    assert len(task.symbols) > 2048
    batch = task.batch(3000, generator)
    losses = per_sequence_loss(task, task.trivial_prediction(batch), batch.target)
    standard_error = float(losses.std()) / math.sqrt(len(losses))
    assert abs(float(losses.mean()) - task.baseline) <= 4 * standard_error


def test_generate_is_one_to_many_and_its_oracle_beats_the_baseline():
    """One seed symbol at step 0 and zeros after; a loss at every step; each step's
    column of patterns a permutation, so only the seed tells the patterns apart."""
    task = build("generate", 12)
    assert task.baseline == pytest.approx(11 / 12 * math.log(4))
    batch = task.batch(400, torch.Generator().manual_seed(4))
    assert torch.equal(batch.x[0].sum(-1), torch.ones(400)) and batch.x[1:].abs().sum() == 0
    assert positions_count(task) == 12
    for t in range(12):
        assert sorted(task.pattern[t].tolist()) == [0, 1, 2, 3]
    seed = batch.x[0].argmax(-1)
    assert torch.equal(batch.target, task.pattern[:, seed])
    # The same patterns in every run: they are the task's, not the run's.
    assert torch.equal(task.pattern, build("generate", 12).pattern)
    oracle = 20.0 * F.one_hot(task.pattern[:, seed], 4).float()
    assert float(task.loss(oracle, batch.target)) < 0.01 < task.baseline
    assert task.metric(oracle, batch) == 1.0
    assert task.metric(task.trivial_prediction(batch), batch) < 0.5
