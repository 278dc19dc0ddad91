"""A lease that runs out while its send is still going: the store hands the message out again,
here to the same process. Seen in a Redis failover run (an ack hanging through the failover)
and with workers.lease_s below the send budget: the pool raised KeyError in its worker and sent
the same message twice at once. The pool must send it once and record it under the live lease.
"""

from __future__ import annotations

from support.delivery import Rig, app_settings, worker_settings
from wxgate.delivery.dispatcher import Dispatcher
from wxgate.models import Status

SEND_LATENCY_MS = 1200  # the simulator's answer time: three leases of LEASE_S run out meanwhile
LEASE_S = 0.4


async def test_message_released_again_mid_send_is_sent_once(rig: Rig) -> None:
    settings = worker_settings(concurrency=4, lease_s=LEASE_S, idle_poll_s=0.01)
    # A dispatcher that believes sends take 50 ms (budget 0.1 s < lease_s, so it does not
    # release them), while the simulator answers in 1.2 s: the store's lease runs out under
    # the send, exactly as when a store call hangs after the send.
    dispatcher = Dispatcher(
        rig.store,
        rig.broker,
        {"a": app_settings("a")},
        settings,
        rig.clock,
        send_timeout_s=0.05,
    )
    await rig.sim.set_faults(app="wx_a", latency_ms=SEND_LATENCY_MS)
    pool = await rig.pool(dispatcher, settings)
    [msg_id] = await rig.enqueue(1, "a", "o_user_overrun")
    pool.wake()

    async def leased_again() -> bool:
        return (await rig.store.stats()).lease_expirations.get("a", 0) >= 1

    await rig.wait_for(leased_again, what="the lease to run out mid-send")
    await rig.wait_for(lambda: pool.leased_total >= 2, what="the pool to take the new lease")
    assert pool.in_flight == 1  # the second lease was not dispatched next to the first
    assert pool.released_again >= 1
    [done] = await rig.wait_final([msg_id], timeout_s=15)
    # Recorded as sent under the live lease (not fenced off and left to be sent again).
    assert done.status is Status.SENT
    rows = await rig.sim.deliveries(app="wx_a")
    assert [r["client_msg_id"] for r in rows] == [msg_id]
    sim_stats = rig.sim.state.stats()
    assert (sim_stats["accepted"], sim_stats["deduplicated"]) == (1, 0)  # one send, not two
    await rig.wait_for(lambda: pool.in_flight == 0 and pool.held == 0, what="pool idle")
    # Every worker task is still alive (the KeyError used to kill the one that finished last).
    assert all(not t.done() for t in pool._workers)
