"""A server lease's record, kept here in a dict (the store hands the lease its read, write and delete):
who may take it over, and when."""

import subprocess
import sys
import time
from dataclasses import replace

import pytest

from ablation.tracking.lease import HeartbeatLease, Holder, StudyBusy


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
