"""An echo actor on the runner-kit endpoint SDK: it counts its messages in its state.

Run: python examples/endpoint_echo.py --port 8000   (stdlib server)
 or: uvicorn examples.endpoint_echo:app --port 8000  (ASGI)
"""

from typing import Any

from runner_kit_endpoint import Context, Endpoint, Result


def echo(state: Any, input: Any, ctx: Context) -> Result:
    """Echo the input; the state is ``{"count": messages seen}``."""
    count = (state or {}).get("count", 0) + 1
    ctx.emit({"received": input})  # an intermediate output
    return Result(output={"echo": input, "count": count}, state={"count": count})


app = Endpoint(echo)

if __name__ == "__main__":
    app.main()
