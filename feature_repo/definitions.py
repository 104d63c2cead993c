"""Every Feast object of the repository, in one list (what ``driftloop features apply`` applies)."""

from __future__ import annotations

from typing import Any


def objects() -> list[Any]:
    """Entities, data sources, feature views and services, imported on demand (Feast is heavy)."""
    from feature_repo import data_sources, entities, feature_services, feature_views

    return [
        entities.customer,
        entities.merchant,
        entities.tweet,
        data_sources.customer_stats_source,
        data_sources.merchant_stats_source,
        data_sources.customer_stats_push,
        data_sources.tweet_stats_source,
        feature_views.customer_stats,
        feature_views.merchant_stats,
        feature_views.tweet_stats,
        feature_services.fraud,
        feature_services.tweets,
    ]
