"""Feature views: customer and merchant statistics (payments) and tweet text statistics (tweets), with TTLs.

Feature names are unique across views, so they can be used unqualified in inference
events (``features`` of the docs/design.md input contract) and in training tables.
"""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from feature_repo.data_sources import customer_stats_push, merchant_stats_source, tweet_stats_source
from feature_repo.entities import customer, merchant, tweet

customer_stats = FeatureView(
    name="customer_stats",
    entities=[customer],
    ttl=timedelta(days=7),
    schema=[
        Field(name="customer_avg_amount_30d", dtype=Float64, description="Mean payment amount over 30 days."),
        Field(name="customer_txn_count_7d", dtype=Int64, description="Payments in the last 7 days."),
        Field(name="customer_account_age_days", dtype=Int64),
        Field(name="customer_home_country", dtype=String, description="ISO country code."),
    ],
    online=True,
    source=customer_stats_push,
    tags={"owner": "driftloop", "domain": "payments"},
)

merchant_stats = FeatureView(
    name="merchant_stats",
    entities=[merchant],
    ttl=timedelta(days=7),
    schema=[
        Field(name="merchant_category", dtype=String),
        Field(name="merchant_fraud_rate_30d", dtype=Float64, description="Share of fraudulent payments, 30 days."),
        Field(name="merchant_avg_amount_30d", dtype=Float64),
    ],
    online=True,
    source=merchant_stats_source,
    tags={"owner": "driftloop", "domain": "payments"},
)

tweet_stats = FeatureView(
    name="tweet_stats",
    entities=[tweet],
    ttl=timedelta(days=3650),  # a tweet's text never changes
    schema=[
        Field(name="n_words", dtype=Int64, description="Words of the tweet, links included."),
        Field(name="n_links", dtype=Int64, description="Links (http/https) in the tweet."),
        Field(name="n_hashtags", dtype=Int64, description="Hashtags in the tweet."),
    ],
    online=True,
    source=tweet_stats_source,
    tags={"owner": "driftloop", "domain": "tweets"},
)
