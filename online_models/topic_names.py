"""Short names of the product's topics; a deployment prefixes them (``Settings.topic``)."""

EVENTS = "events"
PROFILES = "profiles"
DEAD_LETTERS = "events.dlq"
PORTRAITS = "portraits"
CHURN_ALERTS = "churn-alerts"
MODEL_TRAINING = "model-training"
MODELS = "models"
TICKS = "ticks"
ERASURES = "erasures"
#: events re-keyed by item and by category (online_models.item_facts), co-partitioned with events
ITEM_FACTS = "item-facts"
#: item and category portraits (compacted, keyed item:<id> and category:<name>)
ITEM_PORTRAITS = "item-portraits"
#: closed baskets (online_models.baskets), one partition: the single aggregator of the co-purchase counts reads them
BASKETS = "baskets"
#: the aggregator's snapshots of the co-purchase counts (compacted), which the API follows
ASSOCIATIONS = "associations"
#: what a worker's user partition engines send besides their table's changelog
ENGINE_OUTPUTS = (PORTRAITS, PROFILES, CHURN_ALERTS, MODEL_TRAINING, DEAD_LETTERS, ITEM_FACTS, BASKETS)
#: what a worker's item partition engines send besides their table's changelog
ITEM_ENGINE_OUTPUTS = (ITEM_PORTRAITS, DEAD_LETTERS)
