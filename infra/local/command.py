"""``runner-kit local``: start the local stack, print its URLs and walkthrough, run to Ctrl-C."""

from __future__ import annotations

import errno
import signal
import sys

from infra.local.stack import LocalStack, PortInUse


def main(api_port: int = 8080, tick_s: float = 5.0, dev_port: int | None = None) -> int:
    """Run the stack in the foreground; a taken port is one line on stderr and exit status 2."""

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill` and process managers stop it as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    stack = LocalStack(
        api_port=api_port,
        tick_s=tick_s,
        dev_runner_port=dev_port,
        log=lambda line: print(line, flush=True),
    )
    try:
        stack.check_ports()  # before the first line of output: a taken port is all it says
        print(
            "runner-kit local: starting moto, tables and queues from template.yaml ...", flush=True
        )
        stack.start()
    except KeyboardInterrupt:  # Ctrl-C while starting: start() has stopped what it began
        print("stopped.", flush=True)
        return 130
    except PortInUse as exc:
        print(f"runner-kit local: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Taken between the check and the bind (the check makes this rare).
        print(
            f"runner-kit local: a port is in use ({exc.strerror}); pick others with --port "
            "and --dev-port (make local PORT=N)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    try:
        print(stack.describe(), flush=True)
        print("\nTry it (copy-paste; the README's walkthrough with these URLs):\n", flush=True)
        print(stack.walkthrough(), flush=True)
        print("\nCtrl-C stops everything.", flush=True)
        stack.wait()
    finally:
        print("\nstopping ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return 0
