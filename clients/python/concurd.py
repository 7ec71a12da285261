"""How talk.py and check.py reach concurd: its address, a channel, the generated stubs."""

import argparse
import os
import queue
import sys
from pathlib import Path

# The command's name, to begin its error messages.
PROG = Path(sys.argv[0]).name

try:
    import grpc
    import google.protobuf  # noqa: F401 (the stubs need it; say so before they fail)
except ImportError as err:
    sys.exit(f"{PROG}: {err.name} is not installed for {sys.executable}. On Debian or Ubuntu: "
             "apt-get install python3-grpcio python3-protobuf, and run /usr/bin/python3; "
             "elsewhere: pip install grpcio protobuf")

# The stubs that generate.sh writes beside this file, after PYTHONPATH, so that stubs
# generated elsewhere (by the Go test, say) take precedence.
sys.path.append(str(Path(__file__).resolve().parent / "gen"))
try:
    from concur.caser.v1 import caser_pb2, caser_pb2_grpc
    from concur.counter.v1 import counter_pb2, counter_pb2_grpc
    from concur.printer.v1 import printer_pb2, printer_pb2_grpc
    from concur.sitesize.v1 import sitesize_pb2, sitesize_pb2_grpc
    from google.rpc import error_details_pb2, status_pb2
except ImportError as err:
    sys.exit(f"{PROG}: the generated stubs are missing ({err}): "
             f"run {Path(__file__).parent / 'generate.sh'} first")

__all__ = [
    "caser_pb2", "caser_pb2_grpc", "counter_pb2", "counter_pb2_grpc",
    "printer_pb2", "printer_pb2_grpc", "sitesize_pb2", "sitesize_pb2_grpc",
    "error_details_pb2", "status_pb2", "add_addr_flag", "connect", "PROG", "TIMEOUT",
]

# The Go clients' default.
DEFAULT_ADDR = "127.0.0.1:50051"

# Seconds allowed to each call, so that a server that never answers fails the run instead of
# hanging it.
TIMEOUT = 30.0


def add_addr_flag(parser: argparse.ArgumentParser) -> None:
    """Adds --addr, whose default is $CONCUR_ADDR or the Go clients' default."""
    parser.add_argument(
        "--addr", default=os.environ.get("CONCUR_ADDR", DEFAULT_ADDR), metavar="HOST:PORT",
        help="address of concurd (default: $CONCUR_ADDR, else %(default)s)")


def connect(addr: str, timeout: float = 10.0) -> grpc.Channel:
    """Returns a channel to concurd once it is connected; exits saying so if it cannot be.

    A refused connection fails at once rather than after the timeout, which only bounds an
    address that does not answer at all.
    """
    channel = grpc.insecure_channel(addr)
    states: queue.SimpleQueue[grpc.ChannelConnectivity] = queue.SimpleQueue()
    channel.subscribe(states.put, try_to_connect=True)
    try:
        state = None
        while state not in (grpc.ChannelConnectivity.READY,
                            grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            state = states.get(timeout=timeout)
    except queue.Empty:
        state = None
    finally:
        channel.unsubscribe(states.put)
    if state != grpc.ChannelConnectivity.READY:
        channel.close()
        sys.exit(f"{PROG}: cannot reach concurd at {addr}: start it (go run ./cmd/concurd), "
                 "or give its address with --addr or CONCUR_ADDR")
    return channel
