"""The topics' short names are defined once, in online_models.topic_names."""

from online_models import processor, topic_names
from streams import topics


def test_the_engine_and_the_worker_use_the_shared_names():
    names = ("EVENTS", "PROFILES", "ERASURES", "TICKS", "PORTRAITS", "CHURN_ALERTS", "MODEL_TRAINING", "DEAD_LETTERS", "BASKETS")
    assert {n: getattr(processor, n) for n in names} == {n: getattr(topic_names, n) for n in names}
    assert {spec.name for spec in topics.TOPICS} == {
        getattr(topic_names, n) for n in dir(topic_names) if n.isupper() and not n.endswith("ENGINE_OUTPUTS")
    }
