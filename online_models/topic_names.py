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
#: closed baskets (online_models.baskets), one partition: the single aggregator of the co-purchase counts reads them
BASKETS = "baskets"
#: the aggregator's snapshots of the co-purchase counts (compacted), which the API follows
ASSOCIATIONS = "associations"
#: what a worker's partition engines send besides their table's changelog
ENGINE_OUTPUTS = (PORTRAITS, PROFILES, CHURN_ALERTS, MODEL_TRAINING, DEAD_LETTERS, BASKETS)
