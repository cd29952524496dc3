"""``runner-kit local``: the deployed stack embedded on loopback, built from ``template.yaml``.

``stack`` composes it; ``lambda_runtime`` calls handlers as Lambda does; ``http`` is the API
Gateway in front of the API function; ``host_loop`` the SQS event source mapping of the actor
host; ``scheduler`` the pool manager's schedule; ``command`` the ``runner-kit local`` command.
"""
