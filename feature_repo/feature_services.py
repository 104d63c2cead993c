"""Feature services: the features each model reads from the store.

A service is found for a model by name: ``<model>_v<version>`` first, then ``<model>``.
Tags carry what the store does not know by itself:

- ``model``: the model this service feeds;
- ``request_features``: comma-separated features computed at request time (sent by the
  model server, absent from the store by design; schema parity ignores them);
- ``entity_table``: the Parquet log of past requests (entity keys, event time, request
  features, label) used as the entity dataframe of training tables;
- ``label``: the label column of that log.
"""

from feast import FeatureService

from feature_repo.feature_views import customer_stats, merchant_stats, tweet_stats

fraud = FeatureService(
    name="fraud",
    features=[customer_stats, merchant_stats],
    tags={
        "model": "fraud",
        "request_features": "amount,merchant_risk,hour,distance_km,txn_count_24h,customer_age,country,channel",
        "entity_table": "data/transactions.parquet",
        "label": "is_fraud",
    },
    description="Features of the card-fraud model.",
)

tweets = FeatureService(
    name="tweets",
    features=[tweet_stats],
    tags={"model": "tweets", "request_features": "text"},
    description="Features of the health-news outlet classifier (the text itself comes with the request).",
)
