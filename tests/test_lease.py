"""A server lease's record, kept here in a dict (the store hands the lease its read, write and delete):
who may take it over, and when."""

import subprocess
import sys
import time
from dataclasses import replace

import pytest

from ablation.tracking.lease import HeartbeatLease, Holder, LeaseCheck, LeaseLost, StudyBusy


def lease_over(record: dict, ttl: float = 30.0) -> HeartbeatLease:
    return HeartbeatLease("shared", "http://127.0.0.1:5000", read=lambda: record.get("value"),
                          write=lambda text: record.__setitem__("value", text), delete=lambda: record.clear(),
                          ttl=ttl, settle=0.0)


def _reaped() -> int:
    """The pid of a process that has exited and been waited for."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_holder_on_this_machine_whose_pid_has_gone_is_taken_over_at_once():
    """`ablate resume` right after a SIGKILL, on the same machine: it waited out the heartbeat before."""
    record = {"value": replace(Holder.me(), pid=_reaped()).dump()}  # a heartbeat of this very moment
    with_lease = lease_over(record).acquire()
    assert Holder.parse(record["value"]).token == with_lease._me.token
    with_lease.release()


def test_a_live_holder_on_this_machine_is_refused_naming_it():
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"value": replace(Holder.me(), pid=alive.pid).dump()}
        with pytest.raises(StudyBusy, match=f"pid {alive.pid}"):
            lease_over(record).acquire()
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("where", ["another host", "another process namespace", "an older version's record"])
def test_a_holder_elsewhere_is_known_only_by_its_heartbeat(where):
    """Its pid means nothing here (two containers may share a host name): fresh, it holds; stale, it lapsed."""
    me = replace(Holder.me(), pid=_reaped())
    holder = {"another host": replace(me, host="elsewhere"),
              "another process namespace": replace(me, pid_namespace="pid:[1]"),
              "an older version's record": replace(me, pid_namespace="")}[where]
    with pytest.raises(StudyBusy):
        lease_over({"value": holder.dump()}).acquire()
    stale = {"value": replace(holder, heartbeat=time.time() - 31).dump()}
    lease_over(stale).acquire().release()


def test_a_holder_cut_off_from_the_store_finds_its_study_taken_over_and_writes_nothing_more():
    """A driver suspended (SIGSTOP) or cut off past the ttl: another takes the study over. Before, the first
    one's heartbeat went on rewriting the record and both drivers trained the same trials."""
    record, cut_off = {}, {"now": False}

    def write(text):
        if cut_off["now"]:
            raise ConnectionError("the store cannot be reached")
        record["value"] = text

    ttl = 0.4
    first = HeartbeatLease("shared", "http://127.0.0.1:5000", read=lambda: record.get("value"), write=write,
                           delete=record.clear, ttl=ttl, settle=0.0).acquire()
    trial_of_first = LeaseCheck("shared", "http://127.0.0.1:5000", first.token, lambda: record.get("value"), ttl)
    trial_of_first()  # the lease is its driver's
    first.check()
    cut_off["now"] = True
    time.sleep(ttl * 1.5)  # no heartbeat for longer than the ttl
    second = lease_over(record, ttl=ttl).acquire()
    cut_off["now"] = False  # back in touch: the first driver's next beat must not take the study back
    time.sleep(ttl)
    assert Holder.parse(record["value"]).token == second.token
    with pytest.raises(LeaseLost, match=f"taken over by pid {second._me.pid}"):
        first.check()
    with pytest.raises(LeaseLost):
        trial_of_first()
    first.release()  # leaves the second driver's record where it is
    assert Holder.parse(record["value"]).token == second.token
    second.check()
    second.release()


def test_a_trial_reads_the_lease_at_most_every_quarter_ttl_while_its_heartbeat_is_fresh():
    reads = []
    holder = Holder.me()
    record = holder.dump()
    check = LeaseCheck("shared", "http://127.0.0.1:5000", holder.token, lambda: reads.append(1) or record, ttl=30.0)
    for _ in range(100):
        check()
    assert len(reads) == 1
    stale = replace(holder, heartbeat=time.time() - 20).dump()  # its driver not heard from for 2/3 of a ttl
    check_stale = LeaseCheck("shared", "http://127.0.0.1:5000", holder.token, lambda: reads.append(1) or stale, 30.0)
    check_stale()
    check_stale()
    assert len(reads) == 3  # a record that old is read again before each write


def test_a_lost_lease_survives_the_copy_ray_makes_of_a_trials_exception():
    import copy
    import pickle

    lost = LeaseLost.to("shared", Holder.me(), "http://127.0.0.1:5000")
    for copied in (copy.copy(lost), pickle.loads(pickle.dumps(lost))):
        assert str(copied) == str(lost) and "was taken over by pid" in str(copied)


def test_a_trial_that_finds_its_study_taken_over_stops_the_study_and_the_driver_writes_nothing():
    """The trial reports the lost lease as a halt rather than fail: failing, it left Tune a trial to retry and
    Ray an error nobody fetched, printed as the worker's stack above the driver's one line."""
    from ray.tune.stopper import NoopStopper

    from ablation.driver.halts import HALT_KEY, Halts, why

    lost = LeaseLost.to("shared", Holder.me(), "http://127.0.0.1:5000")
    try:
        raise RuntimeError("the epoch's write failed") from lost  # as it reaches the trial's outermost frame
    except RuntimeError as err:
        report = why(err, storage="/runs/shared", uri="http://127.0.0.1:5000", trial="placement=none,seed=0")
    assert report is not None and report[HALT_KEY] == str(lost)
    halts = Halts(NoopStopper(), "/runs/shared")
    assert halts("trial-1", report) and halts.stop_all()
    with pytest.raises(LeaseLost, match="was taken over by pid"):
        halts.check(parent=None, outcome=None)  # neither is touched: the study is another driver's
