"""runner-kit endpoint SDK: write one actor function, serve it as a protocol v1 endpoint.

::

    from runner_kit_endpoint import ActorError, Endpoint, Result

    def count(state, input):
        n = (state or {}).get("n", 0) + 1
        return Result(output={"echo": input}, state={"n": n})

    app = Endpoint(count)        # an ASGI app: uvicorn my_module:app
    if __name__ == "__main__":
        app.main()               # or a stdlib server: python my_module.py --port 8000

Standard library only. The protocol: docs/protocol.md in the runner-kit repository.
"""

from runner_kit_endpoint.actor import ActorError, ActorFunction, Context, Result
from runner_kit_endpoint.endpoint import Endpoint
from runner_kit_endpoint.server import EndpointServer
from runner_kit_endpoint.wire import PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_VERSION",
    "ActorError",
    "ActorFunction",
    "Context",
    "Endpoint",
    "EndpointServer",
    "Result",
]
__version__ = "0.1.0"
