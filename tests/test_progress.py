"""The live view: pending trials listed, each trial's elapsed time, a study ETA from the epochs done
(and, within an epoch, from the batches done), and nothing wider than 80 columns."""

import io

from rich.console import Console

from ablation.cli.progress import FIRST_EPOCH, StudyProgress, clock
from ablation.driver.relay import StudyRelay
from ablation.driver.trainable import every


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _view(trials=4, epochs=3, pending=("placement=none,seed=0", "placement=layer1,seed=0",
                                       "placement=layer1+layer2+layer3,seed=0", "placement=all,seed=0")):
    time = Clock()
    view = StudyProgress(Console(width=80, file=io.StringIO()), trials=trials, epochs=epochs, metric="val_macro_f1",
                         pending=pending, clock=time)
    return view, time


def _text(view: StudyProgress) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(view.render())
    return console.export_text()


def _row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(name))


def test_pending_trials_are_listed_until_they_start():
    view, _ = _view()
    text = _text(view)
    assert FIRST_EPOCH in text
    for name in view.pending:
        assert "pending" in _row(text, name)
    view.trial_started("t1", "placement=none,seed=0")
    text = _text(view)
    assert "running" in _row(text, "placement=none,seed=0") and text.count("pending") == 3


def test_trials_not_known_in_advance_are_counted():
    view, _ = _view(trials=5, pending=())
    view.trial_started("t1", "placement=none,seed=0")
    assert "... 4 more (4 pending)" in _text(view)


def test_elapsed_time_and_eta_come_from_trial_starts_and_epochs_alone():
    view, time = _view()
    view.trial_started("t1", "placement=none,seed=0")
    view.trial_started("t2", "placement=layer1,seed=0")
    time.now += 30
    assert view.eta() == FIRST_EPOCH
    assert _row(_text(view), "placement=none,seed=0").endswith("0:00:30")
    view.epoch("t1", 1, 0.25)
    view.epoch("t2", 1, 0.30)
    # Two epochs in 30 s, both trials at once: the 10 epochs left take 150 s.
    assert view.eta() == f"ETA {clock(150)}" == "ETA 0:02:30"
    view.trial_finished("t1", ok=True)  # stopped early by a scheduler: its 2 epochs left will never run
    time.now += 10
    text = _text(view)
    assert "4/12" in text and _row(text, "placement=none,seed=0").endswith("0:00:30")  # its time stops
    assert _row(text, "placement=layer1,seed=0").endswith("0:00:40")


def test_batches_move_the_bar_and_the_eta_within_an_epoch():
    view, time = _view(trials=1, epochs=2, pending=("a",))
    view.trial_started("t1", "a")
    time.now += 10
    view.epoch("t1", 1, 0.5)
    time.now += 5
    view.batches("t1", 20, 40)  # half of the second epoch in 5 s
    text = _text(view)
    assert "20/40" in _row(text, "a") and "1/2 epochs" in text  # the count says whole epochs
    assert view.bar.tasks[0].completed == 1.5
    assert view.eta() == f"ETA {clock(0.5 * 15 / 1.5)}"
    view.epoch("t1", 2, 0.6)
    view.batches("t1", 40, 40)  # a late count after its last epoch is ignored
    assert view.bar.tasks[0].completed == 2 and "40/40" not in _text(view)


def test_a_resumed_trial_counts_the_epochs_it_had_done():
    view, time = _view(trials=1, epochs=4, pending=())
    view.trial_started("t1", "a")
    time.now += 10
    view.epoch("t1", 3, 0.5)  # resumed after epoch 2
    assert view.bar.tasks[0].completed == 3 and view.eta() == f"ETA {clock(10)}"


def test_a_failed_trial_completes_the_bar():
    view, _ = _view(trials=1, epochs=3, pending=())
    view.trial_started("t1", "a")
    view.trial_finished("t1", ok=False)
    view.render()
    assert view.bar.tasks[0].completed == 3 and "error" in _text(view)


