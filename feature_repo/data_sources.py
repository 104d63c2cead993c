"""Where feature values come from: Parquet files written by ``data_gen.py`` and a push source
for fresh customer values.  Paths are relative to the repository folder."""

from feast import FileSource, PushSource

customer_stats_source = FileSource(
    name="customer_stats_source",
    path="data/customer_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Daily customer snapshots.",
)

merchant_stats_source = FileSource(
    name="merchant_stats_source",
    path="data/merchant_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Daily merchant snapshots.",
)

#: Fresh customer values pushed by producers (``FeatureStore.push("customer_stats_push", df)``).
customer_stats_push = PushSource(name="customer_stats_push", batch_source=customer_stats_source)

#: Per-tweet text statistics of the tweets domain (``feature_repo/tweets.py`` writes them).
tweet_stats_source = FileSource(
    name="tweet_stats_source",
    path="data/tweet_stats.parquet",
    timestamp_field="event_timestamp",
    description="Text statistics of each health-news tweet, computed by the batch pipeline.",
)
