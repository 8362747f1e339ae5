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
#: what a worker's partition engines send besides their table's changelog
ENGINE_OUTPUTS = (PORTRAITS, PROFILES, CHURN_ALERTS, MODEL_TRAINING, DEAD_LETTERS)