def test_the_view_fits_80_columns_and_keeps_names_whole():
    view, time = _view(trials=20)
    for i, name in enumerate(list(view.pending)):
        view.trial_started(f"t{i}", name)
    time.now += 3700
    view.batches("t0", 3, 250)
    for i in range(6, 20):
        view.pending.append(f"placement=layer{i}+layer2+layer3+layer4,seed={i}")
    text = _text(view)
    assert max(map(len, text.splitlines())) <= 80, text
    assert "placement=layer1+layer2+" in text and "1:01:40" in text and "3/250" in text
    assert "... 8 more (8 pending)" in text  # 18 listed, 12 shown; 2 more not known by name


def test_the_relay_hands_over_the_latest_counts_and_resumed_epochs_once():
    relay = StudyRelay()
    relay.put("t1", 1, 10)
    relay.put("t1", 2, 10)
    relay.restored("t2", 1)
    assert relay.take() == ({"t1": (2, 10)}, {"t2": 1}) and relay.take() == ({}, {})


def test_a_trial_resumed_from_its_checkpoint_shows_the_epochs_it_had_done_at_once():
    view, time = _view(trials=1, epochs=2, pending=())
    view.trial_started("t1", "a")
    assert "0/2" in _row(_text(view), "a")
    view.restored("t1", 1)
    assert "1/2" in _row(_text(view), "a") and view.bar.tasks[0].completed == 1
    time.now += 10
    view.epoch("t1", 2, 0.5)  # its next epoch counts once, not the restored one again
    assert view.bar.tasks[0].completed == 2


def test_a_trial_sends_its_batches_at_most_once_per_interval():
    time, sent = Clock(), []
    on_batch = every(1.0, lambda done, total: sent.append(done), clock=time)
    for done in range(1, 11):
        on_batch(done, 10)
        time.now += 0.3
    assert sent == [1, 5, 9]


def test_without_a_terminal_it_prints_a_plain_line_per_event_with_the_studys_progress():
    """Piped through `tee`, or to a batch job's log, a live view would print nothing until the end."""
    out = io.StringIO()
    time = Clock()
    view = StudyProgress(Console(width=80, file=out), trials=2, epochs=2, metric="val_macro_f1",
                         pending=("a,seed=0", "b,seed=0"), clock=time)
    with view:
        view.trial_started("t1", "a,seed=0")
        time.now += 30
        view.epoch("t1", 1, 0.5)
        time.now += 30
        view.epoch("t1", 2, 0.625)
        view.trial_finished("t1", ok=True)
        view.trial_started("t2", "b,seed=0")
        view.trial_finished("t2", ok=False)
    assert out.getvalue().splitlines() == [
        "[0:00:00] a,seed=0 started  (0/4 epochs, ETA: after the first epoch)",
        "[0:00:30] a,seed=0 epoch 1/2 val_macro_f1 0.5000  (1/4 epochs, ETA 0:01:30)",
        "[0:01:00] a,seed=0 epoch 2/2 val_macro_f1 0.6250  (2/4 epochs, ETA 0:01:00)",
        "[0:01:00] a,seed=0 done after 0:01:00  (2/4 epochs, ETA 0:01:00)",
        "[0:01:00] b,seed=0 started  (2/4 epochs, ETA 0:01:00)",
        "[0:01:00] b,seed=0 failed after 0:00:00  (4/4 epochs, ETA 0:00:00)",
    ]


def test_the_newest_trials_to_end_are_shown_and_the_oldest_folded():
    view, time = _view(trials=16, pending=())
    for i in range(16):
        view.trial_started(f"t{i}", f"trial{i:02d}")
        time.now += 1
        view.trial_finished(f"t{i}", ok=True)
    text = _text(view)
    assert "trial15" in text and "trial04" in text and "trial03" not in text
    assert "... 4 more (4 done)" in text


def test_a_races_eta_runs_from_the_trials_it_started_to_the_most_it_may_start():
    view, time = _view(trials=2, epochs=1, pending=())
    view.race([("none", 0, 2, "baseline"), ("layer1", 0, 0, "racing")], started=2, most=6)
    view.trial_started("t1", "none,seed=0")
    time.now += 10
    view.epoch("t1", 1, 0.5)  # 10 s an epoch: 1 left now, and 4 trials the race may add
    assert view.eta() == f"ETA {clock(10)} to {clock(50)}"
    view.race([("none", 1, 1, "baseline"), ("layer1", 1, 0, "equivalent")], started=2, most=2)
    assert view.eta() == f"ETA {clock(10)}" and "2 trials so far" in _text(view)
