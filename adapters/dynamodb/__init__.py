"""The DynamoDB stores: one module per store, one item codec (``items``)."""
