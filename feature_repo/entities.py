"""Entities of the card-payments domain: who pays (customer) and who is paid (merchant)."""

from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A card holder, id like 'c-17'.",
)

merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.STRING,
    description="An acceptor of card payments, id like 'm-3'.",
)

tweet = Entity(
    name="tweet",
    join_keys=["tweet_id"],
    value_type=ValueType.STRING,
    description="A health-news tweet (the tweets domain of the demo), id like 't-1234'.",
)
