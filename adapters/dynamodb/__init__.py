"""The DynamoDB stores: one module per store, one item codec (``items``), writes and queries as
values (``expressions``) and the execution's three-table commit (``commit``)."""
