"""A whole history through the pure core in one process: what the workers compute, without Kafka.

Admission, folding, watching (samples, labels, alerts), watermark sweeps and
central training with snapshots, on a single partition. Used to evaluate the
models against ground truth and to train a model snapshot offline (for example
to score a replay with frozen models).

>>> history = [
...     {"event_id": f"e{i}", "user_id": f"u{i % 3}", "type": "pay" if i % 4 == 0 else "view",
...      "ts": 1_714_536_000_000 + i * 3_600_000, "amount": 20.0}
...     for i in range(40)
... ]
>>> result = replay_history(history)
>>> result.events, sorted(result.states), result.states["u0"].events
(40, ['u0', 'u1', 'u2'], 14)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from online_models.admission import admit_event, fold_event
from online_models.alerts import Alert
from online_models.clock import EventClock
from online_models.events import InvalidEvent
from online_models.population import PopulationModels
from online_models.portrait import PortraitState
from online_models.schedule import CheckSchedule
from online_models.watch import WatchConfig, watch_user


@dataclass
class ReplayResult:
    """Final states, the trained models, the alerts fired and the end of event time."""

    states: dict[str, PortraitState]
    models: PopulationModels
    alerts: list[Alert] = field(default_factory=list)
    events: int = 0
    as_of: int = 0

    def snapshot(self) -> PopulationModels:
        """The models as a scorer would load them from the ``models`` topic."""
        return PopulationModels.from_bytes(self.models.to_bytes())


def replay_history(
    events: Iterable[dict],
    *,
    config: WatchConfig | None = None,
    models: PopulationModels | None = None,
    lateness_ms: int = 300_000,
    snapshot_every: int = 5000,
    frozen: PopulationModels | None = None,
) -> ReplayResult:
    """Fold ``events`` (contract dicts, in delivery order) and train ``models`` as the workers would.

    With ``frozen`` models, score with them throughout and learn nothing (a worker with
    ``PORTRAITS_TRAIN_MODELS=false``).
    """
    config = config or WatchConfig()
    models = models if models is not None else PopulationModels()
    clock = EventClock(lateness_ms=lateness_ms)
    states: dict[str, PortraitState] = {}
    schedule = CheckSchedule()
    result = ReplayResult(states=states, models=models)
    scorer = frozen
    for event in events:
        try:
            admitted = admit_event(event["user_id"].encode(), orjson.dumps(event), now_ms=event["ts"])
            state = states.get(admitted.user_id) or PortraitState(admitted.user_id)
            if not fold_event(state, admitted, clock=clock, partition=0, config=config.portrait):
                continue
        except InvalidEvent:
            continue
        states[admitted.user_id] = state
        result.events += 1
        as_of = clock.as_of(0)
        due = [(state, as_of)] if admitted.type == "pay" or as_of // config.sample_period_ms != state.sample_period else []
        for user_id in schedule.pop_due(clock.watermark(0)):
            swept = states[user_id]
            if swept.next_check is not None and swept.next_check <= clock.watermark(0):
                due.append((swept, swept.next_check))
        for user_state, instant in due:
            outcome = watch_user(user_state, as_of=instant, watermark=clock.watermark(0), models=scorer, config=config)
            for sample in outcome.samples if frozen is None else ():
                models.learn(sample)
            if outcome.alert is not None:
                result.alerts.append(outcome.alert)
            schedule.set(user_state.user_id, outcome.next_check)
        if frozen is None and result.events % snapshot_every == 0:  # the trainer publishes snapshots; scorers use the latest
            scorer = PopulationModels.from_bytes(models.to_bytes())
    result.as_of = clock.as_of(0)
    return result
